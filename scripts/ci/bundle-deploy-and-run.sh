#!/usr/bin/env bash
# Continuous delivery: deploy the bundle to a target with the prebuilt wheel, then run jobs in order.
#
#   bash bundle-deploy-and-run.sh -t staging|prod [--no-deploy] [--run JOB]...
#                                 [--run-release JOB] [--run-gate JOB]
#
#   --run JOB          the job must succeed; any failure fails the step.
#   --run-release JOB  a validated job (release): when it fails because the gate REJECTED the model
#                      (its record_rejection task succeeded), that is a warning and the step goes on
#                      (the target keeps its @champion); when it CRASHED, the step fails.
#   --run-gate JOB     a validated job (model_deployment): a rejection fails the step with a clear
#                      "gate rejected" message (the target keeps its @champion); a crash fails it too.
#   --link-deployment-job  right after the deploy, before any run: link the target's model to its
#                      deployment job (link-deployment-job.sh), so that the version a run registers
#                      starts that job (docs: mlflow/deployment-job).
#
# Jobs run in the order given. The wheel deployed is the one in dist/ (built once by the CD build
# stage, scripts/ci/build-wheel.sh); its name and sha256 are printed before and after the deploy.
# Failures print the job run URL, the failed tasks and the error (parsed from `databricks bundle run`).
#
# Authentication: the target's CLI profile is written from the step's variable group
# (scripts/ci/lib.sh ci_databricks_profile; CI_WORKSPACE=staging|prod names that workspace).
# Recipients: NOTIFICATION_EMAIL of the variable group becomes the bundle variable
# notification_email (who gets the jobs' failure, duration and drift emails); a deploy on an agent
# without it is refused, since every email would go to databricks.yml's placeholder.
# Exit codes: 0 ok; 1 a deploy or a job failed (or the gate rejected the model, --run-gate);
# 2 usage, or the target is not in this step's workspace, or the profile cannot be written, or
# a deploy on an agent has no NOTIFICATION_EMAIL.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REJECTION_TASK="record_rejection"

usage() { echo "usage: $0 -t TARGET [--no-deploy] [--link-deployment-job] [--run JOB]... [--run-release JOB]... [--run-gate JOB]..." >&2; exit 2; }
target=""; deploy=1; link=0; runs=()
while [ $# -gt 0 ]; do
  case "$1" in
    -t|--target) target="${2:-}"; shift 2 || usage ;;
    --no-deploy) deploy=0; shift ;;
    --link-deployment-job) link=1; shift ;;
    --run) runs+=("plain:${2:-}"); shift 2 || usage ;;
    --run-release) runs+=("release:${2:-}"); shift 2 || usage ;;
    --run-gate) runs+=("gate:${2:-}"); shift 2 || usage ;;
    *) usage ;;
  esac
done
[ -n "$target" ] || usage

# The bundle root: the repository checkout, or the downloaded pipeline artifact when the
# script runs from there (deployment jobs).
root="${BUNDLE_ROOT:-$CI_ROOT}"
[ -f "$root/databricks.yml" ] || ci_die "no databricks.yml in $root (set BUNDLE_ROOT)"
cd "$root"
ci_databricks_auth
ci_databricks_profile "$target"

# A variable of the workspace's variable group becomes a bundle variable (the CLI reads
# BUNDLE_VAR_<name> case-sensitively, bundle/config/mutator/set_variables.go, while Azure DevOps
# upper-cases the names it exports). On an agent a missing one fails the deploy with exit 2.
group_var_to_bundle() {
  local group_var="$1" bundle_var="$2" consequence="$3" value
  value="${!group_var:-}"
  if ci_is_set "$value"; then
    export "BUNDLE_VAR_$bundle_var=$value"
  elif [ -z "$(printenv "BUNDLE_VAR_$bundle_var" || true)" ]; then
    if ci_on_agent; then
      ci_error "$group_var is not set in the $target workspace's variable group: $consequence (docs/azure-devops.md, variable groups)"
      exit 2
    fi
    ci_warn "$group_var is not set: target $target uses databricks.yml's default $bundle_var ($consequence)"
  fi
}

if [ "$deploy" -eq 1 ]; then
  group_var_to_bundle NOTIFICATION_EMAIL notification_email \
    "the jobs' failure emails would go to the placeholder of databricks.yml"
  group_var_to_bundle MODEL_SIGNING_PUBLIC_KEYS model_signing_public_keys \
    "with no trusted public key every model version is refused (exit 9)"
  echo "notification recipient: ${BUNDLE_VAR_notification_email:-databricks.yml default}"
  ci_section "prebuilt wheel to deploy"
  ci_show_wheel "$root/dist"
  ci_section "databricks bundle deploy -t $target"
  ci_databricks bundle deploy -t "$target" || ci_die "bundle deploy -t $target failed"
  echo "deployed wheel to target $target: $(basename "$CI_WHEEL") sha256 $CI_WHEEL_SHA256"
fi
if [ "$link" -eq 1 ]; then
  bash "$CI_ROOT/scripts/ci/link-deployment-job.sh" -t "$target" || ci_die "linking $target's model to its deployment job failed"
fi

warnings=0
for entry in ${runs[@]+"${runs[@]}"}; do
  kind="${entry%%:*}"; job="${entry#*:}"
  [ -n "$job" ] || usage
  CI_RUN_ID=""
  failure_is_error=1; [ "$kind" = "plain" ] || failure_is_error=0
  if CI_RUN_FAILURE_IS_ERROR="$failure_is_error" ci_bundle_run "$job" "$target"; then
    continue
  fi
  [ "$kind" != "plain" ] || ci_die "stopping: job '$job' failed on target $target"
  ci_section "why did '$job' fail? (task states of run ${CI_RUN_ID:-<unknown>})"
  if ci_failed_run_outcome "$CI_RUN_ID" "$REJECTION_TASK"; then
    if [ "$kind" = "release" ]; then
      ci_warn "job '$job' on target $target REJECTED the model: its @champion is unchanged, and the pipeline goes on with it. Run URL: ${CI_RUN_URL:-<none>}"
      warnings=1
      continue
    fi
    ci_die "gate failed: job '$job' on target $target REJECTED the model; $target keeps its current @champion. Run URL: ${CI_RUN_URL:-<none>}"
  fi
  ci_die "job '$job' on target $target CRASHED (not a model rejection). Run URL: ${CI_RUN_URL:-<none printed>}"
done

if [ "$warnings" -eq 1 ] && ci_on_agent; then
  echo "##vso[task.complete result=SucceededWithIssues;]a model was rejected on target $target"
fi
echo "done: target $target${runs[*]:+, jobs: ${runs[*]}}"
