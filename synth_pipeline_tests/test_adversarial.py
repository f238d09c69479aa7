"""Trying hard to make disclosure control leak (issue 3).

The adversarial extract (see adversarial.py) goes through the whole CLI: init, approve, run. None
of its nasty values or small counts may appear in a config, in the destination tables or in the
bundle: at the default k = 10, at k = 5, and with the extract in PostgreSQL.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa
import yaml

from synth_pipeline.core.config_files import ProjectFiles
from synth_pipeline.core.database import open_destination
from synth_pipeline.core.schema import list_tables

from . import adversarial as adv

VARIANTS = [
    pytest.param(("sqlite", 10), id="sqlite-k10"),
    pytest.param(("sqlite", 5), id="sqlite-k5"),
    pytest.param(("postgres", 10), id="postgres-k10", marks=pytest.mark.postgres),
]
pytestmark = pytest.mark.slow


@pytest.fixture(params=VARIANTS)
def run(request, adversarial_runs):
    """conftest's ``adversarial_runs``: each variant built and run once per session (the
    SQLite k = 10 one is shared with test_vocabulary_subset.py)."""
    backend, k = request.param
    url = request.getfixturevalue("postgres_database") if backend == "postgres" else None
    shared = adversarial_runs(backend, k, url)
    done = shared["pipeline"]
    return {
        "code": done.code,
        "k": k,
        "files": done.files,
        "extract": shared["extract"],
        "destination": open_destination(done.destination_url),
        "bundle": done.bundle,
    }


# ---------------------------------------------------------------------------------------------
# Reading what left


def config_texts(files: ProjectFiles) -> dict[str, str]:
    texts = {t: files.table_file(t).read_text() for t in files.tables()}
    texts["project.yaml"] = files.project_file.read_text()
    return texts


def config_data(files: ProjectFiles) -> dict[str, dict]:
    return {t: yaml.safe_load(files.table_file(t).read_text()) for t in files.tables()}


def leaves(node, path=""):
    """Every scalar in a YAML document, with where it sits."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from leaves(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from leaves(value, f"{path}[{i}]")
    else:
        yield path, node


def destination_frames(engine) -> dict[str, pl.DataFrame]:
    out = {}
    with engine.connect() as conn:
        for table in list_tables(engine, None):
            if table.startswith("_synth"):
                continue
            result = conn.execute(sa.text(f'SELECT * FROM "{table}"'))
            rows = result.all()
            out[table] = pl.DataFrame(
                [list(r) for r in rows], schema=list(result.keys()), orient="row"
            )
    return out


def destination_text(engine) -> str:
    return "\n".join(df.write_csv() for df in destination_frames(engine).values() if df.height)


def bundle_csv(bundle: Path, table: str) -> pl.DataFrame:
    return pl.read_csv(bundle / f"{table}.csv", infer_schema=False)


def all_places(run) -> dict[str, str]:
    return {
        "configs": "\n".join(config_texts(run["files"]).values()),
        "destination": destination_text(run["destination"]),
        "bundle": adv.bundle_text(run["bundle"]),
    }


# ---------------------------------------------------------------------------------------------


def test_the_run_goes_through_every_gate(run):
    """The pipeline does not fail on the nasty extract: it suppresses, and its privacy checks pass."""
    assert run["code"] == 0
    manifest = json.loads((run["bundle"] / "manifest.json").read_text())
    assert {"person", "measurement", "note", "provider", "death"} <= {
        t["table"] for t in manifest["tables"]
    }
    assert "privacy.md" in {r["file"] for r in manifest["reports"]}


