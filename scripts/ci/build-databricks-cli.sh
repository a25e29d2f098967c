#!/usr/bin/env bash
# Builds the Databricks CLI at the version the pipelines pin, and the fake workspace the CLI's own
# acceptance tests deploy against, from the Go module proxy; prints the folder holding both
# binaries as its last stdout line:
#
#   bin="$(bash scripts/ci/build-databricks-cli.sh | tail -n 1)"
#   "$bin/databricks" version          # Databricks CLI v<pin>
#   "$bin/fake-workspace" -url-file F  # a test double of a workspace on 127.0.0.1 (main.go)
#
# The version is DATABRICKS_CLI_VERSION of .azure/pipelines/templates/variables.yml (the one pin;
# release agents install the same version from its release zip, install-databricks-cli.sh).
# scripts/ci/fake-workspace/go.mod requires github.com/databricks/cli at that version and names it
# as a `tool`, so one `go build` compiles the CLI (its main package is the module root) and our
# fake-workspace program with shared packages compiled once. The build is what
# `go install github.com/databricks/cli@v<pin>` does, with the module checksums taken from our
# committed go.sum instead of looked up. The version string is stamped the way release builds
# stamp it (-X .../internal/build.buildVersion; databricks/cli internal/build/variables.go):
# an unstamped build calls itself <next>-dev, and bundle.databricks_cli_version then only warns,
# which `bundle validate --strict` turns into a failure.
#
# Cached in ~/.cache/spark-mlops/databricks-cli/<version>-<hash of go.mod, go.sum, the *.go files and the
# Go version>: a second run builds nothing. Needs Go >= 1.26 (the CLI's go.mod) and the Go module
# proxy. None of the CLI's code is kept in this repository (the Databricks License allows using it
# with Databricks services; it is used here only to check this bundle before deploying it).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

mod_dir="$CI_ROOT/scripts/ci/fake-workspace"
pin_file="$CI_ROOT/.azure/pipelines/templates/variables.yml"
version="$(awk '/name: DATABRICKS_CLI_VERSION/ {getline; gsub(/[" ]/, ""); sub(/^value:/, ""); print; exit}' "$pin_file")"
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] \
  || ci_die "$pin_file: DATABRICKS_CLI_VERSION: expected a version such as 1.12.1, found '${version}'"
required="$(awk '$1 == "github.com/databricks/cli" {print $2} $1 == "require" && $2 == "github.com/databricks/cli" {print $3}' "$mod_dir/go.mod" | head -n 1)"
[ "$required" = "v$version" ] \
  || ci_die "scripts/ci/fake-workspace/go.mod requires github.com/databricks/cli ${required:-(none)}, the pipelines pin $version: run (cd scripts/ci/fake-workspace && go get github.com/databricks/cli@v$version && go mod tidy)"

command -v go >/dev/null 2>&1 || ci_die "Go is not installed: the Databricks CLI checks build the CLI with Go >= 1.26"
go_version="$(go env GOVERSION)"
key="$(cat "$mod_dir/go.mod" "$mod_dir/go.sum" "$mod_dir"/*.go <(echo "$go_version") | sha256sum | cut -c1-12)"
cache_root="${SPARK_MLOPS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/spark-mlops}/databricks-cli"
bin="$cache_root/$version-$key"

if [ -x "$bin/databricks" ] && [ -x "$bin/fake-workspace" ] \
   && [ "$("$bin/databricks" version 2>/dev/null)" = "Databricks CLI v$version" ]; then
  echo "Databricks CLI $version and fake-workspace: cached in $bin" >&2
else
  ci_section "build the Databricks CLI $version and fake-workspace with $go_version (cold: a few minutes on 2 cores)" >&2
  mkdir -p "$cache_root"
  work="$(mktemp -d "$cache_root/.build.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  started=$SECONDS
  # -mod=readonly: every module must match go.sum; GOTOOLCHAIN=local: never fetch another Go;
  # -trimpath: no local paths in the binaries (and one cache entry whatever the checkout folder);
  # -s -w: no symbol table or DWARF (a 73 MB binary instead of 103 MB, and a shorter link).
  (cd "$mod_dir" && GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" go build -trimpath \
      -ldflags "-s -w -X github.com/databricks/cli/internal/build.buildVersion=$version" \
      -o "$work/" . github.com/databricks/cli) >&2 \
    || ci_die "go build of github.com/databricks/cli v$version failed (output above)"
  mv "$work/cli" "$work/databricks"
  got="$("$work/databricks" version)"
  [ "$got" = "Databricks CLI v$version" ] || ci_die "the built CLI reports '$got', expected 'Databricks CLI v$version'"
  rm -rf "$bin"
  mv "$work" "$bin"
  trap - EXIT
  echo "built in $((SECONDS - started)) s: $bin" >&2
fi
echo "$bin"
