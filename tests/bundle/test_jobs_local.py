"""The bundle's own jobs, run locally by the runner on the embedded default, in sequence:
training -> release -> batch_inference, then a release whose challenger is rejected."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from spark_mlops.config import build_settings
from spark_mlops.tables import tables_for
from spark_mlops_dev import demo
from spark_mlops_dev.bundle.databricks_cli import resolve_bundle
from spark_mlops_dev.bundle.runner import run_job
from tests.conftest import REPO_ROOT

# End to end through the local runner on the dev target: CI runs these (scripts/test.sh -m slow).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_bundle(spark, tmp_path_factory):
    settings = build_settings(state_dir=str(tmp_path_factory.mktemp("jobs") / "state"))
    bundle = resolve_bundle(REPO_ROOT, "dev")
    demo.stage_fixtures(settings, REPO_ROOT, bundle.variables)
    return bundle, demo.job_settings(settings, bundle)


def client(view) -> MlflowClient:
    return MlflowClient(tracking_uri=view.tracking_uri, registry_uri=view.registry_uri)


def run(bundle, view, job, **parameters):
    return run_job(bundle, job, parameters=parameters or None, state_dir=view.state_dir, out=None)


def test_training_release_and_batch_inference_in_sequence(local_bundle, spark):
    bundle, view = local_bundle
    training = run(bundle, view, "training")
    assert training.ok, training.summary()
    assert training.statuses() == {"prepare": "SUCCESS", "train": "SUCCESS"}
    assert str(client(view).get_model_version_by_alias(view.model_name, "challenger").version) == "1"

    release = run(bundle, view, "release")
    assert release.ok, release.summary()
    assert release.statuses() == {"validate": "SUCCESS", "promote": "SUCCESS", "record_rejection": "EXCLUDED"}
    assert str(client(view).get_model_version_by_alias(view.model_name, "champion").version) == "1"

    scoring = run(bundle, view, "batch_inference", batch_id="nightly-1")
    assert scoring.ok, scoring.summary()
    rows = tables_for(spark, view).read(view.table_name("predictions")).collect()
    assert len(rows) == 200
    assert {(r["batch_id"], r["model_version"], r["model_name"]) for r in rows} == {
        ("nightly-1", "1", view.model_name)}


def test_a_rejected_challenger_fails_the_release_and_leaves_the_champion(local_bundle, capsys):
    bundle, view = local_bundle
    assert run(bundle, view, "training").ok  # v2
    release = run(bundle, view, "release", thresholds="areaUnderROC=0.99")
    assert not release.ok and release.exit_code == 1
    # The rejection: validate fails with exit 6, promote never runs, record_rejection succeeds.
    assert release.statuses() == {"validate": "FAILED", "promote": "UPSTREAM_FAILED", "record_rejection": "SUCCESS"}
    assert release.tasks["validate"].error == "exited with code 6"
    assert "v2 was rejected and not promoted (@champion stays 1)" in capsys.readouterr().out
    c = client(view)
    assert str(c.get_model_version_by_alias(view.model_name, "champion").version) == "1"
    tags = c.get_model_version(view.model_name, "2").tags
    assert tags["release_status"] == "rejected"
    assert "areaUnderROC >= 0.99" in tags["rejection_reason"]


def test_a_crashed_validate_is_not_recorded_as_a_rejection(local_bundle, capsys):
    bundle, view = local_bundle
    # A run-time parameter that tries to LOWER the fixed minimum is a configuration error (exit 2):
    # validate stops before any verdict, and record_rejection says it crashed instead of rejecting.
    release = run(bundle, view, "release", thresholds="areaUnderROC=0.1")
    assert release.statuses() == {"validate": "FAILED", "promote": "UPSTREAM_FAILED", "record_rejection": "FAILED"}
    assert release.tasks["validate"].error == "exited with code 2"
    assert release.tasks["record_rejection"].error == "exited with code 1"
    err = capsys.readouterr().err
    assert "may only raise the fixed minimums: areaUnderROC=0.1 < minimum 0.75" in err
    assert "validate reached no verdict" in err and "it crashed" in err
    assert str(client(view).get_model_version_by_alias(view.model_name, "champion").version) == "1"
