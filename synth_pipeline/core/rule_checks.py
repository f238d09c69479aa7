"""Consistency rules checked after the fact: the rows of a destination table that break each
enabled rule, counted by SQL in the destination (the rules_hold check, the fidelity report)."""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .config import TableConfig
from .database import qualified, quote
from .omop import EVENT_SHAPES, EventShape
from .sqlexpr import SqlExpressions


def count_violations(
    engine, schema: str | None, cfg: TableConfig, present: set[str]
) -> dict[str, int]:
    """Rows of a destination table that break each enabled rule, counted by SQL.

    ``present`` names the destination's tables (rules against a missing parent are not counted).
    """
    dest = _Destination(engine, schema, present, SqlExpressions(engine), sa.inspect(engine))
    t = dest.table(cfg.table)
    cols = set(cfg.columns)
    shape = EVENT_SHAPES.get(cfg.table)
    checks: dict[str, str] = {}
    if cfg.rules.end_after_start:
        checks |= _end_after_start(dest, t, cols, shape)
    if cfg.rules.datetime_matches_date:
        checks |= _datetime_matches_date(dest, t, cfg)
    if cfg.rules.birth_parts_match and cfg.table == "person" and "birth_datetime" in cols:
        checks |= _birth_parts_match(dest, t, cols)
    if shape and "person_id" in cols and shape.start in cols:
        checks |= _event_checks(dest, t, cfg, shape)
    out = {}
    # a database error is the check failing, never a rule that holds: raised to the caller
    with engine.connect() as conn:
        for name, query in checks.items():
            out[name] = int(conn.execute(sa.text(query)).scalar_one() or 0)
    return out


@dataclass
class _Destination:
    """The destination the checks' SQL runs in: its names quoted, its dates compared as dates,
    and which parent tables (with which columns) it holds."""

    engine: Engine
    schema: str | None
    present: set[str]
    sql: SqlExpressions
    inspector: sa.Inspector
    parent_columns: dict[str, set[str]] = field(default_factory=dict)

    def has(self, parent: str, *columns: str) -> bool:
        """Whether ``parent`` is in the destination with the columns a rule reads: a rule
        against a parent that lacks them does not apply (decided here, before any SQL runs)."""
        if parent not in self.present:
            return False
        if parent not in self.parent_columns:
            self.parent_columns[parent] = {
                c["name"] for c in self.inspector.get_columns(parent, schema=self.schema)
            }
        return set(columns) <= self.parent_columns[parent]

    def table(self, name: str) -> str:
        return qualified(self.engine, self.schema, name)

    def q(self, c: str) -> str:
        return quote(self.engine, c)

    def d(self, c: str, alias: str = "") -> str:
        return self.sql.as_date((alias + "." if alias else "") + self.q(c), text=False)


def _end_after_start(
    dest: _Destination, t: str, cols: set[str], shape: EventShape | None
) -> dict[str, str]:
    """Every *_end_date/_end_datetime on or after its start, and the table's own end."""
    pairs = []
    for name in cols:
        for end, start in (("_end_date", "_start_date"), ("_end_datetime", "_start_datetime")):
            if name.endswith(end) and name[: -len(end)] + start in cols:
                pairs.append((name, name[: -len(end)] + start))
    if shape and shape.end and shape.end in cols and (shape.end, shape.start) not in pairs:
        pairs.append((shape.end, shape.start))
    q = dest.q
    return {
        f"end_after_start:{end}": f"SELECT COUNT(*) FROM {t} WHERE {q(end)} < {q(start)}"
        for end, start in pairs
    }


def _datetime_matches_date(dest: _Destination, t: str, cfg: TableConfig) -> dict[str, str]:
    """Every *_datetime on the day of its *_date twin."""
    cols = set(cfg.columns)
    checks = {}
    for name in cols:
        twin = name[: -len("time")] if name.endswith("_datetime") else None
        if twin and twin in cols and cfg.columns[twin].type == "date":
            checks[f"datetime_matches_date:{name}"] = (
                f"SELECT COUNT(*) FROM {t} WHERE {dest.d(name)} <> {dest.d(twin)}"
            )
    return checks


