"""schema_snapshot[t]: the table's columns, types, keys and row count, read from the source."""

import dagster as dg

from ..core.schema import read_table_schema
from ..core.statistics import fingerprint_of
from ..partitions import omop_table_partitions
from ..resources import SourceDatabase
from .presentation import GROUP, markdown_table, retry_transient


@dg.asset(
    partitions_def=omop_table_partitions,
    io_manager_key="state_io_manager",
    group_name=GROUP,
    kinds={"sql"},
    description="Tables, columns, SQL types, nullability, keys (declared or from the OMOP CDM "
    "specification) and row count of one source table, read through a read-only connection.",
)
@retry_transient
def schema_snapshot(context: dg.AssetExecutionContext, source: SourceDatabase) -> dg.Output:
    table = context.partition_key
    snapshot = read_table_schema(source.engine(), source.db_schema, table)
    data = snapshot.model_dump(mode="json")
    context.log.info(
        f"{table}: {len(snapshot.columns)} columns, {snapshot.row_count} rows in {source.describe()}"
    )
    return dg.Output(
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
