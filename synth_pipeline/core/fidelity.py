"""How closely the synthetic tables follow their approved statistics, and their source.

Two scores per column, in the same metric family (SDMetrics' names: KSComplement, TVComplement,
CardinalityShapeSimilarity, ReferentialIntegrity):

against the approved statistics   the destination compared with the configuration the reviewer
                                  signed. It needs nothing from the source, so it ships in the
                                  bundle (``fidelity.html``).
against the source                the destination compared with the source table, inside the
                                  trusted environment (:func:`score_against_source`). Both sides
                                  are aggregated by SQL in their own database (counts per value,
                                  per year or per bucket of a numeric expression; no row leaves
                                  either database), and the report holds scores only, never a
                                  value. It stays in the trusted environment: see docs/fidelity.md
                                  for why it is not published.

The first can be high while the second is low: a reviewer may approve statistics that differ
from the source (a value folded away, random strings for a column whose source holds M/F), and
only the comparison with the source shows it.
"""

from __future__ import annotations

import json
import statistics as pystats
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from pydantic import BaseModel, Field
from sqlalchemy.engine import Engine

from .config import ColumnConfig, TableConfig, atomic_write_text
from .database import pg_like, qualified, quote
from .schema import column_role, list_tables, read_table_schema
from .sqlexpr import SqlExpressions
from .statistics import ColumnStats


@dataclass
class Distribution:
    """Expected (approved) and synthetic shares over the same labels, for scores and plots."""

    labels: list[str]
    expected: list[float]
    synthetic: list[float]
    kind: str  # "categories" (bars) or "cdf" (cumulative shares at points)


@dataclass
class SourceScore:
    """One column's synthetic values against the source table's (never published)."""

    metric: str  # KSComplement, TVComplement, NullSimilarity
    score: float | None  # None: nothing to compare (see note)
    null_similarity: float | None
    note: str = ""
    empty: bool = False  # NULL throughout on both sides: listed, not counted in the median


@dataclass
class ColumnScore:
    column: str
    generator: str
    metric: str  # KSComplement, TVComplement, NullSimilarity
    score: float  # against the approved statistics
    null_similarity: float
    boundary_adherence: float | None = None
    category_adherence: float | None = None
    distribution: Distribution | None = None
    against_source: SourceScore | None = None  # filled by score_against_source
    empty: bool = False  # NULL throughout, as approved: listed, not counted in the median

    @property
    def source_score(self) -> float | None:
        return self.against_source.score if self.against_source else None


@dataclass
class ReferenceScore:
    column: str
    parent: str
    referential_integrity: float
    cardinality_shape_similarity: float | None
    distribution: Distribution | None = None


@dataclass
class TableFidelity:
    table: str
    rows: int
    columns: list[ColumnScore] = field(default_factory=list)
    references: list[ReferenceScore] = field(default_factory=list)
    rule_violations: dict[str, int] = field(default_factory=dict)
    source_rows: int | None = None  # exact; stays in the trusted environment
    source_note: str = ""  # why nothing was compared with the source

    @property
    def median_score(self) -> float | None:
        """Median column score against the approved statistics; columns NULL throughout
        (nothing to compare) are not counted."""
        scores = [c.score for c in self.columns if not c.empty]
        return round(pystats.median(scores), 4) if scores else None

    @property
    def median_source_score(self) -> float | None:
        """Median column score against the source (None until measured); columns NULL
        throughout on both sides are not counted."""
        scores = [
            c.source_score
            for c in self.columns
            if c.source_score is not None and not c.against_source.empty  # type: ignore[union-attr]
        ]
        return round(pystats.median(scores), 4) if scores else None

    def worst_first(self, against_source: bool = False) -> list[ColumnScore]:
        """Columns ordered by their score, lowest first; unmeasured ones last."""

        def key(c: ColumnScore) -> tuple[bool, float, str]:
            s = c.source_score if against_source else c.score
            return (s is None, s if s is not None else 0.0, c.column)

        return sorted(self.columns, key=key)

    def as_dict(self) -> dict:
        return {
            "table": self.table,
            "rows": self.rows,
            "median_column_score": self.median_score,
            "columns": [
                {
                    "column": c.column,
                    "generator": c.generator,
                    "metric": c.metric,
                    "score": c.score,
                    "null_similarity": c.null_similarity,
                    "boundary_adherence": c.boundary_adherence,
                    "category_adherence": c.category_adherence,
                }
                for c in self.columns
            ],
            "references": [
                {
                    "column": r.column,
                    "parent": r.parent,
                    "referential_integrity": r.referential_integrity,
                    "cardinality_shape_similarity": r.cardinality_shape_similarity,
                }
                for r in self.references
            ],
            "rule_violations": self.rule_violations,
        }


