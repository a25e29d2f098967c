#!/usr/bin/env bash
# Continuous delivery: deploy the bundle to a target, then run jobs in order.
#
#   bundle-deploy-and-run.sh -t staging|prod [--no-deploy] [--run JOB]...
#
# Fails (non-zero) as soon as the deploy or a job run fails, printing the job run URL and the
# error (parsed from `databricks bundle run`) as a pipeline error.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { echo "usage: $0 -t TARGET [--no-deploy] [--run JOB]..." >&2; exit 2; }
target=""; deploy=1; jobs=()
while [ $# -gt 0 ]; do
  case "$1" in
    -t|--target) target="$2"; shift 2 ;;
    --no-deploy) deploy=0; shift ;;
    --run) jobs+=("$2"); shift 2 ;;
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

if [ "$deploy" -eq 1 ]; then
  ci_section "databricks bundle deploy -t $target"
  databricks bundle deploy -t "$target" || ci_die "bundle deploy -t $target failed"
fi
for job in "${jobs[@]}"; do
  ci_bundle_run "$job" "$target" || ci_die "stopping: job '$job' failed on target $target"
done
echo "done: target $target${jobs[*]:+, jobs: ${jobs[*]}}"
