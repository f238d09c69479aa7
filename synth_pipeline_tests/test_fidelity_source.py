"""Fidelity against the source (issue 12): each column scored against the approved statistics
and against the source table, by aggregate SQL in each database, kept in the trusted environment."""

from __future__ import annotations

import re
import shutil
import sqlite3

import dagster as dg
import numpy as np
import pytest
import sqlalchemy as sa

from synth_pipeline import cli
from synth_pipeline.core.config import ColumnConfig, TableConfig
from synth_pipeline.core.database import open_destination, open_source
from synth_pipeline.core.fidelity import table_fidelity
from synth_pipeline.core.fidelity_source import score_against_source
from synth_pipeline.core.fidelity_trusted import attach_source_report, source_report
from synth_pipeline.core.report import NOT_PUBLISHED, fidelity_html
from synth_pipeline.core.statistics import (
    Bin,
    ColumnStats,
    DateOffset,
    QuantilePoint,
    ValueCount,
)
from synth_pipeline.runner import execute

K = 10
ROWS = 400
# category values of the source: they may be compared, never reported
SECRET_VALUES = ("Quokka-Blue", "Zebra-Green")


def _source_rows(rng: np.random.Generator) -> list[tuple]:
    rows = []
    for i in range(1, ROWS + 1):
        year = 1930 + int(rng.integers(0, 40))
        start = f"20{10 + i % 9}-0{1 + i % 9}-1{i % 9}"
        rows.append(
            (
                i,
                8507 if i % 2 else 8532,
                "M" if i % 2 else "F",
                SECRET_VALUES[i % 3 == 0],
                f"SECRET-ID-{i:05d}",  # an identifier: every value unique
                year,
                f"{year}-0{1 + i % 9}-15 00:00:00",
                start,
                # days after the start, as the dates are text in SQLite
                f"20{10 + i % 9}-0{1 + i % 9}-2{i % 9}",
                round(float(rng.normal(70, 12)), 1) if i % 7 else "",  # '' for NULL, dirty
                None,
                0,  # OMOP: 0 for NULL in a reference
                ROWS + i,  # a self-reference pointing to no row
            )
        )
    return rows


COLUMNS = (
    "person_id INTEGER, gender_concept_id INTEGER, gender_source_value TEXT, "
    "race_source_value TEXT, person_source_value TEXT, year_of_birth INTEGER, "
    "birth_datetime TEXT, start_date DATE, end_date DATE, weight REAL, notes TEXT, "
    "provider_id INTEGER, preceding_id INTEGER"
)


def _write(path, rows: list[tuple]) -> str:
    with sqlite3.connect(path) as conn:
        conn.execute(f"CREATE TABLE person ({COLUMNS})")
        conn.executemany(f"INSERT INTO person VALUES ({', '.join('?' * 13)})", rows)
    return f"sqlite:///{path}"


@pytest.fixture
def source_url(tmp_path) -> str:
    return _write(tmp_path / "source.sqlite", _source_rows(np.random.default_rng(7)))


def _col(type_: str, generator: str, stats: ColumnStats | None = None, **params) -> ColumnConfig:
    sql = {"integer": "BIGINT", "float": "DOUBLE", "string": "VARCHAR(50)", "date": "DATE"}
    return ColumnConfig(
        type=type_,
        sql_type=sql.get(type_, "TEXT"),
        generator=generator,
        params=params,
        stats=stats or ColumnStats(),
    )


