"""Database scalars as Python values, and what a column's declared type says of its values."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from ..schema import ColumnSchema


def py_value(value: Any) -> Any:
    """Database scalars as plain JSON-able Python values."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def text_stored(col: ColumnSchema) -> bool:
    t = col.sql_type.upper()
    return not any(x in t for x in ("DATE", "TIME"))


def numeric_type(sql_type: str) -> bool:
    t = sql_type.upper()
    return any(x in t for x in ("INT", "NUM", "REAL", "DOUBLE", "FLOAT", "DECIMAL"))


def as_number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None  # a non-numeric value in a numeric column (dirty data) joins no window
