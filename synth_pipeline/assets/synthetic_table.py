"""synthetic_table[t]: the table created and filled in the destination from the approved config alone.

The rows come from the config alone: the source is read only to copy public vocabulary tables
as they are, and to measure the written rows against it for the privacy report (inside the
trusted environment). The code refuses an unapproved, stale or hand-edited config itself,
whatever the orchestration does.
"""

import dagster as dg

from .. import environment
from ..automation import behind_gate
from ..core.config import TableConfig
from ..core.database import qualified, quote
from ..core.generation import (
    Generation,
    WrittenTable,
    columns_of,
    current_approved_config,
    measure_written_table,
    parents_not_written,
    write_table,
)
from ..core.table_checks import (
    FIDELITY_CHECK,
    REFERENCES_CHECK,
    ROW_COUNT_CHECK,
    RULES_CHECK,
    CheckOutcome,
    register_outcomes,
    table_outcomes,
)
from ..core.table_order import order_parents_first
from ..core.transfer import stream_select
from ..core.write import record_checks
from ..dask_resource import DaskCluster
from ..partitions import table_check, table_partitions
from ..projects import asset_key, write_pool
from ..resources import DestinationDatabase, SourceDatabase, SynthProject
from .fidelity import against_source
from .presentation import (
    Progress,
    bullet_list,
    markdown_table,
    preview,
    retry_transient,
)
from .privacy import assess, privacy_check_specs, privacy_metadata
from .step import each_table, table_step

BACKFILL_TAG = "dagster/backfill"  # Dagster tags every run of a backfill with it
PARENT_POLL_SECONDS = 5


def _check_specs(key: dg.AssetKey, partitions) -> list[dg.AssetCheckSpec]:
    return [
        table_check(
            REFERENCES_CHECK,
            key,
            partitions,
            blocking=True,
            description="Every foreign key of the table points to a row of its synthetic parent.",
        ),
        table_check(
            ROW_COUNT_CHECK,
            key,
            partitions,
            blocking=True,
            description="The destination holds exactly the rows the approved config asks for "
            "(times the scale).",
        ),
        table_check(
            RULES_CHECK,
            key,
            partitions,
            blocking=True,
            description="No row breaks an enabled consistency rule (end after start, inside the "
            "person's visit, observation period and lifetime, datetimes on their dates, birth "
            "parts).",
        ),
        table_check(
            FIDELITY_CHECK,
            key,
            partitions,
            blocking=False,
            description="The median column score (KSComplement/TVComplement against the approved "
            "statistics) and the cardinality shape of each foreign key reach project.yaml's "
            "thresholds.",
        ),
        *privacy_check_specs(key, partitions),
    ]


def build_synthetic_table(name: str) -> dg.AssetsDefinition:
    """Project ``name``'s synthetic_table (``<name>/synthetic_table``)."""
    partitions = table_partitions(name)

    @table_step(
        name,
        "synthetic_table",
        reads=("reviewed_config", "column_stats"),
        pool=write_pool(name),  # one writer of the project's destination at a time
        kinds={"sql"},
        automation_condition=behind_gate(),
        check_specs=_check_specs(asset_key(name, "synthetic_table"), partitions),
        description="The synthetic table in the destination database, generated column by "
        "column from the approved config, written in bulk (COPY on PostgreSQL) and swapped in "
        "atomically.",
    )
    @retry_transient
    def synthetic_table(
        context: dg.AssetExecutionContext,
        reviewed_config: dict,
        column_stats: dict,
        destination: DestinationDatabase,
        source: SourceDatabase,
        project: SynthProject,
        dask: DaskCluster,
    ):
        project = project.for_project(name)
        yield from each_table(
            context,
            lambda table, reviewed_config, column_stats: _synthetic_table(
                context, table, reviewed_config, column_stats, destination, source, project, dask
            ),
            {"reviewed_config": reviewed_config, "column_stats": column_stats},
            order=order_parents_first,  # a run of several tables writes parents first
        )

    return synthetic_table


def _synthetic_table(
    context: dg.AssetExecutionContext,
    table: str,
    reviewed_config: dict,
    column_stats: dict,
    destination: DestinationDatabase,
    source: SourceDatabase,
    project: SynthProject,
    dask: DaskCluster | None = None,
):
    files = project.files()
    cfg = current_approved_config(
        files,
        table,
        TableConfig.model_validate(reviewed_config["config"]),
        column_stats["source_fingerprint"],
    )
    engine = destination.engine(project.project)
    schema = destination.db_schema
    _wait_for_parents(context, files, cfg, engine, schema, project)
    written = _write(context, files, cfg, source, engine, schema, project, dask)
    measured = measure_written_table(files, cfg, written, engine, schema)
    metadata = _metadata(cfg, written, measured, source, destination, project)
    # measured against the source, inside the trusted environment; csv_bundle reads the verdict
    privacy = assess(cfg, source, destination, project)
    metadata.update(privacy_metadata(privacy))
    if written.rows and cfg.kind != "skip":
        metadata.update(_preview(engine, schema, cfg))
    yield dg.Output(
        {
            "table": table,
            "kind": cfg.kind,
            "rows": written.rows,
            "config_fingerprint": cfg.fingerprint(),
            "parent_rows": written.parent_rows,
        },
        metadata=metadata,
    )
    outcomes = table_outcomes(written, measured, project.project_config().fidelity, privacy)
    if written.generated:
        # the register keeps this generation's outcomes: csv_bundle publishes only a table whose
        # latest generation passed every blocking check, whichever run wrote it
        record_checks(engine, schema, table, cfg.fingerprint(), register_outcomes(outcomes))
    yield from (_asset_check(o) for o in outcomes)