def approved_config() -> TableConfig:
    """Statistics a reviewer signed that differ from the source: 90/10 genders where the
    source is 50/50, births in 1990-2000 where the source has 1930-1969, random codes for
    M/F, always NULL for a weight the source has."""
    q = QuantilePoint
    return TableConfig(
        table="person",
        kind="synthetic",
        rows=ROWS,
        primary_key="person_id",
        columns={
            "person_id": _col("integer", "primary_key"),
            "gender_concept_id": _col(
                "integer",
                "weighted_choice",
                ColumnStats(
                    values=[ValueCount(value=8507, count=360), ValueCount(value=8532, count=40)]
                ),
            ),
            "gender_source_value": _col(
                "string",
                "string_pattern",
                ColumnStats(length=[q(p=0.01, value=1), q(p=0.99, value=1)]),
            ),
            "race_source_value": _col(
                "string",
                "string_pattern",
                ColumnStats(length=[q(p=0.01, value=11), q(p=0.99, value=11)]),
            ),
            "person_source_value": _col(
                "string",
                "string_pattern",
                ColumnStats(length=[q(p=0.01, value=15), q(p=0.99, value=15)]),
            ),
            "year_of_birth": _col(
                "integer",
                "numeric_quantiles",
                ColumnStats(quantiles=[q(p=0.01, value=1990), q(p=0.99, value=2000)]),
            ),
            "birth_datetime": _col(
                "datetime",
                "datetime_bins",
                ColumnStats(years=[Bin(start=1990, end=2000, count=ROWS)]),
            ),
            "start_date": _col(
                "date", "date_bins", ColumnStats(years=[Bin(start=2010, end=2018, count=ROWS)])
            ),
            "end_date": _col(
                "date",
                "date_offset",
                ColumnStats(
                    offset=DateOffset(
                        from_column="start_date",
                        quantiles=[q(p=0.01, value=10), q(p=0.99, value=10)],
                    )
                ),
                from_column="start_date",
            ),
            "weight": _col("float", "always_null", ColumnStats(null_fraction=1.0)),
            "notes": _col("string", "always_null", ColumnStats(null_fraction=1.0)),
            "provider_id": _col("integer", "always_null", ColumnStats(null_fraction=1.0)),
            "preceding_id": _col(
                "integer",
                "preceding_row",
                ColumnStats(null_fraction=1.0),
                person="person_id",
                order_by="start_date",
            ),
        },
    )


def _synthetic_rows(rng: np.random.Generator) -> list[tuple]:
    """Rows that follow approved_config exactly (not the source)."""
    codes = list("QZB468")
    rows = []
    for i in range(1, ROWS + 1):
        year = 1990 + (i % 11)
        start = f"20{10 + i % 9}-0{1 + i % 9}-0{1 + i % 9}"
        rows.append(
            (
                i,
                8507 if i <= 360 else 8532,
                codes[int(rng.integers(0, len(codes)))],
                "".join(rng.choice(list("abcdefghijk"), 11)),
                "".join(rng.choice(list("0123456789abcdef"), 15)),
                year,
                f"{year}-06-01 00:00:00",
                start,
                f"20{10 + i % 9}-0{1 + i % 9}-1{1 + i % 9}",
                None,
                None,
                None,
                None,
            )
        )
    return rows


def scores_by_column(fid) -> dict[str, tuple[float, float | None]]:
    return {c.column: (c.score, c.source_score) for c in fid.columns}


def _measure(
    source_url: str,
    destination_url: str,
    cfg: TableConfig,
    statements=None,
    src_schema: str | None = None,
    dst_schema: str | None = None,
):
    src = open_source(source_url)
    if statements is not None:
        sa.event.listen(
            src, "before_cursor_execute", lambda *a: statements.append(a[2]), retval=False
        )
    dst = open_destination(destination_url)
    fid = table_fidelity(dst, dst_schema, cfg, {}, {})
    return score_against_source(src, src_schema, dst, dst_schema, cfg, fid, K)


