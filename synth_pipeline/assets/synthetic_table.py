"""synthetic_table[t]: the table created and filled in the destination from the approved config alone.

The rows come from the config alone: the source is read only to copy public vocabulary tables
as they are, and to measure the written rows against it for the privacy report (inside the
trusted environment). The code refuses an unapproved, stale or hand-edited config itself,
whatever the orchestration does.
"""

import time

import dagster as dg

from ..automation import behind_gate
from ..core import GENERATOR_VERSION, omop
from ..core.config import ConfigError, TableConfig, require_approved
from ..core.database import qualified, quote, redact_text
from ..core.fidelity import table_fidelity
from ..core.integrity import dangling_references
from ..core.rules import count_violations
from ..core.schema import list_tables
from ..core.synthesise import TableRun, referenced_tables, written_width
from ..core.vocabulary import plan_copy as plan_vocabulary_copy
from ..core.vocabulary import selected_rows as vocabulary_rows_selected
from ..core.write import (
    ColumnDef,
    RegisterEntry,
    copy_table,
    drop_table,
    record_checks,
    replace_table,
    stream_select,
)
from ..dask_resource import DaskCluster
from ..partitions import table_check, table_partitions
from ..projects import asset_key, dagster_name, write_pool
from ..resources import DestinationDatabase, SourceDatabase, SynthProject
from .fidelity import against_source
from .presentation import (
    Progress,
    bullet_list,
    markdown_table,
    preview,
    retry_transient,
)
from .privacy import CHECKS as PRIVACY_CHECKS
from .privacy import assess, privacy_check_results, privacy_check_specs, privacy_metadata

REFERENCES_CHECK = "references_resolve"
ROW_COUNT_CHECK = "row_count_matches_config"
RULES_CHECK = "rules_hold"
FIDELITY_CHECK = "fidelity_meets_threshold"


def columns_of(cfg: TableConfig) -> list[ColumnDef]:
    return [ColumnDef(name, c.type, written_width(c)) for name, c in cfg.columns.items()]


