#!/usr/bin/env bash
# The test command: sets up .venv if needed, then runs the suite.
# With no arguments: every test except the slow end-to-end checks (marker `slow`: a real mlflow
# server, whole jobs through the local runner, subprocess CLI runs, SIGKILL faults), so that it
# stays within minutes on a 2-core machine. `scripts/test.sh -m slow` runs those; CI (.ci/run)
# runs both. Any arguments go to pytest instead (e.g. scripts/test.sh -k registry selects from
# all tests, slow ones included).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
mkdir -p test-results
if [ $# -eq 0 ]; then
  set -- -m "not slow"
fi
exec python -m pytest --junitxml=test-results/junit.xml "$@"
