"""SQLite's grouped pass for plain column expressions (and step 2's distinct counts), counted
in Python from one read of the table's columns (:func:`read_columns`, :class:`LocalRead`), with
the numbers the SQL would give.

SQLite has no hash aggregation: each grouped expression of the SQL pass is a scan and a sort of
the whole table, and the date expressions (``SUBSTR``, ``julianday``) are evaluated per row.
Reading the columns once and counting their distinct values in Python costs about what one of
those sorts does; year, month, day number, hour, length and days between two dates are then
worked out once per distinct value; references are checked against their parent's keys (read
once), twin combinations rendered by SQLite's own ``json_array``, once per distinct
combination. Only clean columns take this path, where SQLite's expressions are known to give
the same values: one Python type throughout (integers, strings, or floats with no zero, whose
sign SQLite may keep or not), dates as ISO text of real calendar days, strings without NUL
(where SQLite's ``LENGTH`` stops), integer references to number keys; and only tables that
declare no collation (see :func:`countable_here`). Anything else is left to the SQL.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field
from itertools import accumulate, chain
from operator import itemgetter
from typing import Any

import polars as pl
from sqlalchemy.engine import Connection

from .. import disclosure as dc
from ..database import quote, sqlite_rows
from ..schema import TableSchema
from .passes import Frequencies, Grouping

LOCAL_ROWS = 1_000_000  # above this many rows the SQL groups (Python would hold too much)
_BATCH = 50_000
_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[ T][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?)?$"


def countable_here(conn: Connection, schema: str | None, table: TableSchema) -> bool:
    """Whether ``table`` may be read once and counted here: an SQLite table (not a view) of at
    most LOCAL_ROWS rows declaring no collation (SQLite compares text by the column's
    collation, Python by the characters)."""
    if conn.dialect.name != "sqlite" or table.row_count > LOCAL_ROWS:
        return False
    master = f"{quote(conn.engine, schema)}.sqlite_master" if schema else "sqlite_master"
    found = list(
        sqlite_rows(
            conn,
            f"SELECT sql FROM {master} WHERE type = 'table' AND name = ?",
            (table.source_name,),
        )
    )
    ddl = found[0][0][0] if found and found[0] else None
    return ddl is not None and "COLLATE" not in ddl.upper()


def local_frequencies(
    conn: Connection,
    frame: str,
    groupings: list[Grouping],
    policy: dc.DisclosurePolicy,
) -> dict[str, Frequencies]:
    """The frequencies of the groupings that can be counted here, from one read of the columns
    they need (see :meth:`LocalRead.frequencies`)."""
    wanted = [g for g in groupings if g.derived]
    columns = list(dict.fromkeys(c for g in wanted for c in g.derived[1:]))
    tuples = [tuple(g.derived[1:]) for g in wanted if g.derived[0] in _OF_TUPLES]
    if not columns:
        return {}
    return read_columns(conn, frame, columns, tuples).frequencies(groupings, policy)


def read_columns(
    conn: Connection, frame: str, columns: list[str], tuples: list[tuple[str, ...]]
) -> LocalRead:
    """One read of ``columns`` of ``frame``, counted per distinct value and per distinct tuple
    of each of ``tuples`` (two or more columns among them)."""
    tuples = list(dict.fromkeys(tuples))
    return LocalRead(conn, *_count(conn, frame, columns, tuples))


@dataclass
class LocalRead:
    """A table's columns read once: rows per distinct value of each column and per distinct
    tuple of the tuples asked for."""

    conn: Connection
    counts: dict[str, Counter]
    tuple_counts: dict[tuple[str, ...], Counter]
    _columns: dict[str, _Column] = field(default_factory=dict)
    _parents: dict[str, set | None] = field(default_factory=dict)

    def distinct(self) -> dict[str, int]:
        """COUNT(DISTINCT column) of each column: SQLite's equality is Python's for SQLite's
        values (1 and 1.0 one value, text never a number) where no collation is declared."""
        return {c: len(n) - (None in n) for c, n in self.counts.items()}

    def frequencies(
        self, groupings: list[Grouping], policy: dc.DisclosurePolicy
    ) -> dict[str, Frequencies]:
        """The frequencies of the groupings that can be counted here (``Grouping.derived`` set,
        clean columns, read); the others are not in the result and go to the SQL."""
        out = {}
        for g in groupings:
            if not g.derived or not all(c in self.counts for c in g.derived[1:]):
                continue
            if g.derived[0] in _OF_TUPLES and tuple(g.derived[1:]) not in self.tuple_counts:
                continue
            read = {c: self._column(c) for c in g.derived[1:]}
            if g.derived[0] == "combo":
                items = _combos(self.conn, g.derived, self.tuple_counts, read)
            else:
                items = _derive(g.derived, self.tuple_counts, read)
            if items is None:
                continue
            freq = _reduce(items, g, policy)
            if g.reference is None or _resolve(self.conn, g, items, freq, self._parents):
                out[g.key] = freq
        return out

    def _column(self, name: str) -> _Column:
        if name not in self._columns:
            self._columns[name] = _column(self.counts[name])
        return self._columns[name]


_OF_TUPLES = ("offset", "combo")  # kinds counted per distinct tuple of their columns


def _resolve(
    conn: Connection,
    g: Grouping,
    items: list[tuple[Any, int]],
    freq: Frequencies,
    parents: dict[str, set | None],
) -> bool:
    """A reference's usable and resolving counts and children per parent, as passes.grouped_pass
    counts them; False to leave it to the SQL (values or parent keys not all numbers, or more
    than LOCAL_ROWS parent keys)."""
    if not all(type(v) is int for v, _ in items):
        return False
    keys: set | None = set()
    if g.parent_keys is not None:
        if g.parent_keys not in parents:
            read = f"{g.parent_keys} LIMIT {LOCAL_ROWS + 1}"
            found = list(chain.from_iterable(sqlite_rows(conn, read)))
            numbers = len(found) <= LOCAL_ROWS and all(type(k) in (int, float) for (k,) in found)
            parents[g.parent_keys] = {k for (k,) in found} if numbers else None
        keys = parents[g.parent_keys]
        if keys is None:
            return False
    usable = [(v, n) for v, n in items if not (g.derived[0] == "reference0" and v == 0)]
    ok = [n for v, n in usable if g.parent_keys is None or v in keys]
    freq.usable, freq.resolving = sum(n for _, n in usable), sum(ok)
    freq.fanout = sorted(Counter(ok).items())
    return True


def _combos(
    conn: Connection,
    derived: tuple[str, ...],
    tuple_counts: dict[tuple[str, ...], Counter],
    columns: dict[str, _Column],
) -> list[tuple[Any, int]] | None:
    """Rows per JSON array text of a combination of columns (sqlexpr.json_row), the distinct
    combinations rendered by SQLite's own json_array; None to leave it to the SQL."""
    if any(columns[c].kind is None for c in derived[1:]):
        return None  # Python would take 1 and 1.0 for one value, json_array not
    combos = [(t, n) for t, n in tuple_counts[derived[1:]].items() if t[0] is not None]
    width = len(derived) - 1
    texts: dict[str, int] = {}
    step = max(1, 30_000 // width)  # under SQLite's limit of bound values
    for at in range(0, len(combos), step):
        part = combos[at : at + step]
        marks = ", ".join([f"({', '.join('?' * width)})"] * len(part))
        names = ", ".join(f"c{i}" for i in range(width))
        statement = f"WITH t({names}) AS (VALUES {marks}) SELECT json_array({names}) FROM t"
        params = tuple(chain.from_iterable(t for t, _ in part))
        rendered = chain.from_iterable(sqlite_rows(conn, statement, params))
        for (text,), (_, n) in zip(rendered, part, strict=True):
            texts[text] = texts.get(text, 0) + n
    return sorted(texts.items())


def _count(
    conn: Connection, frame: str, columns: list[str], tuples: list[tuple[str, ...]]
) -> tuple[dict[str, Counter], dict[tuple[str, ...], Counter]]:
    """Rows per distinct value of each column and per distinct tuple of each tuple of columns
    (two or more: an offset's end and start, a twin's combination)."""
    engine = conn.engine
    at = {c: i for i, c in enumerate(columns)}
    counts = {c: Counter() for c in columns}
    tuple_counts = {t: Counter() for t in tuples}
    statement = f"SELECT {', '.join(quote(engine, c) for c in columns)} FROM {frame}"
    for batch in sqlite_rows(conn, statement, batch_rows=_BATCH):
        for c, i in at.items():
            counts[c].update(map(itemgetter(i), batch))
        for t in tuples:
            tuple_counts[t].update(map(itemgetter(*(at[c] for c in t)), batch))
    return counts, tuple_counts


@dataclass
class _Column:
    """A column's distinct non-NULL values and their rows, and what every value is: "int",
    "float", "str", "date" (ISO text of a real day, optionally with a time of day), "empty"
    when there is none, or None when mixed or not safe to count here."""

    kind: str | None
    counts: dict[Any, int]
    text: pl.DataFrame | None = None  # strings: v, n (and day for dates)


def _column(raw: Counter) -> _Column:
    counts = {v: n for v, n in raw.items() if v is not None}
    types = {type(v) for v in counts}
    if not types:
        return _Column("empty", counts)  # every value NULL: every expression of it too
    if len(types) > 1 or next(iter(types)) not in (int, float, str):
        return _Column(None, counts)
    if types == {float}:
        return _Column(None if any(v == 0 for v in counts) else "float", counts)
    if types == {int}:
        return _Column("int", counts)
    text = pl.DataFrame(
        {"v": list(counts), "n": list(counts.values())}, schema={"v": pl.String, "n": pl.Int64}
    )
    v = text["v"]
    if v.str.contains("\x00", literal=True).any():
        return _Column(None, counts)
    if not v.str.contains(_DATE).all():
        return _Column("str", counts, text)
    day = v.str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False)
    if day.null_count() or day.dt.year().min() < 1:  # not a calendar day: SQLite reads it
        return _Column("str", counts, text)
    return _Column("date", counts, text.with_columns(day=day.cast(pl.Int64)))


