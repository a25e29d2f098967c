#!/usr/bin/env bash
# The test command: sets up .venv if needed, then runs the suite.
# With no arguments: every test except the slow end-to-end checks (marker `slow`: a real mlflow
# server, whole jobs through the local runner, subprocess CLI runs, SIGKILL faults) and the tests
# of the real Databricks CLI (marker `databricks_cli`), so that it stays within minutes on a
# 2-core machine. `scripts/test.sh -m slow` runs the slow ones; CI (.ci/run) runs all three kinds,
# the last in scripts/ci/databricks-cli-checks.sh. Any arguments go to pytest instead (e.g.
# scripts/test.sh -k registry selects from all tests, slow ones included).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
mkdir -p test-results
if [ $# -eq 0 ]; then
  # Two pytest workers, each test file on one of them (module fixtures are built once), the files
  # that share the trained registry together (tests/conftest.py): on 2 cores the in-process Spark
  # tests leave a core partly idle while one waits on the JVM.
  set -- -m "not slow and not databricks_cli" -n 2 --dist loadfile
fi
exec python -m pytest --junitxml=test-results/junit.xml "$@"
