#!/usr/bin/env bash
# Shared helpers for the CI scripts in scripts/ci/. Sourced, never executed.
# Every helper works the same on an Azure Pipelines agent and on a laptop: the
# ##vso[...] logging commands are only printed when running under Azure Pipelines (TF_BUILD).

CI_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export CI_ROOT

ci_on_agent() { [ "${TF_BUILD:-}" = "True" ] || [ "${TF_BUILD:-}" = "true" ]; }

# CI=true: checks that cannot run (a missing schema) fail instead of being skipped.
ci_is_ci() { case "${CI:-}" in true|True|TRUE|1|yes) return 0 ;; *) return 1 ;; esac; }

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

# ci_neutralise: stdin to stdout with every `##vso[` and `##[` made inert (`# #vso[`, `# #[`).
# The agent runs a logging command found anywhere in a step's output, and the output of a job
# run is data (a task's error may quote a CSV header): it must never set a variable, prepend a
# path or complete the task. The bundle steps also run with `target: commands: restricted`
# (templates/steps/databricks-bundle.yml), which still allows task.complete and task.logissue.
ci_neutralise() { sed -E 's/##(vso)?\[/# #\1[/g'; }

# ci_databricks ARGS...: `databricks ARGS...`, its stdout and stderr (merged) neutralised on the
# way to the log. Returns the CLI's exit code.
ci_databricks() {
  local rc=0
  databricks "$@" 2>&1 | ci_neutralise || rc=${PIPESTATUS[0]}
  return "$rc"
}

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
#                     connection). `az` is signed in as the service principal and the CLI takes
#                     its tokens from that session (DATABRICKS_AUTH_TYPE=azure-cli); nothing reads
#                     ARM_* variables on this route, so none are exported. addSpnToEnvironment only
#                     provides servicePrincipalId for BUNDLE_VAR_service_principal.
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

# ---- Which workspace a bundle target deploys to, and the CLI profile that says so.
# Each shared target of databricks.yml names a CLI profile (targets.<t>.workspace.profile), and
# from CLI 1.7.0 on that profile wins over DATABRICKS_HOST (databricks/cli #5702,
# libs/databrickscfg/loader.go ProfileAuthLoaders). The deploy stages have no PyYAML (install:
# none), so the map is a naming convention, checked against databricks.yml by
# tests/azure/test_ci_scripts.py (test_profile_convention_matches_databricks_yml):
#   test, staging -> workspace staging -> profile spark-mlops-staging
#   prod          -> workspace prod    -> profile spark-mlops-prod
#   dev           -> no profile (each developer's own login)

# ci_target_workspace TARGET: the workspace (staging|prod) of a shared target; nothing for dev.
# Returns 1 (and prints nothing) for a target the convention does not know.
ci_target_workspace() {
  case "$1" in
    test|staging) echo staging ;;
    prod) echo prod ;;
    dev) ;;
    *) return 1 ;;
  esac
}

# ci_target_profile TARGET: the CLI profile a target names in databricks.yml; nothing for dev.
# Returns 1 for an unknown target.
ci_target_profile() {
  local workspace
  workspace="$(ci_target_workspace "$1")" || return 1
  [ -z "$workspace" ] || echo "spark-mlops-$workspace"
}

