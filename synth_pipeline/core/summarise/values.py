"""Released statistics of a column of values (numbers, strings, codes): listed frequencies,
quantiles, string lengths and shapes."""

from __future__ import annotations

import re
from collections import Counter

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .. import disclosure as dc
from .. import dp
from ..database import quote
from ..statistics import (
    ValueCount,
    fits_type,
)
from .context import ColumnRead, TableRead
from .release import noisy_quantiles, released_quantiles


def summarise_values(t: TableRead, c: ColumnRead) -> None:
    """A column of values: its listed frequencies (or that it is never listed), the quantiles of
    a number, the lengths and shape of a string."""
    lt, role = c.col.logical_type, c.role
    if _listable(c, t.policy):
        _release_listing(t, c)
    else:
        c.cs.listed = False
        c.cs.distinct = None if lt == "string" else c.cs.distinct
        if lt == "string":
            c.notes.append(
                "free text or identifier: values never listed, only a length and shape profile"
            )
    if lt in ("integer", "float") and role != "code":
        _number_quantiles(t, c)
    if lt == "string":
        _string_profile(t, c)


def _listable(c: ColumnRead, policy: dc.DisclosurePolicy) -> bool:
    """Whether a column's values may be listed: codes always; strings unless identifier-like or
    too many; numbers while few enough distinct values to list."""
    lt, distinct, non_null = c.col.logical_type, c.distinct, c.non_null
    high = distinct is None  # more distinct values in a sample than may ever be listed
    never_list = lt == "string" and (
        high
        or policy.never_listed(c.col.name)
        or distinct > policy.max_distinct_for_listing
        or (non_null and distinct / non_null > policy.identifier_share and distinct >= policy.k)
    )
    listable = c.role == "code" or (
        not never_list
        and (lt != "float" or (not high and distinct <= policy.max_distinct_for_listing))
    )
    if (
        lt in ("integer", "float")
        and c.role != "code"
        and (high or distinct > policy.max_distinct_for_listing)
    ):
        listable = False
    return listable


def _release_listing(t: TableRead, c: ColumnRead) -> None:
    col, cs, policy, values = c.col, c.cs, t.policy, c.values
    assert values is not None and values.rows is not None, col.name
    # a value of another type (text in a number column of a dirty extract) is never listed:
    # its rows count as other values
    pairs = [(v, n) for v, n in values.rows if fits_type(v, col.logical_type)]
    if t.noise is None:
        released = dc.fold_frequencies(pairs, c.non_null, policy)
    else:
        domain = None if c.role == "code" else dp.value_domain(col.name, col.logical_type, policy)
        released = t.noise.release_values(
            f"{col.name}:values", pairs, domain, cs.non_null or 0, policy
        )
        if domain is not None:
            c.notes.append(
                f"counted over every value of its declared domain ({domain[0]}..{domain[-1]}), "
                "noise on each"
            )
    cs.values = [ValueCount(value=v, count=n) for v, n in released.values]
    cs.other_count = released.other_count
    c.notes.extend(released.notes)


def _number_quantiles(t: TableRead, c: ColumnRead) -> None:
    """A number's quantiles: k-value window means over its values or, for a high-cardinality
    column, over its ranks from step 4 (in a sample above ``sample_rows``)."""
    col, policy, values = c.col, t.policy, c.values
    if t.noise is not None:
        dp_values = t.exact.get(f"dpq:{col.name}")
        c.cs.quantiles = noisy_quantiles(t.noise, dp_values, col, "values", policy, c.notes)
        return
    ranked = t.plan.ranked.get(f"v:{col.name}")
    sampled = t.plan.sampled and ranked is not None
    source = ranked if ranked is not None else values
    n = source.total if source is not None else 0
    grid = dc.quantile_grid(n, policy)
    c.cs.quantiles = (
        released_quantiles(
            n, grid, policy, col.logical_type == "integer", source.values_at, values and values.rows
        )
        if source is not None
        else []
    )
    if c.cs.quantiles:
        c.notes.append(
            f"quantiles p{grid[0] * 100:g}..p{grid[-1] * 100:g} only, each the mean of "
            f"k={policy.k} neighbouring values (range top- and bottom-coded)"
            + (" in a sample" if sampled else "")
        )
    else:
        c.notes.append(f"fewer than {2 * policy.k} values: no quantiles released")


def _string_profile(t: TableRead, c: ColumnRead) -> None:
    """A string's lengths as quantiles and, when its values are not listed, its commonest shape."""
    col, policy = c.col, t.policy
    if t.noise is not None and c.role != "code":
        dp_lengths = t.exact.get(f"dplen:{col.name}")
        c.cs.length = noisy_quantiles(t.noise, dp_lengths, col, "length", policy, [])
        return
    lengths = t.exact.get(f"len:{col.name}")
    grid = dc.quantile_grid(c.non_null, policy) if t.noise is None else []
    c.cs.length = (
        released_quantiles(c.non_null, grid, policy, True, lengths.values_at)
        if lengths is not None
        else []
    )
    if not c.cs.values:
        c.cs.pattern = _string_shape(
            t.conn, t.tbl, quote(t.conn.engine, col.name), policy.pattern_sample_size
        )


_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


_DIGITS = re.compile(r"^[0-9]+$")


_CODE = re.compile(r"^[A-Za-z0-9._\-/]+$")


def shape_of(value: str) -> str:
    if _UUID.match(value):
        return "uuid"
    if _DIGITS.match(value):
        return "digits"
    if _CODE.match(value):
        return "code"
    return "text"


def _string_shape(conn: Connection, tbl: str, q: str, sample: int) -> str:
    """The commonest shape among a sample of values; only the shape's name is kept."""
    rows = conn.execute(
        sa.text(f"SELECT {q} FROM {tbl} WHERE {q} IS NOT NULL LIMIT {int(sample)}")
    ).all()
    shapes = Counter(shape_of(str(r[0])) for r in rows)
    return shapes.most_common(1)[0][0] if shapes else "text"
