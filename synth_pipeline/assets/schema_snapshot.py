"""schema_snapshot[t]: the table's columns, types, keys and row count, read from the source."""

import dagster as dg

from ..core.config import ConfigError
from ..core.propose import schema_drift
from ..core.schema import read_table_schema
from ..core.statistics import fingerprint_of
from ..partitions import table_check, table_partitions
from ..projects import asset_key
from ..resources import SourceDatabase, SynthProject
from .presentation import bullet_list, markdown_table, retry_transient
from .step import each_table, table_step

DRIFT_CHECK = "schema_matches_config"


def build_schema_snapshot(name: str) -> dg.AssetsDefinition:
    """Project ``name``'s schema_snapshot (``<name>/schema_snapshot``)."""
    partitions = table_partitions(name)

    @table_step(
        name,
        "schema_snapshot",
        kinds={"sql"},
        check_specs=[
            table_check(
                DRIFT_CHECK,
                asset_key(name, "schema_snapshot"),
                partitions,
                blocking=False,
                description="The source table has the columns and types its configuration file "
                "was written for. A drift does not stop the refresh: reviewed_config redrafts the "
                "file and the approval gate holds generation until a reviewer approves the change.",
            )
        ],
        description="Tables, columns, SQL types, nullability, keys (declared or from the OMOP "
        "CDM specification) and row count of one source table, read through a read-only "
        "connection.",
    )
    @retry_transient
    def schema_snapshot(
        context: dg.AssetExecutionContext, source: SourceDatabase, project: SynthProject
    ):
        project = project.for_project(name)
        yield from each_table(
            context,
            lambda table: _schema_snapshot(context, table, source, project),
            {},
        )

    return schema_snapshot


def _schema_snapshot(
    context: dg.AssetExecutionContext, table: str, source: SourceDatabase, project: SynthProject
):
    snapshot = read_table_schema(source.engine(), source.db_schema, table)
    data = snapshot.model_dump(mode="json")
    context.log.info(
        f"{table}: {len(snapshot.columns)} columns, {snapshot.row_count} rows in {source.describe()}"
    )
    files = project.files()
    drift: list[str] = []
    note = ""
    if files.has_table(table):
        try:
            drift = schema_drift(snapshot, files.load_table(table))
        except ConfigError as exc:
            drift = [f"the configuration file cannot be read: {exc}"]
    else:
        note = "no configuration file yet: reviewed_config drafts one"
    yield dg.Output(
        data,
        data_version=dg.DataVersion(fingerprint_of(data)[7:23]),
        metadata={
            "dagster/row_count": snapshot.row_count,
            "kind": snapshot.kind,
            "source": source.describe(),
            "primary_key": f"{', '.join(snapshot.primary_key) or 'none'} ({snapshot.primary_key_source})",
            "columns": markdown_table(
                ["column", "SQL type", "type", "nullable", "max length"],
                [
                    [c.name, c.sql_type, c.logical_type, c.nullable, c.max_length or ""]
                    for c in snapshot.columns
                ],
            ),
            "foreign_keys": markdown_table(
                ["column", "parent", "from"],
                [
                    [f.column, f"{f.parent_table}.{f.parent_column}", f.source]
                    for f in snapshot.foreign_keys
                ],
            ),
        },
    )
    yield dg.AssetCheckResult(
        check_name=DRIFT_CHECK,
        passed=not drift,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"changes": bullet_list(drift), "file": str(files.table_file(table))},
        description=note
        or ("; ".join(drift) if drift else "columns and types as in the configuration file"),
    )
