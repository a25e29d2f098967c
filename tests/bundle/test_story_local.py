"""The way to production, through the local runner from the bundle's own YAML: staging trains and
releases, prod copies staging's @champion, and the new prod version starts prod's deployment job,
which evaluates it, waits for a person's approval, and, approved and repaired, makes it prod's
@champion; prod scores with it and monitors the batch, and on-call operates the prod registry
through the `status` and `rollback` jobs.

Staging and prod are separate workspaces (a tracking store each) sharing one registry: while
prod's jobs run, staging's whole workspace folder is moved away, so anything prod tried to read
from staging's runs or artifacts would fail. The story runs every task in a process of its own
(``process_per_task``), as job clusters do: nothing one task leaves in memory (loaded models,
MLflow settings, environment variables, the Spark session) can carry a later task. CI runs it
with the slow tests; the in-process runner runs the same jobs in the README test and
tests/bundle/test_jobs_local.py."""

from __future__ import annotations

import contextlib
import json
import shutil
from datetime import UTC, datetime

import pytest
from mlflow.tracking import MlflowClient

from spark_mlops import registry
from spark_mlops import registry_tags as rt
from spark_mlops.config import build_settings
from spark_mlops.spark import get_spark
from spark_mlops.tables import tables_for
from spark_mlops_dev import demo, workspace
from spark_mlops_dev.bundle import targets
from spark_mlops_dev.bundle.runner import run_job
from tests.conftest import REPO_ROOT, run_cli


def _run(bundles, state, target, job, *, process_per_task=False, **parameters):
    return run_job(bundles[target], job, parameters=parameters or None, state_dir=state, out=None,
                   process_per_task=process_per_task)


@contextlib.contextmanager
def workspace_away(state, workspace: str):
    """Move a local workspace (its tracking store and artifacts) out of reach for the block."""
    folder = state / "workspaces" / workspace
    aside = folder.with_name(workspace + ".away")
    shutil.move(folder, aside)
    try:
        yield
    finally:
        shutil.move(aside, folder)


def _story(state):
    settings = build_settings(state_dir=str(state))
    bundles = {t: targets.load_local(t, REPO_ROOT) for t in ("staging", "prod")}
    for bundle in bundles.values():
        demo.stage_fixtures(settings, REPO_ROOT, bundle.variables)
    views = {t: demo.job_settings(settings, b) for t, b in bundles.items()}
    workspace.link(settings, bundles["prod"])  # as CD links it after `bundle deploy -t prod`
    return settings, bundles, views


def _deploy_to_prod(state, bundles, *, process_per_task=False):
    """model_deployment, then what the workspace and a person do: the new version's deployment job
    run stops at Approval_Check, the person approves it, the repaired run deploys it."""
    settings = build_settings(state_dir=str(state))
    since = datetime.now(UTC)
    copied = _run(bundles, state, "prod", "model_deployment", process_per_task=process_per_task)
    assert copied.ok, copied.summary()
    started = workspace.after_run(settings, bundles["prod"], "model_deployment", since, out=None,
                                  process_per_task=process_per_task)
    repaired = []
    for handled in started:
        assert handled.result.statuses()[rt.APPROVAL_CHECK] == "FAILED", handled.result.summary()
        assert handled.result.statuses()["deployment"] == "UPSTREAM_FAILED"
        repair = workspace.approve(settings, bundles["prod"], handled.version, out=None,
                                   process_per_task=process_per_task)
        assert repair.ok and repair.run_id == handled.result.run_id, repair.summary()
        repaired.append(repair)
    return copied, started, repaired


@pytest.fixture(scope="module")
def story(spark, tmp_path_factory):
    state = tmp_path_factory.mktemp("story") / "state"
    _, bundles, views = _story(state)
    for target, job in (("staging", "training"), ("staging", "release")):
        result = _run(bundles, state, target, job, process_per_task=True)
        assert result.ok, result.summary()
    with workspace_away(state, "staging"):
        _, started, repaired = _deploy_to_prod(state, bundles, process_per_task=True)
        assert [s.version for s in started] == ["1"] and len(repaired) == 1
        result = _run(bundles, state, "prod", "batch_inference", process_per_task=True)
        assert result.ok, result.summary()
    return bundles, state, views, started[0].result, repaired[0]


@pytest.mark.slow
def test_prod_version_copied_evaluated_waiting_approved_repaired_and_deployed(story):
    bundles, state, views, first, repaired = story
    prod = views["prod"]
    assert first.statuses() == {"evaluation": "SUCCESS", rt.APPROVAL_CHECK: "FAILED",
                                "deployment": "UPSTREAM_FAILED", "record_rejection": "EXCLUDED"}
    # The repair re-ran the approval task and what follows, in the same run; evaluation's result was kept.
    assert repaired.statuses() == {"evaluation": "SUCCESS", rt.APPROVAL_CHECK: "SUCCESS", "deployment": "SUCCESS",
                                   "record_rejection": "EXCLUDED"}
    assert repaired.repair_count == 1 and repaired.tasks["evaluation"].kept
    tags = registry.get_version(prod, "1").tags
    assert tags[rt.APPROVAL_CHECK] == rt.APPROVED and tags[rt.APPROVED_BY] not in ("", rt.AUTOMATIC)
    assert tags[rt.VALIDATION_JOB_RUN_ID] == first.run_id == tags[rt.DEPLOYMENT_JOB_RUN_ID]
    assert registry.alias_version(prod, "champion") == "1"


