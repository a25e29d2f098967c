"""CD's link step (scripts/ci/link-deployment-job.sh): after `bundle deploy -t prod`, prod's
registered model is linked to its deployment job, once, with nothing secret in the log.

The CLI here is a TEST DOUBLE written by this module (not the Databricks CLI): `bundle summary -o
json` prints the shape the CLI's own acceptance test reads (resources.jobs.<key>.id after a deploy,
acceptance/bundle/deploy/immutable), and `api get/patch` on MLflow's Unity Catalog
registered-models endpoints keep deployment_job_id in a file, as the registry keeps it."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from tests.azure.helpers import REPO_ROOT, clean_env, run_script

sys.path.insert(0, str(REPO_ROOT / "scripts" / "ci"))
import deployment_job_link  # noqa: E402

MODEL = "prod.spark_mlops.diabetes_classifier"

DOUBLE = r'''#!/usr/bin/env python3
"""TEST DOUBLE of the Databricks CLI for tests/azure/test_link_deployment_job.py."""
import json, os, sys
argv = sys.argv[1:]
state = os.environ["LINK_DOUBLE_STATE"]
with open(os.path.join(state, "calls.jsonl"), "a") as f:
    f.write(json.dumps(argv) + "\n")
linked = os.path.join(state, "linked")
if argv[:2] == ["bundle", "summary"]:
    job = {"name": "spark-mlops deployment job (prod)"}
    if os.environ.get("LINK_DOUBLE_DEPLOYED", "1") == "1":
        job["id"] = "123"
    print(json.dumps({"resources": {"jobs": {"deployment_job": job},
        "registered_models": {"model": {"catalog_name": "prod", "schema_name": "spark_mlops",
                                         "name": "diabetes_classifier", "id": "prod.spark_mlops.diabetes_classifier"}}}}))
elif argv[:2] == ["api", "get"]:
    current = open(linked).read() if os.path.exists(linked) else ""
    model = {"name": argv[2].split("name=", 1)[1]}
    if current:
        model["deployment_job_id"] = current
    print(json.dumps({"registered_model": model}))
elif argv[:2] == ["api", "patch"]:
    body = json.loads(argv[argv.index("--json") + 1])
    open(linked, "w").write(body["deployment_job_id"])
    print("{}")
else:
    print(f"Error: unexpected call {argv}", file=sys.stderr)
    sys.exit(1)
'''


@pytest.fixture
def double(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    cli = bin_dir / "databricks"
    cli.write_text(DOUBLE)
    cli.chmod(cli.stat().st_mode | stat.S_IXUSR)
    return tmp_path


def _link(double: Path, **extra: str):
    env = clean_env(PATH=f"{double / 'bin'}{os.pathsep}{os.environ['PATH']}", LINK_DOUBLE_STATE=str(double),
                    CI_PYTHON=sys.executable, DATABRICKS_TOKEN="dapi-secret-token-value", **extra)
    return run_script("link-deployment-job.sh", "-t", "prod", env=env)


def _calls(double: Path) -> list[list[str]]:
    return [json.loads(line) for line in (double / "calls.jsonl").read_text().splitlines()]


def test_links_the_model_to_the_deployed_job_once(double):
    first = _link(double)
    assert first.returncode == 0, first.stdout + first.stderr
    patches = [c for c in _calls(double) if c[:2] == ["api", "patch"]]
    assert len(patches) == 1
    assert patches[0][2] == "/api/2.0/mlflow/unity-catalog/registered-models/update"
    assert json.loads(patches[0][patches[0].index("--json") + 1]) == {"name": MODEL, "deployment_job_id": "123"}
    assert ["--profile", "spark-mlops-prod"] == patches[0][-2:]
    assert f"link: {MODEL} -> deployment job 123 (deployment_job)" in first.stdout

    again = _link(double)  # idempotent: read, equal, nothing written
    assert again.returncode == 0
    assert "already linked to deployment job 123" in again.stdout
    assert len([c for c in _calls(double) if c[:2] == ["api", "patch"]]) == 1
    assert "dapi-secret-token-value" not in first.stdout + first.stderr + again.stdout + again.stderr


def test_a_bundle_not_deployed_is_one_line_and_exit_2(double):
    result = _link(double, LINK_DOUBLE_DEPLOYED="0")
    assert result.returncode == 2
    assert "job 'deployment_job' has no deployed id (none): run `bundle deploy` first" in result.stderr
    assert not [c for c in _calls(double) if c[0] == "api"]


def test_the_summary_parser_reads_the_cli_shape():
    summary = {"resources": {"jobs": {"deployment_job": {"id": "987"}},
                             "registered_models": {"model": {"catalog_name": "prod", "schema_name": "s", "name": "m"}}}}
    assert deployment_job_link.ids(summary, "deployment_job") == ("987", "prod.s.m")
    with pytest.raises(deployment_job_link.Refused, match="no job 'other'"):
        deployment_job_link.ids(summary, "other")
    assert deployment_job_link.linked({"registered_model": {"name": "prod.s.m"}}) == ""
    assert deployment_job_link.linked({"registered_model": {"deployment_job_id": "987"}}) == "987"
