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

import statistics as pystats
from dataclasses import dataclass, field

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .config import TableConfig
from .database import pg_like, qualified, quote
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


class Reader:
    def __init__(self, engine: Engine, schema: str | None, table: str):
        self.engine, self.tbl = engine, qualified(engine, schema, table)
        self.sql = SqlExpressions(engine)
        self.nulls: dict[str, int] = {}  # NULLs per column, when counted beforehand

    def count_nulls(self, columns: list[str]) -> None:
        """The NULLs of every column in one scan (each column's own query otherwise)."""
        if columns:
            parts = ", ".join(f"COUNT(*) - COUNT({self.q(c)})" for c in columns)
            found = self.one(f"SELECT {parts} FROM {self.tbl}")
            self.nulls.update({c: int(n) for c, n in zip(columns, found, strict=True)})

    def q(self, column: str) -> str:
        return quote(self.engine, column)

    def one(self, sql: str, **params):
        with self.engine.connect() as conn:
            return conn.execute(sa.text(sql), params).one()

    def all(self, sql: str, **params):
        with self.engine.connect() as conn:
            return conn.execute(sa.text(sql), params).all()


def floor_sql(engine: Engine, expr: str) -> str:
    """The integer part of a non-negative number (PostgreSQL's CAST rounds, SQLite's truncates)."""
    return f"CAST(FLOOR({expr}) AS INTEGER)" if pg_like(engine) else f"CAST({expr} AS INTEGER)"


def _expected_cdf(points: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """The CDF the generator samples: the coded range stretched over the unit interval."""
    ps = np.array([p for p, _ in points])
    vs = np.array([v for _, v in points])
    lo, hi = ps[0], ps[-1]
    return vs, (ps - lo) / (hi - lo) if hi > lo else np.ones_like(ps)


def _ks_against_points(
    r: Reader, expr: str, where: str, points: list[tuple[float, float]], integer: bool
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
            f"ELSE {floor_sql(r.engine, f'({expr} - :lo) * {buckets} / (:hi - :lo)')} END)"
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
    r: Reader, column: str, stats: ColumnStats | None, rows: int
) -> tuple[float, bool]:
    """Null similarity, and whether the column is NULL throughout as its statistics expect."""
    if rows == 0:
        return 1.0, False
    if column in r.nulls:
        nulls = r.nulls[column]
    else:
        nulls = int(r.one(f"SELECT COUNT(*) - COUNT({r.q(column)}) FROM {r.tbl}")[0])
    expected = stats.null_fraction if stats else 0.0
    return round(1 - abs(expected - nulls / rows), 4), expected == 1.0 and nulls == rows


def _categorical(
    r: Reader, column: str, stats: ColumnStats, other_value
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


def _years(r: Reader, column: str, stats: ColumnStats) -> tuple[float, float, Distribution]:
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


def _scored(col, rows: int) -> bool:
    unscored = ("primary_key", "foreign_key", "date_part", "datetime_from_date")
    return (col.generator or "") not in unscored and rows != 0


def _column_score(r: Reader, name: str, col, rows: int) -> ColumnScore | None:
    """The score of one column: which metric depends on how it was generated."""
    gen, stats = col.generator or "", col.stats
    if not _scored(col, rows):
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
    r = Reader(engine, schema, cfg.table)
    r.count_nulls([name for name, col in cfg.columns.items() if _scored(col, rows)])
    scores = (_column_score(r, name, col, rows) for name, col in cfg.columns.items())
    return [s for s in scores if s is not None]


def reference_scores(
    engine: Engine, schema: str | None, cfg: TableConfig, parent_rows: dict[str, int]
) -> list[ReferenceScore]:
    r = Reader(engine, schema, cfg.table)
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
    r = Reader(engine, schema, cfg.table)
    rows = int(r.one(f"SELECT COUNT(*) FROM {r.tbl}")[0])
    return TableFidelity(
        table=cfg.table,
        rows=rows,
        columns=column_scores(engine, schema, cfg, rows),
        references=reference_scores(engine, schema, cfg, parent_rows),
        rule_violations=rule_violations,
    )
