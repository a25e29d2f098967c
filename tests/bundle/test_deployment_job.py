"""Prod's deployment job (resources/deployment_job.job.yml), as the bundle declares it and as it runs
through the local runner: a new prod version starts it, evaluation runs, the approval task stops the
run until a person approves, and only then does @champion move.

The shape tests read the bundle as the CLI would deploy it; the story tests (slow) run the bundle's
own jobs on the embedded default, staging then prod, with prod's model linked to its deployment
job as CD links it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from spark_mlops import registry
from spark_mlops import registry_tags as rt
from spark_mlops.config import build_settings
from spark_mlops.constants import EXIT_PROMOTION_REFUSED
from spark_mlops_dev import demo, workspace
from spark_mlops_dev.bundle.databricks_cli import resolve_bundle
from spark_mlops_dev.bundle.runner import run_job
from tests.conftest import REPO_ROOT, run_cli

TARGETS = ("dev", "test", "staging", "prod")
JOB = workspace.DEPLOYMENT_JOB


# ---------------------------------------------------------------- the job as declared


def test_the_job_takes_the_two_job_level_parameters_and_runs_one_version_at_a_time():
    job = resolve_bundle(REPO_ROOT, "prod").jobs[JOB]
    assert {p["name"]: p["default"] for p in job["parameters"]} == {
        "model_name": "prod.spark_mlops.diabetes_classifier", "model_version": ""}
    assert job["max_concurrent_runs"] == 1 and job["queue"] == {"enabled": True}
    # Task parameters named like the job parameters are the documented mistake (docs: mlflow/deployment-job).
    for task in job["tasks"]:
        named = task["python_wheel_task"]["named_parameters"]
        assert not {"model_name", "model_version"} & set(named), task["task_key"]


def test_evaluation_then_the_approval_task_then_deployment():
    tasks = {t["task_key"]: t for t in resolve_bundle(REPO_ROOT, "prod").jobs[JOB]["tasks"]}
    assert sorted(tasks) == sorted(["evaluation", rt.APPROVAL_CHECK, "deployment", "record_rejection"])  # by key
    entry = {k: t["python_wheel_task"]["entry_point"] for k, t in tasks.items()}
    assert entry == {"evaluation": "validate", rt.APPROVAL_CHECK: "approval-check", "deployment": "promote",
                     "record_rejection": "record-rejection"}
    check = tasks[rt.APPROVAL_CHECK]
    # The workspace treats a task as the approval step by its key; no retries on it (the docs' advice).
    assert check["task_key"].lower().startswith("approval") and check["max_retries"] == 0
    assert check["depends_on"] == [{"task_key": "evaluation"}]
    assert check["python_wheel_task"]["named_parameters"]["approval-tag"] == "{{task.name}}"
    assert tasks["deployment"]["depends_on"] == [{"task_key": rt.APPROVAL_CHECK}]
    assert tasks["deployment"]["python_wheel_task"]["named_parameters"]["require-approval"] == "true"
    assert tasks["record_rejection"]["run_if"] == "ALL_FAILED"
    for key in ("evaluation", rt.APPROVAL_CHECK, "deployment", "record_rejection"):
        assert tasks[key]["python_wheel_task"]["named_parameters"]["version"] == "{{job.parameters.model_version}}"


def test_a_person_approves_in_prod_and_the_other_targets_approve_automatically():
    required = {t: resolve_bundle(REPO_ROOT, t).variables["approval_required"] for t in TARGETS}
    assert required == {"dev": "false", "test": "false", "staging": "false", "prod": "true"}
    named = {t["task_key"]: t["python_wheel_task"]["named_parameters"]
             for t in resolve_bundle(REPO_ROOT, "prod").jobs[JOB]["tasks"]}
    assert named[rt.APPROVAL_CHECK]["approval-required"] == "true"


def test_model_deployment_only_copies_now():
    tasks = [t["task_key"] for t in resolve_bundle(REPO_ROOT, "prod").jobs["model_deployment"]["tasks"]]
    assert sorted(tasks) == ["deploy", "mode", "prepare"]


def test_an_approval_never_travels_with_a_copy():
    # copy_model_version copies every tag; deploy-model clears SOURCE_ONLY on the copy.
    assert set(rt.APPROVAL) <= set(rt.SOURCE_ONLY)


# ---------------------------------------------------------------- through the jobs


def _bundles(variables: dict | None = None):
    return {t: resolve_bundle(REPO_ROOT, t, variables) for t in ("staging", "prod")}


@pytest.fixture(scope="module")
def story(spark, tmp_path_factory):
    """Staging trains and releases v1; prod's model is linked to its deployment job; model_deployment
    copies staging's champion into prod, and the new prod version starts the deployment job."""
    state = tmp_path_factory.mktemp("deployment-job") / "state"
    settings = build_settings(state_dir=str(state))
    bundles = _bundles()
    for bundle in bundles.values():
        demo.stage_fixtures(settings, REPO_ROOT, bundle.variables)
    for job in ("training", "release"):
        assert run_job(bundles["staging"], job, state_dir=state, out=None).ok
    workspace.link(settings, bundles["prod"])
    since = datetime.now(UTC)
    copied = run_job(bundles["prod"], "model_deployment", state_dir=state, out=None)
    assert copied.ok, copied.summary()
    started = workspace.after_run(settings, bundles["prod"], "model_deployment", since, out=None)
    prod = demo.job_settings(settings, bundles["prod"])
    return settings, bundles, prod, started


