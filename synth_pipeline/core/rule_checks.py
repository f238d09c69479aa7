"""Consistency rules checked after the fact: the rows of a destination table that break each
enabled rule, counted by SQL in the destination (the rules_hold check, the fidelity report)."""

from __future__ import annotations

from .config import TableConfig
from .omop import EVENT_SHAPES


def count_violations(
    engine, schema: str | None, cfg: TableConfig, present: set[str]
) -> dict[str, int]:
    """Rows of a destination table that break each enabled rule, counted by SQL.

    ``present`` names the destination's tables (rules against a missing parent are not counted).
    """
    import sqlalchemy as sa

    from .database import qualified, quote
    from .sqlexpr import SqlExpressions

    sql = SqlExpressions(engine)
    rules = cfg.rules
    inspector = sa.inspect(engine)
    parent_columns: dict[str, set[str]] = {}

    def has(parent: str, *columns: str) -> bool:
        """Whether ``parent`` is in the destination with the columns a rule reads: a rule
        against a parent that lacks them does not apply (decided here, before any SQL runs)."""
        if parent not in present:
            return False
        if parent not in parent_columns:
            parent_columns[parent] = {
                c["name"] for c in inspector.get_columns(parent, schema=schema)
            }
        return set(columns) <= parent_columns[parent]

    t = qualified(engine, schema, cfg.table)

    def q(c: str) -> str:
        return quote(engine, c)

    def d(c: str, alias: str = "") -> str:
        return sql.as_date((alias + "." if alias else "") + q(c), text=False)

    checks: dict[str, str] = {}
    cols = set(cfg.columns)
    shape = EVENT_SHAPES.get(cfg.table)
    if rules.end_after_start:
        pairs = []
        for name in cols:
            for end, start in (("_end_date", "_start_date"), ("_end_datetime", "_start_datetime")):
                if name.endswith(end) and name[: -len(end)] + start in cols:
                    pairs.append((name, name[: -len(end)] + start))
        if shape and shape.end and shape.end in cols and (shape.end, shape.start) not in pairs:
            pairs.append((shape.end, shape.start))
        for end, start in pairs:
            checks[f"end_after_start:{end}"] = (
                f"SELECT COUNT(*) FROM {t} WHERE {q(end)} < {q(start)}"
            )
    if rules.datetime_matches_date:
        for name in cols:
            twin = name[: -len("time")] if name.endswith("_datetime") else None
            if twin and twin in cols and cfg.columns[twin].type == "date":
                checks[f"datetime_matches_date:{name}"] = (
                    f"SELECT COUNT(*) FROM {t} WHERE {d(name)} <> {d(twin)}"
                )
    if rules.birth_parts_match and cfg.table == "person" and "birth_datetime" in cols:
        bd = q("birth_datetime")
        for part, expr in (("year", sql.year(bd, False)), ("month", sql.month(bd, False))):
            col = f"{part}_of_birth"
            if col in cols:
                checks[f"birth_parts_match:{col}"] = (
                    f"SELECT COUNT(*) FROM {t} WHERE {bd} IS NOT NULL AND {q(col)} <> {expr}"
                )
    if shape and "person_id" in cols and shape.start in cols:
        start = shape.start
        end_expr = (
            f"COALESCE({d(shape.end, 'e')}, {d(start, 'e')})"
            if shape.end and shape.end in cols
            else d(start, "e")
        )
        if (
            rules.visit_same_person
            and "visit_occurrence_id" in cols
            and shape.kind == "event"
            and has("visit_occurrence", "visit_occurrence_id", "person_id")
            and has("visit_occurrence", "visit_start_date", "visit_end_date")
        ):
            v = qualified(engine, schema, "visit_occurrence")
            checks["visit_same_person"] = (
                f"SELECT COUNT(*) FROM {t} e JOIN {v} v ON v.{q('visit_occurrence_id')} = e.{q('visit_occurrence_id')} "
                f"WHERE v.{q('person_id')} <> e.{q('person_id')} OR {d(start, 'e')} < {d('visit_start_date', 'v')} "
                f"OR {d(start, 'e')} > {d('visit_end_date', 'v')}"
            )
        if (
            rules.within_observation_period
            and shape.kind in ("visit", "event", "era")
            and has("observation_period", "person_id", "observation_period_start_date")
            and has("observation_period", "observation_period_end_date")
            and cfg.primary_key
        ):
            # a left join grouped by row: SQLite indexes a join automatically, not NOT EXISTS
            op = qualified(engine, schema, "observation_period")
            pk = q(cfg.primary_key)
            checks["within_observation_period"] = (
                f"SELECT COUNT(*) FROM (SELECT e.{pk} FROM {t} e LEFT JOIN {op} o "
                f"ON o.{q('person_id')} = e.{q('person_id')} "
                f"AND {d('observation_period_start_date', 'o')} <= {d(start, 'e')} "
                f"AND {d('observation_period_end_date', 'o')} >= {end_expr} "
                f"WHERE e.{q('person_id')} IS NOT NULL AND e.{q(start)} IS NOT NULL "
                f"GROUP BY e.{pk} HAVING COUNT(o.{q('person_id')}) = 0) s"
            )
        if (
            rules.within_lifetime
            and has("person", "person_id", "birth_datetime")
            and shape.kind != "death"
        ):
            p = qualified(engine, schema, "person")
            checks["within_lifetime:birth"] = (
                f"SELECT COUNT(*) FROM {t} e JOIN {p} p ON p.{q('person_id')} = e.{q('person_id')} "
                f"WHERE p.{q('birth_datetime')} IS NOT NULL AND {d(start, 'e')} < {d('birth_datetime', 'p')}"
            )
            if has("death", "person_id", "death_date"):
                dd = qualified(engine, schema, "death")
                checks["within_lifetime:death"] = (
                    f"SELECT COUNT(*) FROM {t} e JOIN {dd} x ON x.{q('person_id')} = e.{q('person_id')} "
                    f"WHERE {d(start, 'e')} > {d('death_date', 'x')}"
                )
    out = {}
    # a database error is the check failing, never a rule that holds: raised to the caller
    with engine.connect() as conn:
        for name, query in checks.items():
            out[name] = int(conn.execute(sa.text(query)).scalar_one() or 0)
    return out
