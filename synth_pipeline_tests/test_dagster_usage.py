"""How the project uses Dagster: its public API only, and why a step run over several tables
records each table's events itself.

In Dagster 1.13 a run over a partition range records a partitioned asset check's result once,
without a partition, and a step's output materialises every partition of its range or none.
Each table would then lose its own check results in the UI and could no longer fail on its own,
so a step of several tables yields each table's materialisation and check evaluations itself
(assets/step.py). The last test here fails when Dagster changes that, which is the moment to
let the step return its output and check results plainly.
"""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import dagster as dg

ROOT = Path(__file__).resolve().parents[1]
PYTHON_FOLDERS = ("synth_pipeline", "synth_pipeline_tests", "benchmarks", "scripts")


def private_dagster_imports(files: list[Path]) -> list[str]:
    """``file:line module`` for every import of a private Dagster module (``dagster._...``),
    at module level or inside a function."""
    found = []
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top, _, rest = module.partition(".")
                if top.startswith("dagster") and rest.startswith("_"):
                    found.append(f"{path}:{node.lineno} {module}")
    return found


def _project_python_files() -> list[Path]:
    return sorted(p for folder in PYTHON_FOLDERS for p in (ROOT / folder).rglob("*.py"))


def test_no_module_imports_a_private_dagster_module():
    files = _project_python_files()
    assert len(files) > 50, "the walk found the project's modules"
    assert private_dagster_imports(files) == []


def test_the_import_walk_finds_private_imports_wherever_they_are(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        "import dagster as dg\n"
        "from dagster import asset\n"
        "def f():\n"
        "    from dagster._serdes import serialize_value\n"
        "import dagster_postgres._x\n"
    )
    found = private_dagster_imports([module])
    assert sorted(f.split(" ")[1] for f in found) == ["dagster._serdes", "dagster_postgres._x"]


def test_a_single_run_backfill_cannot_check_each_partition_yet():
    """Dagster 1.13: in a run over a partition range, a partitioned check's result carries no
    partition, and the step's materialisations cover every partition of the range. If this
    fails, Dagster reports checks per partition in such runs: assets/step.py could then yield
    its Output and AssetCheckResults instead of each table's events."""
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    tables = dg.DynamicPartitionsDefinition(name="tables")
    spec = dg.AssetCheckSpec("rows_ok", asset="step", partitions_def=tables, blocking=True)

    @dg.asset(
        partitions_def=tables,
        check_specs=[spec],
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def step(context):
        for table in context.partition_keys:
            context.add_asset_metadata({"table": table}, partition_key=table)
        yield dg.MaterializeResult()
        yield dg.AssetCheckResult(check_name="rows_ok", passed=True)

    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("tables", ["a", "b", "c"])
        result = dg.materialize(
            [step],
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": "a",
                "dagster/asset_partition_range_end": "c",
            },
        )
        materialised = sorted(e.partition for e in result.all_events if e.is_step_materialization)
        evaluations = result.get_asset_check_evaluations()
    assert materialised == ["a", "b", "c"]
    assert [e.partition for e in evaluations] == [None]
