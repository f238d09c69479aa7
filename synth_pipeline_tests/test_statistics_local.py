"""SQLite's grouped pass counted in Python (summarise/local.py) gives what the SQL gives, on
clean columns, and leaves to the SQL what it could get wrong (mixed types, dates SQLite reads
its own way, NUL in strings, float zeros, collations)."""

from __future__ import annotations

import sqlite3

import pytest
import sqlalchemy as sa

from synth_pipeline.core.disclosure import DisclosurePolicy
from synth_pipeline.core.schema import read_table_schema
from synth_pipeline.core.sqlexpr import SqlExpressions
from synth_pipeline.core.summarise import summarise_table
from synth_pipeline.core.summarise.local import countable_here, local_frequencies, read_columns
from synth_pipeline.core.summarise.passes import Grouping, grouped_pass
from synth_pipeline.core.summarise.windows import rank_windows

COLUMNS = {
    "code": "BIGINT",
    "mixed": "BIGINT",  # integers and text
    "amount": "DOUBLE",  # floats, no zero
    "zeros": "DOUBLE",  # floats with 0.0: left to SQLite
    "start_date": "DATE",
    "end_date": "DATE",
    "stamp": "DATETIME",
    "bad_date": "DATE",  # '2021-02-30', '0000-01-01', text: SQLite reads them its own way
    "label": "VARCHAR(20)",
    "nul": "TEXT",  # a NUL inside: SQLite's LENGTH stops there
    "empty": "BIGINT",  # NULL throughout
    "ref": "BIGINT",  # a reference: 0 for none, some pointing nowhere
}


def _rows(n: int) -> list[tuple]:
    rows = []
    for i in range(n):
        day = 1 + i % 28
        rows.append(
            (
                3000 + i % 7,
                i % 5 if i % 3 else f"x{i % 4}",
                1.5 + (i % 11) * 0.25,
                float(i % 4),
                f"20{10 + i % 12:02d}-{1 + i % 12:02d}-{day:02d}",
                f"20{10 + i % 12:02d}-{1 + i % 12:02d}-{min(28, day + i % 9):02d}"
                if i % 6
                else None,
                f"2019-0{1 + i % 9}-{day:02d} {i % 24:02d}:{i % 60:02d}:{(7 * i) % 60:02d}"
                if i % 5
                else f"2019-03-{day:02d} 00:00:00",
                ["2021-02-30", "0000-01-01", "soon", "2020-01-05"][i % 4],
                f"lab-é{i % 13}" if i % 7 else None,
                f"a\x00b{i % 3}",
                None,
                i % 9 if i % 10 else None,
            )
        )
    return rows


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "dirty.sqlite"
    with sqlite3.connect(path) as db:
        cols = ", ".join(f"{c} {t}" for c, t in COLUMNS.items())
        db.execute(f"CREATE TABLE dirty (id BIGINT PRIMARY KEY, {cols})")
        marks = ", ".join("?" * (len(COLUMNS) + 1))
        db.executemany(
            f"INSERT INTO dirty VALUES ({marks})", [(i, *r) for i, r in enumerate(_rows(400))]
        )
        db.execute("CREATE TABLE parent (id BIGINT)")
        db.executemany("INSERT INTO parent VALUES (?)", [(i,) for i in (1, 2, 3, 5, 5, None)])
        db.execute("CREATE TABLE folded (name TEXT COLLATE NOCASE)")
        db.executemany("INSERT INTO folded VALUES (?)", [("abc",), ("ABC",)])
    return f"sqlite:///{path}"