def test_every_released_count_is_zero_or_at_least_k(run):
    k = run["k"]
    counted = re.compile(
        r"\.(row_count|rows|non_null|distinct|zero_as_null|other_count|dangling|count)$"
        r"|\.(months|hours)\[\d+\]$"
    )
    checked = 0
    for table, data in config_data(run["files"]).items():
        if data["kind"] == "vocabulary":
            continue
        for where, value in leaves(data):
            if not counted.search(where) or where.endswith(".params.count"):
                continue
            if ".review." in where or isinstance(value, bool):
                continue
            checked += 1
            assert value == 0 or value >= k, f"{table}{where} = {value} (k={k})"
            if not where.endswith(".rows"):
                assert value % 5 == 0 or value == k, f"{table}{where} = {value} not rounded"
        for finding in data["source"].get("findings", []):
            for number in re.findall(r"about (\d+)", finding):
                assert int(number) >= k, (table, finding)
    assert checked > 100


def test_a_table_of_four_rows_is_never_counted(run):
    k = run["k"]
    data = yaml.safe_load(run["files"].table_file("provider").read_text())
    assert "row_count" not in data["source"]
    assert data["rows"] == k
    with run["destination"].connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM provider")).scalar_one() == k
    manifest = json.loads((run["bundle"] / "manifest.json").read_text())
    assert {t["table"]: t["rows"] for t in manifest["tables"]}["provider"] == k


def test_concepts_seen_fewer_than_k_times_never_leave(run):
    rare = {adv.RARE_RACE, adv.RARE_CONDITION, adv.RARE_CAUSE, adv.GROUP_OF_3_CONCEPT}
    for table, data in config_data(run["files"]).items():
        for where, value in leaves(data):
            assert value not in rare, f"config {table}{where} = {value}"
    for table, df in destination_frames(run["destination"]).items():
        for column in df.columns:
            if column.endswith("_concept_id"):
                assert not set(df[column].drop_nulls().to_list()) & rare, (table, column)
    for table in ("person", "condition_occurrence", "death", "measurement"):
        df = bundle_csv(run["bundle"], table)
        for column in [c for c in df.columns if c.endswith("_concept_id")]:
            assert not {str(r) for r in rare} & set(df[column].drop_nulls().to_list())


def test_the_patient_aged_109_is_coded_away(run):
    person = yaml.safe_load(run["files"].table_file("person").read_text())["columns"]
    yob = person["year_of_birth"]["stats"]
    assert all(v["value"] > 1907 for v in yob.get("values", []))
    assert all(q["value"] > 1907 for q in yob.get("quantiles", []))
    assert all(b["from"] > 1907 for b in person["birth_datetime"]["stats"]["years"])
    with run["destination"].connect() as conn:
        youngest_year, first_birth = conn.execute(
            sa.text("SELECT MIN(year_of_birth), MIN(birth_datetime) FROM person")
        ).one()
    assert youngest_year > 1907 and str(first_birth) > "1908"
    csv = bundle_csv(run["bundle"], "person")
    assert min(int(y) for y in csv["year_of_birth"]) > 1907
    assert not csv["birth_datetime"].str.starts_with("1907").any()


def test_a_single_death_date_is_never_listed(run):
    death = yaml.safe_load(run["files"].table_file("death").read_text())["columns"]
    stats = death["death_date"]["stats"]
    assert not stats.get("years") and not stats.get("months")
    day = adv.DEATH_DATE.isoformat()
    # nothing released carries it; a death row holding it would be a copy (another table's
    # synthetic date may fall on that day by chance: dates are drawn from the months released)
    assert day not in all_places(run)["configs"]
    assert day not in (run["bundle"] / "death.csv").read_text(encoding="utf-8")
    assert day not in destination_frames(run["destination"])["death"].write_csv()
    with run["destination"].connect() as conn:
        assert (
            conn.execute(
                sa.text("SELECT COUNT(*) FROM death WHERE death_date = :d"), {"d": day}
            ).scalar_one()
            == 0
        )


def test_names_and_identifiers_in_free_text_never_leave(run):
    places = all_places(run)
    for where, text in places.items():
        for name in adv.NAMES:
            assert name not in text, f"{name} in {where}"
        assert adv.MRN_PREFIX not in text, where
        for note in run["extract"].texts[:5]:
            assert note[:30] not in text
    # the note and provider tables were generated, not copied
    frames = destination_frames(run["destination"])
    assert frames["note"].height >= run["k"] and frames["provider"].height == run["k"]


