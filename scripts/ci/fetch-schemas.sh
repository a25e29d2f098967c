#!/usr/bin/env bash
# The two schemas the offline checks validate against, fetched so that they never go missing
# in CI (with CI=true a missing schema fails check_pipelines.py, the tests and the bundle
# validation):
#
#   1. the Azure Pipelines schema: service-schema.json of microsoft/azure-pipelines-vscode at a
#      pinned commit, sha256-verified -> $SPARK_MLOPS_AZURE_SCHEMA (scripts/ci/azure_schema.py)
#   2. the bundle schema of the installed, pinned Databricks CLI: `databricks bundle schema`
#      -> $SPARK_MLOPS_BUNDLE_SCHEMA (spark-mlops bundle validate); needs no workspace
#
#   bash fetch-schemas.sh [OUT_DIR]      (default: $AGENT_TEMPDIRECTORY or a temporary folder)
#
# On an agent both paths are exported to the later steps (##vso[task.setvariable]).
# AZURE_PIPELINES_SCHEMA_URL overrides the download location (tests use a file:// URL).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Bump all three together (the sha256 is that of the file at the commit).
AZURE_SCHEMA_COMMIT="e8090fd525cd6ba47d7685c698f3f51983e298c6"
AZURE_SCHEMA_SHA256="f00a9630f6550204148634d9a13f634b5750a225559886effe09a751482f0459"
url="${AZURE_PIPELINES_SCHEMA_URL:-https://raw.githubusercontent.com/microsoft/azure-pipelines-vscode/$AZURE_SCHEMA_COMMIT/service-schema.json}"

out="${1:-${AGENT_TEMPDIRECTORY:-$(mktemp -d)}}"
mkdir -p "$out"

azure="$out/azure-pipelines-service-schema.json"
ci_section "Azure Pipelines schema (microsoft/azure-pipelines-vscode@${AZURE_SCHEMA_COMMIT:0:12})"
curl -fsSL --retry 3 -o "$azure" "$url" || ci_die "download failed: $url"
actual="$(sha256sum "$azure" | cut -d' ' -f1)"
[ "$actual" = "$AZURE_SCHEMA_SHA256" ] \
  || ci_die "sha256 mismatch for the Azure Pipelines schema: expected $AZURE_SCHEMA_SHA256, got $actual"
echo "sha256 OK: $azure"

bundle="$out/databricks-bundle-schema.json"
ci_section "bundle schema: databricks bundle schema"
command -v databricks >/dev/null 2>&1 \
  || ci_die "the Databricks CLI is not on PATH: install it first (bash scripts/ci/install-databricks-cli.sh)"
databricks bundle schema > "$bundle" || ci_die "databricks bundle schema failed"
[ -s "$bundle" ] || ci_die "databricks bundle schema printed nothing"
echo "$(databricks version 2>/dev/null || true): $bundle"

if ci_on_agent; then
  echo "##vso[task.setvariable variable=SPARK_MLOPS_AZURE_SCHEMA]$azure"
  echo "##vso[task.setvariable variable=SPARK_MLOPS_BUNDLE_SCHEMA]$bundle"
fi
echo "SPARK_MLOPS_AZURE_SCHEMA=$azure"
echo "SPARK_MLOPS_BUNDLE_SCHEMA=$bundle"