# the checks whose failure stops a release (the privacy checks all do)
BLOCKING_CHECKS = {REFERENCES_CHECK, ROW_COUNT_CHECK, RULES_CHECK, *PRIVACY_CHECKS}


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

    @dg.asset(
        name="synthetic_table",
        key_prefix=[dagster_name(name)],
        ins={
            "reviewed_config": dg.AssetIn(key=asset_key(name, "reviewed_config")),
            "column_stats": dg.AssetIn(key=asset_key(name, "column_stats")),
        },
        partitions_def=partitions,
        io_manager_key="state_io_manager",
        pool=write_pool(name),  # one writer of the project's destination at a time
        group_name=dagster_name(name),
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
        yield from _synthetic_table(
            context,
            reviewed_config,
            column_stats,
            destination,
            source,
            project.for_project(name),
            dask,
        )

    return synthetic_table


def _synthetic_table(
    context: dg.AssetExecutionContext,
    reviewed_config: dict,
    column_stats: dict,
    destination: DestinationDatabase,
    source: SourceDatabase,
    project: SynthProject,
    dask: DaskCluster | None = None,
):
    table = context.partition_key
    files = project.files()
    stored = TableConfig.model_validate(reviewed_config["config"])
    cfg = files.load_table(table)
    if cfg.model_dump() != stored.model_dump():
        raise ConfigError(
            "the file changed after reviewed_config was materialised; materialise "
            f"reviewed_config[{table}] first so the change is checked",
            file=str(files.table_file(table)),
            table=table,
        )
    # the latest statistics, not those the config was last checked against: a source that
    # changed since is refused even before reviewed_config is refreshed
    require_approved(cfg, column_stats["source_fingerprint"])
    engine = destination.engine(project.project)
    schema = destination.db_schema
    seed, scale = project.run_seed(), project.run_scale()
    entry = RegisterEntry(cfg.kind, cfg.fingerprint(), seed, scale, {}, GENERATOR_VERSION)
    warnings: list[str] = []
    parent_rows: dict[str, int] = {}
    vocabulary_rule: str | None = None
    started = time.monotonic()

    generated = cfg.kind != "skip"  # a new generation whose checks the register keeps
    if cfg.kind == "skip":
        drop_table(engine, schema, table)
        rows, expected = 0, 0
        context.log.info(
            f"{table}: kind skip, not generated (removed from the destination if it was there)"
        )
    elif cfg.kind == "vocabulary" and not project.copy_vocabulary:
        rows, expected = 0, 0
        generated = False
        context.log.info(
            f"{table}: vocabulary copy skipped on request; the destination's table is left as it "
            "is, and references into it wait for a later load"
        )
    elif cfg.kind == "vocabulary":
        src_names = list_tables(source.engine(), source.db_schema)
        # which rows may leave: by default only those for concepts the approved synthetic
        # tables can contain (core/vocabulary.py), filtered in the source database
        plan = plan_vocabulary_copy(files, cfg, source.engine(), source.db_schema, src_names)
        context.log.info(plan.describe())
        warnings += [f"{c}: values not listed, may not resolve in concept" for c in plan.unlisted]
        vocabulary_rule = plan.describe()
        src_table = src_names.get(table, table)
        # the rows the rule selects in the source now, which the copy must write
        expected = vocabulary_rows_selected(source.engine(), source.db_schema, src_table, plan)
        rows = copy_table(
            source.engine(),
            source.db_schema,
            src_table,
            engine,
            schema,
            table,
            columns_of(cfg),
            entry=entry,
            on_chunk=Progress(context, table, expected),
            where=plan.where,
            params=plan.params,
        )
    else:
        run = TableRun.for_project(files, cfg, seed, scale)
        warnings = run.warnings
        parent_rows = {p: run.parent_rows(p) for p in set(referenced_tables(cfg).values())}
        entry.parent_rows = parent_rows
        expected = run.rows
        pk = (
            cfg.primary_key
            if cfg.primary_key and cfg.columns[cfg.primary_key].generator == "primary_key"
            else None
        )
        # issue 18: a table of distributed_min_rows or more is generated on the Dask cluster
        # when one is configured (dask_resource.py, core/distributed.py); else in-process
        with (dask or DaskCluster()).table_chunks(
            run, files, project.run_chunk_rows(), log=context.log.info
        ) as chunks:
            rows = replace_table(
                engine,
                schema,
                table,
                columns_of(cfg),
                chunks,
                primary_key=pk,
                entry=entry,
                on_chunk=Progress(context, table, expected),
            )
    for w in warnings:
        context.log.warning(f"{table}: {w}")
    seconds = time.monotonic() - started

    # an error inside a check fails that check, with the error in its metadata
    dangling, references_error = guarded(
        lambda: (
            dangling_references(
                engine, schema, table, referenced_tables(cfg), parent_keys(files, cfg)
            )
            if cfg.kind == "synthetic"
            else {}
        )
    )
    fidelity = None
    rules_error = None
    if cfg.kind == "synthetic":
        present = set(list_tables(engine, schema))
        violations, rules_error = guarded(lambda: count_violations(engine, schema, cfg, present))
        fidelity = table_fidelity(engine, schema, cfg, parent_rows, violations or {})
    metadata = {
        "dagster/row_count": rows,
        "kind": cfg.kind,
        "destination": destination.describe(project.project),
        "config_fingerprint": cfg.fingerprint(),
        "seed": seed,
        "scale": scale,
        "seconds": round(seconds, 3),
        "rows_per_second": round(rows / seconds) if seconds > 0 else 0,
        "warnings": bullet_list(warnings),
    }
    if vocabulary_rule is not None:
        metadata["vocabulary_rows"] = vocabulary_rule  # which rows were copied, and why
    if fidelity is not None:
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
    # measured against the source, inside the trusted environment; csv_bundle reads the verdict
    privacy = assess(cfg, source, destination, project)
    metadata.update(privacy_metadata(privacy))
    if rows and cfg.kind != "skip":
        cols = columns_of(cfg)
        sql = f"SELECT {', '.join(quote(engine, c.name) for c in cols)} FROM {qualified(engine, schema, table)} LIMIT 10"
        first = next(stream_select(engine, sql, cols, 10), None)
        if first is not None:
            metadata["preview"] = preview(first)
    yield dg.Output(
        {
            "table": table,
            "kind": cfg.kind,
            "rows": rows,
            "config_fingerprint": cfg.fingerprint(),
            "parent_rows": parent_rows,
        },
        metadata=metadata,
    )
    results = [
        _result(
            REFERENCES_CHECK,
            references_error,
            passed=not any((dangling or {}).values()),
            metadata={"dangling_by_column": dangling or {}, "parents": parent_rows},
            description="every reference resolves to a row of its parent in the destination"
            if not any((dangling or {}).values())
            else f"{table}: dangling references (no parent row in the destination): {dangling}",
        ),
        dg.AssetCheckResult(
            check_name=ROW_COUNT_CHECK,
            passed=rows == expected,
            metadata={"rows": rows, "expected": expected},
        ),
    ]
    violations = fidelity.rule_violations if fidelity else {}
    broken = {k: v for k, v in violations.items() if v}
    results.append(
        _result(
            RULES_CHECK,
            rules_error,
            passed=not broken,
            metadata={"violations": dg.MetadataValue.json(violations)},
            description="every enabled rule holds"
            if not broken
            else f"{table}: rule violations: {broken}",
        )
    )
    thresholds = project.settings().fidelity
    low_shape = [
        r.column
        for r in (fidelity.references if fidelity else [])
        if r.cardinality_shape_similarity is not None
        and r.cardinality_shape_similarity < thresholds.min_cardinality_shape_similarity
    ]
    median = fidelity.median_score if fidelity else None
    ok = (median is None or median >= thresholds.min_median_column_score) and not low_shape
    results.append(
        dg.AssetCheckResult(
            check_name=FIDELITY_CHECK,
            passed=ok,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "median_column_score": median if median is not None else "n/a",
                "low_cardinality_shape": low_shape or ["none"],
            },
            description=(
                f"median column score {median}"
                if median is not None
                else "no column with values to score"
            )
            + f" (threshold {thresholds.min_median_column_score})"
            + (f"; children per parent off in {low_shape}" if low_shape else ""),
        )
    )
    results += privacy_check_results(privacy)
    if generated:
        # the register keeps this generation's outcomes: csv_bundle publishes only a table whose
        # latest generation passed every blocking check, whichever run wrote it
        record_checks(engine, schema, table, cfg.fingerprint(), check_outcomes(results))
    yield from results


