#!/usr/bin/env bash
# Installs the pinned Databricks CLI from its GitHub release zip and verifies the zip's sha256.
#
#   DATABRICKS_CLI_VERSION  the version to install (the single pin lives in
#                           .azure/pipelines/templates/variables.yml)            [required]
#   DATABRICKS_CLI_SHA256   expected sha256 of the zip, pinned beside the version. Required with
#                           CI=true (every pipeline sets it): a checksum fetched from the same
#                           place as the zip proves nothing. Off CI, when empty, the checksum is
#                           taken from the release's SHA256SUMS file with a warning.
#   DATABRICKS_CLI_BASE_URL release download base (default https://github.com/databricks/cli/releases/download)
#   DATABRICKS_CLI_INSTALL_DIR  where the binary goes (default: $AGENT_TOOLSDIRECTORY/databricks-cli/<version>
#                           on an agent, else ~/.local/databricks-cli/<version>); it is prepended to PATH
#                           for later pipeline steps (##vso[task.prependpath]).
# Idempotent: an existing binary of the right version is kept.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

version="${DATABRICKS_CLI_VERSION:-}"
ci_is_set "$version" || ci_die "DATABRICKS_CLI_VERSION is not set (see .azure/pipelines/templates/variables.yml)"
version="${version#v}"
base="${DATABRICKS_CLI_BASE_URL:-https://github.com/databricks/cli/releases/download}"
expected="${DATABRICKS_CLI_SHA256:-}"
ci_is_set "$expected" || expected=""
if [ -z "$expected" ] && ci_is_ci; then
  ci_die "DATABRICKS_CLI_SHA256 is not pinned for Databricks CLI $version (CI=true refuses an unverified download): set it in .azure/pipelines/templates/variables.yml to the sha256 of databricks_cli_${version}_linux_amd64.zip from the release's databricks_cli_${version}_SHA256SUMS"
fi
if [ -n "$expected" ] && ! [[ "$expected" =~ ^[0-9a-f]{64}$ ]]; then
  ci_die "DATABRICKS_CLI_SHA256 is not a sha256 (64 lowercase hex digits): '$expected'"
fi

case "$(uname -s)" in
  Linux) os=linux ;;
  Darwin) os=darwin ;;
  *) ci_die "unsupported OS $(uname -s)" ;;
esac
case "$(uname -m)" in
  x86_64|amd64) arch=amd64 ;;
  aarch64|arm64) arch=arm64 ;;
  *) ci_die "unsupported architecture $(uname -m)" ;;
esac

default_dir="${HOME}/.local/databricks-cli/$version"
[ -n "${AGENT_TOOLSDIRECTORY:-}" ] && default_dir="$AGENT_TOOLSDIRECTORY/databricks-cli/$version"
dir="${DATABRICKS_CLI_INSTALL_DIR:-$default_dir}"

if [ -x "$dir/databricks" ] && "$dir/databricks" version 2>/dev/null | grep -qF "v$version"; then
  echo "Databricks CLI $version already installed in $dir"
else
  zip="databricks_cli_${version}_${os}_${arch}.zip"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  echo "downloading $base/v$version/$zip"
  curl -fsSL --retry 3 -o "$work/$zip" "$base/v$version/$zip" || ci_die "download failed: $base/v$version/$zip"
  if [ -z "$expected" ]; then
    ci_warn "DATABRICKS_CLI_SHA256 is not pinned: checking $zip against the release's SHA256SUMS instead. Pin it in .azure/pipelines/templates/variables.yml."
    curl -fsSL --retry 3 -o "$work/SHA256SUMS" "$base/v$version/databricks_cli_${version}_SHA256SUMS" \
      || ci_die "download failed: databricks_cli_${version}_SHA256SUMS"
    expected="$(awk -v f="$zip" '$2 == f || $2 == "*"f {print $1}' "$work/SHA256SUMS")"
    [ -n "$expected" ] || ci_die "$zip is not listed in databricks_cli_${version}_SHA256SUMS"
  fi
  actual="$(sha256sum "$work/$zip" | cut -d' ' -f1)"
  if [ "$actual" != "$expected" ]; then
    ci_die "sha256 mismatch for $zip: expected $expected, got $actual"
  fi
  echo "sha256 OK: $actual"
  mkdir -p "$dir"
  unzip -o -q "$work/$zip" databricks -d "$dir" || ci_die "$zip has no 'databricks' binary"
  chmod +x "$dir/databricks"
fi

if ci_on_agent; then echo "##vso[task.prependpath]$dir"; fi
export PATH="$dir:$PATH"
"$dir/databricks" version
