"""Headless runs: the same assets the UI materialises, executed in process on a Dagster instance.

The CLI's ``init``, ``run`` and ``demo`` go through here, so their runs show in the UI's
history when they share its ``DAGSTER_HOME``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from . import settings
from .assets import project_assets
from .concurrency import PROJECT_TAG, ensure_write_pool, process_tag, release_abandoned_slots
from .core import omop
from .core.config import ProjectFiles, atomic_write_text
from .core.database import open_source, open_writable_destination, redact_text
from .core.errors import ConfigError
from .core.preflight import check_configuration
from .core.schema import list_tables, unusable_name
from .definitions import build_resources
from .instance import instance_for_cli, storage_kept_open
from .projects import partitions_name
from .sensors import record_config_observations


@contextmanager
def environment(values: dict[str, str | None]) -> Iterator[None]:
    """Set environment variables for the duration of a run, then put the old values back."""
    old = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _parents_within(tables: list[str]) -> dict[str, set[str]]:
    """Per table, the tables among ``tables`` its OMOP foreign keys point to, and for a table
    of events the observation periods its rules place them in (its rules_hold check reads
    them from the destination, so they must be this run's)."""
    present = set(tables)
    deps: dict[str, set[str]] = {}
    for t in tables:
        spec = omop.table_spec(t)
        parents = {f.fk_table for f in (spec.fields.values() if spec else []) if f.fk_table}
        shape = omop.EVENT_SHAPES.get(t)
        if shape is not None and shape.kind != "lifetime":
            parents.add("observation_period")
        deps[t] = {p for p in parents if p in present and p != t}
    return deps


def order_parents_first(tables: list[str]) -> list[str]:
    """Tables ordered so that each comes after the tables its foreign keys point to."""
    deps = _parents_within(tables)
    out: list[str] = []
    seen: set[str] = set()

    def visit(t: str, stack: set[str]) -> None:
        if t in seen or t in stack:
            return
        stack.add(t)
        for p in sorted(deps[t]):
            visit(p, stack)
        seen.add(t)
        out.append(t)

    for t in sorted(tables):
        visit(t, set())
    return out


def dependency_waves(tables: list[str]) -> list[list[str]]:
    """Tables in waves: each wave's parents are all in earlier waves, so a wave can run in
    parallel (a cycle, which OMOP does not have, is broken in the parents-first order)."""
    deps = _parents_within(tables)
    wave_of: dict[str, int] = {}
    for t in order_parents_first(tables):
        wave_of[t] = 1 + max((wave_of[p] for p in deps[t] if p in wave_of), default=-1)
    waves: list[list[str]] = [[] for _ in range(max(wave_of.values(), default=-1) + 1)]
    for t, w in wave_of.items():
        waves[w].append(t)
    return [sorted(w) for w in waves]


@dataclass
class TableOutcome:
    table: str
    ok: bool
    messages: list[str] = field(default_factory=list)
    rows: int | None = None


@dataclass
class RunReport:
    tables: list[TableOutcome]
    bundle_ok: bool | None = None
    bundle_messages: list[str] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # about the project as a whole

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.tables) and self.bundle_ok is not False


@dataclass
class _RunSummary:
    """What the report needs of one run, read while its result is still open."""

    run_id: str
    success: bool
    errors: list[str]
    checks: list[str]
    synthetic_rows: int | None


def _summarise_run(result, generated: bool) -> _RunSummary:
    errors, checks = _failures(result)
    rows = None
    if result.success and generated:
        # read from the materialisation's metadata: a launched run's outputs are not loadable
        for event in result.all_events:
            # the run is one project's: its synthetic_table is <project>/synthetic_table
            if event.is_step_materialization and event.asset_key.path[-1] == "synthetic_table":
                metadata = event.step_materialization_data.materialization.metadata
                rows = int(metadata["dagster/row_count"].value)
    return _RunSummary(result.run_id, result.success, errors, checks, rows)


def _run_table_job(home: str, run_config: dict, tags: dict[str, str]) -> _RunSummary:
    """One table's ``synthesise_table`` job in a pool process (see :func:`_launch_in_waves`).

    Runs start from a process's main thread, not from a thread: Dagster's multiprocess executor
    starts its step processes from there. The instance is the one whose ``dagster.yaml`` is in
    ``home``; the project and URLs come from the environment the pool inherited."""
    from .jobs import table_job

    with (
        dg.DagsterInstance.from_config(home) as instance,
        dg.execute_job(
            dg.reconstructable(table_job),
            instance=instance,
            run_config=run_config,
            tags=tags,
            raise_on_error=False,
        ) as result,
    ):
        return _summarise_run(result, generated=True)


