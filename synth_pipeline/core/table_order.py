"""The order tables are written in: parents before the tables whose foreign keys point to them,
and events after the observation periods their rules place them in."""

from __future__ import annotations

from . import omop


def _parents_within(tables: list[str]) -> dict[str, set[str]]:
    """Per table, the tables among ``tables`` its OMOP foreign keys point to, and for a table
    of events the observation periods its rules place them in (its rules_hold check reads
    them from the destination, so they must be this run's)."""
    present = set(tables)
    deps: dict[str, set[str]] = {}
    for t in tables:
        spec = omop.table_spec(t)
        parents = {f.fk_table for f in (spec.fields.values() if spec else []) if f.fk_table}
        shape = omop.EVENT_SHAPES.get(t)
        if shape is not None and shape.kind != "lifetime":
            parents.add("observation_period")
        deps[t] = {p for p in parents if p in present and p != t}
    return deps


def order_parents_first(tables: list[str]) -> list[str]:
    """Tables ordered so that each comes after the tables its foreign keys point to."""
    deps = _parents_within(tables)
    out: list[str] = []
    seen: set[str] = set()

    def visit(t: str, stack: set[str]) -> None:
        if t in seen or t in stack:
            return
        stack.add(t)
        for p in sorted(deps[t]):
            visit(p, stack)
        seen.add(t)
        out.append(t)

    for t in sorted(tables):
        visit(t, set())
    return out


def dependency_waves(tables: list[str]) -> list[list[str]]:
    """Tables in waves: each wave's parents are all in earlier waves, so a wave can run in
    parallel (a cycle, which OMOP does not have, is broken in the parents-first order)."""
    deps = _parents_within(tables)
    wave_of: dict[str, int] = {}
    for t in order_parents_first(tables):
        wave_of[t] = 1 + max((wave_of[p] for p in deps[t] if p in wave_of), default=-1)
    waves: list[list[str]] = [[] for _ in range(max(wave_of.values(), default=-1) + 1)]
    for t, w in wave_of.items():
        waves[w].append(t)
    return [sorted(w) for w in waves]
