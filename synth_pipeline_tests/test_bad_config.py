"""Bad configuration stops a run before anything is written, with an error naming the file (and
line), table, column and setting. Each test starts from a good run of the demo's person table
and checks that the destination and the bundle are byte for byte what that run left.

(Loading single bad files is covered in test_config.py; here each mistake goes through
`synth-pipeline run`, as an unattended scheduled run would meet it.)
"""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
import yaml

from synth_pipeline import cli
from synth_pipeline.assets import project_assets
from synth_pipeline.dask_resource import DaskCluster
from synth_pipeline.resources import (
    DestinationDatabase,
    JsonStateIOManager,
    SourceDatabase,
    SynthProject,
)

from .conftest import DEMO_CONFIGS
from .fault_helpers import destination_state, folder_state

# the demo project's assets (keys demo/...), its partitions
DEMO = project_assets("demo")
ALL_ASSETS = DEMO.all
OMOP_TABLES = DEMO.partitions_name


@dataclass
class Site:
    """A hospital's setup after one good run: source, configs, destination, bundle."""

    path: Path
    before: tuple[dict, dict] | None = None

    @property
    def root(self) -> Path:
        return self.path / "configuration-files"

    @property
    def source(self) -> Path:
        return self.path / "source.sqlite"

    @property
    def destination(self) -> str:
        return f"sqlite:///{self.path / 'dest.sqlite'}"

    @property
    def bundle(self) -> Path:
        return self.path / "bundle"

    def file(self, table: str) -> Path:
        return self.root / "demo" / f"{table}.yaml"

    def args(self, *extra: str, tables: tuple[str, ...] = ("person",)) -> list[str]:
        return [
            "run",
            "--source",
            f"sqlite:///{self.source}",
            "--destination",
            self.destination,
            "--project",
            "demo",
            "--bundle",
            str(self.bundle),
            "--config-dir",
            str(self.root),
            *extra,
            "--tables",
            *tables,
        ]

    def state(self) -> tuple[dict, dict]:
        return destination_state(self.destination), folder_state(self.bundle)


@pytest.fixture(scope="module")
def good_run(tmp_path_factory, demo_sqlite_url) -> Path:
    base = tmp_path_factory.mktemp("good-run")
    shutil.copytree(DEMO_CONFIGS, base / "configuration-files")
    shutil.copy(demo_sqlite_url.removeprefix("sqlite:///"), base / "source.sqlite")
    site = Site(base)
    assert cli.main(site.args()) == 0
    return base


@pytest.fixture
def site(good_run, tmp_path) -> Site:
    path = tmp_path / "site"
    shutil.copytree(good_run, path)
    s = Site(path)
    s.before = s.state()
    assert "person" in s.before[0] and "manifest.json" in s.before[1]
    return s


