#!/usr/bin/env bash
# The benchmarks, in one run: scoring paths paired against the I/O floor in one process (1e4-1e7
# rows), `spark-mlops score` paired against a plain parquet read + Delta write process and against the
# bare minimum script that does score's work (1e6 rows), the batch_inference job's tasks paired
# against the commit of issue 30's figure (--baseline REV for another), the Python-UDF paths, training, the main job cold/warm and the test suite; writes
# benchmarks/results/latest.{json,md} (each piece with its load average before and after and the
# CPU other processes used during it; a piece during which they used more than a quarter of the
# cores is marked and claims nothing). --quick: tiny data, one round, written to
# benchmarks/results/raw/quick.*. --only PIECES writes raw/partial.*, never latest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
exec python -m benchmarks.run "$@"
