"""The released statistics checked again after summarising: every count is 0, or at least k and
rounded as the policy says (the disclosure_rules_hold check).
"""

from __future__ import annotations

from .disclosure import (
    DisclosurePolicy,
)

# Fields of the released statistics that hold counts of source rows (or parents, or values).
COUNT_FIELDS = frozenset(
    {"row_count", "count", "non_null", "distinct", "zero_as_null", "other_count", "dangling"}
)
COUNT_LISTS = frozenset({"months", "hours"})


def audit_released_counts(released: object, policy: DisclosurePolicy, where: str = "") -> list[str]:
    """Every count in released statistics (as JSON-able data), checked again after the fact.

    A released count is 0, or at least k and a multiple of the rounding (or k itself, which
    rounding never goes below). Returns one line per count that breaks the rule, naming where
    it is; an empty list means the statistics may leave.
    """
    problems: list[str] = []

    def fine(n: int) -> bool:
        return n == 0 or (n >= policy.k and (n % policy.rounding == 0 or n == policy.k))

    def walk(node: object, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                here = f"{path}.{key}" if path else str(key)
                if key in COUNT_FIELDS and isinstance(value, int) and not isinstance(value, bool):
                    if not fine(value):
                        problems.append(f"{here} = {value}")
                elif key in COUNT_LISTS and isinstance(value, list):
                    bad = [v for v in value if isinstance(v, int) and not fine(v)]
                    if bad:
                        problems.append(f"{here} holds {len(bad)} count(s) below k or unrounded")
                else:
                    walk(value, here)
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}[{i}]")

    walk(released, where)
    return problems