def tv_complement(p: list[float], q: list[float]) -> float:
    a, b = np.asarray(p, float), np.asarray(q, float)
    a = a / a.sum() if a.sum() else a
    b = b / b.sum() if b.sum() else b
    return round(float(1 - 0.5 * np.abs(a - b).sum()), 4)


def _shares(counts: list[float]) -> list[float]:
    total = float(sum(counts))
    return [round(c / total, 6) if total else 0.0 for c in counts]


class _Reader:
    def __init__(self, engine: Engine, schema: str | None, table: str):
        self.engine, self.tbl = engine, qualified(engine, schema, table)
        self.sql = SqlExpressions(engine)

    def q(self, column: str) -> str:
        return quote(self.engine, column)

    def one(self, sql: str, **params):
        with self.engine.connect() as conn:
            return conn.execute(sa.text(sql), params).one()

    def all(self, sql: str, **params):
        with self.engine.connect() as conn:
            return conn.execute(sa.text(sql), params).all()


def _floor(engine: Engine, expr: str) -> str:
    """The integer part of a non-negative number (PostgreSQL's CAST rounds, SQLite's truncates)."""
    return f"CAST(FLOOR({expr}) AS INTEGER)" if pg_like(engine) else f"CAST({expr} AS INTEGER)"


def _expected_cdf(points: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """The CDF the generator samples: the coded range stretched over the unit interval."""
    ps = np.array([p for p, _ in points])
    vs = np.array([v for _, v in points])
    lo, hi = ps[0], ps[-1]
    return vs, (ps - lo) / (hi - lo) if hi > lo else np.ones_like(ps)


def _ks_against_points(
    r: _Reader, expr: str, where: str, points: list[tuple[float, float]], integer: bool
) -> tuple[float, float, Distribution]:
    """KSComplement of the synthetic values against the approved CDF, and boundary adherence.

    One grouped query: integers (days, lengths, counts) are counted per value, other numbers
    in 200 buckets across the coded range, so the database returns a few hundred rows.
    """
    values, cdf = _expected_cdf(points)
    lo, hi = float(values[0]), float(values[-1])
    buckets = 200
    if integer and hi - lo <= 100_000:
        key, edges = f"{expr}", None
    elif hi > lo:
        key = (
            f"(CASE WHEN {expr} < :lo THEN -1 WHEN {expr} >= :hi THEN {buckets} "
            f"ELSE {_floor(r.engine, f'({expr} - :lo) * {buckets} / (:hi - :lo)')} END)"
        )
        edges = lo + (hi - lo) * (np.arange(buckets + 1) / buckets)
    else:
        key, edges = f"{expr}", None
    rows = r.all(
        f"SELECT {key} AS k, COUNT(*), SUM(CASE WHEN {expr} >= :lo AND {expr} <= :hi THEN 1 ELSE 0 END) "
        f"FROM {r.tbl} WHERE {expr} IS NOT NULL {where} GROUP BY {key}",
        lo=lo,
        hi=hi,
    )
    n = sum(int(c) for _, c, _ in rows)
    if n == 0:
        return 1.0, 1.0, Distribution([], [], [], "cdf")
    inside = sum(int(x or 0) for _, _, x in rows) / n
    counts = sorted((float(k), int(c)) for k, c, _ in rows if k is not None)
    keys = np.array([k for k, _ in counts])
    cum = np.cumsum([c for _, c in counts]) / n
    if edges is None:  # per value: P(X <= x); a rounded integer x stands for [x - 0.5, x + 0.5)
        at = keys
        expected = np.interp(keys + (0.5 if integer else 0.0), values, cdf)
        synthetic = cum
    else:  # per bucket: P(X < right edge of bucket)
        idx = np.clip(keys.astype(int), -1, buckets)
        at = np.where(idx < 0, lo, edges[np.clip(idx + 1, 0, buckets)])
        expected = np.interp(at, values, cdf)
        synthetic = cum
    ks = float(np.max(np.abs(synthetic - expected)))
    step = max(1, len(at) // 60)  # enough points to draw the two curves
    labels = [f"{a:g}" for a in at[::step]]
    dist = Distribution(
        labels, expected[::step].round(6).tolist(), synthetic[::step].round(6).tolist(), "cdf"
    )
    return round(1 - ks, 4), round(inside, 4), dist


def _null_similarity(
    r: _Reader, column: str, stats: ColumnStats | None, rows: int
) -> tuple[float, bool]:
    """Null similarity, and whether the column is NULL throughout as its statistics expect."""
    if rows == 0:
        return 1.0, False
    nulls = int(r.one(f"SELECT COUNT(*) - COUNT({r.q(column)}) FROM {r.tbl}")[0])
    expected = stats.null_fraction if stats else 0.0
    return round(1 - abs(expected - nulls / rows), 4), expected == 1.0 and nulls == rows


def _categorical(
    r: _Reader, column: str, stats: ColumnStats, other_value
) -> tuple[float, float, Distribution]:
    listed = [v.value for v in stats.values or []]
    expected = [float(v.count) for v in stats.values or []]
    other = float(stats.other_count or 0)
    rows = r.all(
        f"SELECT {r.q(column)}, COUNT(*) FROM {r.tbl} WHERE {r.q(column)} IS NOT NULL GROUP BY {r.q(column)}"
    )
    got = {_norm(v): int(c) for v, c in rows}
    synthetic = [float(got.pop(_norm(v), 0)) for v in listed]
    rest = float(sum(got.values()))
    allowed = float(got.get(_norm(other_value), 0)) if other_value is not None else 0.0
    labels = [str(v) for v in listed]
    if other or rest:
        labels.append("other")
        expected.append(other)
        synthetic.append(rest)
    total = sum(synthetic)
    adherence = (sum(synthetic[: len(listed)]) + allowed) / total if total else 1.0
    dist = Distribution(labels, _shares(expected), _shares(synthetic), "categories")
    return tv_complement(expected, synthetic), round(adherence, 4), dist


def _norm(v):
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, bool):
        return int(v)
    return v


def _years(r: _Reader, column: str, stats: ColumnStats) -> tuple[float, float, Distribution]:
    bins = stats.years or []
    year = r.sql.year(r.q(column), text=False)
    rows = dict(
        r.all(
            f"SELECT {year}, COUNT(*) FROM {r.tbl} WHERE {r.q(column)} IS NOT NULL GROUP BY {year}"
        )
    )
    expected = [float(b.count) for b in bins]
    synthetic = [
        float(sum(c for y, c in rows.items() if y is not None and b.start <= int(y) <= b.end))
        for b in bins
    ]
    total = float(sum(rows.values()))
    inside = sum(synthetic) / total if total else 1.0
    labels = [f"{b.start}" if b.start == b.end else f"{b.start}-{b.end}" for b in bins]
    return (
        tv_complement(expected, synthetic),
        round(inside, 4),
        Distribution(labels, _shares(expected), _shares(synthetic), "categories"),
    )


def _column_score(r: _Reader, name: str, col, rows: int) -> ColumnScore | None:
    """The score of one column: which metric depends on how it was generated."""
    gen, stats = col.generator or "", col.stats
    if gen in ("primary_key", "foreign_key", "date_part", "datetime_from_date") or rows == 0:
        return None  # keys are scored as references, derived columns by the rules
    nulls, empty = _null_similarity(r, name, stats, rows)
    if gen in ("weighted_choice", "conditional_choice") and stats and stats.values:
        other_value = col.params.get("other_value") if col.params.get("other") == "value" else None
        score, adherence, dist = _categorical(r, name, stats, other_value)
        return ColumnScore(
            name, gen, "TVComplement", score, nulls, category_adherence=adherence, distribution=dist
        )
    if gen in ("date_bins", "datetime_bins") and stats and stats.years:
        score, inside, dist = _years(r, name, stats)
        return ColumnScore(
            name, gen, "TVComplement", score, nulls, boundary_adherence=inside, distribution=dist
        )
    # the rest are compared as distributions of numbers: values, day offsets or string lengths
    if gen in ("numeric_quantiles", "conditional_quantiles") and stats and stats.quantiles:
        expr, where, integer = r.q(name), "", col.type == "integer"
        points = [(q.p, float(q.value)) for q in stats.quantiles]
    elif gen == "date_offset" and stats and stats.offset:
        start = col.params.get("from_column", stats.offset.from_column)
        expr, where, integer = (
            r.sql.day_difference(r.q(name), r.q(start), text=False),
            f"AND {r.q(start)} IS NOT NULL",
            True,
        )
        # the generator keeps an end on or after its start (a start drawn before its end: on or
        # before it), so it is held to the released days clipped the same way
        clip = min if col.params.get("before") else max
        points = [(q.p, clip(0.0, float(q.value))) for q in stats.offset.quantiles]
    elif gen == "string_pattern" and stats and stats.length:
        expr, where, integer = r.sql.length(r.q(name)), "", True
        points = [(q.p, float(q.value)) for q in stats.length]
    else:  # constants, always-null, placeholders: only their nulls can be compared
        return ColumnScore(name, gen, "NullSimilarity", nulls, nulls, empty=empty)
    score, inside, dist = _ks_against_points(r, expr, where, points, integer)
    return ColumnScore(
        name, gen, "KSComplement", score, nulls, boundary_adherence=inside, distribution=dist
    )


def column_scores(
    engine: Engine, schema: str | None, cfg: TableConfig, rows: int
) -> list[ColumnScore]:
    r = _Reader(engine, schema, cfg.table)
    scores = (_column_score(r, name, col, rows) for name, col in cfg.columns.items())
    return [s for s in scores if s is not None]


def reference_scores(
    engine: Engine, schema: str | None, cfg: TableConfig, parent_rows: dict[str, int]
) -> list[ReferenceScore]:
    r = _Reader(engine, schema, cfg.table)
    out = []
    for name, col in cfg.columns.items():
        if col.generator != "foreign_key":
            continue
        parent = str(col.params.get("table"))
        n_parent = parent_rows.get(parent, 0)
        q = r.q(name)
        total, good = r.one(
            f"SELECT COUNT({q}), SUM(CASE WHEN {q} >= 1 AND {q} <= :n THEN 1 ELSE 0 END) FROM {r.tbl}",
            n=n_parent,
        )
        integrity = round(float(good or 0) / total, 4) if total else 1.0
        shape, dist = None, None
        fanout = col.stats.fanout if col.stats else None
        if fanout:
            per = r.all(
                f"SELECT n, COUNT(*) FROM (SELECT {q} AS ref, COUNT(*) AS n FROM {r.tbl} WHERE {q} IS NOT NULL GROUP BY {q}) s GROUP BY n"
            )
            expected = [float(b.count) for b in fanout]
            synthetic = [0.0] * len(fanout)
            for n, c in per:
                i = next(
                    (j for j, b in enumerate(fanout) if b.start <= n <= b.end),
                    0 if n < fanout[0].start else len(fanout) - 1,
                )
                synthetic[i] += c
            shape = tv_complement(expected, synthetic)
            labels = [f"{b.start}" if b.start == b.end else f"{b.start}-{b.end}" for b in fanout]
            dist = Distribution(labels, _shares(expected), _shares(synthetic), "categories")
        out.append(ReferenceScore(name, parent, integrity, shape, dist))
    return out


def table_fidelity(
    engine: Engine,
    schema: str | None,
    cfg: TableConfig,
    parent_rows: dict[str, int],
    rule_violations: dict[str, int],
) -> TableFidelity:
    r = _Reader(engine, schema, cfg.table)
    rows = int(r.one(f"SELECT COUNT(*) FROM {r.tbl}")[0])
    return TableFidelity(
        table=cfg.table,
        rows=rows,
        columns=column_scores(engine, schema, cfg, rows),
        references=reference_scores(engine, schema, cfg, parent_rows),
        rule_violations=rule_violations,
    )


# ---------------------------------------------------------------------------------------------
# Against the source, inside the trusted environment

MAX_SOURCE_CATEGORIES = 1000  # most common source values compared one by one; the rest pooled
KS_BUCKETS = 1000  # buckets across the joint range of a numeric expression
EXACT_KS_RANGE = 5000  # integer expressions spanning fewer values are counted per value
# generators whose output is compared with the source as categories (values)
CATEGORY_GENERATORS = {"weighted_choice", "conditional_choice", "constant", "string_pattern"}
# references whose ids are synthetic keys: the source's ids (some pointing nowhere) do not compare
REFERENCE_GENERATORS = {"preceding_row", "polymorphic_reference"}
NUMERIC_TYPES = (sa.Integer, sa.Numeric, sa.Float)
DATE_TYPES = (sa.Date, sa.DateTime)
_PG_NUMBER = r"^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$"


class _Side(_Reader):
    """One table, in the source or the destination, with its columns as the database types them."""

    def __init__(self, engine: Engine, schema: str | None, table: str):
        super().__init__(engine, schema, table)
        self.pg = pg_like(engine)
        self.types = {
            c["name"].lower(): (c["name"], c["type"])
            for c in sa.inspect(engine).get_columns(table, schema=schema)
        }

    def has(self, column: str) -> bool:
        return column.lower() in self.types

    def col(self, column: str) -> str:
        return self.q(self.types[column.lower()][0])

    def _typed(self, column: str, types: tuple) -> bool:
        return isinstance(self.types[column.lower()][1], types)

    def number(self, column: str) -> str:
        """The column as a number, NULL where the extract holds something else ('' for NULL)."""
        q = self.col(column)
        if self._typed(column, NUMERIC_TYPES) and self.pg:
            return q
        if self.pg:
            return f"(CASE WHEN {q} ~ '{_PG_NUMBER}' THEN CAST({q} AS DOUBLE PRECISION) END)"
        return f"(CASE WHEN typeof({q}) IN ('integer', 'real') THEN {q} END)"

    def count(self, column: str, zero_is_null: bool) -> str:
        """The count of the column's values; 0 is no value where it stands for NULL."""
        q = self.col(column)
        if zero_is_null:
            return f"COUNT(CASE WHEN {self.number(column)} = 0 THEN NULL ELSE {q} END)"
        return f"COUNT({q})"

    def length(self, column: str) -> str:
        return self.sql.length(self.col(column))

    def year(self, column: str) -> str:
        return self.sql.year(self.col(column), text=not self._typed(column, DATE_TYPES))

    def days_between(self, end: str, start: str) -> str:
        text = not (self._typed(end, DATE_TYPES) and self._typed(start, DATE_TYPES))
        return self.sql.day_difference(self.col(end), self.col(start), text=text)


@dataclass
class _Measure:
    """What is compared for one column: its values, a numeric expression, or its years."""

    kind: str  # categories, numbers, lengths, offsets, years, nulls, references
    metric: str
    integer: bool = True
    start: str | None = None  # offsets: the column the days are counted from
    fallback: _Measure | None = None  # categories with no source value seen k times

    def expression(self, side: _Side, column: str) -> str | None:
        if self.kind == "numbers":
            return side.number(column)
        if self.kind == "lengths":
            return side.length(column)
        if self.kind == "offsets" and self.start and side.has(self.start):
            return side.days_between(column, self.start)
        return None


def _measure_of(col: ColumnConfig) -> _Measure:
    gen, stats = col.generator or "", col.stats
    numeric = _Measure("numbers", "KSComplement", integer=col.type == "integer")
    if gen in CATEGORY_GENERATORS:
        fallback = {
            "string": _Measure("lengths", "KSComplement"),
            "integer": numeric,
            "float": numeric,
            "date": _Measure("years", "TVComplement"),
            "datetime": _Measure("years", "TVComplement"),
        }.get(col.type)
        return _Measure("categories", "TVComplement", fallback=fallback)
    if gen in REFERENCE_GENERATORS:
        return _Measure("references", "not compared")
    if gen in ("date_bins", "datetime_bins"):
        return _Measure("years", "TVComplement")
    if gen in ("numeric_quantiles", "conditional_quantiles"):
        return numeric
    if gen == "date_offset":
        start = col.params.get("from_column") or (
            stats.offset.from_column if stats and stats.offset else None
        )
        return _Measure("offsets", "KSComplement", start=start)
    return _Measure("nulls", "NullSimilarity")


def _typed_value(value: Any, logical_type: str) -> Any:
    """A value as the destination column holds it (dirty extracts keep numbers as text), or
    None when the destination cannot hold it."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    try:
        if logical_type == "integer":
            if isinstance(value, int | Decimal) or (isinstance(value, str) and value.strip()):
                exact = Decimal(value.strip() if isinstance(value, str) else value)
                return int(exact) if exact == exact.to_integral_value() else None
            f = float(value)  # 64-bit ids stay exact above: floats only here
            return int(f) if f.is_integer() else None
        if logical_type == "float":
            return float(value)
        if logical_type == "boolean":
            if isinstance(value, str):
                return {"true": True, "false": False, "1": True, "0": False}.get(value.lower())
            return bool(value)
        if logical_type == "string":
            return str(value)
    except (TypeError, ValueError, ArithmeticError):
        return None
    return value  # dates as the drivers return them


def _tv(
    source: dict[Any, int], n_source: int, synthetic: dict[Any, int], n_synthetic: int
) -> float:
    """TVComplement over the listed keys plus one pooled bucket for every other value."""
    keys = list(dict.fromkeys([*source, *synthetic]))
    p = [float(source.get(key, 0)) for key in keys]
    q = [float(synthetic.get(key, 0)) for key in keys]
    p.append(max(0.0, n_source - sum(p)))
    q.append(max(0.0, n_synthetic - sum(q)))
    return tv_complement(p, q)


def _categories(
    src: _Side, dst: _Side, column: str, logical_type: str, k: int, n: tuple[int, int]
) -> float | None:
    """TVComplement over the source's values seen at least k times (at most
    MAX_SOURCE_CATEGORIES of them), every other value pooled; None when no value passes k."""
    q = src.col(column)
    rows = src.all(
        f"SELECT {q}, COUNT(*) FROM {src.tbl} WHERE {q} IS NOT NULL GROUP BY {q} "
        f"HAVING COUNT(*) >= :k ORDER BY COUNT(*) DESC LIMIT {MAX_SOURCE_CATEGORIES}",
        k=k,
    )
    if not rows:
        return None
    source: dict[Any, int] = {}
    for value, count in rows:
        key = _typed_value(value, logical_type)
        # a value the destination cannot hold (text in a number column) keeps its share
        # apart: no synthetic value can match it
        key = ("unrepresentable", len(source)) if key is None else key
        source[key] = source.get(key, 0) + int(count)
    wanted = [v for v in source if not isinstance(v, tuple)]
    synthetic: dict[Any, int] = {}
    if wanted:
        d = dst.col(column)
        stmt = sa.text(
            f"SELECT {d}, COUNT(*) FROM {dst.tbl} WHERE {d} IN :values GROUP BY {d}"
        ).bindparams(sa.bindparam("values", expanding=True))
        with dst.engine.connect() as conn:
            for value, count in conn.execute(stmt, {"values": wanted}).all():
                key = _typed_value(value, logical_type)
                if key in source:
                    synthetic[key] = synthetic.get(key, 0) + int(count)
    return _tv(source, n[0], synthetic, n[1])


def _count_years(side: _Side, column: str) -> dict[int, int]:
    year = side.year(column)
    rows = side.all(
        f"SELECT {year}, COUNT(*) FROM {side.tbl} WHERE {year} IS NOT NULL GROUP BY {year}"
    )
    return {int(y): int(c) for y, c in rows}


def _ks_between(
    src: _Side, dst: _Side, exprs: tuple[str, str], ranges: list[tuple], integer: bool
) -> float | None:
    """Two-sample KSComplement of a numeric expression, from counts per value (integers over a
    short range: exact) or per bucket of the joint range (a gap inside a bucket is missed, at
    most that bucket's share). None when neither side has a value."""
    ends = [float(v) for lo_hi in ranges for v in lo_hi if v is not None]
    if not ends:
        return None
    lo, hi = min(ends), max(ends)
    exact = hi <= lo or (integer and hi - lo <= EXACT_KS_RANGE)
    counts = []
    for side, expr in zip((src, dst), exprs, strict=True):
        if exact:
            key, params = expr, {}
        else:
            key = (
                f"(CASE WHEN {expr} >= :hi THEN {KS_BUCKETS - 1} "
                f"ELSE {_floor(side.engine, f'({expr} - :lo) * :scale')} END)"
            )
            params = {"lo": lo, "hi": hi, "scale": KS_BUCKETS / (hi - lo)}
        rows = side.all(
            f"SELECT {key}, COUNT(*) FROM {side.tbl} WHERE {expr} IS NOT NULL GROUP BY {key}",
            **params,
        )
        counts.append({float(v): int(n) for v, n in rows if v is not None})
    totals = [sum(c.values()) for c in counts]
    if not any(totals):
        return None
    if not all(totals):
        return 0.0  # one side has values, the other none
    keys = sorted(set(counts[0]) | set(counts[1]))
    cdf = [
        np.cumsum([c.get(key, 0) for key in keys]) / t for c, t in zip(counts, totals, strict=True)
    ]
    return round(1 - float(np.max(np.abs(cdf[0] - cdf[1]))), 4)


def score_against_source(
    source: Engine,
    source_schema: str | None,
    destination: Engine,
    destination_schema: str | None,
    cfg: TableConfig,
    fidelity: TableFidelity,
    k: int,
) -> TableFidelity:
    """Score every column of ``fidelity`` against the source table as well (filled in place).

    Runs inside the trusted environment with aggregate SQL only: one statement of counts and
    ranges on each side, then per column one grouped statement on each side. Category columns
    are compared over the source's values seen at least k times (the rest pooled as one
    "other"); a category column whose source has no such value (identifiers, free text) is
    compared by its string lengths or numbers instead. The result holds scores, never a value.
    """
    names = list_tables(source, source_schema)
    if cfg.table not in names:
        fidelity.source_note = "no such table in the source: nothing to compare with"
        return fidelity
    src = _Side(source, source_schema, names[cfg.table])
    dst = _Side(destination, destination_schema, cfg.table)
    # 0 stands for NULL in the nullable references to patient-level tables, as the statistics
    # read them (OMOP's convention, column_role decides)
    reflected = read_table_schema(source, source_schema, cfg.table)
    zero_is_null = {
        c.name.lower()
        for c in reflected.columns
        if c.nullable and column_role(reflected, c.name) == "foreign_key"
    }
    measures = {c.column: _measure_of(cfg.columns[c.column]) for c in fidelity.columns}
    present = [c for c in measures if src.has(c) and dst.has(c)]
    # the numeric expressions a column may be compared by (its own, or its fallback's)
    numeric = [
        (c, m)
        for c in present
        for m in (measures[c], measures[c].fallback)
        if m and m.expression(src, c) and m.expression(dst, c)
    ]
    scans = []
    for side in (src, dst):
        parts = ["COUNT(*)"] + [side.count(c, c.lower() in zero_is_null) for c in present]
        for c, m in numeric:
            e = m.expression(side, c)
            parts += [f"MIN({e})", f"MAX({e})"]
        try:
            scans.append(list(side.one(f"SELECT {', '.join(parts)} FROM {side.tbl}")))
        except sa.exc.DBAPIError as exc:  # its text may quote a source value: the name only
            where = "source" if side is src else "destination"
            fidelity.source_note = (
                f"the {where} table could not be read ({type(exc.orig).__name__})"
            )
            return fidelity
    rows = (int(scans[0][0]), int(scans[1][0]))
    fidelity.source_rows = rows[0]
    non_null = {c: (int(scans[0][1 + i]), int(scans[1][1 + i])) for i, c in enumerate(present)}
    at = 1 + len(present)
    ranges = {
        (c, m.kind): [(s[at + 2 * i], s[at + 2 * i + 1]) for s in scans]
        for i, (c, m) in enumerate(numeric)
    }
    for score in fidelity.columns:
        c, m = score.column, measures[score.column]
        if m.kind == "references":
            score.against_source = SourceScore(
                m.metric, None, None, "a reference: its ids are synthetic keys, not the source's"
            )
            continue
        if c not in non_null:
            where = "source" if not src.has(c) else "destination"
            score.against_source = SourceScore(
                m.metric, None, None, f"no such column in the {where}"
            )
            continue
        nulls = None
        if all(rows):
            share = [(n - nn) / n for n, nn in zip(rows, non_null[c], strict=True)]
            nulls = round(1 - abs(share[0] - share[1]), 4)
        try:
            metric, value = _compare(src, dst, c, cfg.columns[c], m, k, non_null[c], ranges)
        except sa.exc.DBAPIError as exc:  # its text may quote a source value: the name only
            score.against_source = SourceScore(
                m.metric, None, nulls, f"could not be measured ({type(exc.orig).__name__})"
            )
            continue
        if value is None:  # no value on either side to compare: only the nulls
            metric, value = "NullSimilarity", nulls
        empty = non_null[c] == (0, 0)
        score.against_source = SourceScore(
            metric, value, nulls, "NULL throughout on both sides" if empty else "", empty
        )
    return fidelity


def _compare(
    src: _Side,
    dst: _Side,
    column: str,
    col: ColumnConfig,
    m: _Measure,
    k: int,
    non_null: tuple[int, int],
    ranges: dict,
) -> tuple[str, float | None]:
    """(metric, score) of one column against the source; None when there is nothing to compare."""
    if m.kind == "nulls" or not any(non_null):
        return m.metric, None
    if not all(non_null):
        return m.metric, 0.0  # one side has values, the other none
    if m.kind == "categories":
        value = _categories(src, dst, column, col.type, k, non_null)
        if value is not None or m.fallback is None:
            return m.metric, value
        m = m.fallback
    if m.kind == "years":
        years = (_count_years(src, column), _count_years(dst, column))
        if not any(years):
            return m.metric, None
        return m.metric, _tv(years[0], sum(years[0].values()), years[1], sum(years[1].values()))
    exprs = (m.expression(src, column), m.expression(dst, column))
    if exprs[0] is None or exprs[1] is None:
        return m.metric, None
    return m.metric, _ks_between(src, dst, exprs, ranges[(column, m.kind)], m.integer)


# ---------------------------------------------------------------------------------------------
# The trusted-environment report: both scores per column, kept under the work dir, never published


class SourceColumnScore(BaseModel):
    column: str
    generator: str
    metric_against_approved: str
    score_against_approved: float
    metric_against_source: str | None = None
    score_against_source: float | None = None
    null_similarity_against_source: float | None = None
    note: str = ""
    empty: bool = Field(False, description="NULL throughout on both sides: not in the median.")


class SourceFidelityReport(BaseModel):
    """One table's column scores against the approved statistics and against the source.

    Scores only, no value; it stays in the trusted environment (see docs/fidelity.md for why the
    scores against the source are not published)."""

    table: str
    config_fingerprint: str | None = None
    written_at: str | None = Field(None, description="The destination table's register stamp.")
    synthetic_rows: int = 0
    source_rows: int | None = Field(None, description="Exact; stays in the trusted environment.")
    note: str = ""
    median_against_approved: float | None = None
    median_against_source: float | None = None
    columns: list[SourceColumnScore] = Field(
        default_factory=list, description="Worst against the source first."
    )

    def describes(self, entry: dict[str, Any]) -> bool:
        """Whether this report was measured on the table a register entry describes."""
        return (
            self.config_fingerprint == entry.get("config_fingerprint")
            and self.written_at == entry.get("written_at")
            and self.synthetic_rows == int(entry.get("rows") or 0)
        )


def source_report(
    fidelity: TableFidelity, cfg: TableConfig, written_at: str | None
) -> SourceFidelityReport:
    columns = []
    for c in fidelity.worst_first(against_source=True):
        s = c.against_source
        columns.append(
            SourceColumnScore(
                column=c.column,
                generator=c.generator,
                metric_against_approved=c.metric,
                score_against_approved=c.score,
                metric_against_source=s.metric if s else None,
                score_against_source=s.score if s else None,
                null_similarity_against_source=s.null_similarity if s else None,
                note=s.note if s else "",
                empty=s.empty if s else False,
            )
        )
    return SourceFidelityReport(
        table=fidelity.table,
        config_fingerprint=cfg.fingerprint(),
        written_at=written_at,
        synthetic_rows=fidelity.rows,
        source_rows=fidelity.source_rows,
        note=fidelity.source_note,
        median_against_approved=fidelity.median_score,
        median_against_source=fidelity.median_source_score,
        columns=columns,
    )


def attach_source_report(fidelity: TableFidelity, report: SourceFidelityReport) -> None:
    """Put a kept report's scores against the source on freshly computed column scores."""
    fidelity.source_rows, fidelity.source_note = report.source_rows, report.note
    kept = {c.column: c for c in report.columns}
    for c in fidelity.columns:
        s = kept.get(c.column)
        if s is not None and s.metric_against_source is not None:
            c.against_source = SourceScore(
                s.metric_against_source,
                s.score_against_source,
                s.null_similarity_against_source,
                s.note,
                s.empty,
            )


def source_report_dir(work_dir: Path, project: str, destination: str) -> Path:
    """Where a project's reports against the source are kept for one destination: a
    ``<table>.json`` each and ``fidelity.html`` (trusted environment only)."""
    return Path(work_dir) / "fidelity" / project / destination


def save_source_report(path: Path, report: SourceFidelityReport) -> None:
    atomic_write_text(path, report.model_dump_json(indent=1) + "\n")


def load_source_report(path: Path) -> SourceFidelityReport | None:
    if not path.exists():
        return None
    return SourceFidelityReport.model_validate(json.loads(path.read_text(encoding="utf-8")))
