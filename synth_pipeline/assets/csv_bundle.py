"""csv_bundle: the publishable folder of CSVs, manifest with checksums, and README with the disclaimer."""

import dagster as dg
import sqlalchemy as sa

from ..automation import behind_gate
from ..core.bundle import verify_bundle, write_bundle
from ..core.errors import SynthPipelineError
from ..core.fidelity import table_fidelity
from ..core.integrity import stale_references, unreleasable
from ..core.privacy_bundle import bundle_problems, privacy_markdown
from ..core.report import concept_labels, fidelity_html
from ..core.rules import count_violations
from ..core.schema import ColumnDef
from ..core.vocabulary_bundle import bundle_vocabulary, concept_names
from ..core.write import read_register
from ..projects import asset_key, dagster_name, write_pool
from ..resources import DestinationDatabase, SourceDatabase, SynthProject
from .fidelity import achilles_report, trusted_report
from .presentation import Progress, bullet_list, markdown_table, retry_transient
from .privacy import load_reports

VERIFIES_CHECK = "bundle_verifies"


def build_csv_bundle(name: str) -> dg.AssetsDefinition:
    """Project ``name``'s csv_bundle (``<name>/csv_bundle``)."""

    @dg.asset(
        name="csv_bundle",
        key_prefix=[dagster_name(name)],
        deps=[asset_key(name, "synthetic_table")],
        io_manager_key="state_io_manager",
        pool=write_pool(name),  # one writer of the project's destination at a time
        group_name=dagster_name(name),
        kinds={"csv"},
        automation_condition=behind_gate(),
        check_specs=[
            dg.AssetCheckSpec(
                VERIFIES_CHECK,
                asset=asset_key(name, "csv_bundle"),
                blocking=True,
                description="Every file matches its sha256 in manifest.json and the README "
                "starts with the disclaimer.",
            )
        ],
        description="One CSV per synthetic table exported from the destination, manifest.json "
        "(tables, columns, rows, sha256, config fingerprints, generator version, creation time) "
        "and a README that starts with the disclaimer; written to a temporary folder and renamed "
        "into place.",
    )
    @retry_transient
    def csv_bundle(
        context: dg.AssetExecutionContext,
        destination: DestinationDatabase,
        project: SynthProject,
        source: SourceDatabase,
    ):
        yield from _csv_bundle(context, destination, project.for_project(name), source)

    return csv_bundle


def _csv_bundle(
    context: dg.AssetExecutionContext,
    destination: DestinationDatabase,
    project: SynthProject,
    source: SourceDatabase,
):
    files = project.files()
    engine = destination.engine(project.project)
    schema = destination.db_schema
    register = read_register(engine, schema)
    configured = set(files.tables())
    included = {t: e for t, e in register.items() if t in configured and e["kind"] != "skip"}
    # only tables whose latest generation passed every blocking check, from the approved
    # config of now, whichever run wrote them
    refused = unreleasable(included, {t: files.load_table(t).fingerprint() for t in included})
    if refused:
        raise SynthPipelineError("the bundle is refused: " + "; ".join(refused))
    problems = stale_references(included)
    if problems:
        raise SynthPipelineError(
            "the destination's tables do not fit together: " + "; ".join(problems)
        )
    # vocabulary tables are public reference data copied as they are: nothing to assess
    generated = sorted(t for t, e in included.items() if e["kind"] == "synthetic")
    privacy = load_reports(project, destination, generated)
    refused = bundle_problems(privacy, included)
    if refused:
        raise SynthPipelineError("the bundle is refused: " + "; ".join(refused))
    insp = sa.inspect(engine)
    tables = []
    notes = []
    for t, entry in sorted(included.items()):
        cfg = files.load_table(t)
        present = [c["name"] for c in insp.get_columns(t, schema=schema)]
        columns = [
            ColumnDef(n, cfg.columns[n].type if n in cfg.columns else "string", None)
            for n in present
        ]
        pk = cfg.primary_key if cfg.kind == "synthetic" and cfg.primary_key in present else None
        tables.append(
            {
                "table": t,
                "kind": entry["kind"],
                "columns": columns,
                "order_by": [pk] if pk else present,
                "config_fingerprint": entry["config_fingerprint"],
            }
        )
    out = project.bundle_path()
    existing = set(insp.get_table_names(schema=schema))
    fidelity = []
    for t, entry in sorted(included.items()):
        cfg = files.load_table(t)
        if cfg.kind == "synthetic":
            violations = count_violations(engine, schema, cfg, existing)
            fidelity.append(
                table_fidelity(engine, schema, cfg, entry.get("parent_rows") or {}, violations)
            )
    threshold = project.settings().fidelity.min_median_column_score
    names = concept_names(engine, schema, concept_labels(fidelity))
    policy = project.settings().disclosure
    progress = {
        t: Progress(context, f"bundle {t}.csv", int(e.get("rows") or 0))
        for t, e in included.items()
    }
    manifest = write_bundle(
        engine,
        schema,
        out,
        project=project.project,
        tables=tables,
        seed=project.run_seed(),
        scale=project.run_scale(),
        on_table=lambda t, n: context.log.info(f"bundle: {t}.csv, {n:,} rows"),
        on_rows=lambda t, n: progress[t](n),
        vocabulary=bundle_vocabulary(files, engine, schema, [t["table"] for t in tables]),
        formats=project.settings().bundle_formats,
        reports={
            "fidelity.html": lambda created: fidelity_html(
                project.project, fidelity, created, threshold, names=names
            ),
            "privacy.md": lambda created: privacy_markdown(
                project.project, [r for r in privacy.values() if r], created, policy
            ),
        },
    )
    bad = verify_bundle(out)
    # both scores, against the source too: written under the work dir, never into the bundle
    trusted = trusted_report(project, destination, fidelity, included, threshold)
    trusted |= achilles_report(context, project, source, destination, generated)
    for n in notes:
        context.log.warning(n)
    yield dg.Output(
        manifest,
        metadata={
            "bundle": dg.MetadataValue.path(str(out)),
            "manifest": dg.MetadataValue.path(str(out / "manifest.json")),
            "tables": markdown_table(
                ["table", "kind", "rows", "file", "sha256"],
                [
                    [e["table"], e["kind"], e["rows"], e["file"], e["sha256"][:16]]
                    for e in manifest["tables"]
                ],
            ),
            "dagster/row_count": sum(e["rows"] for e in manifest["tables"]),
            "files": bullet_list(
                [str(out / f["file"]) for e in manifest["tables"] for f in e["files"].values()]
                + [str(out / name) for name in ("README.md", "fidelity.html", "privacy.md")]
            ),
            "fidelity_report": dg.MetadataValue.path(str(out / "fidelity.html")),
            "median_column_scores": markdown_table(
                ["table", "median column score", "rule violations"],
                [[f.table, f.median_score, sum(f.rule_violations.values())] for f in fidelity],
            ),
            "notes": bullet_list(notes),
            **trusted,
        },
    )
    yield dg.AssetCheckResult(
        check_name=VERIFIES_CHECK,
        passed=not bad,
        metadata={"problems": bad or ["none"]},
    )