def _launch_in_waves(
    tables: list[str],
    instance: dg.DagsterInstance,
    run_config: dict,
    tags: dict[str, str],
    parallel: int,
) -> dict[str, _RunSummary]:
    """Run each table's ``synthesise_table`` job on ``instance``, ``parallel`` at a time, each
    from one of ``parallel`` pool processes that live for the whole command, parents in an
    earlier wave than their children."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    if instance.is_ephemeral:
        raise ConfigError(
            "parallel runs need a persistent instance: set DAGSTER_HOME to a folder whose "
            "dagster.yaml uses PostgreSQL storage (see configs/dagster-postgres.yaml)",
            setting="--parallel",
        )
    home = instance.root_directory

    def summary(future) -> _RunSummary:
        try:
            return future.result()
        except Exception as error:  # the pool process died (killed, out of memory)
            why = redact_text(str(error).strip().splitlines()[0] if str(error).strip() else "")
            return _RunSummary("", False, [f"the run's process ended: {why}"], [], None)

    out: dict[str, _RunSummary] = {}
    # spawned, not forked: a fork would copy this process's open database connections
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=parallel, mp_context=spawn) as pool:
        for wave in dependency_waves(tables):
            futures = {
                t: pool.submit(
                    _run_table_job,
                    home,
                    run_config,
                    {**tags, "dagster/partition": t, "synth_pipeline/parallel": str(parallel)},
                )
                for t in wave
            }
            out.update({t: summary(f) for t, f in futures.items()})
    return out


def _cli_job(assets, steps: list, resources: dict) -> dg.JobDefinition:
    """The job a command runs ``steps`` of the project's assets with, once per table."""
    name = "__synth_pipeline_cli__"
    defs = dg.Definitions(
        assets=assets.all,
        jobs=[dg.define_asset_job(name, selection=steps)],
        resources=resources,
    )
    return defs.resolve_job_def(name)


def _failures(result: dg.ExecuteInProcessResult) -> tuple[list[str], list[str]]:
    """(errors, failed checks) of a run, with any URL password hidden."""
    errors, checks = [], []
    for ev in result.all_events:
        if ev.is_step_failure and ev.step_failure_data and ev.step_failure_data.error:
            err = ev.step_failure_data.error
            if err.cls_name == "DagsterAssetCheckFailedError":
                continue  # reported below, with the check's own reason
            while err.cause is not None and "dagster" in (err.cls_name or "").lower():
                err = err.cause
            # the first line says what went wrong; later ones are context (SQL, COPY line, a link)
            lines = [x for x in (err.message or "").strip().splitlines() if x.strip()]
            text = lines[0] if lines else str(err)
            errors.append(redact_text(text))
    for evaluation in result.get_asset_check_evaluations():
        if not evaluation.passed:
            text = evaluation.description or evaluation.check_name
            checks.append(f"check {evaluation.check_name} failed: {text}")
    return list(dict.fromkeys(errors)), list(dict.fromkeys(checks))


def source_tables(source_url: str | None, source_schema: str | None) -> dict[str, str]:
    from .resources import SourceDatabase

    src = SourceDatabase(url=source_url, db_schema=source_schema)
    engine = open_source(src.resolved_url())
    try:
        return list_tables(engine, source_schema)
    finally:
        engine.dispose()


def source_columns(source_url: str | None, source_schema: str | None) -> dict[str, list[str]]:
    """Every source table's column names, by table name as the source spells it."""
    import sqlalchemy as sa

    from .resources import SourceDatabase

    src = SourceDatabase(url=source_url, db_schema=source_schema)
    engine = open_source(src.resolved_url())
    try:
        found = sa.inspect(engine).get_multi_columns(schema=source_schema)
        return {name: [c["name"] for c in cols] for (_, name), cols in found.items()}
    finally:
        engine.dispose()


def record_cdm_version(
    files: ProjectFiles, guess: omop.CdmVersionGuess, *, init: bool
) -> list[str]:
    """Write the CDM version the source's tables and columns show into project.yaml when the
    file does not exist yet or (at init) does not set it, and say what was done; a version the
    file sets that the columns contradict is reported, not changed."""
    shown = guess.describe(guess.version) if guess.version else ""
    notes = []
    if guess.evidence["5.3"] and guess.evidence["5.4"]:
        notes.append(
            "the source has tables or columns of both CDM versions: "
            f"{guess.describe('5.3')} and {guess.describe('5.4')}"
        )
    if not files.exists():
        project = files.load_project()
        if guess.version:
            project.cdm_version = guess.version
            notes.append(f"cdm_version {guess.version} recorded in {files.project_file}: {shown}")
        files.save_project(project)
        return notes
    project = files.load_project()
    if "cdm_version" not in project.model_fields_set:
        if init and guess.version:
            # added as a line, so the file keeps the user's own layout and comments
            text = files.project_file.read_text(encoding="utf-8").rstrip("\n")
            line = f"cdm_version: '{guess.version}'  # detected from the source's columns"
            atomic_write_text(files.project_file, f"{text}\n{line}\n")
            files.load_project()  # still valid
            notes.append(f"cdm_version {guess.version} recorded in {files.project_file}: {shown}")
        return notes
    if guess.version and not project.cdm_version.startswith(guess.version):
        notes.append(
            f"finding: {files.project_file} says cdm_version {project.cdm_version!r}, but the "
            f"source's tables and columns are those of {shown}; correct cdm_version"
        )
    return notes


