"""References that must reach a particular row: the same person's earlier row of the same table,
and ids into the table another column of the row names.

They read the rows of the tables they point to through the run's relations (regenerated from
the approved configs with the same seed, never read from a database), so every reference
resolves to a row of the right person. Without relations (a column generated in isolation)
they are NULL.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from .base import ColumnContext, Generator, days, null_mask


def _ids(ctx: ColumnContext, values: np.ndarray, keep: np.ndarray) -> pl.Series:
    out = pl.Series(ctx.column, np.where(keep & (values > 0), values, 0), dtype=pl.Int64)
    return out.replace(0, None)


def _int(series: pl.Series) -> np.ndarray:
    return series.fill_null(0).cast(pl.Int64).to_numpy()


def person_columns(spec: str | None) -> list[str]:
    """The columns of the row a person spec reads (see :func:`row_persons`)."""
    if not spec:
        return []
    if ">" in spec:
        return [spec.split(">", 1)[0]]
    return [c for c in spec.split("@") if c]


def row_persons(ctx: ColumnContext, done: dict[str, pl.Series], spec: str) -> np.ndarray | None:
    """Each row's person, by a spec:

    ``person_id``                         a column of the row holding the person;
    ``episode_id>episode``                the person of the row ``episode_id`` points to in
                                          ``episode`` (a table without a person column);
    ``fact_id_1@domain_concept_id_1``     the person of the row the polymorphic ``fact_id_1``
                                          points to in the table its ``domain_concept_id_1`` names.

    None where the persons cannot be known (no relations, no such table): the caller then
    draws without a person. 0 marks a row without one.
    """
    if "@" not in spec and ">" not in spec:
        return _int(done[spec]) if spec in done else None
    column, via = spec.split(">" if ">" in spec else "@", 1)
    if column not in done or ctx.relations is None:
        return None
    ids = _int(done[column])
    if "@" in spec and via in done and column in ctx.columns:  # a polymorphic id: table per row
        col = ctx.columns[column]
        params = PolymorphicReference.Params.model_validate(col.params)
        targets = PolymorphicReference.target_tables(col.stats, params)
        keys = np.array([None if v is None else str(v) for v in done[via].to_list()], dtype=object)
        out = np.zeros(len(ids), dtype=np.int64)
        for value, table in targets.items():
            rows = np.flatnonzero(keys == value)
            owners = _persons_of(ctx, table)
            if len(rows) and owners is not None:
                out[rows] = _lookup(owners, ids[rows])
        return out
    owners = _persons_of(ctx, via)
    return None if owners is None else _lookup(owners, ids)


def _persons_of(ctx: ColumnContext, table: str) -> np.ndarray | None:
    frame = ctx.relations.frame(table, ["person_id"])
    if frame is None or "person_id" not in frame.columns:
        return None
    return _int(frame["person_id"])


def _lookup(owners: np.ndarray, ids: np.ndarray) -> np.ndarray:
    ok = (ids >= 1) & (ids <= len(owners))
    return np.where(ok, owners[np.clip(ids - 1, 0, max(len(owners) - 1, 0))], 0)


class PrecedingRowParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    person: str = Field(description="The column holding the row's person.")
    order_by: str = Field(description="The date that orders the person's rows.")
    within: str | None = Field(
        None, description="A column the earlier row must share too (visit_occurrence_id)."
    )


class PrecedingRow(Generator):
    """preceding_visit_occurrence_id and its kind: the same person's previous row (by the
    date ``order_by``), or NULL for the person's first; nulls as released on top."""

    name = "preceding_row"
    summary = "The same person's previous row of this table (by a date); NULL for the first."
    types = frozenset({"integer"})
    Params = PrecedingRowParams

    @classmethod
    def depends_on(cls, params):
        p: PrecedingRowParams = params  # type: ignore[assignment]
        return [c for c in (p.person, p.order_by, p.within) if c]

    def block(self, ctx, start, count, block, done):
        p: PrecedingRowParams = ctx.params  # type: ignore[assignment]
        relations = ctx.relations
        if relations is None or relations.building(ctx.table):
            return pl.Series(ctx.column, [None] * count, dtype=pl.Int64)
        key_column = p.within or p.person
        index = relations.index(ctx.table, key_column, p.order_by)
        if index is None:
            return pl.Series(ctx.column, [None] * count, dtype=pl.Int64)
        found = index.before(_int(done[key_column]), days(done[p.order_by]))
        if p.within:  # the earlier row of the visit must be the same person's too
            person = relations.frame(ctx.table, [p.person])
            if person is not None:
                owner = _int(person[p.person])
                mine = _int(done[p.person])
                found = np.where((found > 0) & (owner[np.maximum(found - 1, 0)] == mine), found, 0)
        return _ids(ctx, found, ~null_mask(ctx, block, count))


class PolymorphicParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    by: str = Field(description="The column naming the table (a domain or field concept).")
    person: str | None = Field(
        None,
        description="The row's person (a column, or `column>table` / `column@by` to take it "
        "from the row another reference points to): the id is then a row of that person.",
    )
    targets: dict[str, str] = Field(
        default_factory=dict,
        description="Tables for values of `by` that the statistics do not name (value -> table).",
    )


class PolymorphicReference(Generator):
    """fact_relationship.fact_id_1, measurement_event_id, cost_event_id ...: an id of a row of
    the table the row's ``by`` value names (a row of the same person where the row has one);
    NULL where that table has no synthetic rows or the value names no table."""

    name = "polymorphic_reference"
    summary = "An id of a row of the table another column of the row names (same person)."
    types = frozenset({"integer"})
    Params = PolymorphicParams

    @classmethod
    def depends_on(cls, params):
        p: PolymorphicParams = params  # type: ignore[assignment]
        return [p.by, *person_columns(p.person)]

    @staticmethod
    def target_tables(ctx_stats, params) -> dict[str, str]:
        """Value of ``by`` (as text) -> table, from the statistics and the reviewer's params."""
        out = {str(t.value): t.table for t in (ctx_stats.targets or [])} if ctx_stats else {}
        out.update(params.targets)
        return out

    def block(self, ctx, start, count, block, done):
        p: PolymorphicParams = ctx.params  # type: ignore[assignment]
        targets = self.target_tables(ctx.stats, p)
        keys = np.array([None if v is None else str(v) for v in done[p.by].to_list()], dtype=object)
        keep = ~null_mask(ctx, block, count)
        out = np.zeros(count, dtype=np.int64)
        u = ctx.rng(block).random(count)
        person = row_persons(ctx, done, p.person) if p.person else None
        for value, table in targets.items():
            rows = np.flatnonzero(keys == value)
            if not len(rows):
                continue
            n = ctx.parent_rows(table)
            if n <= 0:
                continue
            if person is not None and ctx.relations is not None:
                index = ctx.relations.index(table, "person_id")
                if index is not None:
                    # a row of the same person (none where the person has none); without a
                    # person (a provider's fact, say), any row
                    known = person[rows] > 0
                    out[rows[known]] = index.pick(person[rows][known], u[rows][known])
                    out[rows[~known]] = 1 + np.floor(u[rows][~known] * n).astype(np.int64)
                    continue
            out[rows] = 1 + np.floor(u[rows] * n).astype(np.int64)
        return _ids(ctx, out, keep)
