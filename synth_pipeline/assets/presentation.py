"""Turning core results into Dagster metadata a data engineer can read in the UI."""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Iterable, Sequence

import dagster as dg
import polars as pl

from ..core.database import is_transient_error, redact_text

MAX_RETRIES = 3


def error_line(exc: BaseException) -> str:
    """An error's first line (the driver's own message when SQLAlchemy wraps one), any URL
    password hidden; the error's class when it says nothing."""
    detail = redact_text(str(getattr(exc, "orig", None) or exc)).strip()
    return detail.splitlines()[0] if detail else type(exc).__name__


def retry_transient(fn):
    """Wrap an asset so transient database errors re-run the step (up to 3 times, waiting
    1, 2, 4 seconds) while every other error fails it at once. The wrapped function yields."""

    @functools.wraps(fn)
    def wrapper(context, *args, **kwargs):
        try:
            result = fn(context, *args, **kwargs)
            if inspect.isgenerator(result):
                yield from result
            else:
                yield result
        except Exception as exc:
            if not is_transient_error(exc):
                raise
            context.log.warning(f"transient database error, retrying: {error_line(exc)[:300]}")
            raise dg.RetryRequested(
                max_retries=MAX_RETRIES, seconds_to_wait=2**context.retry_number
            ) from exc

    return wrapper


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


class Progress:
    """Logs rows written, rate and time left, at most every few seconds."""

    def __init__(
        self, context: dg.AssetExecutionContext, table: str, expected: int, every: float = 5.0
    ):
        self.context, self.table, self.expected, self.every = context, table, expected, every
        self.start = self.last = time.monotonic()

    def __call__(self, rows: int) -> None:
        now = time.monotonic()
        if now - self.last < self.every and rows < self.expected:
            return
        self.last = now
        rate = rows / max(now - self.start, 1e-9)
        left = (self.expected - rows) / rate if rate and self.expected > rows else 0
        self.context.log.info(
            f"{self.table}: {rows:,}/{self.expected:,} rows, {rate:,.0f} rows/s, about {left:,.0f} s left"
        )
