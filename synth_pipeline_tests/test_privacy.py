"""The privacy report: it catches copies and leaks, blocks the bundle when a table fails, and
publishes only rates."""

from __future__ import annotations

import json
import re

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from synth_pipeline import cli, environment
from synth_pipeline.assets import project_assets
from synth_pipeline.core.config_files import ProjectFiles
from synth_pipeline.core.database import open_destination, open_source
from synth_pipeline.core.disclosure import DisclosurePolicy
from synth_pipeline.core.privacy import CHECKS
from synth_pipeline.core.privacy_bundle import destination_key, report_path
from synth_pipeline.core.privacy_measure import assess_table, quasi_identifiers
from synth_pipeline.core.propose import propose_table_config
from synth_pipeline.core.schema import ColumnDef, read_table_schema
from synth_pipeline.core.summarise import summarise_table
from synth_pipeline.core.thresholds import PrivacyThresholds
from synth_pipeline.core.transfer import copy_table
from synth_pipeline.core.write import RegisterEntry
from synth_pipeline.dask_resource import DaskCluster
from synth_pipeline.resources import (
    DestinationDatabase,
    JsonStateIOManager,
    SourceDatabase,
    SynthProject,
)

from . import adversarial as adv


@pytest.fixture(scope="module")
def extract_url(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('privacy') / 'source.sqlite'}"
    adv.build_extract(url)
    return url


def test_a_copy_of_the_source_fails_every_check(extract_url, tmp_path):
    """Publishing the real rows as 'synthetic' is what the report exists to stop."""
    source = open_source(extract_url)
    schema = read_table_schema(source, None, "condition_occurrence")
    cfg = propose_table_config(schema, summarise_table(source, None, schema, DisclosurePolicy()))
    destination = open_destination(f"sqlite:///{tmp_path / 'copy.sqlite'}")
    columns = [ColumnDef(n, c.type, c.max_length) for n, c in cfg.columns.items()]
    entry = RegisterEntry("synthetic", cfg.fingerprint(), 1, 1.0, {}, "test")
    copy_table(
        source,
        None,
        "condition_occurrence",
        destination,
        None,
        "condition_occurrence",
        columns,
        entry=entry,
    )
    report = assess_table(
        source, None, destination, None, cfg, DisclosurePolicy(), PrivacyThresholds()
    )
    for m in (report.exact_matches, report.unique_matches, report.dcr):
        assert m.figure.value == pytest.approx(m.copied.value)  # what a copy scores
        assert m.excess == pytest.approx(1.0) and m.excess_low > 0.5
    assert report.exact_matches.figure.value == 1.0
    assert report.rare_category_leaks == 1 and report.rare_leak_columns == ["condition_concept_id"]
    assert set(report.failures) == set(CHECKS)  # the attacks included
    # the whole source (2,000 rows) is the reference; 1,000 rows are left out in turn
    assert report.dcr_samples == {"synthetic": 1000, "held_out": 1000, "reference": 2000}
    assert quasi_identifiers(cfg, PrivacyThresholds()) == [
        "condition_concept_id",
        "condition_start_date",
    ]


def test_thresholds_and_quasi_identifiers_come_from_project_yaml(extract_url, tmp_path):
    source = open_source(extract_url)
    schema = read_table_schema(source, None, "person")
    cfg = propose_table_config(schema, summarise_table(source, None, schema, DisclosurePolicy()))
    thresholds = PrivacyThresholds(quasi_identifiers={"person": ["gender_concept_id"]})
    assert quasi_identifiers(cfg, thresholds) == ["gender_concept_id"]
    assert quasi_identifiers(cfg, PrivacyThresholds()) == [
        "year_of_birth",
        "gender_concept_id",
        "race_concept_id",
        "ethnicity_concept_id",
    ]
    with pytest.raises(ValueError):
        PrivacyThresholds(max_exact_match_excess=1.5)


def _resources(root, source_url, destination_url, bundle):
    return {
        "source": SourceDatabase(url=source_url),
        "destination": DestinationDatabase(url=destination_url),
        "project": SynthProject(project="adv", config_root=str(root), bundle_dir=str(bundle)),
        "state_io_manager": JsonStateIOManager(base_dir=str(bundle.parent / "state")),
        "dask": DaskCluster(),
    }


