"""The demo story with every task in a process of its own (``spark-mlops demo --process-per-task``),
as job clusters run it: nothing one task leaves in memory (loaded models, MLflow settings,
environment variables, the Spark session) can carry a later task. Staging trains and releases;
prod deploys staging's @champion through its own gate, scores a batch and monitors it with a
tracking store of its own."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from spark_mlops import registry
from spark_mlops import registry_tags as rt
from spark_mlops.config import build_settings
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow
PROD_MODEL = "prod.spark_mlops.diabetes_classifier"


def test_the_story_with_one_process_per_task_ends_with_prod_monitoring_its_batch(tmp_path):
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "SPARK_MLOPS_"))}
    done = subprocess.run([sys.executable, "-m", "spark_mlops", "demo", "--process-per-task", "--state-dir", str(state)],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    for job in ("training (target staging", "release (target staging", "model_deployment (target prod",
                "batch_inference (target prod"):
        assert f"job {job}, run " in done.stdout and "monitor: batch" in done.stdout

    prod = build_settings(state_dir=str(state), target="prod", model_name=PROD_MODEL)
    champion = registry.alias_version(prod, "champion")
    tags = registry.get_version(prod, champion).tags
    assert tags[rt.DEPLOYED_FROM] == "models:/staging.spark_mlops.diabetes_classifier/1"
    assert tags[rt.MONITORING_LAST_VERDICT] in ("ok", "drift", "quality")
    client = MlflowClient(tracking_uri=prod.tracking_uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    steps = {r.data.tags.get("step") for r in runs}
    assert {"validate", "promote", "score", "monitor"} <= steps and "train" not in steps  # prod's own store
