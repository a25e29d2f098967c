#!/usr/bin/env bash
# Decides whether the workspace-bound CI steps can run, and says why not when they cannot.
# Sets the step output variable `configured` (true|false); never fails the pipeline, so that a
# fork or a project without the Databricks setup gets a visible warning instead of an obscure
# authentication error. The pipeline conditions the workspace job on this output.
#
# Reads: DATABRICKS_HOST (variable group), CI_DATABRICKS_AUTH (azure-cli | azure-devops-oidc),
#        DATABRICKS_CLIENT_ID (azure-devops-oidc route), SYSTEM_ACCESSTOKEN (azure-devops-oidc route),
#        SYSTEM_PULLREQUEST_ISFORK (set by Azure Pipelines on PR builds).
# Usage: check-workspace-config.sh [--group NAME]   (NAME only appears in the messages)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

group="spark-mlops-pr"
while [ $# -gt 0 ]; do
  case "$1" in
    --group) group="$2"; shift 2 ;;
    *) ci_die "usage: $0 [--group NAME]" ;;
  esac
done

missing=()
reason=""
if [ "${SYSTEM_PULLREQUEST_ISFORK:-False}" = "True" ] || [ "${SYSTEM_PULLREQUEST_ISFORK:-}" = "true" ]; then
  reason="this pull request comes from a fork: the Databricks service connection and variables are not available to it"
else
  ci_is_set "${DATABRICKS_HOST:-}" || missing+=("DATABRICKS_HOST")
  if [ "${CI_DATABRICKS_AUTH:-azure-cli}" = "azure-devops-oidc" ]; then
    ci_is_set "${DATABRICKS_CLIENT_ID:-}" || missing+=("DATABRICKS_CLIENT_ID")
    ci_is_set "${SYSTEM_ACCESSTOKEN:-}" || missing+=("SYSTEM_ACCESSTOKEN (map \$(System.AccessToken))")
  fi
  if [ "${#missing[@]}" -gt 0 ]; then
    reason="missing in variable group '$group': ${missing[*]}"
  fi
fi

if [ -n "$reason" ]; then
  ci_warn "Skipping the Databricks workspace stage: $reason. See docs/azure-devops.md."
  ci_set_output configured false
else
  echo "workspace configuration found (host ${DATABRICKS_HOST}, auth route ${CI_DATABRICKS_AUTH:-azure-cli})"
  ci_set_output configured true
fi