def _days(text: pl.Series) -> pl.Series:
    """Days from 1970-01-01 of ISO dates (the date part of a datetime)."""
    return text.str.slice(0, 10).str.to_date("%Y-%m-%d").cast(pl.Int64)


# What SQLite's expressions of plan.py give for a clean date (ISO text in v)
_OF_DATE = {
    "year": pl.col("v").str.slice(0, 4).cast(pl.Int64),
    "month": pl.col("v").str.slice(5, 2).cast(pl.Int64),
    "day": pl.col("day"),
    "hour": pl.when(
        (pl.col("v").str.len_chars() <= 10) | (pl.col("v").str.slice(11, 8) == "00:00:00")
    )
    .then(pl.lit(-1, pl.Int64))
    .otherwise(pl.col("v").str.slice(11, 2).cast(pl.Int64)),
}


def _derive(
    derived: tuple[str, ...],
    tuple_counts: dict[tuple[str, ...], Counter],
    columns: dict[str, _Column],
) -> list[tuple[Any, int]] | None:
    """Rows per non-NULL value of one derived expression in ascending order, or None to leave
    it to the SQL."""
    kind, column = derived[0], columns[derived[1]]
    kinds = [columns[c].kind for c in derived[1:]]
    if None in kinds:
        return None
    if "empty" in kinds:
        return []
    if kind in ("value", "reference", "reference0"):
        return sorted(column.counts.items())  # SQLite's order: one type, ascending
    if kind == "length" and column.text is not None:
        return _add_up(column.text, pl.col("v").str.len_chars().cast(pl.Int64))
    if kinds != ["date"] * len(kinds):
        return None
    if kind in _OF_DATE:
        return _add_up(column.text, _OF_DATE[kind])
    if kind == "offset":
        pairs = [
            (e, s, n)
            for (e, s), n in tuple_counts[derived[1:]].items()
            if e is not None and s is not None
        ]
        frame = pl.DataFrame(
            pairs, schema={"e": pl.String, "s": pl.String, "n": pl.Int64}, orient="row"
        )
        return _add_up(frame, _days(pl.col("e")) - _days(pl.col("s")))
    return None