def _generation(project: SynthProject) -> Generation:
    return Generation(
        project.run_seed(),
        project.run_scale(),
        project.run_chunk_rows(),
        project.copy_vocabulary,
    )


def _wait_for_parents(context, files, cfg, engine, schema, project) -> None:
    """In a backfill, whose runs start in any order, a table whose parents are not written yet
    (as their approved configs ask) waits for them: the step is retried every few seconds for
    up to SYNTH_PARENT_WAIT_SECONDS, freeing the write slot meanwhile, then fails naming them.
    A run of several tables writes parents first, so a parent missing there is not coming: the
    table fails at once. The CLI writes parents first, so its runs never wait."""
    if BACKFILL_TAG not in context.run.tags:
        return
    missing = parents_not_written(files, cfg, engine, schema, _generation(project))
    if not missing:
        return
    budget = environment.parent_wait_seconds() if len(context.partition_keys) == 1 else 0
    pause = max(1, min(PARENT_POLL_SECONDS, budget))
    attempts = budget // pause
    parents = ", ".join(missing)
    if context.retry_number < attempts:
        context.log.info(
            f"{cfg.table}: waiting for its parent(s) {parents} to be written first "
            f"(try {context.retry_number + 1} of {attempts}, every {pause} s)"
        )
        raise dg.RetryRequested(max_retries=attempts, seconds_to_wait=pause)
    within = f"within {budget} s (SYNTH_PARENT_WAIT_SECONDS)" if budget else "before it in this run"
    raise dg.Failure(
        description=f"{cfg.table} not written: its parent(s) {parents} were not written with "
        f"their approved configs {within}; materialise them first, or include them in the "
        "backfill"
    )


def _write(context, files, cfg, source, engine, schema, project, dask) -> WrittenTable:
    """The table written (core/generation.py), its progress and notes in the run's log."""
    table = cfg.table
    written = write_table(
        files,
        cfg,
        source=source.engine(),
        source_schema=source.db_schema,
        destination=engine,
        schema=schema,
        generation=_generation(project),
        progress_for=lambda expected: Progress(context, table, expected),
        # issue 18: a table of distributed_min_rows or more is generated on the Dask cluster
        # when one is configured (dask_resource.py, core/distributed.py); else in-process
        chunks_for=lambda run, chunk_rows: (dask or DaskCluster()).table_chunks(
            run, files, chunk_rows, log=context.log.info
        ),
    )
    for note in written.notes:
        context.log.info(note)
    for w in written.warnings:
        context.log.warning(f"{table}: {w}")
    return written


def _preview(engine, schema, cfg) -> dict:
    """The written table's first ten rows, as the UI shows them."""
    cols = columns_of(cfg)
    names = ", ".join(quote(engine, c.name) for c in cols)
    sql = f"SELECT {names} FROM {qualified(engine, schema, cfg.table)} LIMIT 10"
    first = next(stream_select(engine, sql, cols, 10), None)
    return {"preview": preview(first)} if first is not None else {}


def _metadata(cfg, written, measured, source, destination, project) -> dict:
    """What the UI shows of the written table: rows, rate, warnings, fidelity, references."""
    seconds = written.seconds
    metadata = {
        "dagster/row_count": written.rows,
        "kind": cfg.kind,
        "destination": destination.describe(project.project),
        "config_fingerprint": cfg.fingerprint(),
        "seed": project.run_seed(),
        "scale": project.run_scale(),
        "seconds": round(seconds, 3),
        "rows_per_second": round(written.rows / seconds) if seconds > 0 else 0,
        "warnings": bullet_list(written.warnings),
    }
    if written.vocabulary_rule is not None:
        metadata["vocabulary_rows"] = written.vocabulary_rule  # which rows were copied, and why
    fidelity = measured.fidelity
    if fidelity is None:
        return metadata
    metadata["median_column_score"] = (
        fidelity.median_score if fidelity.median_score is not None else "n/a"
    )
    metadata["fidelity"] = markdown_table(
        ["column", "generator", "metric", "score", "null similarity", "boundary", "category"],
        [
            [
                c.column,
                c.generator,
                c.metric,
                c.score,
                c.null_similarity,
                c.boundary_adherence,
                c.category_adherence,
            ]
            for c in fidelity.columns
        ],
    )
    metadata["references"] = markdown_table(
        ["column", "parent", "ReferentialIntegrity", "CardinalityShapeSimilarity"],
        [
            [r.column, r.parent, r.referential_integrity, r.cardinality_shape_similarity]
            for r in fidelity.references
        ],
    )
    metadata["rule_violations"] = dg.MetadataValue.json(fidelity.rule_violations)
    # against the source too, inside the trusted environment (kept under the work dir)
    metadata.update(against_source(cfg, fidelity, source, destination, project))
    return metadata


def _asset_check(outcome: CheckOutcome) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=outcome.name,
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity.WARN
        if outcome.warning_only
        else dg.AssetCheckSeverity.ERROR,
        metadata=outcome.metadata,
        description=outcome.description,
    )
