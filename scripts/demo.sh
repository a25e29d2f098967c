#!/usr/bin/env bash
# The main job: sets up .venv if needed, then runs the lifecycle on the embedded default
# (local Spark, sqlite tracking store and registry under .mlops/). It approves prod's new version
# itself when the version waits for approval (--approve, as a person would), so that the first run
# ends with prod's @champion; `spark-mlops demo` alone stops there and prints the command.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
exec spark-mlops demo --approve "$@"
