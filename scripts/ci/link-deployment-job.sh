#!/usr/bin/env bash
# After `databricks bundle deploy -t TARGET`: link the target's registered model to its deployment
# job (resources/deployment_job.job.yml), so that the workspace runs that job for every new
# version of the model (docs: mlflow/deployment-job). A bundle cannot declare the link: the
# registered model's deployment_job_id is not a field of resources.registered_models (CLI 1.12.1).
#
#   bash link-deployment-job.sh -t prod [--job deployment_job]
#
# 1. the job's id and the model's name from `databricks bundle summary -t TARGET -o json`
#    (the deployment state: resources.jobs.<key>.id exists once the job is deployed);
# 2. the model's current deployment_job_id from MLflow's Unity Catalog registry API
#    (GET /api/2.0/mlflow/unity-catalog/registered-models/get, which MlflowClient with
#    registry_uri databricks-uc calls); equal: nothing to do (idempotent);
# 3. otherwise PATCH .../registered-models/update {name, deployment_job_id}, what
#    MlflowClient.update_registered_model(name, deployment_job_id=...) sends, and read it back.
#
# Authentication as every CD step (scripts/ci/lib.sh: ci_databricks_auth, ci_databricks_profile);
# the `api` calls name the target's profile. Output is ids and names only, neutralised for the
# agent; no token is ever printed. The identity needs to own the registered model (the service
# principal that deployed it) and to see the job.
# Exit codes: 0 linked (or already linked); 1 a CLI call failed or the link did not stick;
# 2 usage, the bundle is not deployed, or the profile cannot be written.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { echo "usage: $0 -t TARGET [--job JOB_KEY]" >&2; exit 2; }
target=""; job="deployment_job"
while [ $# -gt 0 ]; do
  case "$1" in
    -t|--target) target="${2:-}"; shift 2 || usage ;;
    --job) job="${2:-}"; shift 2 || usage ;;
    *) usage ;;
  esac
done
[ -n "$target" ] && [ -n "$job" ] || usage

root="${BUNDLE_ROOT:-$CI_ROOT}"
[ -f "$root/databricks.yml" ] || ci_die "no databricks.yml in $root (set BUNDLE_ROOT)"
cd "$root"
ci_databricks_auth
ci_databricks_profile "$target"
profile="$(ci_target_profile "$target")" || { ci_error "unknown target $target"; exit 2; }
profile_args=(); [ -z "$profile" ] || profile_args=(--profile "$profile")
py="$(ci_python)"
helper="$CI_ROOT/scripts/ci/deployment_job_link.py"
api="/api/2.0/mlflow/unity-catalog/registered-models"

ci_section "link the $target model to its deployment job ($job)"
summary="$(mktemp)"; trap 'rm -f "$summary"' EXIT
databricks bundle summary -t "$target" -o json >"$summary" || ci_die "databricks bundle summary -t $target failed"
read -r job_id model < <("$py" "$helper" ids "$job" <"$summary") || exit 2
[ -n "${job_id:-}" ] && [ -n "${model:-}" ] || exit 2

current="$(databricks api get "$api/get?name=$model" "${profile_args[@]}" | "$py" "$helper" linked)" \
  || ci_die "reading $model from the Unity Catalog registry failed"
if [ "$current" = "$job_id" ]; then
  echo "link: $model is already linked to deployment job $job_id ($job); nothing changed" | ci_neutralise
  exit 0
fi
echo "link: $model deployment_job_id ${current:-none} -> $job_id ($job)" | ci_neutralise
databricks api patch "$api/update" --json "$("$py" "$helper" request "$model" "$job_id")" "${profile_args[@]}" >/dev/null \
  || ci_die "setting deployment_job_id of $model failed"
after="$(databricks api get "$api/get?name=$model" "${profile_args[@]}" | "$py" "$helper" linked)" \
  || ci_die "reading $model back failed"
[ "$after" = "$job_id" ] || ci_die "$model reads deployment_job_id ${after:-none} after the update, not $job_id"
echo "link: $model -> deployment job $job_id ($job): every new version of it now starts that job" | ci_neutralise
