#!/usr/bin/env bash
# The test command: sets up .venv if needed, then runs the whole suite.
# Extra arguments go to pytest (e.g. scripts/test.sh -k registry).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
mkdir -p test-results
exec python -m pytest --junitxml=test-results/junit.xml "$@"
