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
from .core.config_files import ProjectFiles
from .core.database import open_source, open_writable_destination, redact_text
from .core.errors import ConfigError
from .core.files import atomic_write_text
from .core.preflight import check_configuration
from .core.schema import list_tables, unusable_name
from .definitions import build_resources
from .projects import partitions_name
from .resources import SynthProject
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


def instance_for_cli() -> dg.DagsterInstance:
    """The instance under DAGSTER_HOME (created with our dagster.yaml when new)."""
    home = settings.dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    if not (home / "dagster.yaml").exists():
        template = (settings.repo_root() / "configs" / "dagster.yaml").read_text()
        (home / "dagster.yaml").write_text(template.replace("${DAGSTER_HOME}", str(home)))
    return dg.DagsterInstance.get()


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


def _launch_in_waves(
    tables: list[str],
    instance: dg.DagsterInstance,
    run_config: dict,
    tags: dict[str, str],
    parallel: int,
) -> dict[str, _RunSummary]:
    """Run each table's ``synthesise_table`` job on ``instance``, ``parallel`` at a time, each
    from a worker process of its own (see run_worker.py), parents in an earlier wave than their
    children."""
    import json
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor

    from dagster._serdes import serialize_value

    from .run_worker import RESULT_PREFIX

    if instance.is_ephemeral:
        raise ConfigError(
            "parallel runs need a persistent instance: set DAGSTER_HOME to a folder whose "
            "dagster.yaml uses PostgreSQL storage (see configs/dagster-postgres.yaml)",
            setting="--parallel",
        )
    ref = serialize_value(instance.get_ref())

    def run_one(table: str) -> _RunSummary:
        request = {
            "instance_ref": ref,
            "run_config": run_config,
            "tags": {**tags, "dagster/partition": table, "synth_pipeline/parallel": str(parallel)},
        }
        done = subprocess.run(
            [sys.executable, "-m", "synth_pipeline.run_worker"],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            check=False,
        )
        lines = [x for x in done.stdout.splitlines() if x.startswith(RESULT_PREFIX)]
        if not lines:
            tail = redact_text(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "")
            return _RunSummary(
                "", False, [f"the run's process ended ({done.returncode}): {tail}"], [], None
            )
        return _RunSummary(**json.loads(lines[-1][len(RESULT_PREFIX) :]))

    out: dict[str, _RunSummary] = {}
    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="synth-run") as pool:
        for wave in dependency_waves(tables):
            out.update(zip(wave, pool.map(run_one, wave), strict=True))
    return out


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

    By default one in-process run per table, parents first: the cheapest for small tables.
    With ``parallel=N`` (an instance with PostgreSQL storage) the tables run as launched runs of
    the ``synthesise_table`` job under the multiprocess executor, N at a time, in waves so that
    parents are written before their children.
    """
    if scale is not None and scale <= 0:
        raise ConfigError(f"scale must be above 0, got {scale}", setting="--scale")
    if parallel is not None and parallel < 1:
        raise ConfigError(f"parallel must be 1 or more, got {parallel}", setting="--parallel")
    env = {
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
    with environment(env):
        available = source_tables(source_url, source_schema)
        selected = tables or sorted(available)
        unknown = [t for t in selected if t.lower() not in available]
        if unknown:
            raise ConfigError(
                f"not in the source: {', '.join(unknown)} (it has {', '.join(sorted(available))})",
                setting="--tables",
            )
        selected = order_parents_first([t.lower() for t in selected])
        resources = build_resources()
        proj: SynthProject = resources["project"]  # type: ignore[assignment]
        resources["project"] = SynthProject(
            project=proj.project,
            config_root=proj.config_root,
            bundle_dir=proj.bundle_dir,
            seed=seed,
            scale=scale,
            chunk_rows=chunk_rows,
            copy_vocabulary=copy_vocabulary,
        )
        files = resources["project"].files()  # type: ignore[attr-defined]
        if not config_only:
            files.require_exists()  # only init creates a project; a typo is refused
        # bad input stops the run here, before anything is written
        check_configuration(files, available, copy_vocabulary=copy_vocabulary)
        if not config_only:
            open_writable_destination(
                destination_url or settings.default_destination_url(project), destination_schema
            ).dispose()
        guess = omop.guess_cdm_version(source_columns(source_url, source_schema))
        notes = record_cdm_version(files, guess, init=config_only)
        files.write_json_schema()
        instance = instance or instance_for_cli()
        ensure_write_pool(instance, project)  # one writer of the project's tables at a time
        release_abandoned_slots(instance)  # a killed command's runs would hold them for ever
        assets = project_assets(project)
        known = set(instance.get_dynamic_partitions(partitions_name(project)))
        new = [t for t in available if t not in known and not unusable_name(t)]
        if new:
            instance.add_dynamic_partitions(partitions_name(project), new)
        record_config_observations(instance, files, [t for t in selected if t in available])
        steps = assets.config_steps if config_only else assets.table_steps
        # the console shows what the user must act on; the run's full log is in the instance
        run_config = {"loggers": {"console": {"config": {"log_level": log_level}}}}
        report = RunReport(tables=[], notes=notes)
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
            overrides = {
                k: v
                for k, v in {
                    "seed": seed,
                    "scale": scale,
                    "chunk_rows": chunk_rows,
                    "copy_vocabulary": copy_vocabulary,
                }.items()
                if v is not None
            }
            job_config = {
                **run_config,
                "resources": {"project": {"config": overrides}},
            }
            results = _launch_in_waves(usable, instance, job_config, tags, parallel)
        else:
            results = {
                t: _summarise_run(
                    dg.materialize(
                        assets.all,
                        selection=steps,
                        partition_key=t,
                        run_config=run_config,
                        instance=instance,
                        resources=resources,
                        raise_on_error=False,
                        tags=tags,
                    ),
                    generated=not config_only,
                )
                for t in usable
            }
        for t in usable:
            result = results[t]
            report.run_ids.append(result.run_id)
            errors, checks = result.errors, result.checks
            # init only drafts: an unapproved config is its expected outcome, not a failure
            ok = not errors if config_only else result.success
            outcome = TableOutcome(t, ok, errors + ([] if config_only else checks))
            if config_only and checks:
                outcome.messages.append("drafted: awaiting review")
            if result.success and not config_only:
                outcome.rows = result.synthetic_rows
            report.tables.append(outcome)
        failed = [t.table for t in report.tables if not t.ok]
        if not config_only and failed:
            # a bundle is published only from a run where every table succeeded
            report.bundle_ok = False
            report.bundle_messages = [
                f"not written because {', '.join(failed)} failed; the previous bundle is kept"
            ]
        elif not config_only:
            result = dg.materialize(
                assets.all,
                selection=[assets.csv_bundle],
                run_config=run_config,
                instance=instance,
                resources=resources,
                raise_on_error=False,
                tags={"synth_pipeline/command": "run", PROJECT_TAG: project, **process_tag()},
            )
            report.run_ids.append(result.run_id)
            report.bundle_ok = result.success
            errors, checks = _failures(result)
            report.bundle_messages = errors + checks
        return report