def _birth_parts_match(dest: _Destination, t: str, cols: set[str]) -> dict[str, str]:
    """A person's year_of_birth and month_of_birth those of birth_datetime."""
    sql, bd = dest.sql, dest.q("birth_datetime")
    checks = {}
    for part, expr in (("year", sql.year(bd, False)), ("month", sql.month(bd, False))):
        col = f"{part}_of_birth"
        if col in cols:
            checks[f"birth_parts_match:{col}"] = (
                f"SELECT COUNT(*) FROM {t} WHERE {bd} IS NOT NULL AND {dest.q(col)} <> {expr}"
            )
    return checks


def _event_checks(
    dest: _Destination, t: str, cfg: TableConfig, shape: EventShape
) -> dict[str, str]:
    """The rules on a dated table with a person: its visit's person and days, inside an
    observation period of its person, within the person's lifetime."""
    rules, cols, has = cfg.rules, set(cfg.columns), dest.has
    checks = {}
    if (
        rules.visit_same_person
        and "visit_occurrence_id" in cols
        and shape.kind == "event"
        and has("visit_occurrence", "visit_occurrence_id", "person_id")
        and has("visit_occurrence", "visit_start_date", "visit_end_date")
    ):
        checks["visit_same_person"] = _visit_same_person(dest, t, shape.start)
    if (
        rules.within_observation_period
        and shape.kind in ("visit", "event", "era")
        and has("observation_period", "person_id", "observation_period_start_date")
        and has("observation_period", "observation_period_end_date")
        and cfg.primary_key
    ):
        checks["within_observation_period"] = _within_observation_period(dest, t, cfg, shape)
    if (
        rules.within_lifetime
        and has("person", "person_id", "birth_datetime")
        and shape.kind != "death"
    ):
        checks |= _within_lifetime(dest, t, shape.start)
    return checks


def _visit_same_person(dest: _Destination, t: str, start: str) -> str:
    """Rows whose visit is of another person, or whose start is outside the visit's days."""
    q, d = dest.q, dest.d
    v = dest.table("visit_occurrence")
    return (
        f"SELECT COUNT(*) FROM {t} e JOIN {v} v ON v.{q('visit_occurrence_id')} = e.{q('visit_occurrence_id')} "
        f"WHERE v.{q('person_id')} <> e.{q('person_id')} OR {d(start, 'e')} < {d('visit_start_date', 'v')} "
        f"OR {d(start, 'e')} > {d('visit_end_date', 'v')}"
    )


def _within_observation_period(
    dest: _Destination, t: str, cfg: TableConfig, shape: EventShape
) -> str:
    """Rows whose start..end no observation period of their person contains."""
    q, d, start = dest.q, dest.d, shape.start
    end_expr = (
        f"COALESCE({d(shape.end, 'e')}, {d(start, 'e')})"
        if shape.end and shape.end in cfg.columns
        else d(start, "e")
    )
    # a left join grouped by row: SQLite indexes a join automatically, not NOT EXISTS
    op = dest.table("observation_period")
    pk = q(str(cfg.primary_key))
    return (
        f"SELECT COUNT(*) FROM (SELECT e.{pk} FROM {t} e LEFT JOIN {op} o "
        f"ON o.{q('person_id')} = e.{q('person_id')} "
        f"AND {d('observation_period_start_date', 'o')} <= {d(start, 'e')} "
        f"AND {d('observation_period_end_date', 'o')} >= {end_expr} "
        f"WHERE e.{q('person_id')} IS NOT NULL AND e.{q(start)} IS NOT NULL "
        f"GROUP BY e.{pk} HAVING COUNT(o.{q('person_id')}) = 0) s"
    )


def _within_lifetime(dest: _Destination, t: str, start: str) -> dict[str, str]:
    """Starts before their person's birth, and (with a death table) after the death."""
    q, d = dest.q, dest.d
    p = dest.table("person")
    checks = {
        "within_lifetime:birth": (
            f"SELECT COUNT(*) FROM {t} e JOIN {p} p ON p.{q('person_id')} = e.{q('person_id')} "
            f"WHERE p.{q('birth_datetime')} IS NOT NULL AND {d(start, 'e')} < {d('birth_datetime', 'p')}"
        )
    }
    if dest.has("death", "person_id", "death_date"):
        dd = dest.table("death")
        checks["within_lifetime:death"] = (
            f"SELECT COUNT(*) FROM {t} e JOIN {dd} x ON x.{q('person_id')} = e.{q('person_id')} "
            f"WHERE {d(start, 'e')} > {d('death_date', 'x')}"
        )
    return checks