@dataclass(frozen=True)
class RunOptions:
    """What a command asks of the generation (unset: the project's own settings)."""

    seed: int | None = None
    scale: float | None = None
    chunk_rows: int | None = None
    copy_vocabulary: bool = True

    def overrides(self) -> dict[str, object]:
        """The options set, as the ``project`` resource's run config."""
        values = {"seed": self.seed, "scale": self.scale, "chunk_rows": self.chunk_rows}
        return {
            **{k: v for k, v in values.items() if v is not None},
            "copy_vocabulary": self.copy_vocabulary,
        }


def _run_environment(
    source_url, source_schema, destination_url, destination_schema, project, config_root, bundle_dir
) -> dict[str, str | None]:
    """The environment the assets read their resources from during a command."""
    return {
        "SYNTH_SOURCE_URL": source_url,
        "SYNTH_SOURCE_SCHEMA": source_schema,
        "SYNTH_DESTINATION_URL": destination_url,
        "SYNTH_DESTINATION_SCHEMA": destination_schema,
        "SYNTH_PROJECT": project,
        "SYNTH_CONFIG_DIR": str(config_root) if config_root else os.environ.get("SYNTH_CONFIG_DIR"),
        "SYNTH_BUNDLE_DIR": str(bundle_dir) if bundle_dir else os.environ.get("SYNTH_BUNDLE_DIR"),
        # the aliases would shadow nothing once ours are set; clear them so one value wins
        "SRC_DSN": None,
        "SRC_SCHEMA": None,
        "DST_DSN": None,
        "DST_SCHEMA": None,
    }


def _selected_tables(available: dict[str, str], tables: list[str] | None) -> list[str]:
    """The tables asked for (all the source's by default), parents first."""
    selected = tables or sorted(available)
    unknown = [t for t in selected if t.lower() not in available]
    if unknown:
        raise ConfigError(
            f"not in the source: {', '.join(unknown)} (it has {', '.join(sorted(available))})",
            setting="--tables",
        )
    return order_parents_first([t.lower() for t in selected])


def _register_partitions(
    instance: dg.DagsterInstance, project: str, available: dict[str, str]
) -> None:
    """Every usable source table as a partition of the project (a new table is a new one)."""
    known = set(instance.get_dynamic_partitions(partitions_name(project)))
    new = [t for t in available if t not in known and not unusable_name(t)]
    if new:
        instance.add_dynamic_partitions(partitions_name(project), new)


def _run_tables(
    usable: list[str],
    *,
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    run_config: dict,
    tags: dict[str, str],
    generated: bool,
) -> dict[str, _RunSummary]:
    """One in-process run of ``job`` per table, parents first."""
    return {
        t: _summarise_run(
            job.execute_in_process(
                partition_key=t,
                run_config=run_config,
                instance=instance,
                raise_on_error=False,
                tags=tags,
            ),
            generated=generated,
        )
        for t in usable
    }


def _outcome(table: str, result: _RunSummary, *, config_only: bool) -> TableOutcome:
    errors, checks = result.errors, result.checks
    # init only drafts: an unapproved config is its expected outcome, not a failure
    ok = not errors if config_only else result.success
    outcome = TableOutcome(table, ok, errors + ([] if config_only else checks))
    if config_only and checks:
        outcome.messages.append("drafted: awaiting review")
    if result.success and not config_only:
        outcome.rows = result.synthetic_rows
    return outcome


def _publish_bundle(
    report: RunReport, *, job: dg.JobDefinition, instance, run_config: dict, project: str
) -> None:
    failed = [t.table for t in report.tables if not t.ok]
    if failed:
        # a bundle is published only from a run where every table succeeded
        report.bundle_ok = False
        report.bundle_messages = [
            f"not written because {', '.join(failed)} failed; the previous bundle is kept"
        ]
        return
    result = job.execute_in_process(
        run_config=run_config,
        instance=instance,
        raise_on_error=False,
        tags={"synth_pipeline/command": "run", PROJECT_TAG: project, **process_tag()},
    )
    report.run_ids.append(result.run_id)
    report.bundle_ok = result.success
    errors, checks = _failures(result)
    report.bundle_messages = errors + checks


