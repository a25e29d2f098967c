#!/usr/bin/env bash
# The pull-request checks that need no Databricks workspace. The PR pipeline's first stage runs
# each of them as a step; run them locally before pushing:
#
#   scripts/ci/pr-checks.sh all          # everything below, in this order
#   scripts/ci/pr-checks.sh lint         # ruff check src tests scripts/ci
#   scripts/ci/pr-checks.sh pipelines    # Azure Pipelines files: schema + semantic checks
#   scripts/ci/pr-checks.sh test [ARGS]  # scripts/test.sh + JUnit (test-results/junit.xml) + coverage (test-results/coverage.xml)
#   scripts/ci/pr-checks.sh bundle-validate   # spark-mlops bundle validate, every target of databricks.yml
#   scripts/ci/pr-checks.sh local-jobs   # training -> release -> batch_inference with the local runner, from the built wheel
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$CI_ROOT"

venv_on_path() {
  [ -x "$CI_ROOT/.venv/bin/python" ] || ci_die ".venv is missing: run scripts/ci/install.sh dev (or scripts/bootstrap.sh)"
  export PATH="$CI_ROOT/.venv/bin:$PATH"
}

lint() {
  venv_on_path
  ci_section "ruff check src tests scripts/ci"
  ruff check src tests scripts/ci
}

pipelines() {
  venv_on_path
  ci_section "Azure Pipelines files: schema + semantic checks"
  "$CI_ROOT/.venv/bin/python" scripts/ci/check_pipelines.py
}

tests() {
  ci_section "test suite (JUnit + coverage)"
  mkdir -p test-results
  bash scripts/test.sh --cov=spark_mlops --cov-report=xml:test-results/coverage.xml --cov-report=term "$@"
}

# In CI (CI=true) the bundle schema must be there: from $SPARK_MLOPS_BUNDLE_SCHEMA
# (scripts/ci/fetch-schemas.sh) or from the installed CLI (`databricks bundle schema`).
# Elsewhere, spark-mlops bundle validate says itself when it skips the schema check.
require_bundle_schema() {
  if [ -n "${SPARK_MLOPS_BUNDLE_SCHEMA:-}" ] && [ -f "$SPARK_MLOPS_BUNDLE_SCHEMA" ]; then return 0; fi
  if command -v databricks >/dev/null 2>&1; then
    local schema
    schema="$(mktemp)"
    if databricks bundle schema > "$schema" && [ -s "$schema" ]; then
      export SPARK_MLOPS_BUNDLE_SCHEMA="$schema"
      return 0
    fi
  fi
  if ci_is_ci; then
    ci_die "no bundle schema: with CI=true the schema check must not be skipped (run bash scripts/ci/fetch-schemas.sh, or install the Databricks CLI)"
  fi
}

bundle_validate() {
  require_bundle_schema
  venv_on_path
  local targets args=()
  targets="$("$CI_ROOT/.venv/bin/python" scripts/ci/check_pipelines.py --list-targets)"
  [ -n "$targets" ] || ci_die "databricks.yml declares no targets"
  for t in $targets; do args+=(-t "$t"); done
  ci_section "spark-mlops bundle validate ${args[*]}"
  spark-mlops bundle validate "${args[@]}"
}

local_jobs() {
  venv_on_path
  local state="${SPARK_MLOPS_CI_STATE_DIR:-$CI_ROOT/.mlops/ci}"  # .mlops/ is git-ignored
  rm -rf "$state"
  mkdir -p "$state/data"
  export SPARK_MLOPS_STATE_DIR="$state"
  ci_section "synthetic data in $state/data"
  spark-mlops generate-data --output "$state/data/training.csv" --rows 2000 --seed 7
  spark-mlops generate-data --output "$state/data/scoring.csv" --rows 500 --seed 11 --no-label
  # The jobs run from the built wheel, as clusters install it: a task environment with the wheel
  # installed (--no-deps, over the project's runtime; the fake workspace's, fake_workspace_runner.py),
  # every task in a process of its own started from that environment's Python.
  bash scripts/ci/build-wheel.sh dist
  local env py
  env="$("$CI_ROOT/.venv/bin/python" scripts/ci/fake_workspace_runner.py --task-env dist/spark_mlops-*.whl)"
  py="$env/bin/python"
  "$py" -c 'import pathlib, sys, spark_mlops; sys.exit(pathlib.Path(sys.prefix) not in pathlib.Path(spark_mlops.__file__).parents)' \
    || ci_die "spark_mlops in $env is not the built wheel's"
  echo "task environment: $env (spark_mlops from $(basename dist/spark_mlops-*.whl))"
  ci_section "spark-mlops run training (built wheel, a process per task)"
  "$py" -m spark_mlops run training --state-dir "$state" --param "input=$state/data/training.csv"
  ci_section "spark-mlops run release (built wheel, a process per task)"
  "$py" -m spark_mlops run release --state-dir "$state"
  ci_section "spark-mlops run batch_inference (built wheel, a process per task)"
  "$py" -m spark_mlops run batch_inference --state-dir "$state" --param "scoring_input=$state/data/scoring.csv"
}

cmd="${1:-all}"; [ $# -gt 0 ] && shift
case "$cmd" in
  lint) lint ;;
  pipelines) pipelines ;;
  test) tests "$@" ;;
  bundle-validate) bundle_validate ;;
  local-jobs) local_jobs ;;
  all) lint; pipelines; tests "$@"; bundle_validate; local_jobs ;;
  *) ci_die "unknown check '$cmd' (lint | pipelines | test | bundle-validate | local-jobs | all)" ;;
esac
