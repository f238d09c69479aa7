"""Achilles agreement on the demo: the source extract against the synthetic tables of a
`synth-pipeline demo --out DIR` run (the same comparison the trusted report makes).

    synth-pipeline demo --out /tmp/ohdsi/demo            # with SYNTH_WORK_DIR=/tmp/ohdsi/demo/work
    PYTHONPATH=$PWD SYNTH_WORK_DIR=/tmp/ohdsi/demo/work .venv/bin/python -m benchmarks.achilles_demo /tmp/ohdsi/demo

Prints the median agreement, the worst analyses and the time taken; needs the ohdsi extra.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from synth_pipeline import environment
from synth_pipeline.core import achilles
from synth_pipeline.core.config_files import ProjectFiles
from synth_pipeline.core.database import open_source
from synth_pipeline.core.write import read_register


def main(out: str, worst: int = 15) -> int:
    if not achilles.available():
        print(f"duckcdm is not installed: {achilles.INSTALL}")
        return 2
    synthetic = open_source(f"sqlite:///{Path(out) / 'synthetic.sqlite'}")
    source = open_source(f"sqlite:///{environment.demo_source_path()}")
    files = ProjectFiles(environment.config_root(), "demo")
    tables = sorted(
        t for t, e in read_register(synthetic, None).items() if e["kind"] == "synthetic"
    )
    t0 = time.perf_counter()
    c = achilles.compare_sides(
        (source, None), (synthetic, None), Path(out), tables, files.load_project().cdm_version
    )
    took = time.perf_counter() - t0
    print(
        f"median agreement {c.median_agreement} over {len(c.scored)} scored analyses "
        f"({len(c.analyses)} compared; run: {c.ran}; failed: {c.failed}); between two halves "
        f"of the source {c.median_halves}; {took:.0f} s"
    )
    print("| analysis | agreement | source half against half | strata | name |")
    print("|---|---|---|---|---|")
    for a in c.worst_first()[:worst]:
        print(f"| {a.analysis_id} | {a.agreement} | {a.halves} | {a.strata} | {a.name} |")
    by_id = {a.analysis_id: a for a in c.analyses}
    for aid in (101, 102, 108, 109, 113, 117):
        if aid in by_id:
            a = by_id[aid]
            print(f"analysis {aid} ({a.name}): {a.agreement} (halves {a.halves})")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