def _groupings(engine: sa.Engine, policy: DisclosurePolicy) -> list[Grouping]:
    sql = SqlExpressions(engine)
    out = []
    for c in COLUMNS:
        q = f'"{c}"'
        out.append(Grouping(f"v:{c}", q, "all", derived=("value", c)))
        out.append(Grouping(f"lv:{c}", q, "listable", string_rule=True, derived=("value", c)))
        g = Grouping(f"len:{c}", sql.length(q), derived=("length", c))
        g.windows = rank_windows(400, policy)
        out.append(g)
        for kind, expr in (
            ("year", sql.year(q, True)),
            ("month", sql.month(q, True)),
            ("day", sql.day_number(q, True)),
            (
                "hour",
                f"CASE WHEN {q} IS NULL THEN NULL WHEN {sql.is_midnight(q, True)} "
                f"THEN -1 ELSE {sql.hour(q, True)} END",
            ),
        ):
            g = Grouping(f"{kind}:{c}", expr, "all", derived=(kind, c))
            g.windows = rank_windows(400, policy)
            out.append(g)
    keys = 'SELECT DISTINCT "id" FROM "parent" WHERE "id" IS NOT NULL'
    usable = "{x} IS NOT NULL AND {x} <> 0"
    resolves = f'{usable} AND {{x}} IN (SELECT "id" FROM "parent" WHERE "id" IS NOT NULL)'
    for c in ("ref", "mixed", "code"):
        out.append(
            Grouping(
                f"fk:{c}",
                f'"{c}"',
                reference=(usable, resolves),
                derived=("reference0", c),
                parent_keys=keys,
            )
        )
    for by in (("code", "label"), ("code", "amount", "start_date"), ("mixed", "code")):
        q = ", ".join(f'"{c}"' for c in by)
        expr = f'CASE WHEN "{by[0]}" IS NOT NULL THEN json_array({q}) END'
        out.append(Grouping(f"twin:{'/'.join(by)}", expr, "all", derived=("combo", *by)))
    for end, start in (
        ("end_date", "start_date"),
        ("stamp", "start_date"),
        ("bad_date", "end_date"),
    ):
        diff = sql.day_difference(f'"{end}"', f'"{start}"', True)
        expr = f'CASE WHEN "{end}" IS NOT NULL AND "{start}" IS NOT NULL THEN {diff} END'
        g = Grouping(f"off:{end}", expr, "all", derived=("offset", end, start))
        g.windows = rank_windows(400, policy)
        out.append(g)
    return out


def test_counted_here_as_the_sql_counts(source):
    engine = sa.create_engine(source)
    policy = DisclosurePolicy()
    groupings = _groupings(engine, policy)
    with engine.connect() as conn:
        here = local_frequencies(conn, '"dirty"', groupings, policy)
        by_sql = grouped_pass(conn, '"dirty"', [g for g in groupings if g.key in here], policy)
    assert here == by_sql
    # clean columns are counted here, the rest left to the SQL
    assert here["fk:ref"].usable > here["fk:ref"].resolving > 0 and here["fk:ref"].fanout
    counted = ("v:code", "len:label", "year:stamp", "hour:stamp", "day:end_date", "off:stamp")
    for key in (*counted, "fk:ref", "fk:code", "twin:code/label", "twin:code/amount/start_date"):
        assert key in here, key
    left = ("v:mixed", "v:zeros", "year:bad_date", "off:bad_date", "len:nul", "year:code")
    for key in (*left, "fk:mixed", "twin:mixed/code"):
        assert key not in here, key
    assert here["v:empty"].distinct == 0 and here["v:empty"].rows == []
    assert here["v:amount"].rows and here["day:start_date"].ranked


def test_a_collation_or_a_view_is_left_to_the_sql(source):
    engine = sa.create_engine(source)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE VIEW dirty_view AS SELECT * FROM dirty"))
    dirty = read_table_schema(engine, None, "dirty")
    with engine.connect() as conn:
        assert countable_here(conn, None, dirty)
        assert not countable_here(conn, None, read_table_schema(engine, None, "folded"))
        assert not countable_here(
            conn, None, dirty.model_copy(update={"source_name": "dirty_view"})
        )
        assert not countable_here(conn, None, dirty.model_copy(update={"row_count": 10**7}))
    stats = summarise_table(
        engine,
        None,
        read_table_schema(engine, None, "folded"),
        DisclosurePolicy(min_cell_count=1, rounding=1),
    )
    assert stats.columns["name"].distinct == 1  # 'abc' and 'ABC' are one value there


def test_distinct_counts_are_count_distinct(source):
    """Read once, a column's distinct count is SQLite's COUNT(DISTINCT), whatever its types
    (1 and 1.0 one value, '1' another, b'1' a third)."""
    engine = sa.create_engine(source)
    mixed = [1, 1.0, "1", b"1", None, 2**53 + 1, float(2**53), "a", "A"]
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE loose (x)"))
        for v in mixed:
            conn.execute(sa.text("INSERT INTO loose VALUES (:v)"), {"v": v})
    with engine.connect() as conn:
        for tbl, columns in (('"dirty"', list(COLUMNS)), ('"loose"', ["x"])):
            read = read_columns(conn, tbl, columns, [])
            parts = ", ".join(f'COUNT(DISTINCT "{c}")' for c in columns)
            counted = conn.execute(sa.text(f"SELECT {parts} FROM {tbl}")).one()
            assert read.distinct() == dict(zip(columns, counted, strict=True))
