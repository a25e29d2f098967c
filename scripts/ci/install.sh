#!/usr/bin/env bash
# Installs what a CI job needs, the same way on an agent and on a laptop.
#
#   install.sh dev     the project's .venv with spark-mlops + its development kit (scripts/bootstrap.sh: pinned
#                      pyspark/mlflow, pytest, ruff, ...) and Java 17 for local Spark
#   install.sh build   only what scripts/ci/build-wheel.sh needs to build the wheel (pip), for
#                      the interpreter the pipeline set up (never a bare `python`)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

mode="${1:-dev}"

# Hosted Ubuntu agents ship several JDKs; Spark 4.1 needs 17 or 21.
if [ -n "${JAVA_HOME_17_X64:-}" ]; then
  export JAVA_HOME="$JAVA_HOME_17_X64"
  export PATH="$JAVA_HOME/bin:$PATH"
  if ci_on_agent; then
    echo "##vso[task.setvariable variable=JAVA_HOME]$JAVA_HOME"
    echo "##vso[task.prependpath]$JAVA_HOME/bin"
  fi
fi

case "$mode" in
  dev)
    # shellcheck source=../bootstrap.sh
    source "$CI_ROOT/scripts/bootstrap.sh"
    if ci_on_agent; then echo "##vso[task.prependpath]$CI_ROOT/.venv/bin"; fi
    "$CI_ROOT/.venv/bin/python" --version
    spark-mlops --help >/dev/null
    ;;
  build)
    py="$(ci_python)"
    "$py" -m pip install -q --disable-pip-version-check --upgrade pip
    "$py" -m pip --version
    ;;
  *) ci_die "usage: $0 dev|build" ;;
esac