def _add_up(frame: pl.DataFrame, x: pl.Expr) -> list[tuple[Any, int]]:
    """Rows (n) per value of x, in ascending order."""
    return frame.group_by(x.alias("x")).agg(pl.col("n").sum()).sort("x").rows()


def _reduce(items: list[tuple[Any, int]], g: Grouping, policy: dc.DisclosurePolicy) -> Frequencies:
    """What the SQL reduces a grouped expression to (see passes.grouped_pass): distinct count,
    total, the rows when they may be listed, the ranks inside the windows."""
    freq = Frequencies(distinct=len(items), total=sum(n for _, n in items))
    d, nn = freq.distinct, freq.total
    listed = g.rows == "all" or (
        g.rows == "listable"
        and d <= int(policy.max_distinct_for_listing)
        and not (g.string_rule and d > float(policy.identifier_share) * nn and d >= int(policy.k))
    )
    if listed and items:
        freq.rows = items
    elif g.rows == "all":
        freq.rows = []
    if g.windows and items:
        cums = list(accumulate(n for _, n in items))
        firsts = [cum - n for cum, (_, n) in zip(cums, items, strict=True)]  # increasing
        inside: set[int] = set()
        for a, b in g.windows:  # cum >= a and cum - n < b: one run of ranks each
            inside.update(range(bisect_left(cums, a), bisect_left(firsts, b)))
        freq.ranked = [(items[i][0], items[i][1], cums[i]) for i in sorted(inside)]
    return freq
