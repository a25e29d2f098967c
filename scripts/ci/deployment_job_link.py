"""The JSON side of scripts/ci/link-deployment-job.sh (standard library only: the deploy stages
install nothing).

  python3 deployment_job_link.py ids JOB_KEY < summary.json
      the deployed job's id and the registered model's three-part name, on one line, from
      `databricks bundle summary -o json` after `bundle deploy` (resources.jobs.<key>.id, as the
      CLI's acceptance test acceptance/bundle/deploy/immutable reads it; the model from
      resources.registered_models.model's catalog_name.schema_name.name);
  python3 deployment_job_link.py linked < get.json
      the deployment_job_id of a registered model (the response of MLflow's Unity Catalog
      registered-models/get: registered_model.deployment_job_id), or nothing;
  python3 deployment_job_link.py request MODEL JOB_ID
      the body of registered-models/update that sets the link (what MlflowClient's
      update_registered_model(name, deployment_job_id=...) sends on Unity Catalog:
      mlflow/store/_unity_catalog/registry/rest_store.py).

Exit 2 with one line on stderr when the JSON is not what the CLI prints (no such job, no id: the
bundle is not deployed, a model name that is not three-part).
"""

from __future__ import annotations

import json
import re
import sys

MODEL_KEY = "model"  # resources.registered_models.<key> in resources/mlflow.yml
_JOB_ID = re.compile(r"^[0-9]+$")
_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")


class Refused(Exception):
    pass


def ids(summary: dict, job_key: str) -> tuple[str, str]:
    resources = summary.get("resources") or {}
    job = (resources.get("jobs") or {}).get(job_key)
    if not isinstance(job, dict):
        raise Refused(f"the bundle has no job {job_key!r} (resources.jobs in `bundle summary -o json`)")
    job_id = str(job.get("id") or "")
    if not _JOB_ID.match(job_id):
        raise Refused(f"job {job_key!r} has no deployed id ({job_id or 'none'}): run `bundle deploy` first")
    model = (resources.get("registered_models") or {}).get(MODEL_KEY)
    if not isinstance(model, dict):
        raise Refused(f"the bundle has no registered model {MODEL_KEY!r} (resources.registered_models)")
    parts = [str(model.get(k) or "") for k in ("catalog_name", "schema_name", "name")]
    if not all(_PART.match(p) for p in parts):
        raise Refused(f"registered model {MODEL_KEY!r} has no three-part name ({'.'.join(parts)})")
    return job_id, ".".join(parts)


def linked(response: dict) -> str:
    return str((response.get("registered_model") or {}).get("deployment_job_id") or "")


def request(model: str, job_id: str) -> str:
    return json.dumps({"name": model, "deployment_job_id": job_id})


def main(argv: list[str]) -> int:
    try:
        if argv[:1] == ["ids"] and len(argv) == 2:
            print(*ids(json.load(sys.stdin), argv[1]))
        elif argv[:1] == ["linked"] and len(argv) == 1:
            print(linked(json.load(sys.stdin)))
        elif argv[:1] == ["request"] and len(argv) == 3:
            print(request(argv[1], argv[2]))
        else:
            print("usage: deployment_job_link.py ids JOB_KEY | linked | request MODEL JOB_ID", file=sys.stderr)
            return 2
    except (Refused, ValueError, AttributeError) as exc:  # ValueError: not JSON at all
        print(f"link-deployment-job: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
