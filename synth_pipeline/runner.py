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

from . import environment
from .assets import project_assets
from .concurrency import PROJECT_TAG, ensure_write_pool, process_tag, release_abandoned_slots
from .core import omop
from .core.cdm_version import record_cdm_version
from .core.config_files import ProjectFiles
from .core.database import open_source, open_writable_destination
from .core.errors import ConfigError
from .core.preflight import check_configuration
from .core.schema import list_tables, unusable_name
from .core.table_order import order_parents_first
from .definitions import build_resources
from .instance import instance_for_cli, storage_kept_open
from .jobs import step_job_name
from .launched import require_direct_launches
from .projects import partitions_name
from .resources import SynthProject
from .run_results import RunSummary, run_failures
from .sensors import record_config_observations
from .step_runs import combined, in_process_runs, launched_runs, run_steps


@contextmanager
def temporary_environment(values: dict[str, str | None]) -> Iterator[None]:
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


def _cli_jobs(assets, steps: list, resources: dict) -> dict[str, dg.JobDefinition]:
    """A job per step of ``steps`` (by the step's name), from one Definitions: a command runs
    each step, for all its tables, as one run of its job."""
    names = {s.key.path[-1]: f"__synth_pipeline_cli__{s.key.path[-1]}" for s in steps}
    defs = dg.Definitions(
        assets=assets.all,
        jobs=[dg.define_asset_job(names[s.key.path[-1]], selection=[s]) for s in steps],
        resources=resources,
    )
    return {step: defs.resolve_job_def(name) for step, name in names.items()}


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


def _outcome(table: str, result: RunSummary, *, config_only: bool) -> TableOutcome:
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
    errors, checks = run_failures(result)
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

    By default one in-process run per step for all the tables (a partition range; a block of
    neighbouring partitions each when the selection has gaps), the write step doing parents
    first. With ``parallel=N`` each reading step's tables run as up to N runs side by side, and
    the write step's as one, each launched through the instance's run launcher (launched.py).
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
    with temporary_environment(env):
        available = source_tables(source_url, source_schema)
        selected = _selected_tables(available, tables)
        resources = _resources(options)
        files = resources["project"].files()  # type: ignore[attr-defined]
        _refuse_bad_input(
            files, available, options, config_only, destination_url, destination_schema
        )
        instance = instance or instance_for_cli()
        if parallel and not config_only:
            require_direct_launches(instance)
        guess = omop.guess_cdm_version(source_columns(source_url, source_schema))
        report = RunReport(tables=[], notes=record_cdm_version(files, guess, init=config_only))
        files.write_json_schema()
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


def _resources(options: RunOptions) -> dict:
    """The resources of the environment, the project's carrying the command's options."""
    resources = build_resources()
    shared: SynthProject = resources["project"]  # type: ignore[assignment]
    # a new resource, not a copy: Dagster builds a resource from its constructor's arguments
    resources["project"] = SynthProject(
        project=shared.project,
        config_root=shared.config_root,
        bundle_dir=shared.bundle_dir,
        **options.overrides(),
    )
    return resources


def _refuse_bad_input(
    files: ProjectFiles,
    available: dict[str, str],
    options: RunOptions,
    config_only: bool,
    destination_url: str | None,
    destination_schema: str | None,
) -> None:
    """Bad input stops the command here, before anything is written: an unknown project (only
    init creates one), a config file the checks refuse, a destination it cannot write to."""
    if not config_only:
        files.require_exists()
    check_configuration(files, available, copy_vocabulary=options.copy_vocabulary)
    if not config_only:
        url = destination_url or environment.default_destination_url(files.project)
        open_writable_destination(url, destination_schema).dispose()


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
    order = instance.get_dynamic_partitions(assets.partitions_name)
    launched = bool(parallel) and not config_only
    # the command's in-process jobs (its steps unless launched, the bundle unless init), each
    # resolved (its graph built and validated) once, from one Definitions
    in_process = ([] if launched else steps) + ([] if config_only else [assets.csv_bundle])
    jobs = _cli_jobs(assets, in_process, resources)
    if launched:
        run_step = launched_runs(
            parallel=parallel,
            jobs={s.key.path[-1]: step_job_name(project, s.key.path[-1]) for s in steps},
            order=order,
            instance=instance,
            run_config={**run_config, "resources": {"project": {"config": options.overrides()}}},
            tags=tags,
        )
    else:
        run_step = in_process_runs(
            jobs=jobs,
            order=order,
            instance=instance,
            run_config=run_config,
            tags=tags,
            generated=not config_only,
        )
    per_step = run_steps(usable, [s.key.path[-1] for s in steps], run_step)
    report.run_ids.extend(dict.fromkeys(s.run_id for runs in per_step.values() for s in runs))
    for t in usable:
        report.tables.append(_outcome(t, combined(per_step[t]), config_only=config_only))
    if not config_only:
        _publish_bundle(
            report,
            job=jobs["csv_bundle"],
            instance=instance,
            run_config=run_config,
            project=project,
        )
