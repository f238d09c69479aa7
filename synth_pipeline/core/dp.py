"""Optional differential privacy for the released counts and histograms.

Off unless ``project.yaml`` sets ``disclosure.epsilon``. The budget is split equally over the
source's patient-level tables, and a table's share equally over the counts and histograms it
releases (the row count; per column its null/non-null split, common values with their "other"
share, year bins, months, hours, children per parent, end-before-start count). Each gets
two-sided geometric noise (or Laplace, rounded) scaled to its sensitivity, *before* the k and
rounding rules, which still apply; thresholding and binning on noisy counts is post-processing.

The unit of privacy is one row of the table: neighbouring extracts differ in one row. A person
with many rows in a table is protected at epsilon times their row count. What is released
without noise is listed in each table's ``dp.outside_guarantee``.

The noise must not change from run to run on the same data, or every run would invalidate the
approvals. It is drawn from a random stream keyed by HMAC-SHA256 of a secret key, the table, the
statistic and its exact counts: the same data give the same noisy statistics; changed data give
fresh noise (so two releases never differ by the exact change alone). The key is a random file
created on first use under the work folder (``SYNTH_WORK_DIR``), inside the trusted environment,
never written to a configuration or a bundle.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .disclosure import DisclosurePolicy
from .errors import ConfigError
from .schema import TableSchema, column_role, table_kind
from .statistics import PrivacyBudget

KEY_FILE = Path("secrets") / "dp-noise.key"

OUTSIDE_GUARANTEE = [
    "which columns are listed (the identifier test on distinct counts) and shapes of free text",
    "the presence of dirty-data findings (their counts are withheld under differential privacy)",
    "the table's columns, types and keys",
]


def key_path(work_dir: Path) -> Path:
    return Path(work_dir) / KEY_FILE


def load_or_create_key(work_dir: Path) -> bytes:
    """The secret noise key of this trusted environment, created (mode 0600) on first use."""
    path = key_path(work_dir)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
        try:
            os.link(tmp, path)  # atomic, and fails if another process created it first
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    text = path.read_text().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise ConfigError(
            "the differential privacy key is not 64 hexadecimal characters; delete it to make "
            "a new one (every noisy statistic then changes and needs a new review)",
            file=str(path),
        )
    return key


def patient_tables(table_names: Iterable[str]) -> list[str]:
    """The tables that share the budget: every table that is summarised (not vocabulary or
    metadata about the extract)."""
    return sorted(t for t in table_names if table_kind(t) not in ("vocabulary", "metadata"))


def statistics_plan(table: TableSchema, policy: DisclosurePolicy) -> dict[str, list[str]]:
    """Which counts and histograms of a table get noise, from its schema alone.

    The plan must not depend on the data, or the split of the budget would leak it: a column
    whose values turn out to be never listed still has its share set aside.
    """
    from .summarise import offset_source_column  # summarise imports this module

    names = [c.name for c in table.columns]
    plan: dict[str, list[str]] = {"rows": ["count"]}
    for col in table.columns:
        role = column_role(table, col.name)
        if role == "primary_key":
            continue
        stats = ["nulls"] if col.nullable else []
        lt = col.logical_type
        if role == "foreign_key":
            stats.append("fanout")
        elif lt in ("date", "datetime"):
            stats += ["years", "months"] + (["hours"] if lt == "datetime" else [])
            if offset_source_column(names, col.name):
                stats.append("negative")
        elif not (lt == "string" and policy.never_listed(col.name)):
            stats.append("values")
        if stats:
            plan[col.name] = stats
    return plan


@dataclass
class Noise:
    """Noise for the statistics of one table, stable for the same data."""

    key: bytes
    table: str
    budget: PrivacyBudget

    @property
    def mechanism(self) -> str:
        return self.budget.mechanism

    def counts(self, label: str, counts: Sequence[int], sensitivity: int = 1) -> list[int]:
        """Noisy versions of ``counts`` (one histogram), clipped at 0.

        ``sensitivity`` is how far one row can move the histogram in L1 (1 for a count or a
        histogram over the rows; 2 for children per parent, where a row moves its parent
        from one bin to the next).
        """
        if not counts:
            return []
        eps = self.budget.statistic_epsilon
        message = json.dumps([self.table, label, [int(c) for c in counts]]).encode()
        digest = hmac.new(self.key, message, hashlib.sha256).digest()
        rng = np.random.default_rng(int.from_bytes(digest, "big"))
        n = len(counts)
        if self.mechanism == "laplace":
            noise = np.rint(rng.laplace(0.0, sensitivity / eps, n)).astype(np.int64)
        else:
            # two-sided geometric (discrete Laplace): P(z) proportional to exp(-eps |z| / sensitivity)
            p = -math.expm1(-eps / sensitivity)
            noise = rng.geometric(p, n).astype(np.int64) - rng.geometric(p, n).astype(np.int64)
        return [max(0, int(c) + int(z)) for c, z in zip(counts, noise, strict=True)]

    def pairs(
        self, label: str, pairs: Sequence[tuple[object, int]], sensitivity: int = 1
    ) -> list[tuple[object, int]]:
        """Noisy counts of (value, count) pairs, in a stable order."""
        ordered = sorted(pairs, key=lambda p: (type(p[0]).__name__, str(p[0])))
        labelled = f"{label}:" + json.dumps([str(v) for v, _ in ordered])
        noisy = self.counts(labelled, [c for _, c in ordered], sensitivity)
        return [(v, c) for (v, _), c in zip(ordered, noisy, strict=True)]


def budget_for(
    table: TableSchema, policy: DisclosurePolicy, tables_sharing: int
) -> PrivacyBudget | None:
    """The table's budget account, or None when differential privacy is off."""
    if policy.epsilon is None:
        return None
    plan = statistics_plan(table, policy)
    statistics = sum(len(v) for v in plan.values())
    share = policy.epsilon / max(1, tables_sharing)
    each = share / statistics
    quantiles = (
        "withheld: no quantiles are released under differential privacy"
        if policy.dp_quantiles == "withheld"
        else "not noised: released under the k rules only (each the mean of k values, range "
        "top- and bottom-coded), outside the epsilon guarantee"
    )
    return PrivacyBudget(
        mechanism=policy.dp_mechanism,
        project_epsilon=policy.epsilon,
        tables_sharing=tables_sharing,
        table_epsilon=round(share, 8),
        statistics=statistics,
        statistic_epsilon=round(each, 10),
        spent={c: round(len(v) * each, 8) for c, v in plan.items()},
        quantiles=quantiles,
        outside_guarantee=(["quantiles"] if policy.dp_quantiles == "not_noised" else [])
        + OUTSIDE_GUARANTEE,
    )


def noise_for(
    table: TableSchema, policy: DisclosurePolicy, source_tables: Iterable[str], work_dir: Path
) -> Noise | None:
    """The noise of one table's statistics, or None when differential privacy is off."""
    budget = budget_for(table, policy, len(patient_tables(source_tables)))
    if budget is None:
        return None
    return Noise(load_or_create_key(work_dir), table.name, budget)
