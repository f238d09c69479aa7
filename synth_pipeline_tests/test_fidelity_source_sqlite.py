"""On SQLite the scores against the source read each numeric expression once, per value, and
work its range and buckets out from those counts: the scores are those of the SQL that reads
the range in the first scan and counts the buckets in the database (PostgreSQL's way)."""

from __future__ import annotations

import sqlite3

import numpy as np

from synth_pipeline.core import fidelity_source
from synth_pipeline_tests.test_fidelity_source import (
    _measure,
    _source_rows,
    _synthetic_rows,
    _write,
    approved_config,
    source_url,  # noqa: F401 - the fixture
)


def test_counted_per_value_as_the_sql_counts_per_bucket(source_url, tmp_path, monkeypatch):  # noqa: F811
    cfg = approved_config()
    weight = cfg.columns["weight"]
    cfg.columns["weight"] = weight.model_copy(update={"generator": "numeric_quantiles"})
    rows = _synthetic_rows(np.random.default_rng(3))
    # numbers in buckets of the joint range (floats: not counted per value), text and NULL
    # near the source's own: which bucket a value falls in decides the score
    source = [r[9] for r in _source_rows(np.random.default_rng(7))]
    weights = [w + 0.04 if isinstance(w, float) else 12.5 for w in source]
    for i in range(2, len(rows), 5):
        weights[i], weights[i + 1] = "n/a", None
    rows = [(*r[:9], w, *r[10:]) for r, w in zip(rows, weights, strict=True)]
    destination = _write(tmp_path / "synthetic.sqlite", rows)
    per_value = _measure(source_url, destination, cfg)

    init = fidelity_source._Side.__init__

    def in_the_database(self, *args):
        init(self, *args)
        self.sqlite = False  # the generic SQL: MIN/MAX in the scan, buckets in the database

    monkeypatch.setattr(fidelity_source._Side, "__init__", in_the_database)
    by_sql = _measure(source_url, destination, cfg)
    scores = [(c.column, c.against_source) for c in per_value.columns]
    assert scores == [(c.column, c.against_source) for c in by_sql.columns]
    # a table above PER_VALUE_ROWS takes the same SQL (its ranges read in a second statement)
    monkeypatch.setattr(fidelity_source._Side, "__init__", init)
    monkeypatch.setattr(fidelity_source, "PER_VALUE_ROWS", 100)
    big = _measure(source_url, destination, cfg)
    assert scores == [(c.column, c.against_source) for c in big.columns]
    weight = {c.column: c.against_source for c in per_value.columns}["weight"]
    assert weight.metric == "KSComplement" and 0 < weight.score < 1
    metrics = {c.column: c.against_source.metric for c in per_value.columns}
    assert metrics["birth_datetime"] == "TVComplement"  # years
    assert metrics["end_date"] == metrics["year_of_birth"] == "KSComplement"  # values


def test_buckets_are_those_sqlite_works_out():
    """_buckets against SQLite's own ``CAST((x - lo) * scale AS INTEGER)`` on values at and
    near the bucket edges, integers and floats."""
    rng = np.random.default_rng(5)
    lo, hi = -17.3, 1234.56
    scale = fidelity_source.KS_BUCKETS / (hi - lo)
    edges = [lo + b / scale for b in range(0, fidelity_source.KS_BUCKETS + 1, 7)]
    values = [lo, hi, 0, -17, 1234, *edges, *(np.nextafter(edges, np.inf).tolist())]
    values += rng.uniform(lo, hi, 500).tolist() + rng.integers(-17, 1234, 200).tolist()
    counts = {v: i + 1 for i, v in enumerate(dict.fromkeys(values))}
    with sqlite3.connect(":memory:") as db:
        db.execute("CREATE TABLE t (x, n INTEGER)")
        db.executemany("INSERT INTO t VALUES (?, ?)", list(counts.items()))
        rows = db.execute(
            f"SELECT CASE WHEN x >= :hi THEN {fidelity_source.KS_BUCKETS - 1} "
            "ELSE CAST((x - :lo) * :scale AS INTEGER) END AS k, SUM(n) FROM t GROUP BY k",
            {"lo": lo, "hi": hi, "scale": scale},
        ).fetchall()
    assert fidelity_source._buckets(counts, lo, hi) == {float(k): n for k, n in rows}
