#!/usr/bin/env bash
# The benchmarks: sets up .venv if needed, then measures scoring, training, the main job and
# the test suite; writes benchmarks/results/latest.{json,md}. --quick: tiny data, one repetition.
# Extra arguments go to python -m benchmarks.run (e.g. --only scoring,demo --reps 5).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
exec python -m benchmarks.run "$@"
