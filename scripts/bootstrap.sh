#!/usr/bin/env bash
# Creates (or refreshes) the project's virtualenv in .venv: the lifecycle with the pinned runtime
# versions from pyproject.toml, and the development kit (devtools/); then fetches Delta Lake's
# jars for local Spark once (scripts/fetch-delta-jars.sh) and sets up the Databricks CLI with its
# fake workspace (below). Sourced by scripts/demo.sh and scripts/test.sh; idempotent.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

die() { echo "bootstrap: $*" >&2; exit 1; }

if ! command -v java >/dev/null 2>&1 && [ -z "${JAVA_HOME:-}" ]; then
  die "Java is missing. Spark needs a Java 17 (or 21) runtime:
  Debian/Ubuntu: sudo apt-get install -y openjdk-17-jre-headless
  macOS:         brew install openjdk@17
then run this command again (or set JAVA_HOME)."
fi

pick_python() {
  # Prefer the runtime's Python (3.12), then any Python >= 3.11.
  local candidates=("${PYTHON:-}" python3.12)
  if command -v pyenv >/dev/null 2>&1; then
    candidates+=($(ls -d "$(pyenv root)"/versions/3.12*/bin/python3 2>/dev/null | sort -V | tail -n 1))
  fi
  candidates+=(python3.11 python3)
  for c in "${candidates[@]}"; do
    [ -n "$c" ] || continue
    if "$c" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1; then
      echo "$c"; return 0
    fi
  done
  return 1
}

stamp_of() { cat "$ROOT/pyproject.toml" "$ROOT/devtools/pyproject.toml" | sha256sum | cut -d' ' -f1; }

if [ ! -x "$VENV/bin/python" ]; then
  PY="$(pick_python)" || die "Python 3.11 or newer is needed (3.12 matches Databricks Runtime 18)."
  echo "bootstrap: creating .venv with $("$PY" --version)" >&2
  "$PY" -m venv "$VENV"
fi
if [ "$(cat "$VENV/.installed" 2>/dev/null)" != "$(stamp_of)" ]; then
  echo "bootstrap: installing spark-mlops with its pinned runtime (pyspark 4.1, mlflow 3.8.1, delta-spark 4.4) and the development kit; first time takes a few minutes" >&2
  # (pip warnings about index locations configured on some machines but absent are dropped)
  quiet() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
  quiet "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
  quiet "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT[runtime]" -e "$ROOT/devtools"
  stamp_of > "$VENV/.installed"
fi
"$ROOT/scripts/fetch-delta-jars.sh" "$VENV/bin/python" || exit 1

# The real Databricks CLI and its fake workspace: every local resolution of the bundle (spark-mlops
# run, bundle validate, the demo, the tests) is `databricks bundle validate` against that fake
# workspace (docs/bundle.md). Built once from the Go module proxy at the pipelines' pin and cached
# (scripts/ci/build-databricks-cli.sh: a warm call builds nothing), then linked into .venv/bin.
# SPARK_MLOPS_DATABRICKS_CLI_BIN already naming both binaries is used as it is; a caller that builds
# the CLI itself meanwhile (.ci/run) sets SPARK_MLOPS_BOOTSTRAP_SKIP_CLI=1.
if [ -z "${SPARK_MLOPS_BOOTSTRAP_SKIP_CLI:-}" ]; then
  cli_bin="${SPARK_MLOPS_DATABRICKS_CLI_BIN:-}"
  if [ -z "$cli_bin" ] || [ ! -x "$cli_bin/databricks" ] || [ ! -x "$cli_bin/fake-workspace" ]; then
    go_version="$(go env GOVERSION 2>/dev/null || echo none)"
    go_minor="$(echo "$go_version" | sed -n 's/^go1\.\([0-9]*\).*/\1/p')"
    [ -n "$go_minor" ] && [ "$go_minor" -ge 26 ] \
      || die "Go >= 1.26 is needed to build the Databricks CLI that resolves the bundle (found: $go_version); install it from https://go.dev/dl/ and run this command again."
    cli_bin="$(bash "$ROOT/scripts/ci/build-databricks-cli.sh" | tail -n 1)" \
      || die "building the Databricks CLI failed (output above)"
  fi
  ln -sfn "$cli_bin/databricks" "$VENV/bin/databricks"
  ln -sfn "$cli_bin/fake-workspace" "$VENV/bin/fake-workspace"
  export SPARK_MLOPS_DATABRICKS_CLI_BIN="$cli_bin"
fi
export PATH="$VENV/bin:$PATH"
