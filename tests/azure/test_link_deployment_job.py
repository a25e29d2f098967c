"""The JSON side of CD's link step (scripts/ci/deployment_job_link.py, used by
scripts/ci/link-deployment-job.sh). The script itself runs with the real Databricks CLI against the
fake workspace's Unity Catalog registry: tests/azure/test_fake_workspace_jobs.py."""

from __future__ import annotations

import sys

import pytest

from tests.azure.helpers import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "scripts" / "ci"))
import deployment_job_link  # noqa: E402


def test_the_summary_parser_reads_the_cli_shape():
    summary = {"resources": {"jobs": {"deployment_job": {"id": "987"}},
                             "registered_models": {"model": {"catalog_name": "prod", "schema_name": "s", "name": "m"}}}}
    assert deployment_job_link.ids(summary, "deployment_job") == ("987", "prod.s.m")
    with pytest.raises(deployment_job_link.Refused, match="no job 'other'"):
        deployment_job_link.ids(summary, "other")
    assert deployment_job_link.linked({"registered_model": {"name": "prod.s.m"}}) == ""
    assert deployment_job_link.linked({"registered_model": {"deployment_job_id": "987"}}) == "987"