def _result(name: str, error: str | None, **fields) -> dg.AssetCheckResult:
    """The check's result, or a failure carrying the error raised while computing it."""
    if error is None:
        return dg.AssetCheckResult(check_name=name, **fields)
    return dg.AssetCheckResult(
        check_name=name,
        passed=False,
        metadata={"error": error},
        description=f"the check could not be computed: {error}",
    )


def guarded(compute):
    """(value, None), or (None, the error's text) when computing it raised."""
    try:
        return compute(), None
    except Exception as exc:  # any error fails the check that needed the value
        text = " ".join(str(exc).split())
        return None, redact_text(f"{type(exc).__name__}: {text}")[:2000]


def parent_keys(files, cfg: TableConfig) -> dict[str, str | None]:
    """Each referenced parent's key column: from its config, else the OMOP spec."""
    out: dict[str, str | None] = {}
    for parent in set(referenced_tables(cfg).values()):
        key = files.load_table(parent).primary_key if files.has_table(parent) else None
        if key is None:
            spec = omop.table_spec(parent)
            keys = spec.primary_key if spec else []
            key = keys[0] if len(keys) == 1 else None
        out[parent] = key
    return out


def check_outcomes(results: list[dg.AssetCheckResult]) -> dict[str, dict]:
    return {
        r.check_name: {
            "passed": bool(r.passed),
            "blocking": r.check_name in BLOCKING_CHECKS,
            "reason": (r.description or "")[:500],
        }
        for r in results
        if r.check_name
    }
