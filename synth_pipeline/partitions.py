"""One partition per OMOP table.

The tables come from the source, not from code: the CLI adds the source's tables before a run
and the new-extract sensor adds any table that appears, so a new table is a new partition
without a code change.
"""

import dagster as dg

OMOP_TABLES = "omop_table"

omop_table_partitions = dg.DynamicPartitionsDefinition(name=OMOP_TABLES)
