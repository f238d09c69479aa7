"""Property-based: random but valid schemas and data go through summarise, propose, generate
and write, and the invariants hold for every one of them.

Each example builds a real SQLite extract of two tables, `parent_t` and `child_t` (a declared
foreign key `parent_id` into `parent_t`), with 0-4 extra columns of random types,
cardinalities, null shares and declared widths, values drawn by NumPy from a seed Hypothesis
chooses, and a random k and rounding. Invariants:

- every released count is 0 or at least k; every listed value occurs at least k times in the
  source; at least k source values lie at or beyond each end of the released quantiles;
- every proposed config validates, and the generated frames and the destination table have
  the config's columns, in order, with the config's types;
- keys are 1..n and every reference resolves into its parent;
- a column drawn from listed values produces only values seen at least k times.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synth_pipeline.core.config_files import ProjectFiles
from synth_pipeline.core.database import open_destination, open_source
from synth_pipeline.core.disclosure import DisclosurePolicy
from synth_pipeline.core.generators import POLARS_TYPES
from synth_pipeline.core.propose import propose_table_config
from synth_pipeline.core.schema import ColumnDef, read_table_schema
from synth_pipeline.core.statistics import ColumnStats
from synth_pipeline.core.summarise import summarise_table
from synth_pipeline.core.synthesise import TableRun, written_width
from synth_pipeline.core.write import RegisterEntry, replace_table

TYPES = ["integer", "float", "string", "date", "datetime", "boolean"]
SQL_TYPES = {
    "integer": "BIGINT",
    "float": "DOUBLE PRECISION",
    "date": "DATE",
    "datetime": "TIMESTAMP",
    "boolean": "BOOLEAN",
}
# how SQLite stores each type as the destination writes it (typeof)
STORED_AS = {
    "integer": {"integer"},
    "float": {"real", "integer"},
    "string": {"text"},
    "date": {"text"},
    "datetime": {"text"},
    "boolean": {"integer"},
}

column_spec = st.fixed_dictionaries(
    {
        "type": st.sampled_from(TYPES),
        "distinct": st.one_of(st.integers(1, 30), st.just(10_000)),  # 10,000: all different
        "null_share": st.sampled_from([0.0, 0.0, 0.2, 0.7, 1.0]),
        "width": st.sampled_from([None, 3, 12]),
        "skew": st.floats(0.0, 3.0),
    }
)

example = st.fixed_dictionaries(
    {
        "parent_rows": st.integers(0, 160),
        "child_rows": st.integers(0, 300),
        "parent_columns": st.lists(column_spec, max_size=4),
        "child_columns": st.lists(column_spec, max_size=4),
        "fk_null_share": st.sampled_from([0.0, 0.3]),
        "fk_dangling_share": st.sampled_from([0.0, 0.1]),
        "k": st.sampled_from([1, 2, 3, 5, 10]),
        "rounding": st.sampled_from([1, 5]),
        "seed": st.integers(0, 2**32 - 1),
    }
)


def pool(spec: dict, rng: np.random.Generator) -> list:
    n = spec["distinct"]
    t = spec["type"]
    if t == "integer":
        values = rng.integers(-(2**40), 2**40, n) if n > 50 else rng.integers(-5, 50, n)
        return [int(v) for v in values]
    if t == "float":
        return [float(v) for v in np.round(rng.normal(50, 20, n), 3)]
    if t == "string":
        alphabet = list("abcdefghijKLMNOP0123456789 -")
        return ["".join(rng.choice(alphabet, rng.integers(1, 16))) for _ in range(n)]
    if t == "date":
        days = rng.integers(-20_000, 25_000, n)
        return [(dt.date(1970, 1, 1) + dt.timedelta(days=int(d))).isoformat() for d in days]
    if t == "datetime":
        secs = rng.integers(-(10**9), 2 * 10**9, n)
        return [
            (dt.datetime(1970, 1, 1) + dt.timedelta(seconds=int(s))).isoformat(sep=" ")
            for s in secs
        ]
    return [True, False][: max(1, min(2, n))]


def column_values(spec: dict, rows: int, rng: np.random.Generator) -> list:
    values = pool(spec, rng)
    weights = np.exp(-spec["skew"] * np.arange(len(values)) / max(1, len(values)))
    picks = rng.choice(len(values), size=rows, p=weights / weights.sum())
    out = [values[i] for i in picks]
    nulls = rng.random(rows) < spec["null_share"]
    return [None if n else v for v, n in zip(out, nulls, strict=True)]


def build_source(path: Path, ex: dict) -> dict[str, dict[str, list]]:
    """Create the two tables; returns the source values by table and column."""
    rng = np.random.default_rng(ex["seed"])
    parent_ids = [int(v) for v in rng.choice(2**50, ex["parent_rows"], replace=False) - 2**49]
    data: dict[str, dict[str, list]] = {"parent_t": {"id": parent_ids}, "child_t": {}}
    child = data["child_t"]
    child["id"] = list(range(1, ex["child_rows"] + 1))
    refs = []
    for _ in range(ex["child_rows"]):
        u = rng.random()
        if u < ex["fk_null_share"]:
            refs.append(None)
        elif u < ex["fk_null_share"] + ex["fk_dangling_share"] or not parent_ids:
            refs.append(int(rng.integers(2**50, 2**51)))  # points nowhere
        else:
            refs.append(parent_ids[min(len(parent_ids) - 1, int(rng.exponential(3)))])
    child["parent_id"] = refs
    ddl = {
        "parent_t": ['"id" BIGINT PRIMARY KEY'],
        "child_t": ['"id" BIGINT PRIMARY KEY', '"parent_id" BIGINT REFERENCES parent_t(id)'],
    }
    for table, key, rows in (
        ("parent_t", "parent_columns", ex["parent_rows"]),
        ("child_t", "child_columns", ex["child_rows"]),
    ):
        for i, spec in enumerate(ex[key]):
            name = f"c{i}_{spec['type']}"
            sql_type = (
                (f"VARCHAR({spec['width']})" if spec["width"] else "TEXT")
                if spec["type"] == "string"
                else SQL_TYPES[spec["type"]]
            )
            ddl[table].append(f'"{name}" {sql_type}')
            data[table][name] = column_values(spec, rows, rng)
    with sqlite3.connect(path) as conn:
        for table, cols in ddl.items():
            conn.execute(f'CREATE TABLE "{table}" ({", ".join(cols)})')
            names = list(data[table])
            rows = list(zip(*(data[table][n] for n in names), strict=True))
            if rows:
                marks = ", ".join("?" for _ in names)
                conn.executemany(f'INSERT INTO "{table}" VALUES ({marks})', rows)
    return data


def released_counts(cs: ColumnStats) -> list[int]:
    counts = [cs.non_null, cs.distinct, cs.zero_as_null, cs.other_count, cs.dangling]
    counts += [v.count for v in cs.values or []]
    counts += [b.count for b in (cs.years or []) + (cs.fanout or [])]
    counts += list(cs.months or [])
    if cs.time_of_day and cs.time_of_day.hours:
        counts += list(cs.time_of_day.hours)
    return [c for c in counts if c is not None]


def comparable(v):
    return v if not isinstance(v, bool) else int(v)


def check_disclosure(table: str, cfg, stats, source: dict[str, list], k: int) -> None:
    assert stats.row_count is None or stats.row_count == 0 or stats.row_count >= k
    for name, cs in stats.columns.items():
        below = [c for c in released_counts(cs) if 0 < c < k]
        assert below == [], (table, name, below)
        values = [v for v in source[name] if v is not None]
        for vc in cs.values or []:
            seen = sum(1 for v in values if comparable(v) == comparable(vc.value))
            assert seen >= k, (table, name, vc.value, seen)
        if cs.quantiles:
            # a released quantile is the mean of k values whose window stays clear of the
            # extremes: never below the mean of the k smallest values, nor above that of the
            # k largest, so neither the minimum nor the maximum is ever released
            lo, hi = cs.quantiles[0].value, cs.quantiles[-1].value
            ordered = sorted(values)
            floor_, ceiling = sum(ordered[:k]) / k, sum(ordered[-k:]) / k
            assert lo >= floor_ - 1e-9 * max(1, abs(floor_)) - 0.5, (table, name, "bottom-coding")
            assert hi <= ceiling + 1e-9 * max(1, abs(ceiling)) + 0.5, (table, name, "top-coding")
            if k >= 2 and len(set(ordered)) == len(ordered):  # k = 1 protects nothing
                assert lo > ordered[0] and hi < ordered[-1], (table, name, "extremes released")


def check_output(table: str, cfg, frames: list[pl.DataFrame], dest, source, k: int, parents):
    names = list(cfg.columns)
    for f in frames:
        assert f.columns == names
        assert [f.schema[n] for n in names] == [POLARS_TYPES[cfg.columns[n].type] for n in names]
    got = pl.concat(frames) if frames else pl.DataFrame()
    assert got.height == cfg.rows
    insp = sa.inspect(dest)
    assert [c["name"] for c in insp.get_columns(table)] == names
    with dest.connect() as conn:
        for n in names:
            stored = {
                r[0]
                for r in conn.exec_driver_sql(
                    f'SELECT DISTINCT typeof("{n}") FROM "{table}" WHERE "{n}" IS NOT NULL'
                )
            }
            assert stored <= STORED_AS[cfg.columns[n].type], (table, n, stored)
        assert conn.exec_driver_sql(f'SELECT COUNT(*) FROM "{table}"').scalar_one() == cfg.rows
    if cfg.rows:
        ids = got[cfg.primary_key]
        assert ids.to_list() == list(range(1, cfg.rows + 1)), "keys are 1..n"
    for name, col in cfg.columns.items():
        if col.generator == "foreign_key" and got.height:
            refs = got[name].drop_nulls()
            n_parent = parents[col.params["table"]]
            assert refs.is_empty() or (refs.min() >= 1 and refs.max() <= n_parent), name
        if col.generator == "weighted_choice" and col.params.get("other") != "quantiles":
            counts: dict = {}
            for v in source.get(name, []):
                if v is not None:
                    counts[comparable(v)] = counts.get(comparable(v), 0) + 1
            allowed = {comparable(col.params.get("other_value"))}
            for v in got[name].drop_nulls().unique().to_list():
                if isinstance(v, float | int | str | bool):
                    assert counts.get(comparable(v), 0) >= k or comparable(v) in allowed, (
                        table,
                        name,
                        v,
                    )


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(example)
def test_summarise_and_generate_keep_their_invariants(ex):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = build_source(folder / "source.sqlite", ex)
        policy = DisclosurePolicy(min_cell_count=ex["k"], rounding=ex["rounding"])
        source = open_source(f"sqlite:///{folder / 'source.sqlite'}")
        dest = open_destination(f"sqlite:///{folder / 'dest.sqlite'}")
        files = ProjectFiles(folder / "cfg", "prop")
        configs, stats = {}, {}
        try:
            for table in ("parent_t", "child_t"):
                schema = read_table_schema(source, None, table)
                stats[table] = summarise_table(source, None, schema, policy)
                configs[table] = propose_table_config(schema, stats[table])
                files.save_table(configs[table])  # validates generators and their parameters
                check_disclosure(table, configs[table], stats[table], data[table], ex["k"])
            parents = {t: c.rows for t, c in configs.items()}
            for table, cfg in configs.items():
                run = TableRun.for_project(files, files.load_table(table), ex["seed"], 1.0)
                frames = list(run.chunks(65_536))
                cols = [ColumnDef(n, c.type, written_width(c)) for n, c in cfg.columns.items()]
                replace_table(
                    dest,
                    None,
                    table,
                    cols,
                    iter(frames),
                    primary_key=cfg.primary_key,
                    entry=RegisterEntry("synthetic", cfg.fingerprint(), ex["seed"], 1.0, {}, "p"),
                )
                check_output(table, cfg, frames, dest, data[table], ex["k"], parents)
        finally:
            source.dispose()
            dest.dispose()
