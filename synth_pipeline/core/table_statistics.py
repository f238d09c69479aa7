"""One source table's released statistics, whoever asks (the column_stats asset, a benchmark):
summarised through disclosure control (and differential privacy when the project sets
disclosure.epsilon), fingerprinted, and every released count checked again."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from .config import ProjectConfig
from .disclosure_audit import audit_released_counts
from .dp import noise_for
from .propose import source_fingerprint
from .schema import TableSchema, list_tables
from .statistics import TableStats
from .summarise import summarise_table


@dataclass
class ReleasedStatistics:
    stats: TableStats
    fingerprint: str  # of the table's shape and released statistics
    problems: list[str]  # released counts that break the rules (none expected)

    def as_json(self) -> dict:
        return self.stats.model_dump(mode="json", by_alias=True)


def released_statistics(
    engine: sa.Engine,
    schema: str | None,
    table: TableSchema,
    project: ProjectConfig,
    work_dir: Path,
) -> ReleasedStatistics:
    """The released statistics of ``table``; the noise key of differential privacy stays in
    ``work_dir``, inside the trusted environment."""
    policy = project.disclosure
    noise = (
        noise_for(table, policy, list_tables(engine, schema), work_dir)
        if policy.epsilon is not None
        else None
    )
    stats = summarise_table(
        engine,
        schema,
        table,
        policy,
        project.conditional.get(table.name, {}),
        noise,
        project.statistics_sample_rows,
    )
    released = ReleasedStatistics(stats, source_fingerprint(table, stats), [])
    # vocabulary tables are public reference data, described as they are
    if stats.kind != "vocabulary":
        released.problems = audit_released_counts(released.as_json(), policy)
    return released