def test_matching_the_approved_statistics_but_not_the_source_scores_low_against_the_source(
    source_url, tmp_path
):
    dest = _write(tmp_path / "synthetic.sqlite", _synthetic_rows(np.random.default_rng(3)))
    fid = _measure(source_url, dest, approved_config())
    scores = scores_by_column(fid)
    # what the reviewer approved is followed closely ...
    for column in ("gender_concept_id", "gender_source_value", "year_of_birth", "start_date"):
        assert scores[column][0] >= 0.95, (column, scores[column])
    # ... and the source is not: 90/10 against 50/50, random codes against M/F, other years
    assert scores["gender_concept_id"][1] == pytest.approx(0.6, abs=0.01)
    assert scores["gender_source_value"][1] == 0.0
    assert scores["year_of_birth"][1] == 0.0
    assert scores["birth_datetime"][1] == 0.0
    # two source values seen at least k times, random strings never hit them
    assert scores["race_source_value"][1] == 0.0
    # an identifier is compared by its lengths (15 characters against 15)
    person_sv = next(c for c in fid.columns if c.column == "person_source_value")
    assert person_sv.against_source.metric == "KSComplement"
    assert person_sv.source_score == 1.0
    # always NULL where the source has weights: only the nulls compare, and they differ
    weight = next(c for c in fid.columns if c.column == "weight")
    assert weight.score == 1.0 and weight.against_source.metric == "NullSimilarity"
    assert weight.source_score < 0.2
    # 0 for NULL in a reference (OMOP) is NULL; columns NULL throughout on both sides are
    # listed but not counted in the medians
    by_name = {c.column: c for c in fid.columns}
    for column in ("provider_id", "notes"):
        assert by_name[column].source_score == 1.0 and by_name[column].against_source.empty
        assert by_name[column].empty
    assert not by_name["weight"].against_source.empty
    # a reference holds synthetic keys: not compared with the source's ids, not in the median
    assert by_name["preceding_id"].against_source.metric == "not compared"
    assert by_name["preceding_id"].source_score is None
    assert fid.median_score >= 0.95
    counted = sorted(
        c.source_score
        for c in fid.columns
        if c.source_score is not None and not c.against_source.empty
    )
    assert len(counted) == len(fid.columns) - 3
    assert fid.median_source_score == pytest.approx(float(np.median(counted)), abs=1e-4)
    assert fid.median_source_score < 0.5
    # kept and put back on freshly computed scores (as csv_bundle does), the medians stay
    kept = source_report(fid, approved_config(), None)
    again = table_fidelity(open_destination(dest), None, approved_config(), {}, {})
    attach_source_report(again, kept)
    assert (again.median_score, again.median_source_score) == (
        fid.median_score,
        fid.median_source_score,
    )
    assert (kept.median_against_approved, kept.median_against_source) == (
        fid.median_score,
        fid.median_source_score,
    )
    # the report lists the worst column against the source first
    worst = [c.source_score for c in fid.worst_first(against_source=True)]
    assert worst[-1] is None  # the reference, not compared: last
    assert worst[:-1] == sorted(worst[:-1])


def test_an_identical_copy_scores_one_against_the_source(source_url, tmp_path):
    copy = tmp_path / "copy.sqlite"
    shutil.copy(source_url.removeprefix("sqlite:///"), copy)
    fid = _measure(source_url, f"sqlite:///{copy}", approved_config())
    compared = [c for c in fid.columns if c.column != "preceding_id"]  # a reference: not compared
    assert {c.column: c.source_score for c in compared} == {c.column: 1.0 for c in compared}
    assert all(c.against_source.null_similarity == 1.0 for c in compared)
    assert fid.median_source_score == 1.0
    # the same copy is far from what the reviewer approved: the two scores are not the same thing
    approved = {c.column: c.score for c in fid.columns}
    assert approved["year_of_birth"] < 0.5 and approved["gender_concept_id"] < 0.7


def test_only_aggregates_are_read_from_the_source_and_no_value_is_reported(source_url, tmp_path):
    dest = _write(tmp_path / "synthetic.sqlite", _synthetic_rows(np.random.default_rng(3)))
    statements: list[str] = []
    cfg = approved_config()
    fid = _measure(source_url, dest, cfg, statements)
    # the catalogue (table and column names, keys) aside, every statement reads the table
    reads = [s for s in statements if not re.search(r"PRAGMA|sqlite_(temp_)?master", s)]
    assert reads, statements
    for s in reads:
        assert not re.search(r"SELECT\s+\*|\.\*", s), s
        select_list = s.split(" FROM ")[0].removeprefix("SELECT ")
        if " GROUP BY " in s:  # one row per value, year or bucket, with its count
            assert select_list.endswith("COUNT(*)"), s
        else:  # one row of counts and ranges
            items = re.split(r",\s*(?=COUNT\(|MIN\(|MAX\()", select_list)
            assert all(re.match(r"(COUNT|MIN|MAX)\(", i) for i in items), s
    # the row count, one statement of counts, then per column a grouped statement (two for a
    # category column whose source has no value seen k times: it is compared by lengths next)
    assert len(reads) <= 2 + 2 * len(fid.columns)
    report = source_report(fid, cfg, None).model_dump_json()
    html = fidelity_html("p", [fid], "now", 0.8, against_source=True)
    for text in (report, html):
        for v in [*SECRET_VALUES, "SECRET-ID-"]:
            assert v not in text


def test_a_missing_source_table_is_said_not_guessed(source_url, tmp_path):
    dest = _write(tmp_path / "synthetic.sqlite", _synthetic_rows(np.random.default_rng(3)))
    cfg = approved_config()
    dst = open_destination(dest)
    fid = table_fidelity(dst, None, cfg, {}, {})
    with sqlite3.connect(tmp_path / "empty.sqlite") as conn:
        conn.execute("CREATE TABLE other (x INTEGER)")
    empty = open_source(f"sqlite:///{tmp_path / 'empty.sqlite'}")
    score_against_source(empty, None, dst, None, cfg, fid, K)
    assert fid.median_source_score is None
    assert "no such table in the source" in fid.source_note
    assert all(c.against_source is None for c in fid.columns)


