"""The way to production, through the local runner from the bundle's own YAML: staging trains and
releases, prod deploys staging's @champion through its own gate, scores with it, and on-call
operates the prod registry through the `status` and `rollback` jobs."""

from __future__ import annotations

import json

import pytest

from spark_mlops import registry
from spark_mlops.config import build_settings
from spark_mlops_dev import demo
from spark_mlops_dev.bundle import targets
from spark_mlops_dev.bundle.runner import run_job
from tests.conftest import REPO_ROOT, run_cli


def _run(bundles, state, target, job, **parameters):
    return run_job(bundles[target], job, parameters=parameters or None, state_dir=state, out=None)


@pytest.fixture(scope="module")
def story(spark, tmp_path_factory):
    state = tmp_path_factory.mktemp("story") / "state"
    settings = build_settings(state_dir=str(state))
    bundles = {t: targets.load_local(t, REPO_ROOT) for t in ("staging", "prod")}
    for bundle in bundles.values():
        demo.stage_fixtures(settings, REPO_ROOT, bundle.variables)
    for target, job in (("staging", "training"), ("staging", "release"), ("prod", "model_deployment")):
        result = _run(bundles, state, target, job)
        assert result.ok, result.summary()
    views = {t: demo.job_settings(settings, b) for t, b in bundles.items()}
    return bundles, state, views


def test_prod_champion_is_a_copy_of_staging_champion_with_lineage(story, capsys):
    bundles, state, views = story
    capsys.readouterr()
    assert run_cli("status", "-t", "prod", "--json", "--state-dir", str(state)) == 0
    view = json.loads(capsys.readouterr().out)
    assert view["model_name"] == "prod.spark_mlops.diabetes_classifier"
    champion = view["aliases"]["champion"]
    version = next(v for v in view["versions"] if v["version"] == champion)
    assert version["lineage"]["deployed_from"] == "models:/staging.spark_mlops.diabetes_classifier/1"
    assert version["verdict"]["validation_model_name"] == "prod.spark_mlops.diabetes_classifier"
    assert registry.alias_version(views["staging"], "champion") == "1"


def test_status_and_rollback_run_as_jobs(story):
    bundles, state, views = story
    status = _run(bundles, state, "prod", "status")
    assert status.ok, status.summary()
    # A rollback needs a reason, and an earlier champion to go back to.
    no_reason = _run(bundles, state, "prod", "rollback")
    assert no_reason.tasks["rollback"].error == "exited with code 2"
    nothing_before = _run(bundles, state, "prod", "rollback", reason="bad scores")
    assert nothing_before.tasks["rollback"].error == "exited with code 4"  # v1 replaced nothing
    assert registry.alias_version(views["prod"], "champion") == "1"


def test_first_scoring_run_in_prod_without_a_champion_exits_8(tmp_path, spark, capsys):
    settings = build_settings(state_dir=str(tmp_path / "state"))
    bundle = targets.load_local("prod", REPO_ROOT)
    demo.stage_fixtures(settings, REPO_ROOT, bundle.variables)
    result = run_job(bundle, "batch_inference", state_dir=settings.state_dir, out=None)
    assert not result.ok
    assert result.tasks["score"].error == "exited with code 8"
    err = capsys.readouterr().err
    assert "has no @champion in" in err and "model_deployment) job first" in err
    assert "Traceback" not in err
