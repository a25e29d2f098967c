#!/usr/bin/env bash
# Continuous delivery, build stage: builds the wheel once and stages the bundle for the
# deployment stages (published as the pipeline artifact `bundle`).
#
#   bash stage-bundle.sh OUT_DIR
#
# OUT_DIR receives databricks.yml, resources/, src/, dist/ (the wheel, versioned with the commit,
# and its SHA256SUMS; scripts/ci/build-wheel.sh), pyproject.toml, README.md and scripts/ci/.
# Deployment jobs do not check out the repository; they run the scripts from the artifact
# (always as `bash <script>`: pipeline artifacts lose the executable bit), and
# `databricks bundle deploy` uploads this prebuilt wheel instead of building one
# (artifacts.spark_mlops_wheel in databricks.yml has `files` and no `build`).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

out="${1:-}"
[ -n "$out" ] || ci_die "usage: $0 OUT_DIR"
cd "$CI_ROOT"

bash "$CI_ROOT/scripts/ci/build-wheel.sh" dist

ci_section "stage the bundle in $out"
rm -rf "$out"
mkdir -p "$out/scripts"
cp -R databricks.yml resources src dist pyproject.toml "$out/"
[ -f README.md ] && cp README.md "$out/"
cp -R scripts/ci "$out/scripts/ci"
find "$out" -name '__pycache__' -type d -prune -exec rm -rf {} +
(cd "$out" && find . -type f | sort)