def test_postgresql_on_either_side_gives_the_same_scores(source_url, tmp_path, postgres_database):
    """The SQL on PostgreSQL (typed dates, FLOOR for buckets, schemas) gives the scores SQLite
    gives, with PostgreSQL as the destination and as the source."""
    from synth_pipeline.core.schema import ColumnDef
    from synth_pipeline.core.synthesise import written_width
    from synth_pipeline.core.transfer import copy_table
    from synth_pipeline.core.write import RegisterEntry

    cfg = approved_config()
    dest_sqlite = _write(tmp_path / "synthetic.sqlite", _synthetic_rows(np.random.default_rng(3)))
    pg = open_destination(postgres_database)
    with pg.begin() as conn:
        for schema in ("fid_src", "fid_dst"):
            conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {schema}"))
    cols = [ColumnDef(n, c.type, written_width(c)) for n, c in cfg.columns.items()]
    entry = RegisterEntry("synthetic", cfg.fingerprint(), 1, 1.0, {}, "test")
    for url, schema in ((dest_sqlite, "fid_dst"), (source_url, "fid_src")):
        copy_table(open_source(url), None, "person", pg, schema, "person", cols, entry=entry)

    on_sqlite = scores_by_column(_measure(source_url, dest_sqlite, cfg))
    pg_destination = scores_by_column(
        _measure(source_url, postgres_database, cfg, dst_schema="fid_dst")
    )
    assert pg_destination == on_sqlite
    pg_source = scores_by_column(
        _measure(postgres_database, dest_sqlite, cfg, src_schema="fid_src")
    )
    # an extract that keeps every column as text (numbers and dates too) scores the same
    with pg.begin() as conn:
        conn.execute(sa.text("CREATE SCHEMA IF NOT EXISTS fid_txt"))
        as_text = ", ".join(f'CAST("{c}" AS TEXT) AS "{c}"' for c in cfg.columns)
        conn.execute(
            sa.text(f"CREATE TABLE fid_txt.person AS SELECT {as_text} FROM fid_src.person")
        )
    pg_text = scores_by_column(_measure(postgres_database, dest_sqlite, cfg, src_schema="fid_txt"))
    assert pg_text == pg_source
    # the source's '' for NULL in weight became NULL on the way in; every other score agrees
    assert pg_source.pop("weight") != on_sqlite.pop("weight")
    assert pg_source == on_sqlite
    # a source value PostgreSQL cannot read as a date fails the comparison, and the report
    # names the error, never the value
    with pg.begin() as conn:
        conn.execute(
            sa.text("UPDATE fid_txt.person SET start_date = '2019-13-45' WHERE person_id = '7'")
        )
    broken = _measure(postgres_database, dest_sqlite, cfg, src_schema="fid_txt")
    assert broken.source_note == "the source table could not be read (DatetimeFieldOverflow)"
    assert broken.median_source_score is None
    assert "2019-13-45" not in source_report(broken, cfg, None).model_dump_json()


