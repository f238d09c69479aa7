"""csv_bundle: the publishable folder of CSVs, manifest with checksums, and README with the disclaimer."""

import dagster as dg

from ..automation import behind_gate
from ..core.publication import publish_bundle
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
        description="One CSV per synthetic table exported from the destination (a table "
        "generated on a Dask cluster: from the Parquet parts it was loaded from), manifest.json "
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
    out = project.bundle_path()
    register = read_register(engine, destination.db_schema)
    progress = {
        t: Progress(context, f"bundle {t}.csv", int(e.get("rows") or 0))
        for t, e in register.items()
    }
    published = publish_bundle(
        files,
        engine,
        destination.db_schema,
        out,
        seed=project.run_seed(),
        scale=project.run_scale(),
        privacy_for=lambda tables: load_reports(project, destination, tables),
        on_table=lambda t, n: context.log.info(f"bundle: {t}.csv, {n:,} rows"),
        on_rows=lambda t, n: progress[t](n),
    )
    manifest, fidelity, bad = published.manifest, published.fidelity, published.problems
    for table, where in sorted(published.read_from.items()):
        if where != "destination":  # a table generated on a Dask cluster (issue 18)
            context.log.info(f"bundle: {table} read from {where}")
    threshold = project.project_config().fidelity.min_median_column_score
    # both scores, against the source too: written under the work dir, never into the bundle
    trusted = trusted_report(project, destination, fidelity, published.included, threshold)
    trusted |= achilles_report(context, project, source, destination, published.generated)
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
            "read_from": markdown_table(
                ["table", "rows read from"], sorted(map(list, published.read_from.items()))
            ),
            "files": bullet_list(
                [str(out / f["file"]) for e in manifest["tables"] for f in e["files"].values()]
                + [str(out / name) for name in ("README.md", "fidelity.html", "privacy.md")]
            ),
            "fidelity_report": dg.MetadataValue.path(str(out / "fidelity.html")),
            "median_column_scores": markdown_table(
                ["table", "median column score", "rule violations"],
                [[f.table, f.median_score, sum(f.rule_violations.values())] for f in fidelity],
            ),
            **trusted,
        },
    )
    yield dg.AssetCheckResult(
        check_name=VERIFIES_CHECK,
        passed=not bad,
        metadata={"problems": bad or ["none"]},
    )
