#!/usr/bin/env bash
# Continuous delivery, build stage: builds the wheel once and stages the bundle for the
# deployment stages (published as the pipeline artifact `bundle`).
#
#   stage-bundle.sh OUT_DIR
#
# OUT_DIR receives databricks.yml, resources/, src/, dist/*.whl, pyproject.toml, README.md and
# scripts/ci/ (deployment jobs do not check out the repository; they run the scripts from the
# artifact). `databricks bundle deploy` builds the wheel again from src/ (artifacts.build).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

out="${1:-}"
[ -n "$out" ] || ci_die "usage: $0 OUT_DIR"
cd "$CI_ROOT"
py="$(ci_python)"

ci_section "build the wheel"
rm -rf dist
"$py" -m pip wheel --no-deps --disable-pip-version-check -q -w dist .
ls dist/*.whl >/dev/null 2>&1 || ci_die "no wheel was built in dist/"

ci_section "stage the bundle in $out"
rm -rf "$out"
mkdir -p "$out/scripts"
cp -R databricks.yml resources src dist pyproject.toml "$out/"
[ -f README.md ] && cp README.md "$out/"
cp -R scripts/ci "$out/scripts/ci"
find "$out" -name '__pycache__' -type d -prune -exec rm -rf {} +
(cd "$out" && find . -type f | sort)
