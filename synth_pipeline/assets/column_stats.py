"""column_stats[t]: broad statistics per column, by aggregate SQL in the source, after disclosure control."""

import dagster as dg

from ..core.schema import TableSchema
from ..core.table_statistics import released_statistics
from ..environment import work_dir
from ..partitions import table_check, table_partitions
from ..projects import asset_key
from ..resources import SourceDatabase, SynthProject
from .presentation import bullet_list, markdown_table, retry_transient
from .step import each_table, table_step

DISCLOSURE_CHECK = "disclosure_rules_hold"


def _describe(cs) -> str:
    parts = []
    if cs.values:
        parts.append(f"{len(cs.values)} values")
    if cs.quantiles:
        parts.append(f"quantiles {cs.quantiles[0].value}..{cs.quantiles[-1].value}")
    if cs.years:
        parts.append(f"years {cs.years[0].start}..{cs.years[-1].end}")
    if cs.fanout:
        parts.append(f"{cs.fanout[0].start}..{cs.fanout[-1].end} per parent")
    if cs.pattern:
        parts.append(f"{cs.pattern} strings")
    if cs.offset:
        parts.append(f"offset from {cs.offset.from_column}")
    return ", ".join(parts)


def build_column_stats(name: str) -> dg.AssetsDefinition:
    """Project ``name``'s column_stats (``<name>/column_stats``)."""
    partitions = table_partitions(name)

    @table_step(
        name,
        "column_stats",
        reads=("schema_snapshot",),
        kinds={"sql"},
        check_specs=[
            table_check(
                DISCLOSURE_CHECK,
                asset_key(name, "column_stats"),
                partitions,
                blocking=True,
                description="Every count in the released statistics is 0, or at least k and "
                "rounded as project.yaml's disclosure policy says, checked again after summarising.",
            )
        ],
        description="Null fraction, distinct count, common values, quantiles, date bins, string "
        "length profile and children per parent of each column, computed by aggregate SQL in "
        "the source and released only through disclosure control.",
    )
    @retry_transient
    def column_stats(
        context: dg.AssetExecutionContext,
        schema_snapshot: dict,
        source: SourceDatabase,
        project: SynthProject,
    ):
        project = project.for_project(name)
        yield from each_table(
            context,
            lambda table, schema_snapshot: _column_stats(context, schema_snapshot, source, project),
            {"schema_snapshot": schema_snapshot},
        )

    return column_stats


def _metadata(stats, fingerprint: str, policy) -> dict:
    """What the UI shows of the released statistics: counts, k, epsilon, one row per column."""
    return {
        "released_row_count": stats.row_count
        if stats.row_count is not None
        else f"below k={policy.k}",
        "source_fingerprint": fingerprint,
        "min_cell_count_k": policy.k,
        "dp_epsilon_spent": stats.dp.table_epsilon if stats.dp else "off",
        "statistics": markdown_table(
            ["column", "non-null", "null fraction", "distinct", "released", "rules applied"],
            [
                [
                    name,
                    cs.non_null,
                    cs.null_fraction,
                    cs.distinct,
                    _describe(cs),
                    len(stats.disclosure.get(name, [])),
                ]
                for name, cs in stats.columns.items()
            ],
        ),
        "dirty_data_found": bullet_list(stats.findings),
    }


def _column_stats(
    context: dg.AssetExecutionContext,
    schema_snapshot: dict,
    source: SourceDatabase,
    project: SynthProject,
):
    table = TableSchema.model_validate(schema_snapshot)
    policy = project.project_config().disclosure
    released = released_statistics(
        source.engine(), source.db_schema, table, project.project_config(), work_dir()
    )
    stats, fingerprint, problems = released.stats, released.fingerprint, released.problems
    for finding in stats.findings:
        context.log.warning(f"{table.name}: {finding}")
    yield dg.Output(
        {"stats": released.as_json(), "source_fingerprint": fingerprint},
        data_version=dg.DataVersion(fingerprint[7:23]),
        metadata=_metadata(stats, fingerprint, policy),
    )
    yield dg.AssetCheckResult(
        check_name=DISCLOSURE_CHECK,
        passed=not problems,
        metadata={"k": policy.k, "rounding": policy.rounding, "problems": bullet_list(problems)},
        description=f"every released count is 0 or at least k={policy.k}, rounded to {policy.rounding}"
        if not problems
        else f"{len(problems)} released count(s) break the rules: {'; '.join(problems[:5])}",
    )
