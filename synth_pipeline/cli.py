"""The ``synth-pipeline`` command: demo, init, approve, review, run."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import warnings
from pathlib import Path

import dagster as dg

# Dagster marks the partitioned checks and observable sources we use as beta/preview: a user of
# the command cannot act on that, so it is not printed (before the assets are imported below)
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

from . import environment  # noqa: E402
from .core.config import approval_problem, approve  # noqa: E402
from .core.config_files import ProjectFiles  # noqa: E402
from .core.database import redact  # noqa: E402
from .core.errors import SynthPipelineError  # noqa: E402
from .core.review import keep_approved_copy, review_text  # noqa: E402
from .runner import RunReport, execute  # noqa: E402

SKIP_VOCABULARY_HELP = (
    "do not copy vocabulary tables (concept, concept_ancestor ...); leave the destination's "
    "as they are, for a later load"
)


PARALLEL_HELP = (
    "run each reading step as N runs side by side, launched through the instance's run "
    "launcher; needs a DAGSTER_HOME whose dagster.yaml launches runs directly "
    "(DefaultRunCoordinator and Dagster's default launcher; PostgreSQL storage for a shared "
    "deployment; docs/deployment.md)"
)


def _url(cli_value: str | None, names: tuple[str, ...]) -> str | None:
    if cli_value:
        return cli_value
    found = environment.first_env(names)
    return found[1] if found else None


def _log_level(args) -> str:
    # the summary printed at the end says what failed and why; the full log is in the run history
    return "INFO" if getattr(args, "verbose", False) else "CRITICAL"


def _kind(files: ProjectFiles, table: str) -> str | None:
    try:
        return files.load_table(table).kind
    except SynthPipelineError:
        return None


def _files(args) -> ProjectFiles:
    return ProjectFiles(
        Path(args.config_dir) if args.config_dir else environment.config_root(), args.project
    )


def _print_report(
    report: RunReport, *, generation: bool, files: ProjectFiles | None = None
) -> None:
    for note in report.notes:
        print(f"  {note}")
    for t in report.tables:
        status = "ok" if t.ok else "FAILED"
        rows = f" {t.rows:,} rows" if t.rows is not None else ""
        if t.ok and generation and files is not None and _kind(files, t.table) == "skip":
            rows = " skipped (kind: skip in its config)"
        print(f"  {t.table:<24} {status}{rows}")
        for m in t.messages:
            print(f"      {m}")
    if generation:
        print(f"  {'csv_bundle':<24} {'ok' if report.bundle_ok else 'FAILED'}")
        for m in report.bundle_messages:
            print(f"      {m}")


def cmd_run(args, *, demo: bool = False) -> int:
    _files(args).require_exists()  # only init creates a project
    source = _url(args.source, environment.SOURCE_URL_VARS)
    destination = _url(args.destination, environment.DESTINATION_URL_VARS)
    source_schema = (
        args.schema or (environment.first_env(environment.SOURCE_SCHEMA_VARS) or (None, None))[1]
    )
    dest_schema = (
        args.destination_schema
        or (environment.first_env(environment.DESTINATION_SCHEMA_VARS) or (None, None))[1]
    )
    bundle = Path(args.bundle).resolve() if args.bundle else environment.bundle_dir(args.project)
    report = execute(
        source_url=source,
        source_schema=source_schema,
        destination_url=destination,
        destination_schema=dest_schema,
        project=args.project,
        config_root=Path(args.config_dir) if args.config_dir else None,
        bundle_dir=bundle,
        tables=args.tables,
        seed=args.seed,
        scale=args.scale,
        copy_vocabulary=not getattr(args, "skip_vocabulary", False),
        log_level=_log_level(args),
        parallel=getattr(args, "parallel", None),
    )
    print(f"synth-pipeline {'demo' if demo else 'run'}: project {args.project}")
    _print_report(report, generation=True, files=_files(args))
    files = _files(args)
    print()
    print(
        f"source (read-only):  {redact(source) if source else 'bundled demo extract, ' + str(environment.demo_source_path())}"
    )
    print(
        f"destination:         {redact(destination or environment.default_destination_url(args.project))}"
    )
    print(f"configuration:       {files.folder}")
    print(f"bundle:              {bundle}")
    print(f"Dagster UI:          {ui_command(source, destination, bundle)}")
    return 0 if report.ok else 1


def ui_command(source: str | None, destination: str | None, bundle: Path) -> str:
    """The command that opens these runs in the Dagster UI with the same source, destination
    and bundle, runnable as printed (the virtual environment's dagster, the checkout's
    workspace); a password in a URL is printed as *** and must be put back by hand."""
    env = {
        "DAGSTER_HOME": os.environ.get("DAGSTER_HOME") or str(environment.dagster_home()),
        "SYNTH_SOURCE_URL": redact(source) if source else None,
        "SYNTH_DESTINATION_URL": redact(destination) if destination else None,
        "SYNTH_BUNDLE_DIR": str(bundle),
    }
    parts = [f"{k}={shlex.quote(v)}" for k, v in env.items() if v]
    dagster = Path(sys.executable).parent / "dagster"
    workspace = environment.repo_root() / "workspace.yaml"
    return " ".join([*parts, str(dagster), "dev", "-w", str(workspace)])


def cmd_demo(args) -> int:
    from .demo.loader import ensure_demo_sqlite

    out = Path(args.out).resolve() if args.out else environment.work_dir() / "demo"
    out.mkdir(parents=True, exist_ok=True)
    source = ensure_demo_sqlite(environment.demo_source_path())
    ns = argparse.Namespace(
        source=source,
        schema=None,
        destination=f"sqlite:///{out / 'synthetic.sqlite'}",
        destination_schema=None,
        project="demo",
        config_dir=args.config_dir,
        bundle=str(out / "bundle"),
        tables=None,
        seed=args.seed,
        scale=args.scale,
        skip_vocabulary=args.skip_vocabulary,
        verbose=args.verbose,
        parallel=args.parallel,
    )
    return cmd_run(ns, demo=True)


def cmd_init(args) -> int:
    source = _url(args.source, environment.SOURCE_URL_VARS)
    if not source:  # as for run: the bundled demo extract
        from .demo.loader import ensure_demo_sqlite

        source = ensure_demo_sqlite(environment.demo_source_path())
        print(f"synth-pipeline init: no --source given: the bundled demo extract, {source}")
    source_schema = (
        args.schema or (environment.first_env(environment.SOURCE_SCHEMA_VARS) or (None, None))[1]
    )
    report = execute(
        source_url=source,
        source_schema=source_schema,
        project=args.project,
        config_root=Path(args.config_dir) if args.config_dir else None,
        tables=args.tables,
        config_only=True,
        log_level=_log_level(args),
    )
    files = _files(args)
    print(f"synth-pipeline init: project {args.project} from {redact(source)}")
    _print_report(report, generation=False)
    print(f"\nDraft configuration in {files.folder}: review each table, then")
    print(f"  synth-pipeline approve --project {args.project} --all --reviewer NAME")
    return 0 if report.ok else 1


def cmd_approve(args) -> int:
    files = _files(args)
    files.require_exists()
    tables = files.tables() if args.all else args.tables
    if not tables:
        raise SynthPipelineError("name tables with --table T ... or use --all")
    for t in tables:
        if not files.has_table(t):
            raise SynthPipelineError(
                f"project {args.project} has no table {t!r} ({files.table_file(t)})"
            )
        cfg = files.load_table(t)
        approved = approve(cfg, args.reviewer, cfg.source.fingerprint, args.comment)
        files.save_table(approved)
        keep_approved_copy(files, t)  # what `review` diffs against next time
        was = (
            "re-approved"
            if cfg.review.status == "approved" and approval_problem(cfg, None) is None
            else "approved"
        )
        print(f"  {t:<24} {was} by {approved.review.reviewer} at {approved.review.approved_at}")
    return 0


def cmd_review(args) -> int:
    files = _files(args)
    files.require_exists()
    tables = args.tables or files.tables()
    for t in tables:
        if not files.has_table(t):
            raise SynthPipelineError(
                f"project {args.project} has no table {t!r} ({files.table_file(t)})"
            )
    print("\n".join(review_text(files, t) for t in tables), end="")
    return 0


def _project_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--project",
        required=True,
        default="demo",
        help="project name (folder under the configuration root)",
    )
    sp.add_argument(
        "--config-dir",
        help="configuration root (default resources/configuration-files; env SYNTH_CONFIG_DIR)",
    )


def _table_option(sp, help_text: str = "only these tables (default: all)") -> None:
    sp.add_argument("--tables", "--table", dest="tables", nargs="+", help=help_text)


def _source_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--source", help="SQLAlchemy URL of the extract (env SYNTH_SOURCE_URL or SRC_DSN)"
    )
    sp.add_argument(
        "--schema", help="schema of the extract (env SYNTH_SOURCE_SCHEMA or SRC_SCHEMA)"
    )


def _generation_options(sp: argparse.ArgumentParser, seed_help: str) -> None:
    """What ``demo`` and ``run`` share: seed, scale, logs, vocabulary and parallel runs."""
    sp.add_argument("--seed", type=int, help=seed_help)
    sp.add_argument("--scale", type=float, help="multiplies every table's row count")
    sp.add_argument("-v", "--verbose", action="store_true", help="show the runs' logs")
    sp.add_argument("--skip-vocabulary", action="store_true", help=SKIP_VOCABULARY_HELP)
    sp.add_argument("--parallel", type=int, metavar="N", help=PARALLEL_HELP)


def _demo_command(d: argparse.ArgumentParser) -> None:
    d.add_argument(
        "--out", help="folder for the synthetic database and the bundle (default .work/demo)"
    )
    d.add_argument("--config-dir", help=argparse.SUPPRESS)
    _generation_options(d, "overrides the project's seed")
    d.set_defaults(func=cmd_demo)


def _init_command(i: argparse.ArgumentParser) -> None:
    _source_options(i)
    _table_option(i)
    i.add_argument("-v", "--verbose", action="store_true", help="show the runs' logs")
    _project_options(i)
    i.set_defaults(func=cmd_init)


def _approve_command(a: argparse.ArgumentParser) -> None:
    _project_options(a)
    g = a.add_mutually_exclusive_group(required=True)
    _table_option(g, "tables to approve")
    g.add_argument("--all", action="store_true", help="approve every table of the project")
    a.add_argument("--reviewer", required=True, help="who reviewed the files")
    a.add_argument("--comment", help="a note kept in the review block")
    a.set_defaults(func=cmd_approve)


def _review_command(v: argparse.ArgumentParser) -> None:
    _project_options(v)
    _table_option(v)
    v.set_defaults(func=cmd_review)


def _run_command(r: argparse.ArgumentParser) -> None:
    _source_options(r)
    r.add_argument(
        "--destination",
        help="SQLAlchemy URL of the destination (env SYNTH_DESTINATION_URL or DST_DSN)",
    )
    r.add_argument(
        "--destination-schema",
        help="schema in the destination (env SYNTH_DESTINATION_SCHEMA or DST_SCHEMA)",
    )
    r.add_argument("--bundle", help="folder of the CSV bundle (env SYNTH_BUNDLE_DIR)")
    _table_option(r)
    _generation_options(r, "random seed (default: the project's)")
    _project_options(r)
    r.set_defaults(func=cmd_run)


COMMANDS = {
    "demo": (
        "the whole pipeline on the bundled demo extract (SQLite), producing the bundle",
        _demo_command,
    ),
    "init": ("write draft configuration files from a source extract", _init_command),
    "approve": ("record a reviewer's approval of table configurations", _approve_command),
    "review": (
        "print every value a config took from the source, the rule that let it out, "
        "and the changes since the last approval",
        _review_command,
    ),
    "run": (
        "materialise every asset of the selected tables headless and write the bundle",
        _run_command,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="synth-pipeline",
        description="Low-fidelity synthetic OMOP CDM data that is safe to publish.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    for name, (what, add_options) in COMMANDS.items():
        add_options(sub.add_parser(name, help=what, description=what[0].upper() + what[1:] + "."))
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SynthPipelineError as exc:
        print(f"synth-pipeline: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