def run(site: Site, capsys, *extra: str, tables=("person",)) -> tuple[int, str]:
    code = cli.main(site.args(*extra, tables=tables))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def edit(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def assert_untouched(site: Site) -> None:
    after = site.state()
    assert site.before is not None
    assert after[0] == site.before[0], "the destination changed"
    assert after[1] == site.before[1], "the bundle changed"


def test_yaml_syntax_error_names_file_and_line(site, capsys):
    path = site.file("person")
    lines = path.read_text().splitlines()
    lines[20] += "  key: [unclosed"
    path.write_text("\n".join(lines) + "\n")
    code, out = run(site, capsys)
    assert code == 2
    assert f"{path}:" in out and "YAML syntax error" in out
    line = int(out.split(f"{path}:")[1].split(",")[0].split(":")[0])
    assert line == 21, "the line where the bracket is left open, not where PyYAML noticed it"
    assert_untouched(site)


def test_unknown_generator_in_any_file_stops_the_run(site, capsys):
    """The bad file is not even one of the tables run: every file is checked first."""
    path = site.file("visit_occurrence")
    edit(path, lambda d: d["columns"]["visit_concept_id"].update(generator="magic_beans"))
    code, out = run(site, capsys)
    assert code == 2
    for part in (str(path), "table visit_occurrence", "column visit_concept_id", "setting"):
        assert part in out, part
    assert "unknown generator 'magic_beans'" in out
    assert_untouched(site)


def test_generator_parameter_of_the_wrong_type(site, capsys):
    path = site.file("person")
    edit(
        path,
        lambda d: d["columns"]["year_of_birth"].update(
            generator="numeric_quantiles", params={"minimum": "nineteen hundred"}
        ),
    )
    code, out = run(site, capsys)
    assert code == 2
    for part in (str(path), "table person", "column year_of_birth", "setting params.minimum"):
        assert part in out, part
    assert_untouched(site)


def test_k_below_one(site, capsys):
    path = site.root / "demo" / "project.yaml"
    edit(path, lambda d: d["disclosure"].update(min_cell_count=0))
    code, out = run(site, capsys)
    assert code == 2
    assert str(path) in out and "setting disclosure.min_cell_count" in out
    assert "greater than or equal to 1" in out
    assert_untouched(site)


@pytest.mark.parametrize("scale", [0, -2.5])
def test_scale_of_zero_or_below_in_the_project_file(site, capsys, scale):
    path = site.root / "demo" / "project.yaml"
    edit(path, lambda d: d.update(scale=scale))
    code, out = run(site, capsys)
    assert code == 2
    assert str(path) in out and "setting scale" in out and "greater than 0" in out
    assert_untouched(site)


@pytest.mark.parametrize("scale", ["0", "-1"])
def test_scale_of_zero_or_below_on_the_command_line(site, capsys, scale):
    code, out = run(site, capsys, "--scale", scale)
    assert code == 2
    assert "setting --scale" in out and "above 0" in out
    assert_untouched(site)


def test_scale_of_zero_through_dagster_is_refused_before_writing(site):
    """The UI path has no CLI in front: synthetic_table itself refuses the scale."""
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(OMOP_TABLES, ["person"])
    resources = {
        "source": SourceDatabase(url=f"sqlite:///{site.source}"),
        "destination": DestinationDatabase(url=site.destination),
        "project": SynthProject(
            project="demo", config_root=str(site.root), bundle_dir=str(site.bundle), scale=0.0
        ),
        "state_io_manager": JsonStateIOManager(base_dir=str(site.path / "state")),
        "dask": DaskCluster(),
    }
    result = dg.materialize(
        ALL_ASSETS,
        selection=ALL_ASSETS[:4],
        partition_key="person",
        instance=instance,
        resources=resources,
        raise_on_error=False,
    )
    assert not result.success
    failures = [e.step_failure_data.error for e in result.all_events if e.is_step_failure]
    text = " ".join(str(e.to_string()) for e in failures)
    assert "demo__synthetic_table" in {e.step_key for e in result.all_events if e.is_step_failure}
    assert "scale must be above 0" in text and "setting scale" in text
    assert_untouched(site)
    assert DEMO.synthetic_table.key not in {
        e.asset_key for e in result.get_asset_materialization_events()
    }


def test_a_configured_table_the_source_no_longer_has(site, capsys):
    with sqlite3.connect(site.source) as conn:
        conn.execute("DROP TABLE specimen")
    code, out = run(site, capsys)
    assert code == 2
    path = site.file("specimen")
    for part in (str(path), "table specimen", "setting table", "no table 'specimen' any more"):
        assert part in out, part
    assert_untouched(site)


def test_a_column_the_source_no_longer_has(site, capsys):
    """The file is refreshed to a draft that says which column went; the gate refuses it."""
    with sqlite3.connect(site.source) as conn:
        conn.execute("ALTER TABLE person DROP COLUMN ethnicity_source_value")
    code, out = run(site, capsys)
    assert code == 1
    assert "config_approved failed" in out
    assert str(site.file("person")) in out
    assert "columns no longer in the source: ethnicity_source_value" in out
    assert "bundle" in out and "previous bundle is kept" in out
    refreshed = yaml.safe_load(site.file("person").read_text())
    assert refreshed["review"]["status"] == "draft"
    assert "ethnicity_source_value" not in refreshed["columns"]
    assert_untouched(site)


def test_a_new_source_column_missing_from_the_config(site, capsys):
    with sqlite3.connect(site.source) as conn:
        conn.execute("ALTER TABLE person ADD COLUMN shoe_size INTEGER")
        conn.execute("UPDATE person SET shoe_size = 36 + person_id % 12")
    code, out = run(site, capsys)
    assert code == 1
    assert "new source columns not yet reviewed: shoe_size" in out
    assert str(site.file("person")) in out
    refreshed = yaml.safe_load(site.file("person").read_text())
    assert refreshed["review"]["status"] == "draft"
    assert "shoe_size" in refreshed["columns"]
    # the reviewer's other choices survive the refresh
    assert refreshed["columns"]["gender_concept_id"]["generator"] == "weighted_choice"
    assert_untouched(site)


def test_a_new_source_table_is_drafted_and_refused(site, capsys):
    with sqlite3.connect(site.source) as conn:
        conn.execute("CREATE TABLE ward_stay AS SELECT person_id, 3 AS nights FROM person")
    code, out = run(site, capsys, tables=("person", "ward_stay"))
    assert code == 1
    assert str(site.file("ward_stay")) in out and "a table new in the source" in out
    assert yaml.safe_load(site.file("ward_stay").read_text())["review"]["status"] == "draft"
    # person's config is fine, so person was generated again (the same rows; only its
    # register row's time moved); nothing was written for ward_stay, and no bundle
    assert site.before is not None
    tables, bundle = site.state()
    assert "ward_stay" not in tables and tables["person"] == site.before[0]["person"]
    assert bundle == site.before[1]


def test_after_fixing_the_mistake_the_next_run_succeeds(site, capsys):
    path = site.file("person")
    good = path.read_text()
    path.write_text(good.replace("generator: weighted_choice", "generator: no_such", 1))
    assert run(site, capsys)[0] == 2
    assert_untouched(site)
    path.write_text(good)
    code, out = run(site, capsys)
    assert code == 0, out
