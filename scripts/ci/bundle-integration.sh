#!/usr/bin/env bash
# Pull-request integration in the staging workspace, using the bundle target `test`.
#
#   bash bundle-integration.sh run -t test [--validate TARGET]... [--job JOB]... [--suffix S]
#       0. bash scripts/ci/build-wheel.sh dist         the wheel every target deploys (prebuilt artifact)
#       1. databricks bundle validate -t TARGET        for each --validate (e.g. staging: a target of
#                                                      the same workspace; -t prod needs the prod
#                                                      workspace's profile and is refused here)
#       2. databricks bundle deploy -t test            (isolated by --var deployment_suffix=S)
#       3. databricks bundle run JOB -t test           for each --job, in order; stops at the first failure
#       4. databricks bundle destroy -t test --auto-approve --force-lock
#                                                      ALWAYS (EXIT trap), even when 0-3 failed
#   bash bundle-integration.sh destroy -t test [--suffix S]
#       The pipeline's safety net (a step with condition: always()): destroys the deployment
#       unless the run above already destroyed it (e.g. it was cancelled or timed out).
#
# --force-lock: a cancelled run is killed (SIGINT, SIGTERM, then SIGKILL within seconds), so the
# trap's destroy may die holding the deployment lock, and a bundle lock never expires
# (databricks/cli libs/locker). Forcing the lock is safe only here: the `test` deployment of
# suffix S belongs to this pipeline run alone. It is never used for staging/prod
# (scripts/ci/check_pipelines.py enforces it).
#
# S defaults to pr_<pull request id>_<build id> on Azure Pipelines, so that parallel PR runs do not
# share a deployment. Exit code: 0 when every step passed; otherwise non-zero, with the failing
# step, the job run URL and the error printed (and logged as a pipeline error); 2 for usage, or
# when a target is not in this step's workspace (CI_WORKSPACE, scripts/ci/lib.sh
# ci_databricks_profile writes that workspace's CLI profile before any bundle command).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { echo "usage: $0 run|destroy -t TARGET [--validate TARGET]... [--job JOB]... [--suffix S]" >&2; exit 2; }

[ $# -ge 1 ] || usage
action="$1"; shift
target=""; suffix=""; validate=(); jobs=()
while [ $# -gt 0 ]; do
  case "$1" in
    -t|--target) target="$2"; shift 2 ;;
    --validate) validate+=("$2"); shift 2 ;;
    --job) jobs+=("$2"); shift 2 ;;
    --suffix) suffix="$2"; shift 2 ;;
    *) usage ;;
  esac
done
[ -n "$target" ] || usage
case "$target" in
  staging|prod) ci_die "bundle-integration.sh deploys and destroys; it must never target '$target'" ;;
esac

if [ -z "$suffix" ]; then
  if ci_is_set "${SYSTEM_PULLREQUEST_PULLREQUESTID:-}"; then
    suffix="pr_${SYSTEM_PULLREQUEST_PULLREQUESTID}_${BUILD_BUILDID:-0}"
  elif ci_is_set "${BUILD_BUILDID:-}"; then
    suffix="ci_${BUILD_BUILDID}"
  else
    suffix="local_$(id -un | tr -c 'A-Za-z0-9_\n' '_')"
  fi
fi
bundle_vars=(--var "deployment_suffix=$suffix")
marker_dir="${CI_STATE_DIR:-$CI_ROOT/.databricks/ci}"  # where the "destroyed" marker goes
marker="$marker_dir/destroyed-$target-$suffix"

cd "$CI_ROOT"
ci_databricks_auth
# One profile for every target this step touches; all of them must be in the step's workspace.
ci_databricks_profile "$target" ${validate[@]+"${validate[@]}"}

destroy() {
  ci_section "databricks bundle destroy -t $target (deployment_suffix=$suffix)"
  if ci_databricks bundle destroy -t "$target" "${bundle_vars[@]}" --auto-approve --force-lock; then
    mkdir -p "$marker_dir" && touch "$marker"
    return 0
  fi
  ci_error "bundle destroy -t $target failed: resources of deployment '$suffix' may be left in the workspace"
  return 1
}

case "$action" in
  destroy)
    if [ -f "$marker" ]; then
      echo "deployment '$suffix' of target $target was already destroyed by the integration step"
      exit 0
    fi
    destroy
    exit $?
    ;;
  run) ;;
  *) usage ;;
esac

rm -f "$marker"
failed_step=""
on_exit() {
  local rc=$?
  trap - EXIT
  destroy || { [ "$rc" -ne 0 ] || rc=1; }
  if [ "$rc" -ne 0 ]; then
    ci_error "bundle integration failed at: ${failed_step:-destroy} (exit $rc)"
  else
    echo "bundle integration passed (deployment_suffix=$suffix)"
  fi
  exit "$rc"
}
trap on_exit EXIT

failed_step="build the wheel"
bash "$CI_ROOT/scripts/ci/build-wheel.sh" dist

for t in ${validate[@]+"${validate[@]}"}; do
  failed_step="bundle validate -t $t"
  ci_section "$failed_step"
  ci_databricks bundle validate -t "$t"
done

failed_step="bundle deploy -t $target"
ci_section "$failed_step (deployment_suffix=$suffix)"
ci_databricks bundle deploy -t "$target" "${bundle_vars[@]}"

for job in ${jobs[@]+"${jobs[@]}"}; do
  failed_step="bundle run $job -t $target"
  ci_bundle_run "$job" "$target" "${bundle_vars[@]}"
done
failed_step=""