def execute(
    *,
    source_url: str | None,
    source_schema: str | None = None,
    destination_url: str | None = None,
    destination_schema: str | None = None,
    project: str,
    config_root: Path | None = None,
    bundle_dir: Path | None = None,
    tables: list[str] | None = None,
    seed: int | None = None,
    scale: float | None = None,
    chunk_rows: int | None = None,
    copy_vocabulary: bool = True,
    config_only: bool = False,
    instance: dg.DagsterInstance | None = None,
    log_level: str = "CRITICAL",
    parallel: int | None = None,
) -> RunReport:
    """Materialise every asset of the selected tables (and the bundle).

    By default one in-process run per table, parents first, from one job resolved once: the
    cheapest for small tables. With ``parallel=N`` (an instance with PostgreSQL storage) the
    tables run as runs of the ``synthesise_table`` job under the multiprocess executor, N at a
    time from N pool processes, in waves so that parents are written before their children.
    """
    options = RunOptions(seed, scale, chunk_rows, copy_vocabulary)
    if options.scale is not None and options.scale <= 0:
        raise ConfigError(f"scale must be above 0, got {options.scale}", setting="--scale")
    if parallel is not None and parallel < 1:
        raise ConfigError(f"parallel must be 1 or more, got {parallel}", setting="--parallel")
    env = _run_environment(
        source_url,
        source_schema,
        destination_url,
        destination_schema,
        project,
        config_root,
        bundle_dir,
    )
    with environment(env):
        available = source_tables(source_url, source_schema)
        selected = _selected_tables(available, tables)
        resources = build_resources()
        resources["project"] = resources["project"].model_copy(update=dict(options.overrides()))
        files = resources["project"].files()  # type: ignore[attr-defined]
        if not config_only:
            files.require_exists()  # only init creates a project; a typo is refused
        # bad input stops the run here, before anything is written
        check_configuration(files, available, copy_vocabulary=options.copy_vocabulary)
        if not config_only:
            open_writable_destination(
                destination_url or settings.default_destination_url(project), destination_schema
            ).dispose()
        guess = omop.guess_cdm_version(source_columns(source_url, source_schema))
        report = RunReport(tables=[], notes=record_cdm_version(files, guess, init=config_only))
        files.write_json_schema()
        instance = instance or instance_for_cli()
        with storage_kept_open(instance):
            ensure_write_pool(instance, project)  # one writer of the project's tables at a time
            release_abandoned_slots(instance)  # a killed command's runs would hold them for ever
            _register_partitions(instance, project, available)
            record_config_observations(instance, files, [t for t in selected if t in available])
            _run_and_report(
                report,
                selected,
                instance=instance,
                project=project,
                resources=resources,
                options=options,
                config_only=config_only,
                log_level=log_level,
                parallel=parallel,
            )
        return report


def _run_and_report(
    report: RunReport,
    selected: list[str],
    *,
    instance: dg.DagsterInstance,
    project: str,
    resources: dict,
    options: RunOptions,
    config_only: bool,
    log_level: str,
    parallel: int | None,
) -> None:
    """Run the selected tables' steps (and the bundle), adding each outcome to ``report``."""
    assets = project_assets(project)
    steps = assets.config_steps if config_only else assets.table_steps
    # the console shows what the user must act on; the run's full log is in the instance
    run_config = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    usable = []
    for t in selected:
        problem = unusable_name(t)
        if problem:
            why = f"not run: {problem}; rename it in the extract (or a view) or leave it out"
            report.tables.append(TableOutcome(t, False, [why]))
        else:
            usable.append(t)
    tags = {
        "synth_pipeline/command": "init" if config_only else "run",
        PROJECT_TAG: project,
        **process_tag(),
    }
    if parallel and not config_only:
        job_config = {
            **run_config,
            "resources": {"project": {"config": options.overrides()}},
        }
        results = _launch_in_waves(usable, instance, job_config, tags, parallel)
    else:
        # the job is resolved (its graph built and validated) once for every table's run
        job = _cli_job(assets, steps, resources)
        results = _run_tables(
            usable,
            job=job,
            instance=instance,
            run_config=run_config,
            tags=tags,
            generated=not config_only,
        )
    for t in usable:
        report.run_ids.append(results[t].run_id)
        report.tables.append(_outcome(t, results[t], config_only=config_only))
    if not config_only:
        bundle_job = _cli_job(assets, [assets.csv_bundle], resources)
        _publish_bundle(
            report, job=bundle_job, instance=instance, run_config=run_config, project=project
        )
