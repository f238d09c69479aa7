"""The generator catalogue: one entry per ``generator:`` name a config may use."""

from __future__ import annotations

from .base import BLOCK_ROWS, POLARS_TYPES, ColumnContext, Generator
from .basic import AlwaysNull, Constant, ForeignKey, PrimaryKey
from .distributions import ConditionalChoice, ConditionalQuantiles, NumericQuantiles, WeightedChoice
from .references import PolymorphicReference, PrecedingRow
from .temporal import DateBins, DateOffset, DatePart, DatetimeBins, DatetimeFromDate
from .text import StringPattern

CATALOGUE: dict[str, type[Generator]] = {
    g.name: g
    for g in (
        PrimaryKey,
        ForeignKey,
        PrecedingRow,
        PolymorphicReference,
        WeightedChoice,
        NumericQuantiles,
        ConditionalQuantiles,
        ConditionalChoice,
        DateBins,
        DatetimeBins,
        DatetimeFromDate,
        DateOffset,
        DatePart,
        StringPattern,
        Constant,
        AlwaysNull,
    )
}

__all__ = ["BLOCK_ROWS", "CATALOGUE", "POLARS_TYPES", "ColumnContext", "Generator"]
