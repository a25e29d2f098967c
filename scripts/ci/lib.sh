#!/usr/bin/env bash
# Shared helpers for the CI scripts in scripts/ci/. Sourced, never executed.
# Every helper works the same on an Azure Pipelines agent and on a laptop: the
# ##vso[...] logging commands are only printed when running under Azure Pipelines (TF_BUILD).

CI_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export CI_ROOT

ci_on_agent() { [ "${TF_BUILD:-}" = "True" ] || [ "${TF_BUILD:-}" = "true" ]; }

ci_section() {
  if ci_on_agent; then echo "##[section]$*"; else echo "==> $*"; fi
}

ci_warn() {
  if ci_on_agent; then echo "##vso[task.logissue type=warning]$*"; else echo "warning: $*" >&2; fi
}

ci_error() {
  if ci_on_agent; then echo "##vso[task.logissue type=error]$*"; else echo "error: $*" >&2; fi
}

ci_die() { ci_error "$*"; exit 1; }

# ci_set_output NAME VALUE: an output variable of the current step (step must have a `name:`).
ci_set_output() {
  if ci_on_agent; then
    echo "##vso[task.setvariable variable=$1;isOutput=true]$2"
  else
    echo "output: $1=$2"
  fi
}

# An Azure Pipelines macro that was not defined stays literally "$(NAME)" in the environment.
ci_is_set() {
  local value="${1:-}"
  [ -n "$value" ] && [[ "$value" != '$('*')' ]]
}

# Selects the Databricks authentication for the bundle commands. Two routes (docs/azure-devops.md):
#  azure-cli          the step runs inside AzureCLI@2 (workload identity federation service
#                     connection, addSpnToEnvironment: true). `az` is signed in as the service
#                     principal; the CLI uses that session (DATABRICKS_AUTH_TYPE=azure-cli).
#                     The federated credentials are also exported as ARM_CLIENT_ID / ARM_TENANT_ID /
#                     ARM_OIDC_TOKEN for tools that read them.
#  azure-devops-oidc  a plain step with SYSTEM_ACCESSTOKEN mapped; the CLI exchanges the pipeline's
#                     OIDC token for a Databricks token (federation policy on the service principal).
ci_databricks_auth() {
  local route="${CI_DATABRICKS_AUTH:-}"
  if [ -z "$route" ]; then
    if [ -n "${servicePrincipalId:-}" ]; then route=azure-cli
    elif [ -n "${DATABRICKS_AUTH_TYPE:-}" ]; then route="$DATABRICKS_AUTH_TYPE"
    else route=environment
    fi
  fi
  case "$route" in
    azure-cli)
      [ -n "${servicePrincipalId:-}" ] && export ARM_CLIENT_ID="$servicePrincipalId"
      [ -n "${tenantId:-}" ] && export ARM_TENANT_ID="$tenantId"
      [ -n "${idToken:-}" ] && export ARM_OIDC_TOKEN="$idToken"
      export DATABRICKS_AUTH_TYPE=azure-cli
      ;;
    azure-devops-oidc)
      ci_is_set "${SYSTEM_ACCESSTOKEN:-}" \
        || ci_die "azure-devops-oidc needs SYSTEM_ACCESSTOKEN: map it with env: SYSTEM_ACCESSTOKEN: \$(System.AccessToken)"
      ci_is_set "${DATABRICKS_CLIENT_ID:-}" \
        || ci_die "azure-devops-oidc needs DATABRICKS_CLIENT_ID (the service principal's application id) from the variable group"
      export DATABRICKS_AUTH_TYPE=azure-devops-oidc
      ;;
    environment) ;;  # whatever the environment / ~/.databrickscfg provides (local runs)
    *) ci_die "unknown Databricks auth route: $route (expected azure-cli or azure-devops-oidc)" ;;
  esac
  # An undefined macro must not reach the CLI as a host.
  if [ -n "${DATABRICKS_HOST:-}" ] && ! ci_is_set "$DATABRICKS_HOST"; then unset DATABRICKS_HOST; fi
  # run_as / permissions of staging and prod use ${var.service_principal}: the deploying identity.
  if [ -z "${BUNDLE_VAR_service_principal:-}" ]; then
    if ci_is_set "${DATABRICKS_CLIENT_ID:-}"; then export BUNDLE_VAR_service_principal="$DATABRICKS_CLIENT_ID"
    elif [ -n "${servicePrincipalId:-}" ]; then export BUNDLE_VAR_service_principal="$servicePrincipalId"
    fi
  fi
  # DATABRICKS_CLIENT_ID only matters to the azure-devops-oidc route; elsewhere it would make the
  # CLI look for OAuth M2M credentials.
  if [ "${DATABRICKS_AUTH_TYPE:-}" != "azure-devops-oidc" ]; then unset DATABRICKS_CLIENT_ID; fi
  echo "databricks auth: ${DATABRICKS_AUTH_TYPE:-default chain}"
}

# ci_bundle_run JOB TARGET [extra args]: `databricks bundle run` with the run URL and the error
# surfaced in the log (and as a pipeline error) when the job run fails. Returns the CLI's exit code.
ci_bundle_run() {
  local job="$1" target="$2"; shift 2
  local out rc=0 url err
  out="$(mktemp)"
  ci_section "databricks bundle run $job -t $target"
  databricks bundle run "$job" -t "$target" "$@" 2>&1 | tee "$out" || rc=${PIPESTATUS[0]}
  url="$(grep -Eo 'Run URL: *[^ ]+' "$out" | tail -n 1 | sed -E 's/^Run URL: *//')"
  if [ "$rc" -ne 0 ]; then
    err="$(grep -E '^(Error|error):' "$out" | tail -n 3 | tr '\n' ' ')"
    ci_error "job '$job' (target $target) failed with exit code $rc. Run URL: ${url:-<none printed>}. ${err:-see the log above}"
  else
    echo "job '$job' (target $target) succeeded. Run URL: ${url:-<none printed>}"
  fi
  rm -f "$out"
  return "$rc"
}

# The project's Python: the .venv when it exists, else python3 on PATH.
ci_python() {
  if [ -x "$CI_ROOT/.venv/bin/python" ]; then echo "$CI_ROOT/.venv/bin/python"
  else command -v python3 || command -v python
  fi
}