# ci_databricks_profile TARGET...: after ci_databricks_auth, writes the CLI profile of this
# step's workspace into a config file of its own and exports DATABRICKS_CONFIG_FILE, so that the
# targets' workspace.profile resolves on an agent that has no ~/.databrickscfg.
#
#   CI_WORKSPACE (staging|prod)  the workspace whose variable group this step has (set by
#                                templates/steps/databricks-bundle.yml, parameter `workspace`).
#                                Every TARGET must deploy to it: the staging stage can never
#                                deploy -t prod, even with prod's profile elsewhere on the agent.
#   DATABRICKS_HOST              the host of that workspace (variable group).
#
# The file holds host, auth_type and, on the azure-devops-oidc route, client_id; never a token.
# auth_type must be in the profile: with an explicitly selected profile the CLI ignores
# DATABRICKS_AUTH_TYPE from the environment (libs/databrickscfg/loader.go envAlwaysSkipAttrs).
# client_id would also be gap-filled from DATABRICKS_CLIENT_ID (resolveAuthGapFromEnv), but the
# azure-devops-oidc credentials read it from the resolved config (databricks-sdk-go
# config/auth_oidc.go oidcStrategy: cfg.ClientID), so the profile carries it itself. The
# pipeline's token stays in SYSTEM_ACCESSTOKEN, read by the SDK from the environment
# (config/experimental/auth/oidc/azuredevops.go).
#
# Off an agent without CI_WORKSPACE, nothing is written: the developer's own profiles
# (~/.databrickscfg or DATABRICKS_CONFIG_FILE) are used. Exit 2 on a configuration error.
ci_databricks_profile() {
  local t workspace profile="" dir cfg
  for t in "$@"; do
    if ! workspace="$(ci_target_workspace "$t")"; then
      ci_error "bundle target '$t' is not in the target -> workspace map of scripts/ci/lib.sh (ci_target_workspace)"
      exit 2
    fi
    [ -n "$workspace" ] || continue  # dev: no profile
    if ci_is_set "${CI_WORKSPACE:-}" && [ "$workspace" != "$CI_WORKSPACE" ]; then
      ci_error "target '$t' deploys to the $workspace workspace (profile spark-mlops-$workspace), but this step has the $CI_WORKSPACE workspace's variable group: refusing (a $CI_WORKSPACE stage never touches $workspace)"
      exit 2
    fi
    profile="spark-mlops-$workspace"
  done
  [ -n "$profile" ] || return 0
  if ! ci_is_set "${CI_WORKSPACE:-}"; then
    if ci_on_agent; then
      ci_error "CI_WORKSPACE is not set: the step must say whose variable group it has (templates/steps/databricks-bundle.yml, parameter workspace)"
      exit 2
    fi
    echo "databricks profile: $profile from your own CLI configuration (${DATABRICKS_CONFIG_FILE:-~/.databrickscfg}; CI_WORKSPACE not set)"
    return 0
  fi
  case "$CI_WORKSPACE" in staging|prod) ;; *)
    ci_error "CI_WORKSPACE must be staging or prod, not '$CI_WORKSPACE'"; exit 2 ;;
  esac
  # One line per value: anything that could start a new line or section of the INI file is refused.
  local host="${DATABRICKS_HOST:-}"
  if ! ci_is_set "$host" || [[ "$host" != https://?* || "$host" == *[[:space:]]* || "$host" == *[][]* ]]; then
    ci_error "DATABRICKS_HOST of the $CI_WORKSPACE workspace is missing or not an https:// URL (the stage's variable group: spark-mlops-$CI_WORKSPACE in CD, spark-mlops-pr for pull requests)"
    exit 2
  fi
  if [ "${DATABRICKS_AUTH_TYPE:-}" = "azure-devops-oidc" ] && ! [[ "${DATABRICKS_CLIENT_ID:-}" =~ ^[A-Za-z0-9-]+$ ]]; then
    ci_error "DATABRICKS_CLIENT_ID is not an application id: '${DATABRICKS_CLIENT_ID:-}'"
    exit 2
  fi
  if ci_is_set "${AGENT_TEMPDIRECTORY:-}"; then
    dir="$AGENT_TEMPDIRECTORY/spark-mlops-databricks"; mkdir -p "$dir"
  else
    dir="$(mktemp -d)"
  fi
  cfg="$dir/databrickscfg"
  (
    umask 077
    {
      echo "; written by scripts/ci/lib.sh ci_databricks_profile: no tokens here"
      echo "[$profile]"
      echo "host = $DATABRICKS_HOST"
      if [ -n "${DATABRICKS_AUTH_TYPE:-}" ]; then echo "auth_type = $DATABRICKS_AUTH_TYPE"; fi
      if [ "${DATABRICKS_AUTH_TYPE:-}" = "azure-devops-oidc" ]; then echo "client_id = $DATABRICKS_CLIENT_ID"; fi
    } >"$cfg"
  )
  export DATABRICKS_CONFIG_FILE="$cfg"
  # DATABRICKS_CONFIG_PROFILE would replace every target's workspace.profile
  # (databricks/cli, cmd/root package, bundle.go: configureProfile).
  unset DATABRICKS_CONFIG_PROFILE
  echo "databricks profile: [$profile] host $DATABRICKS_HOST, auth ${DATABRICKS_AUTH_TYPE:-default chain} -> $cfg"
}

# ci_run_url FILE: the last job run URL that `databricks bundle run` printed ("Run URL: ..." is a
# progress event on stderr: databricks/cli bundle/run/progress/job_events.go), or nothing.
# Never fails: a run that did not start prints no URL, and that must not abort the caller
# under errexit/pipefail.
ci_run_url() {
  { grep -Eo 'Run URL: *[^ ]+' "$1" 2>/dev/null || true; } | tail -n 1 | sed -E 's/^Run URL: *//'
}

# ci_run_id_from_url URL: the run id in a job run URL, or nothing. Both forms the CLI prints:
# .../jobs/<job>/runs/<run> (libs/workspaceurls ModernizeJobRunPageURL) and the legacy
# ...#job/<job>/run/<run>.
ci_run_id_from_url() {
  { printf '%s\n' "${1:-}" | grep -Eo '(jobs/[0-9]+/runs|job/[0-9]+/run)/[0-9]+' || true; } \
    | tail -n 1 | grep -Eo '[0-9]+$' || true
}

# ci_failed_tasks FILE: "Task <key> FAILED:" blocks of a failed `bundle run` (the task's error
# and trace: databricks/cli bundle/run/progress/job_events.go TaskErrorEvent), each block cut
# to its first lines, on one line. Never fails.
ci_failed_tasks() {
  awk '
    /^Task [^ ]+ FAILED:/ { if (block != "") print block; block = $0; n = 0; next }
    block != "" && n < 3 && NF > 0 { block = block " " $0; n++ }
    END { if (block != "") print block }
  ' "$1" 2>/dev/null | tr '\n' ' ' || true
}

# ci_bundle_run JOB TARGET [extra args]: `databricks bundle run` with the run URL, the failed
# tasks and the error surfaced in the log (and as a pipeline error) when the job run fails.
# Sets CI_RUN_URL and CI_RUN_ID (empty when the CLI printed no run URL, e.g. the run never
# started). Returns the CLI's exit code. CI_RUN_FAILURE_IS_ERROR=0: log a failure as a plain
# line instead of a pipeline error.
ci_bundle_run() {
  local job="$1" target="$2"; shift 2
  local out rc=0 err tasks
  out="$(mktemp)"
  ci_section "databricks bundle run $job -t $target"
  databricks bundle run "$job" -t "$target" "$@" 2>&1 | ci_neutralise | tee "$out" || rc=${PIPESTATUS[0]}
  CI_RUN_URL="$(ci_run_url "$out")"
  CI_RUN_ID="$(ci_run_id_from_url "$CI_RUN_URL")"
  if [ "$rc" -ne 0 ]; then
    tasks="$(ci_failed_tasks "$out")"
    err="$({ grep -E '^(Error|error):' "$out" || true; } | tail -n 3 | tr '\n' ' ')"
    local report="job '$job' (target $target) failed with exit code $rc. Run URL: ${CI_RUN_URL:-<none printed: the run may not have started>}. ${tasks:+$tasks }${err:-see the log above}"
    # A validated job's failure may be a rejection, which the caller reports itself (as a warning
    # or an error): then this is only a log line, not a pipeline error.
    if [ "${CI_RUN_FAILURE_IS_ERROR:-1}" = "1" ]; then ci_error "$report"; else echo "$report"; fi
  else
    echo "job '$job' (target $target) succeeded. Run URL: ${CI_RUN_URL:-<none printed>}"
  fi
  rm -f "$out"
  return "$rc"
}

# The Python the pipeline set up, never a bare `python` (an agent may not have one): $CI_PYTHON
# when set, else the project's .venv, else UsePythonVersion's interpreter ($pythonLocation),
# else python3 on PATH.
ci_python() {
  if [ -n "${CI_PYTHON:-}" ]; then echo "$CI_PYTHON"
  elif [ -x "$CI_ROOT/.venv/bin/python" ]; then echo "$CI_ROOT/.venv/bin/python"
  elif [ -n "${pythonLocation:-}" ] && [ -x "$pythonLocation/bin/python3" ]; then echo "$pythonLocation/bin/python3"
  elif command -v python3 >/dev/null 2>&1; then command -v python3
  else ci_die "no Python interpreter: set up Python (UsePythonVersion@0) or set CI_PYTHON"
  fi
}

# ci_show_wheel DIST_DIR: exactly one project wheel in DIST_DIR; prints its name and sha256 and
# checks it against DIST_DIR/SHA256SUMS written when it was built (scripts/ci/build-wheel.sh).
# Sets CI_WHEEL (path) and CI_WHEEL_SHA256.
ci_show_wheel() {
  local dist="$1" wheels=() expected name
  shopt -s nullglob
  wheels=("$dist"/spark_mlops-*.whl)
  shopt -u nullglob
  [ "${#wheels[@]}" -eq 1 ] \
    || ci_die "expected exactly one prebuilt wheel in $dist, found ${#wheels[@]} (build it with scripts/ci/build-wheel.sh)"
  CI_WHEEL="${wheels[0]}"
  name="$(basename "$CI_WHEEL")"
  CI_WHEEL_SHA256="$(sha256sum "$CI_WHEEL" | cut -d' ' -f1)"
  if [ -f "$dist/SHA256SUMS" ]; then
    expected="$(awk -v f="$name" '$2 == f {print $1}' "$dist/SHA256SUMS")"
    [ "$expected" = "$CI_WHEEL_SHA256" ] \
      || ci_die "wheel $name does not match $dist/SHA256SUMS (expected ${expected:-<not listed>}, got $CI_WHEEL_SHA256)"
  fi
  echo "wheel: $name sha256 $CI_WHEEL_SHA256"
}

# ci_failed_run_outcome RUN_ID REJECTION_TASK: after a failed validated job run (release,
# model_deployment), tells "the gate rejected the model" from "the run crashed" by the task
# states of the run (`databricks jobs get-run RUN_ID -o json`, tasks[].state.result_state;
# scripts/ci/run_result.py). Returns 0 when REJECTION_TASK succeeded (a rejection was recorded),
# 1 otherwise (a crash, or the run id or its states could not be read).
ci_failed_run_outcome() {
  local run_id="$1" task="$2" json rc=0
  if [ -z "$run_id" ]; then
    echo "no run id: the CLI printed no run URL, so the run may never have started"
    return 1
  fi
  json="$(mktemp)"
  if ! databricks jobs get-run "$run_id" -o json >"$json"; then
    echo "could not read the task states of run $run_id (databricks jobs get-run failed)"
    rm -f "$json"
    return 1
  fi
  "$(ci_python)" "$CI_ROOT/scripts/ci/run_result.py" --rejection-task "$task" "$json" | ci_neutralise \
    || rc=${PIPESTATUS[0]}
  rm -f "$json"
  [ "$rc" -eq 0 ]
}
