#!/usr/bin/env bash
# CI stage: the real Databricks CLI validates and deploys this bundle against a fake workspace.
#
#   CI=true bash scripts/ci/databricks-cli-checks.sh
#
# 1. builds (or takes from its cache) the Databricks CLI at the pipelines' pin and the fake
#    workspace (build-databricks-cli.sh; Go module proxy, no Terraform, no real workspace);
# 2. builds the prebuilt wheel that databricks.yml's artifact uploads (build-wheel.sh dist);
# 3. runs databricks_cli_checks.py: `bundle validate --strict` for dev/test/staging/prod, the
#    deploy of staging and prod read back from the fake
#    workspace, a second deploy that changes nothing, deploy + destroy of test;
# 4. runs the tests that need the real CLI's own fake workspace (marker databricks_cli): strict
#    validation, the breakers, the official schema.
# Its last stdout line is the checks' JSON summary (cli_version, validated, deployed,
# failures).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$CI_ROOT"
started=$SECONDS

bin="$(bash scripts/ci/build-databricks-cli.sh | tail -n 1)"
export SPARK_MLOPS_DATABRICKS_CLI_BIN="$bin"
export PATH="$bin:$PATH"
echo "databricks-cli-checks: $("$bin/databricks" version) ($(( SECONDS - started )) s to build or find)" >&2

# The project's .venv with the development kit (idempotent), unless CI_PYTHON names an interpreter.
[ -n "${CI_PYTHON:-}" ] || source scripts/bootstrap.sh >&2
py="$(ci_python)"
bash scripts/ci/build-wheel.sh dist >&2

ci_section "the real Databricks CLI against the fake workspace" >&2
rc=0
mkdir -p test-results
"$py" scripts/ci/databricks_cli_checks.py --bin "$bin" --root . --run-jobs 2>&1 \
  | tee test-results/databricks-cli-checks.log | grep --line-buffered -v '^{' >&2 || rc=${PIPESTATUS[0]}
summary="$(tail -n 1 test-results/databricks-cli-checks.log)"

ci_section "tests that need the real Databricks CLI" >&2
"$py" -m pytest -q -m databricks_cli --junitxml=test-results/junit-databricks-cli.xml tests >&2 || rc=$?

echo "databricks-cli-checks: $(( SECONDS - started )) s in all" >&2
echo "$summary"
exit "$rc"