@pytest.mark.slow
def test_synthetic_table_shows_both_scores_and_keeps_them_out_of_the_bundle(
    source_url, tmp_path, isolated_environment
):
    """A real run: init, approve, run on a one-table extract; the scores against the source are
    on synthetic_table's materialisation and in the work dir, never in the bundle."""
    from synth_pipeline.core.fidelity_trusted import load_source_report
    from synth_pipeline.core.privacy_bundle import destination_key
    from synth_pipeline.core.write import read_register

    root = tmp_path / "cfg"
    common = ["--project", "fid", "--config-dir", str(root)]
    assert cli.main(["init", "--source", source_url, *common]) == 0
    assert cli.main(["approve", "--all", "--reviewer", "Fidelity Reviewer", *common]) == 0
    dest = f"sqlite:///{tmp_path / 'synthetic.sqlite'}"
    bundle = tmp_path / "bundle"
    instance = dg.DagsterInstance.ephemeral()
    report = execute(
        source_url=source_url,
        destination_url=dest,
        project="fid",
        config_root=root,
        bundle_dir=bundle,
        instance=instance,
    )
    assert report.ok, [(t.table, t.messages) for t in report.tables]

    event = instance.get_latest_materialization_event(dg.AssetKey(["fid", "synthetic_table"]))
    metadata = event.asset_materialization.metadata
    table_md = metadata["fidelity_against_source"].value
    assert "score against the approved statistics" in table_md
    assert "score against the source" in table_md
    assert "gender_source_value" in table_md
    median = metadata["median_column_score_against_source"].value
    assert isinstance(median, float) and 0 <= median <= 1

    folder = isolated_environment / "fidelity" / "fid" / destination_key(dest, None)
    kept = load_source_report(folder / "person.json")
    assert kept is not None
    assert kept.describes(read_register(open_destination(dest), None)["person"])
    assert kept.median_against_source == median
    assert kept.median_against_approved is not None
    scores = [c.score_against_source for c in kept.columns if c.score_against_source is not None]
    assert scores == sorted(scores)  # worst against the source first
    text = (folder / "person.json").read_text()
    assert not any(v in text for v in [*SECRET_VALUES, "SECRET-ID-"])

    trusted = (folder / "fidelity.html").read_text()
    assert "Trusted environment only" in trusted
    assert (
        "score against the source" in trusted and "score against the approved statistics" in trusted
    )
    bundle_event = instance.get_latest_materialization_event(dg.AssetKey(["fid", "csv_bundle"]))
    assert bundle_event.asset_materialization.metadata[
        "fidelity_report_against_source"
    ].value == str(folder / "fidelity.html")
    published = (bundle / "fidelity.html").read_text()
    assert "score against the approved statistics" in published
    assert "score against the source" not in published
    assert NOT_PUBLISHED in published
    for f in bundle.iterdir():
        assert "against the source" not in f.name


def test_source_values_are_matched_as_the_destination_holds_them():
    """Dirty extracts keep numbers as text; 64-bit ids must not pass through a float."""
    from synth_pipeline.core.fidelity_source import _typed_value

    assert _typed_value("9223372036854775806", "integer") == 9223372036854775806
    assert _typed_value(-9223372036854775807, "integer") == -9223372036854775807
    assert _typed_value(" 8507 ", "integer") == 8507
    assert _typed_value("8507.0", "integer") == 8507
    assert _typed_value("", "integer") is None  # '' for NULL can match no synthetic value
    assert _typed_value("12.5", "integer") is None
    assert _typed_value(8507, "string") == "8507"


def test_report_plots_name_their_values_and_skip_single_values(tmp_path):
    from synth_pipeline.core.fidelity import ColumnScore, Distribution, TableFidelity
    from synth_pipeline.core.report import concept_labels
    from synth_pipeline.core.vocabulary_bundle import concept_names

    gender = Distribution(["8507", "8532"], [0.5, 0.5], [0.48, 0.52], "categories")
    constant = Distribution(["3"], [0.0], [0.0], "cdf")  # a string column of one length
    one_value = Distribution(["44814724"], [1.0], [1.0], "categories")
    table = TableFidelity(
        "person",
        100,
        columns=[
            ColumnScore(
                "gender_concept_id",
                "weighted_choice",
                "TVComplement",
                0.98,
                1.0,
                distribution=gender,
            ),
            ColumnScore(
                "person_source_value",
                "string_pattern",
                "KSComplement",
                1.0,
                1.0,
                distribution=constant,
            ),
            ColumnScore(
                "race_concept_id",
                "weighted_choice",
                "TVComplement",
                1.0,
                1.0,
                distribution=one_value,
            ),
        ],
    )
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'dest.sqlite'}")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE concept (concept_id INTEGER, concept_name TEXT)"))
        conn.execute(sa.text("INSERT INTO concept VALUES (8507, 'MALE'), (8532, 'FEMALE')"))
    names = concept_names(engine, None, concept_labels([table]))
    assert names == {"8507": "MALE", "8532": "FEMALE"}
    html = fidelity_html("p", [table], "now", 0.9, names=names)
    assert html.count("<svg") == 1, "one plot: the two single-value columns are not drawn"
    assert ">8507 MALE</text>" in html and ">8532 FEMALE</text>" in html
    assert "8507 MALE: approved 50.0%, synthetic 48.0%" in html  # the bar's tooltip
    assert "share of rows</text>" in html and "value (hover a bar for its shares)" in html
    assert "<li>person_source_value: a single value, 3, on both sides</li>" in html
    assert (
        "<li>race_concept_id: a single value, 44814724: approved 100.0%, synthetic 100.0% of "
        "the rows</li>" in html
    )
