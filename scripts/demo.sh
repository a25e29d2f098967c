#!/usr/bin/env bash
# The main job: sets up .venv if needed, then runs the lifecycle on the embedded default
# (local Spark, sqlite tracking store and registry under .mlops/).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
exec spark-mlops demo "$@"
