"""Rows as features and the distance between them (Gower), for the distance-to-closest-record share
and the attacks: numbers and dates by their p1..p99 range, categories by equality.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from sqlalchemy.engine import Engine

from .config import TableConfig
from .database import qualified, quote
from .generators import POLARS_TYPES
from .privacy import (
    SPLIT_SEED,
    Measure,
    Rate,
    against_chance,
)
from .schema import ColumnDef
from .thresholds import PrivacyThresholds
from .transfer import stream_select


def read_columns(
    engine: Engine, schema: str | None, table: str, cfg: TableConfig, columns: list[str]
) -> pl.DataFrame:
    """The columns of a table, in an order that depends on the values only (so samples drawn
    from it are the same whatever order the database returns the rows in)."""
    defs = [ColumnDef(c, cfg.columns[c].type) for c in columns]
    sql = f"SELECT {', '.join(quote(engine, c) for c in columns)} FROM {qualified(engine, schema, table)}"
    frames = list(stream_select(engine, sql, defs, 200_000))
    if not frames:
        return pl.DataFrame({d.name: pl.Series([], dtype=_dtype(d.logical_type)) for d in defs})
    return pl.concat(frames).sort(columns, nulls_last=True, maintain_order=True)


def _dtype(logical: str) -> pl.DataType:
    return POLARS_TYPES[logical]


def is_categorical(cfg: TableConfig, column: str) -> bool:
    col = cfg.columns[column]
    return (
        col.type in ("string", "boolean")
        or column.endswith("_concept_id")
        or col.generator == "conditional_choice"
    )


def features(
    frame: pl.DataFrame, cfg: TableConfig, columns: list[str], codes: dict[str, dict]
) -> tuple[np.ndarray, np.ndarray]:
    """(numeric matrix with NaN for NULL, categorical matrix with -1 for NULL)."""
    nums, cats = [], []
    for c in columns:
        s = frame[c]
        if is_categorical(cfg, c):
            mapping = codes.setdefault(c, {})
            for v in s.drop_nulls().unique(maintain_order=True).to_list():  # first seen first
                mapping.setdefault(v, len(mapping))
            coded = s.replace_strict(
                list(mapping), list(mapping.values()), default=-1, return_dtype=pl.Int64
            )
            cats.append(coded.fill_null(-1).to_numpy())
        else:
            if s.dtype == pl.Date:
                s = s.cast(pl.Int32)
            elif isinstance(s.dtype, pl.Datetime):
                s = s.cast(pl.Int64) / 86_400_000_000
            nums.append(s.cast(pl.Float64).fill_null(float("nan")).to_numpy())
    n = frame.height
    num = np.column_stack(nums) if nums else np.zeros((n, 0))
    cat = np.column_stack(cats) if cats else np.zeros((n, 0), dtype=np.int64)
    return num, cat


CATEGORY_CELLS = 2_000_000  # a category's inequalities kept per value the query rows hold


def _nearest(
    q_num: np.ndarray,
    q_cat: np.ndarray,
    r_num: np.ndarray,
    r_cat: np.ndarray,
    scale: np.ndarray,
    left_out: np.ndarray | None = None,
) -> np.ndarray:
    """Gower distance from each query row to its nearest reference row; ``left_out[i]`` is the
    position of query row i's own entry in the reference (-1: none), which is skipped."""
    width = q_num.shape[1] + q_cat.shape[1]
    out = np.empty(len(q_num))
    # small blocks of query rows, so the block's distances stay in the processor's cache, in
    # buffers reused from block to block
    step = max(1, 65_536 // max(1, len(r_num)))
    finite = np.isfinite(q_num).all(axis=0) & np.isfinite(r_num).all(axis=0)
    r_null = np.isnan(r_num)
    shape = (min(step, len(q_num)), len(r_num))
    total_buf, d_buf, unequal_buf = np.zeros(shape), np.empty(shape), np.empty(shape, dtype=bool)
    # a category's inequalities to the reference as 0.0 / 1.0, once per value the query
    # rows hold (where few enough): added as they are, without comparing and casting per block
    unequal_to = []
    for j in range(q_cat.shape[1]):
        values, which = np.unique(q_cat[:, j], return_inverse=True)
        if len(values) * len(r_cat) > CATEGORY_CELLS:
            unequal_to.append(None)
        else:
            table = (values[:, None] != r_cat[:, j][None, :]).astype(np.float64)
            unequal_to.append((table, which.reshape(-1)))
    for i in range(0, len(q_num), step):
        a_num, a_cat = q_num[i : i + step], q_cat[i : i + step]
        total, d, unequal = total_buf[: len(a_num)], d_buf[: len(a_num)], unequal_buf[: len(a_num)]
        for j in range(q_num.shape[1]):
            # min(1, |x - y| / scale); 1 where one side is NULL, 0 where both are. The first
            # column is written as the sum: 0 + d is d, as no distance is -0.0
            at = total if j == 0 else d
            np.subtract(a_num[:, j][:, None], r_num[:, j][None, :], out=at)
            np.abs(at, out=at)
            np.divide(at, scale[j], out=at)
            np.minimum(at, 1.0, out=at)
            if not finite[j]:
                np.copyto(at, 1.0, where=np.isnan(at))
                both = np.isnan(a_num[:, j])[:, None] & r_null[:, j][None, :]
                np.copyto(at, 0.0, where=both)
            if j:
                total += d
        for j in range(q_cat.shape[1]):
            if unequal_to[j] is not None:
                table, which = unequal_to[j]
                unequal_j = table[which[i : i + step]]
            else:
                np.not_equal(a_cat[:, j][:, None], r_cat[:, j][None, :], out=unequal)
                unequal_j = unequal
            if j or q_num.shape[1]:
                total += unequal_j
            else:
                np.copyto(total, unequal_j)
        if left_out is not None:
            own = left_out[i : i + step]
            rows = np.nonzero(own >= 0)[0]
            total[rows, own[rows]] = np.inf
        out[i : i + step] = total.min(axis=1) / max(1, width)
    return out


@dataclass(frozen=True)
class TablePair:
    """A synthetic table beside its source as the privacy checks read them: both tables' rows
    (in an order their values fix), the table's config, the informative ``columns`` compared,
    the table's thresholds and k."""

    source: pl.DataFrame
    synthetic: pl.DataFrame
    cfg: TableConfig
    columns: list[str]
    thresholds: PrivacyThresholds
    k: int


class _Reference:
    """A reference sample of the source as features, with each numeric column's Gower scale
    (its p1..p99 range); the categories' codes are shared with every frame measured."""

    def __init__(self, rows: pl.DataFrame, cfg: TableConfig, columns: list[str]):
        self.cfg, self.columns = cfg, columns
        self.codes: dict[str, dict] = {}
        self.num, self.cat = features(rows, cfg, columns, self.codes)
        if self.num.shape[1]:
            lo = np.nanpercentile(self.num, 1, axis=0)
            hi = np.nanpercentile(self.num, 99, axis=0)
            self.scale = np.where(np.isfinite(hi - lo) & (hi - lo > 0), hi - lo, 1.0)
        else:
            self.scale = np.ones(0)

    def nearest(self, frame: pl.DataFrame, left_out_at: np.ndarray | None = None) -> np.ndarray:
        num, cat = features(frame, self.cfg, self.columns, self.codes)
        return _nearest(num, cat, self.num, self.cat, self.scale, left_out_at)


def _closer(held: np.ndarray, d: np.ndarray) -> Rate:
    """Per row, the share of left-out real rows (distances ``held``, sorted) it is closer than,
    ties counting half."""
    above = np.searchsorted(held, d, side="right")
    ties = above - np.searchsorted(held, d, side="left")
    return Rate(count=float(((len(held) - above + 0.5 * ties) / len(held)).sum()), of=len(d))


def dcr_share(
    pair: TablePair,
    source_twin: np.ndarray,
    source_writable: np.ndarray,
    synthetic_match: np.ndarray,
) -> tuple[Measure, dict[str, int]]:
    """The DCR share against a real row left out of the source, with chance (0.5, or the share
    of the synthetic sample with its columns shuffled apart) and what a copy scores. A row with
    an identical row in the source is at distance 0; other rows are measured against a
    reference sample of the source."""
    source, synthetic, columns, k = pair.source, pair.synthetic, pair.columns, pair.k
    thresholds = pair.thresholds
    n = source.height
    candidates = np.nonzero(source_writable)[0]
    if not columns or n < 4 * k or synthetic.height < k or len(candidates) < k:
        return Measure(note="too few rows for a distance-to-closest-record comparison"), {}
    rng = np.random.default_rng(SPLIT_SEED)
    reference_idx = np.sort(rng.permutation(n)[: thresholds.dcr_reference_rows])
    left_out_idx = np.sort(rng.permutation(candidates)[: thresholds.dcr_sample_rows])
    synth_idx = np.sort(rng.permutation(synthetic.height)[: thresholds.dcr_sample_rows])
    position = np.full(n, -1)
    position[reference_idx] = np.arange(len(reference_idx))
    sample = synthetic[synth_idx]
    shuffled = sample.select(columns).with_columns(
        [sample[c].gather(rng.permutation(sample.height)) for c in columns]
    )
    reference = _Reference(source[reference_idx], pair.cfg, columns)
    d_real = reference.nearest(source[left_out_idx], position[left_out_idx])
    d_real[source_twin[left_out_idx]] = 0.0
    held = np.sort(d_real)
    d_synth = reference.nearest(sample)
    d_synth[synthetic_match[synth_idx]] = 0.0
    d_shuffled = reference.nearest(shuffled)
    d_shuffled[matching_rows(shuffled, source, columns).to_numpy()] = 0.0
    measure = against_chance(
        _closer(held, d_synth),
        Rate(count=1, of=2, fixed=True),
        _closer(held, d_shuffled),
        Rate(count=len(held) - 0.5 * int((d_real == 0).sum()), of=len(held)),
    )
    samples = {"synthetic": len(sample), "held_out": len(held), "reference": len(reference_idx)}
    return measure, samples


def matching_rows(synthetic: pl.DataFrame, rows: pl.DataFrame, columns: list[str]) -> pl.Series:
    """Per synthetic row, whether it equals one of ``rows`` on the columns (NULL equals NULL)."""
    return (
        synthetic.select(columns)
        .join(
            rows.select(columns).unique().with_columns(pl.lit(True).alias("_hit")),
            on=columns,
            how="left",
            nulls_equal=True,
            maintain_order="left",
        )["_hit"]
        .is_not_null()
    )
