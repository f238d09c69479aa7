"""What the summaries of one table's columns share: the connection, the passes' raw results, and
the findings they add to. Raw: nothing here leaves :mod:`.table` as it is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection

from .. import disclosure as dc
from ..dp import Noise
from ..schema import ColumnSchema, TableSchema
from ..sqlexpr import SqlExpressions
from ..statistics import ColumnStats
from .passes import Frequencies
from .plan import Plan
from .release import about


@dataclass
class TableRead:
    """One table read by the passes: the first scan, the plan and the grouped pass's results."""

    conn: Connection
    sql: SqlExpressions
    schema: str | None
    tbl: str  # the table as a FROM clause
    table: TableSchema
    policy: dc.DisclosurePolicy
    noise: Noise | None
    scan: dict[str, Any]
    plan: Plan
    exact: dict[str, Frequencies]
    findings: list[str]

    @property
    def total(self) -> int:
        return int(self.scan["__rows"])

    def about(self, n: int) -> str:
        return about(n, self.policy, self.noise)


@dataclass
class ColumnRead:
    """One column of it: what the passes counted, and the statistics and notes being released."""

    col: ColumnSchema
    role: str
    non_null: int
    distinct: int | None  # None: not known exactly (a sample), or no frequencies
    values: Frequencies | None  # the grouped pass's frequencies of its values
    cs: ColumnStats
    notes: list[str]