def bundle_numbers(bundle: Path) -> set[float]:
    numbers: set[float] = set()
    for path in bundle.glob("*.csv"):
        df = pl.read_csv(path, infer_schema=False)
        for column in df.columns:
            numbers |= set(df[column].cast(pl.Float64, strict=False).drop_nulls().to_list())
    return numbers


def test_a_column_of_unique_values_releases_none_of_them(run):
    values = set(run["extract"].unique_values)
    for table, data in config_data(run["files"]).items():
        for where, value in leaves(data):
            assert not (isinstance(value, float) and value in values), f"{table}{where} = {value}"
    released = bundle_csv(run["bundle"], "measurement")["value_as_number"]
    assert not set(released.cast(pl.Float64).drop_nulls().to_list()) & values
    # elsewhere in the bundle whole numbers are counts and ids: look for the fractional ones
    assert not bundle_numbers(run["bundle"]) & {v for v in values if v != int(v)}
    with run["destination"].connect() as conn:
        produced = {
            r[0]
            for r in conn.execute(
                sa.text("SELECT value_as_number FROM measurement WHERE value_as_number IS NOT NULL")
            )
        }
    assert produced, "value_as_number was generated"
    assert not produced & set(values)
    mrn = yaml.safe_load(run["files"].table_file("person").read_text())["columns"]["mrn"]
    assert mrn["stats"]["listed"] is False and mrn["generator"] == "string_pattern"


def test_a_group_of_three_inside_a_per_concept_statistic_is_pooled_away(run):
    columns = yaml.safe_load(run["files"].table_file("measurement").read_text())["columns"]
    for column in ("value_as_number", "unit_concept_id"):
        conditional = columns[column]["stats"].get("conditional")
        if conditional is None:
            continue
        assert adv.GROUP_OF_3_CONCEPT not in [g["value"] for g in conditional["groups"]]
        assert "other" not in conditional  # the pool holds 3 values: withheld
    for table, data in config_data(run["files"]).items():
        for where, value in leaves(data):
            assert value not in adv.GROUP_OF_3_VALUES, f"{table}{where}"
    assert not bundle_numbers(run["bundle"]) & set(adv.GROUP_OF_3_VALUES)
    with run["destination"].connect() as conn:
        top = conn.execute(sa.text("SELECT MAX(value_as_number) FROM measurement")).scalar_one()
        units = {
            r[0] for r in conn.execute(sa.text("SELECT DISTINCT unit_concept_id FROM measurement"))
        }
    assert top < 700  # the three extreme values are top-coded away
    assert adv.GROUP_OF_3_UNIT not in units


def test_a_null_pattern_seen_twice_is_not_reproduced(run):
    columns = yaml.safe_load(run["files"].table_file("visit_occurrence").read_text())["columns"]
    assert columns["visit_end_date"]["stats"]["null_fraction"] == 0
    assert columns["provider_id"]["stats"]["null_fraction"] == 0
    assert "null count below k" in " ".join(columns["visit_end_date"]["disclosure"])
    with run["destination"].connect() as conn:
        both = conn.execute(
            sa.text(
                "SELECT COUNT(*) FROM visit_occurrence WHERE visit_end_date IS NULL AND provider_id IS NULL"
            )
        ).scalar_one()
        total = conn.execute(sa.text("SELECT COUNT(*) FROM visit_occurrence")).scalar_one()
    assert total >= 300 - 5 and both == 0


def test_the_privacy_report_finds_no_leak(run):
    from .test_privacy import privacy_sections

    text = (run["bundle"] / "privacy.md").read_text()
    assert text.startswith("These data are artificially generated")
    rare = privacy_sections(text)["Rare categories"]
    assert {r["table"] for r in rare} >= {"person", "measurement", "condition_occurrence"}
    assert "FAIL" not in text
    assert {(r["values"], r["verdict"]) for r in rare} == {("0", "pass")}