def _copy_staging_champion(settings, bundles, prod) -> str:
    """A new prod version (a copy of staging's v1, as deploy-model makes one), not yet handled."""
    staging = demo.job_settings(settings, bundles["staging"])
    created = registry.client(prod).copy_model_version(f"models:/{staging.model_name}/1", prod.model_name)
    registry.delete_tags(prod, str(created.version), rt.SOURCE_ONLY)
    return str(created.version)


@pytest.mark.slow
def test_a_new_prod_version_stops_at_the_approval_task_and_nothing_moves(story, capsys):
    settings, bundles, prod, started = story
    assert [s.version for s in started] == ["1"]
    run = started[0].result
    assert run.parameters == {"model_name": prod.model_name, "model_version": "1"}
    assert run.statuses() == {"evaluation": "SUCCESS", rt.APPROVAL_CHECK: "FAILED", "deployment": "UPSTREAM_FAILED",
                              "record_rejection": "EXCLUDED"}
    assert run.tasks[rt.APPROVAL_CHECK].error == f"exited with code {EXIT_PROMOTION_REFUSED}"
    # No champion change without the tag; the version says where it is.
    assert registry.alias_version(prod, "champion") is None
    capsys.readouterr()
    assert run_cli("status", "-t", "prod", "--state-dir", str(settings.state_dir)) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("1 "))
    assert "pending approval" in line


@pytest.mark.slow
def test_a_rejected_evaluation_never_reaches_approval_and_cannot_be_approved(story, capsys):
    settings, bundles, prod, _ = story
    version = _copy_staging_champion(settings, bundles, prod)
    strict = resolve_bundle(REPO_ROOT, "prod", {"min_thresholds": "areaUnderROC=0.99,accuracy=0.7"})
    handled = workspace.start(prod, strict, version, out=None)
    assert handled.result.statuses() == {"evaluation": "FAILED", rt.APPROVAL_CHECK: "UPSTREAM_FAILED",
                                         "deployment": "UPSTREAM_FAILED", "record_rejection": "SUCCESS"}
    assert handled.result.tasks["evaluation"].error == "exited with code 6"
    capsys.readouterr()
    assert run_cli("approve", "-t", "prod", "--version", version, "--state-dir", str(settings.state_dir)) == \
        EXIT_PROMOTION_REFUSED
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"v{version} was rejected by its evaluation" in err and "nothing was changed" in err
    tags = registry.get_version(prod, version).tags
    assert rt.APPROVAL_CHECK not in tags and tags[rt.RELEASE_STATUS] == rt.REJECTED
    assert registry.alias_version(prod, "champion") is None


@pytest.mark.slow
def test_two_new_versions_queue_one_run_at_a_time(story):
    settings, bundles, prod, _ = story
    since = datetime.now(UTC)
    versions = [_copy_staging_champion(settings, bundles, prod) for _ in range(2)]
    started = workspace.after_run(settings, bundles["prod"], "model_deployment", since, out=None)
    assert [s.version for s in started] == versions
    first, second = (s.result for s in started)
    assert first.run_id != second.run_id
    assert first.parameters["model_version"] == versions[0] and second.parameters["model_version"] == versions[1]
    # The second run started only once the first had ended.
    assert second.start_time.timestamp() >= first.start_time.timestamp() + first.duration
    for s in started:
        assert s.result.statuses()[rt.APPROVAL_CHECK] == "FAILED"
        assert registry.get_version(prod, s.version).tags[rt.DEPLOYMENT_JOB_RUN_ID] == s.result.run_id
    # A version is handled once: another pass starts nothing.
    assert workspace.after_run(settings, bundles["prod"], "model_deployment", since, out=None) == []
