"""One table's ``synthesise_table`` run in a process of its own (``runner.execute(parallel=N)``).

Runs are started from separate processes, not threads: Dagster's multiprocess executor starts
its step processes from the main thread of the process that launched the run. The parent
sends the instance reference, run config and tags as JSON on standard input; the worker
prints one line starting with ``RESULT `` holding the run's summary.
"""

from __future__ import annotations

import dataclasses
import json
import sys

import dagster as dg
from dagster._serdes import deserialize_value

RESULT_PREFIX = "RESULT "


def main() -> int:
    from .jobs import table_job
    from .runner import _summarise_run

    request = json.loads(sys.stdin.read())
    ref = deserialize_value(request["instance_ref"], dg._core.instance.InstanceRef)
    with (
        dg.DagsterInstance.from_ref(ref) as instance,
        dg.execute_job(
            dg.reconstructable(table_job),
            instance=instance,
            run_config=request["run_config"],
            tags=request["tags"],
            raise_on_error=False,
        ) as result,
    ):
        summary = _summarise_run(result, generated=True)
    print(RESULT_PREFIX + json.dumps(dataclasses.asdict(summary)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
