#!/usr/bin/env bash
# Maintainers: redraft and re-approve the committed demo configuration after a change to what
# the summariser releases or how generators are proposed. Review `git diff resources/` before
# committing: every changed number is a disclosure decision.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export SYNTH_WORK_DIR="$work" DAGSTER_HOME="$work/dagster_home"
src=$("$py" -c "from synth_pipeline.demo.loader import ensure_demo_sqlite; print(ensure_demo_sqlite('$work/source.sqlite'))")
find resources/configuration-files/demo -name "*.yaml" ! -name project.yaml -delete
"$py" -m synth_pipeline.cli init --source "$src" --project demo >/dev/null
"$py" -m synth_pipeline.cli approve --project demo --all \
  --reviewer "synth_pipeline maintainers (demo extract)" \
  --comment "Demo configuration: GiBleed is Synthea-generated, no real patients." >/dev/null
git status --short resources/
