#!/usr/bin/env bash
# Every figure in BENCHMARKS.md, one after another (never in parallel: they would compete for
# the same cores). Run from the repository root with the project's Python on PATH or in $PY.
# Optional: BEFORE=/path/to/another/checkout times its demo the same way, for comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
$PY -m benchmarks.run machine
$PY -m benchmarks.run postgres --rows 1000000 --repeat 3
$PY -m benchmarks.run postgres --rows 10000000 --repeat 1
$PY -m benchmarks.run sqlite-csv --rows 1000000 --repeat 2
$PY -m benchmarks.run statistics --rows 10000000 --repeat 1
$PY -m benchmarks.run memory --rows 1000000 10000000 50000000
$PY -m benchmarks.run demo ${BEFORE:+--compare "$BEFORE"}
$PY -m benchmarks.run machine
