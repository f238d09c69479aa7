"""Dagster's own cost of the CLI's runs, with no work of ours in them: ``--runs`` one-partition
runs of a job shaped like the table steps (four assets one after another, ``--checks`` checks on
the last), executed in process on the CLI's instance (``instance_for_cli``) while the command
holds it (``storage_kept_open``), as ``synth-pipeline run`` does. Prints the wall seconds.

    PYTHONPATH=$PWD python -m benchmarks.dagster_floor --runs 37 --checks 15

Under ``strace -f -w -c -e trace=fsync,fdatasync`` it shows how long the runs waited for the
disk (see dagster_share.md).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import dagster as dg

from synth_pipeline.instance import instance_for_cli, storage_kept_open

PARTITIONS = dg.DynamicPartitionsDefinition(name="floor_tables")


class _Discard(dg.IOManager):
    def handle_output(self, context, obj) -> None:
        pass

    def load_input(self, context) -> None:
        return None


def _job(checks: int) -> dg.JobDefinition:
    names = [f"check_{i}" for i in range(checks)]

    @dg.asset(partitions_def=PARTITIONS)
    def snapshot() -> int:
        return 1

    @dg.asset(partitions_def=PARTITIONS)
    def statistics(snapshot) -> int:
        return 2

    @dg.asset(partitions_def=PARTITIONS)
    def reviewed(statistics) -> int:
        return 3

    @dg.asset(
        partitions_def=PARTITIONS,
        check_specs=[dg.AssetCheckSpec(n, asset="table") for n in names],
    )
    def table(reviewed):
        yield dg.Output(4, metadata={"rows": 4})
        for n in names:
            yield dg.AssetCheckResult(check_name=n, passed=True, metadata={"found": 0})

    steps = [snapshot, statistics, reviewed, table]
    defs = dg.Definitions(
        assets=steps,
        jobs=[dg.define_asset_job("floor", selection=steps, executor_def=dg.in_process_executor)],
        resources={"io_manager": _Discard()},
    )
    return defs.resolve_job_def("floor")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=37)
    parser.add_argument("--checks", type=int, default=15)
    args = parser.parse_args(argv)
    os.environ["DAGSTER_HOME"] = tempfile.mkdtemp(prefix="dagster_floor_")
    job, instance = _job(args.checks), instance_for_cli()
    keys = [f"t{i}" for i in range(args.runs)]
    instance.add_dynamic_partitions(PARTITIONS.name, keys)
    quiet = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    with storage_kept_open(instance):
        started = time.perf_counter()
        for key in keys:
            done = job.execute_in_process(partition_key=key, instance=instance, run_config=quiet)
            assert done.success, key
        seconds = time.perf_counter() - started
    print(
        f"{args.runs} runs, {args.checks} checks each: {seconds:.1f} s ({Path(os.environ['DAGSTER_HOME'])})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
