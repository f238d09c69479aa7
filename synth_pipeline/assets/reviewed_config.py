"""reviewed_config[t]: the per-table YAML people review, drafted or refreshed from the statistics.

A missing file is drafted from the statistics. An existing file is kept as the reviewer left
it while the source is unchanged; when the source's schema or statistics change, the
statistics in the file are replaced, the reviewer's choices kept, and the review reset to draft.
The blocking check ``config_approved`` then stops generation until someone approves again.
"""

import dagster as dg

from ..automation import on_upstream_change
from ..core.config import approval_problem
from ..core.propose import propose_table_config, refresh_table_config
from ..core.schema import TableSchema
from ..core.statistics import TableStats, fingerprint_of
from ..partitions import table_check, table_partitions
from ..projects import asset_key
from ..resources import SynthProject
from .presentation import bullet_list, markdown_table, retry_transient
from .step import each_table, table_step

APPROVED_CHECK = "config_approved"


def build_reviewed_config(name: str) -> dg.AssetsDefinition:
    """Project ``name``'s reviewed_config (``<name>/reviewed_config``)."""
    partitions = table_partitions(name)

    @table_step(
        name,
        "reviewed_config",
        reads=("schema_snapshot", "column_stats"),
        kinds={"yaml"},
        deps=[asset_key(name, "config_file")],
        automation_condition=on_upstream_change(),
        check_specs=[
            table_check(
                APPROVED_CHECK,
                asset_key(name, "reviewed_config"),
                partitions,
                blocking=True,
                description="The table's YAML is approved, unedited since approval, and approved "
                "for the current source schema and statistics.",
            )
        ],
        description="resources/configuration-files/<project>/<table>.yaml: the statistics the "
        "generators need, the generator of each column, the rows to generate and the review "
        "block.",
    )
    @retry_transient
    def reviewed_config(
        context: dg.AssetExecutionContext,
        schema_snapshot: dict,
        column_stats: dict,
        project: SynthProject,
    ):
        project = project.for_project(name)
        yield from each_table(
            context,
            lambda table, schema_snapshot, column_stats: _reviewed_config(
                context, schema_snapshot, column_stats, project
            ),
            {"schema_snapshot": schema_snapshot, "column_stats": column_stats},
        )

    return reviewed_config


def _reviewed_config(
    context: dg.AssetExecutionContext,
    schema_snapshot: dict,
    column_stats: dict,
    project: SynthProject,
):
    table = TableSchema.model_validate(schema_snapshot)
    stats = TableStats.model_validate(column_stats["stats"])
    current = column_stats["source_fingerprint"]
    files = project.files()
    path = files.table_file(table.name)
    proposed = propose_table_config(table, stats)
    if not path.exists():
        proposed.review.comment = "a table new in the source: drafted, not yet reviewed"
        files.save_table(proposed)
        action = "drafted from the statistics: needs review"
    else:
        existing = files.load_table(table.name)
        if existing.source.fingerprint != current:
            files.save_table(refresh_table_config(existing, proposed))
            action = (
                "source changed: statistics refreshed, reviewer's choices kept, needs a new review"
            )
        else:
            action = "unchanged"
    cfg = files.load_table(table.name)
    problem = approval_problem(cfg, current)
    context.log.info(f"{path}: {action}")
    value = {
        "config": cfg.model_dump(mode="json", by_alias=True),
        "source_fingerprint": current,
        "path": str(path),
    }
    version = fingerprint_of(value["config"])
    yield dg.Output(
        value,
        data_version=dg.DataVersion(version[7:23]),
        metadata={
            "path": dg.MetadataValue.path(str(path)),
            "action": action,
            "kind": cfg.kind,
            "rows": cfg.rows,
            "review_status": cfg.review.status,
            "reviewer": cfg.review.reviewer or "",
            "approved_at": cfg.review.approved_at or "",
            "config_fingerprint": cfg.fingerprint(),
            "generators": markdown_table(
                ["column", "type", "generator", "why"],
                [[n, c.type, c.generator or "", c.why] for n, c in cfg.columns.items()],
            ),
            "findings": bullet_list(cfg.source.findings),
        },
    )
    yield dg.AssetCheckResult(
        check_name=APPROVED_CHECK,
        passed=problem is None,
        metadata={"reason": problem or "approved", "reviewer": cfg.review.reviewer or ""},
        description=f"table {table.name}: {problem} ({path})"
        if problem
        else f"approved by {cfg.review.reviewer} on {cfg.review.approved_at}",
    )
