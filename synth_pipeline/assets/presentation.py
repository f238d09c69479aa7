"""Turning core results into Dagster metadata a data engineer can read in the UI."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import dagster as dg
import polars as pl

GROUP = "synth_pipeline"

# Transient database errors (a dropped connection, a restarting server) are retried.
DATABASE_RETRY = dg.RetryPolicy(max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL)


def _cell(v: object) -> str:
    text = "" if v is None else str(v)
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> dg.MetadataValue:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return dg.MetadataValue.md("\n".join(lines))


def bullet_list(items: Iterable[str], empty: str = "none") -> dg.MetadataValue:
    items = list(items)
    return dg.MetadataValue.md("\n".join(f"- {_cell(i)}" for i in items) if items else empty)


def preview(df: pl.DataFrame, rows: int = 10) -> dg.MetadataValue:
    head = df.head(rows)
    return markdown_table(head.columns, head.rows())