@pytest.mark.slow
def test_prod_monitors_its_batch_with_a_tracking_store_of_its_own(story):
    bundles, state, views, *_ = story
    prod = views["prod"]
    champion = registry.alias_version(prod, "champion")
    tags = registry.get_version(prod, champion).tags
    assert tags[rt.MONITORING_LAST_VERDICT] in ("ok", "drift", "quality")
    spark = get_spark(prod)
    rows = tables_for(spark, prod).read(prod.table_name("monitoring")).where(f"batch_id = '{tags[rt.MONITORING_LAST_BATCH]}'")
    assert rows.count() > 0
    # Each workspace's runs are its own: the staging training run is not in prod's tracking store.
    staging_run = tags[rt.TRAINING_RUN_ID]
    assert MlflowClient(tracking_uri=views["staging"].tracking_uri).get_run(staging_run).data.tags["step"] == "train"
    prod_runs = MlflowClient(tracking_uri=prod.tracking_uri).search_runs(
        [e.experiment_id for e in MlflowClient(tracking_uri=prod.tracking_uri).search_experiments()])
    steps = {r.data.tags.get("step") for r in prod_runs}
    assert steps >= {"validate", "promote", "score", "monitor"} and "train" not in steps
    assert staging_run not in {r.info.run_id for r in prod_runs}


@pytest.mark.slow
def test_prod_champion_is_a_copy_of_staging_champion_with_lineage(story, capsys):
    bundles, state, views, *_ = story
    capsys.readouterr()
    assert run_cli("status", "-t", "prod", "--json", "--state-dir", str(state)) == 0
    view = json.loads(capsys.readouterr().out)
    assert view["model_name"] == "prod.spark_mlops.diabetes_classifier"
    champion = view["aliases"]["champion"]
    version = next(v for v in view["versions"] if v["version"] == champion)
    assert version["lineage"]["deployed_from"] == "models:/staging.spark_mlops.diabetes_classifier/1"
    # The copy carries the digest train recorded: prod checks the files it loads against it.
    assert version["lineage"][rt.MODEL_DIGEST] == registry.get_version(views["staging"], "1").tags[rt.MODEL_DIGEST]
    assert version["verdict"]["validation_model_name"] == "prod.spark_mlops.diabetes_classifier"
    assert registry.alias_version(views["staging"], "champion") == "1"


@pytest.mark.slow
def test_status_and_rollback_run_as_jobs(story):
    bundles, state, views, *_ = story
    status = _run(bundles, state, "prod", "status")
    assert status.ok, status.summary()
    # A rollback needs a reason, and an earlier champion to go back to.
    no_reason = _run(bundles, state, "prod", "rollback")
    assert no_reason.tasks["rollback"].error == "exited with code 2"
    nothing_before = _run(bundles, state, "prod", "rollback", reason="bad scores")
    assert nothing_before.tasks["rollback"].error == "exited with code 4"  # v1 replaced nothing
    assert registry.alias_version(views["prod"], "champion") == "1"


@pytest.mark.slow  # whole jobs through the local runner: a JVM per job cluster, a process per task
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


@pytest.mark.slow
def test_a_prod_rollback_survives_the_next_model_deployment(spark, tmp_path, capsys):
    state = tmp_path / "state"
    _, bundles, views = _story(state)
    prod = views["prod"]

    def run(target, job, **parameters):
        result = _run(bundles, state, target, job, **parameters)
        assert result.ok, result.summary()
        return result

    for _ in range(2):  # staging v1, then v2 becomes staging's @champion; prod deploys each, approved
        run("staging", "training")
        run("staging", "release")
        _deploy_to_prod(state, bundles)
    assert registry.alias_version(prod, "champion") == "2"
    run("prod", "rollback", reason="v2 scores badly")
    assert registry.alias_version(prod, "champion") == "1"

    capsys.readouterr()
    result, started, _ = _deploy_to_prod(state, bundles)  # staging's @champion is still v2
    assert result.statuses() == {"mode": "SUCCESS", "prepare": "SUCCESS", "deploy": "SUCCESS"}
    assert started == []  # no new version: no deployment job run, nothing to approve
    out = capsys.readouterr().out
    assert "models:/staging.spark_mlops.diabetes_classifier/2 is prod.spark_mlops.diabetes_classifier v2, rolled back" \
        in out and "not deployed again; @champion stays v1" in out
    assert registry.alias_version(prod, "champion") == "1"
    assert registry.get_version(prod, "2").tags[rt.VALIDATION_STATUS] == rt.REVOKED
    assert run_cli("approve", "-t", "prod", "--version", "2", "--state-dir", str(state)) == 5  # revoked: not approved

    run("staging", "training")  # a newer staging champion deploys as usual
    run("staging", "release")
    _deploy_to_prod(state, bundles)
    assert registry.alias_version(prod, "champion") == "3"
    assert registry.get_version(prod, "3").tags[rt.DEPLOYED_FROM].endswith("diabetes_classifier/3")

    # A person can still restore the rolled-back version explicitly.
    args = ("-t", "prod", "--state-dir", str(state))
    assert run_cli("validate", *args, "--version", "2") == 0
    assert run_cli("promote", *args, "--version", "2", "--reason", "restored by hand") == 0
    assert registry.alias_version(prod, "champion") == "2"