@pytest.mark.slow
def test_a_reviewer_who_hand_lists_a_rare_value_is_caught(extract_url, tmp_path, capsys):
    root = tmp_path / "cfg"
    common = ["--project", "adv", "--config-dir", str(root)]
    assert cli.main(["init", "--source", extract_url, *common]) == 0
    files = ProjectFiles(root, "adv")
    path = files.table_file("condition_occurrence")
    data = yaml.safe_load(path.read_text())
    # the reviewer "restores" the condition seen once, with a generous count
    data["columns"]["condition_concept_id"]["stats"]["values"].append(
        {"value": adv.RARE_CONDITION, "count": 200}
    )
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    assert cli.main(["approve", "--all", "--reviewer", "Careless Reviewer", *common]) == 0
    destination = f"sqlite:///{tmp_path / 'synthetic.sqlite'}"
    bundle = tmp_path / "bundle"
    capsys.readouterr()
    run = ["run", "--source", extract_url, "--destination", destination, "--bundle", str(bundle)]
    code = cli.main([*run, *common])
    out = capsys.readouterr().out
    assert code == 1
    line = next(x for x in out.splitlines() if "privacy_rare_categories" in x)
    assert "condition_occurrence: 1 values seen fewer than k times" in line
    assert "condition_concept_id" in line
    # a failed table keeps the bundle from being written at all (the CLI holds it back)
    assert "not written because condition_occurrence failed" in out
    assert not (bundle / "manifest.json").exists()
    assert not (bundle / "manifest.json").exists()
    # the value did reach the destination: the report is what stopped it going further
    engine = open_destination(destination)
    with engine.connect() as conn:
        leaked = conn.execute(
            sa.text("SELECT COUNT(*) FROM condition_occurrence WHERE condition_concept_id = :c"),
            {"c": adv.RARE_CONDITION},
        ).scalar_one()
    assert leaked > 0

    # removing the value and approving again lets the bundle through
    data["columns"]["condition_concept_id"]["stats"]["values"].pop()
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    approve = ["approve", "--table", "condition_occurrence", "--reviewer", "Second Look", *common]
    assert cli.main(approve) == 0
    assert cli.main([*run, "--tables", "condition_occurrence", *common]) == 0
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert "privacy.md" in {r["file"] for r in manifest["reports"]}

    # a table whose report is missing (or out of date) is refused too, naming it
    key = destination_key(destination, None)
    report_path(environment.work_dir(), "adv", key, "note").unlink()
    instance = dg.DagsterInstance.ephemeral()
    advs = project_assets("adv")
    result = dg.materialize(
        advs.all,
        selection=[advs.csv_bundle],
        instance=instance,
        resources=_resources(root, extract_url, destination, bundle),
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = failure.step_failure_data.error.message + "".join(
        c.message for c in [failure.step_failure_data.error.cause] if c
    )
    assert "note: no privacy report" in message


def privacy_sections(text: str) -> dict[str, list[dict[str, str]]]:
    """The tables of a privacy.md, by section title: one dict per row, by column header."""
    out: dict[str, list[dict[str, str]]] = {}
    title, header = None, None
    for line in text.splitlines():
        if line.startswith("## "):
            title, header = line[3:], None
        elif title and line.startswith("|") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if header is None:
                header = cells
            else:
                out.setdefault(title, []).append(dict(zip(header, cells, strict=True)))
    return out


MEASURES = ["Exact matches", "Unique matches", "Distance to closest record"]


def test_the_demo_bundle_reports_rates_only(demo_run):
    bundle = demo_run["out"] / "bundle"
    text = (bundle / "privacy.md").read_text()
    assert "FAIL" not in text
    sections = privacy_sections(text)
    for title in MEASURES:
        rows = sections[title]
        assert {"person", "condition_occurrence", "drug_exposure", "measurement"} <= {
            r["table"] for r in rows
        }
        for r in rows:
            assert r["verdict"] in ("pass", "pass (at chance)", "n/a"), r
            excess = r["excess over chance"]
            if excess.replace(".", "").isdigit():
                assert float(excess) <= float(r["threshold"]), r
    assert {r["values"] for r in sections["Rare categories"]} == {"0"}
    attacked = sections["Attacks"]
    assert {"person", "condition_occurrence", "drug_exposure", "measurement"} <= {
        r["table"] for r in attacked
    }
    assert {r["verdict"] for r in attacked} <= {"pass", "n/a"}
    assert {r["attack"].split(" (")[0] for r in attacked} == {
        "singling out",
        "linkability",
        "attribute inference",
        "membership inference",
    }
    # no exact source count: the person table's sample sizes are rounded like released counts
    source = open_source(f"sqlite:///{environment.demo_source_path()}")
    with source.connect() as conn:
        persons = conn.execute(sa.text("SELECT COUNT(*) FROM person")).scalar_one()
    assert str(persons) not in text and str(persons // 2) not in text


def _rate_is_rounded(cell: str, rows: int, rounding: int) -> bool:
    """A printed share gives no count finer than the rounding back: it lies on a grid whose step
    times the table's rows is at least the rounding (steps of 1 or 2 times a power of ten), or
    it times the rows is a multiple of the rounding."""
    value = float(cell.lstrip("<"))
    if abs(value * rows - rounding * round(value * rows / rounding)) < 1e-6 * rows:
        return True
    step = next(m * 10.0**e for e in range(-4, 1) for m in (1, 2) if m * 10.0**e * rows >= rounding)
    return abs(value / step - round(value / step)) < 1e-6


def test_no_figure_of_the_privacy_report_gives_a_source_count_back(demo_run):
    """Every rate in privacy.md and in the UI metadata is a count rounded like a released count
    over the released size, printed no finer than the rounding allows."""
    from synth_pipeline.assets.privacy import privacy_metadata
    from synth_pipeline.core.privacy_bundle import load_report

    rounding = demo_run["files"].load_project().disclosure.rounding
    text = (demo_run["out"] / "bundle" / "privacy.md").read_text()
    sections = privacy_sections(text)
    checked = 0
    for title in MEASURES:
        for r in sections[title]:
            rows = int(r["rows"])
            for cell in (r["figure"], r["chance"], r["a real row left out"], r["copy"]):
                if cell.lstrip("<").replace(".", "").isdigit():
                    assert _rate_is_rounded(cell, rows, rounding), (title, r)
                    checked += 1
            cell = r["synthetic columns recombined"]
            if cell.lstrip("<").replace(".", "").isdigit():
                assert _rate_is_rounded(cell, rows, rounding), (title, r)
    assert checked > 80
    # the sample sizes are rounded counts; no source table's exact row count appears
    assert re.findall(r"about (\d+)", text)
    assert all(int(n) % rounding == 0 for n in re.findall(r"about (\d+)", text))
    source = open_source(f"sqlite:///{environment.demo_source_path()}")
    numbers = set(re.findall(r"\d+", text))
    with source.connect() as conn:
        for row in sections["Rare categories"]:
            n = conn.execute(sa.text(f'SELECT COUNT(*) FROM "{row["table"]}"')).scalar_one()
            assert n % rounding == 0 or str(n) not in numbers, row["table"]

    # the UI shows the same rounded figures
    key = destination_key(demo_run["url"], None)
    report = load_report(report_path(environment.work_dir(), "demo", key, "person"))
    table = privacy_metadata(report)["privacy"].value
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()[2:]]
    shown = 0
    for cell in (c for row in cells for c in row[1:6]):
        if cell.lstrip("<").replace(".", "").isdigit():
            assert _rate_is_rounded(cell, report.synthetic_rows, rounding), cell
            shown += 1
    assert shown >= 8


def test_a_table_with_nothing_to_compare_still_gets_a_current_report(extract_url, tmp_path):
    """Only keys and random strings: nothing to measure, but the report must still match the
    destination's register, or csv_bundle would refuse the table as out of date."""
    from synth_pipeline.core.privacy_bundle import bundle_problems
    from synth_pipeline.core.write import read_register

    source = open_source(extract_url)
    schema = read_table_schema(source, None, "provider")
    cfg = propose_table_config(schema, summarise_table(source, None, schema, DisclosurePolicy()))
    for col in cfg.columns.values():
        if col.generator not in ("primary_key", "string_pattern"):
            col.generator, col.params = "always_null", {}
    destination = open_destination(f"sqlite:///{tmp_path / 'dest.sqlite'}")
    columns = [ColumnDef(n, c.type, c.max_length) for n, c in cfg.columns.items()]
    entry = RegisterEntry("synthetic", cfg.fingerprint(), 1, 1.0, {}, "test")
    copy_table(source, None, "provider", destination, None, "provider", columns, entry=entry)
    report = assess_table(
        source, None, destination, None, cfg, DisclosurePolicy(), PrivacyThresholds()
    )
    register = read_register(destination, None)
    report.written_at = register["provider"]["written_at"]
    assert report.assessed and report.passed and report.synthetic_rows == 4
    assert "no column generated from released statistics" in report.note
    assert bundle_problems({"provider": report}, register) == []
