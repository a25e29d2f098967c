"""Operations rules of the bundle (issues 19 and 22): drift alerts, coherent timeouts, who may run
the operations jobs, who may read, and where the optional quality monitor may exist.

Each rule is checked on the real bundle, and broken on a copy to see the validator's message.
"""

from __future__ import annotations

import pytest

from spark_mlops_dev.bundle import timeouts, validate
from spark_mlops_dev.bundle.databricks_cli import resolve_bundle
from spark_mlops_dev.bundle.runner import evaluate_condition

TARGETS = ["dev", "test", "staging", "prod"]


def problems_of(root, schema_source, targets) -> list[str]:
    report = validate.check(root, targets, schema_path=schema_source.path if schema_source else None)
    return [str(p) for p in report.problems]


def assert_problem(problems: list[str], expected: str) -> None:
    assert any(expected in p for p in problems), "\n".join(["expected:", expected, "found:", *problems])


def tasks_of(bundle, job: str) -> dict[str, dict]:
    return {t["task_key"]: t for t in bundle.jobs[job]["tasks"]}


# ---------------------------------------------------------------- drift reaches people


@pytest.mark.parametrize("target", TARGETS)
def test_drift_check_notifies_people_in_staging_and_prod_only(repo_root, target):
    bundle = resolve_bundle(repo_root, target)
    drift_check = tasks_of(bundle, "batch_inference")["drift_check"]
    emails = (drift_check.get("email_notifications") or {}).get("on_failure")
    if target in ("staging", "prod"):
        assert emails == bundle.variables["notification_emails"] == ["mlops-alerts@example.com"]
    else:
        assert emails is None


def test_gate_task_without_a_task_notification_is_refused_in_prod(bundle_copy, schema_source):
    data = bundle_copy.load("resources/batch_inference.job.yml")
    del data["targets"]["prod"]
    bundle_copy.dump("resources/batch_inference.job.yml", data)
    problems = problems_of(bundle_copy.root, schema_source, ["prod", "staging"])
    assert_problem(problems, "resources.jobs.batch_inference.tasks[1].email_notifications.on_failure: [target prod] "
                   "task 'drift_check' signals by failing")
    assert not any("[target staging]" in p for p in problems)


@pytest.mark.parametrize(("target", "retrains"), [("staging", True), ("prod", False), ("dev", False)])
def test_drift_starts_retraining_only_where_the_target_trains(repo_root, target, retrains):
    """drift_check FAILED -> retrain_on_drift (var) -> trains_here (model_source == train) -> retrain."""
    bundle = resolve_bundle(repo_root, target)
    tasks = tasks_of(bundle, "batch_inference")
    assert tasks["retrain_on_drift"]["run_if"] == "ALL_FAILED"
    assert tasks["trains_here"]["depends_on"] == [{"task_key": "retrain_on_drift", "outcome": "true"}]
    assert tasks["retrain"]["depends_on"] == [{"task_key": "trains_here", "outcome": "true"}]
    gates = [tasks[k]["condition_task"] for k in ("retrain_on_drift", "trains_here")]
    started = all(evaluate_condition(g["op"], str(g["left"]), str(g["right"])) for g in gates)
    assert started is retrains
    if target == "prod":  # deploy the model: on drift, the notification is the alert, nothing retrains
        assert bundle.variables["model_source"] == "staging"
        assert bundle.variables["retrain_on_drift"] == "true"


# ---------------------------------------------------------------- coherent timeouts


def test_batch_inference_timeout_covers_the_retraining_it_waits_for(repo_root):
    jobs = resolve_bundle(repo_root, "prod").jobs
    total, path = timeouts.longest_path(jobs["batch_inference"], jobs)
    assert [k for k, _ in path] == ["check_batch", "score", "monitor", "drift_check", "retrain_on_drift",
                                    "trains_here", "retrain"]
    assert dict(path)["score"] == "3x1800+2x120"
    assert dict(path)["retrain"] == f"{jobs['retraining']['timeout_seconds']} (job retraining)"
    assert total == 19800 <= jobs["batch_inference"]["timeout_seconds"]
    retraining_total, _ = timeouts.longest_path(jobs["retraining"], jobs)
    assert retraining_total == jobs["training"]["timeout_seconds"] + jobs["release"]["timeout_seconds"]
    assert retraining_total <= jobs["retraining"]["timeout_seconds"]


@pytest.mark.parametrize("target", TARGETS)
def test_every_job_is_coherent(repo_root, target):
    jobs = resolve_bundle(repo_root, target).jobs
    assert {key: timeouts.problems(key, job, jobs) for key, job in jobs.items()} == {key: [] for key in jobs}


def test_a_longer_retraining_than_the_batch_run_can_wait_for_is_refused(bundle_copy, schema_source):
    bundle_copy.replace("resources/retraining.job.yml", "timeout_seconds: 10800", "timeout_seconds: 14400")
    problems = problems_of(bundle_copy.root, schema_source, ["staging"])
    assert_problem(problems, "resources.jobs.batch_inference.tasks[4].timeout_seconds: [target staging] task "
                   "'retrain' times out after 10800 s but waits for a run that may take 14400 s (the timeout of job retraining); "
                   "expected timeout_seconds >= 14400")
    assert_problem(problems, "resources.jobs.batch_inference.timeout_seconds: [target staging] job 'batch_inference' "
                   "times out after 19800 s, but its longest task path can take 23400 s (check_batch 900 + score "
                   "3x1800+2x120 + monitor 2x900+60 + drift_check 600 + retrain_on_drift 0 (condition) + "
                   "trains_here 0 (condition) + retrain 14400 (job retraining))")


def test_a_task_without_timeout_and_a_warning_after_the_timeout_are_refused(bundle_copy, schema_source):
    bundle_copy.replace("resources/batch_inference.job.yml", "          timeout_seconds: 600\n", "")
    bundle_copy.replace("resources/batch_inference.job.yml", "            value: 1800", "            value: 19800")
    problems = problems_of(bundle_copy.root, schema_source, ["dev"])
    assert_problem(problems, "resources.jobs.batch_inference.tasks[1].timeout_seconds: [target dev] task "
                   "'drift_check' has no timeout_seconds")
    assert_problem(problems, "resources.jobs.batch_inference.health.rules[0].value: [target dev] the duration "
                   "warning at 19800 s never fires before the job's timeout (19800 s)")


# ---------------------------------------------------------------- operations by people, readers


@pytest.mark.parametrize("target", TARGETS)
def test_oncall_group_may_run_rollback_and_status_in_staging_and_prod(repo_root, target):
    bundle = resolve_bundle(repo_root, target)
    for job in ("rollback", "status"):
        perms = bundle.jobs[job].get("permissions") or []
        oncall = [p for p in perms if p.get("group_name") == "spark-mlops-oncall"]
        assert oncall == ([{"level": "CAN_MANAGE_RUN", "group_name": "spark-mlops-oncall"}]
                          if target in ("staging", "prod") else [])


def test_operations_nobody_can_run_are_refused(bundle_copy, schema_source):
    data = bundle_copy.load("resources/rollback.job.yml")
    del data["targets"]["prod"]["resources"]["jobs"]["rollback"]
    bundle_copy.dump("resources/rollback.job.yml", data)
    problems = problems_of(bundle_copy.root, schema_source, ["prod"])
    assert_problem(problems, "resources.jobs.rollback.permissions: [target prod] nobody but the service principal "
                   "can run 'rollback'")


def test_readers_default_to_a_named_group(repo_root):
    for target in ("staging", "prod"):
        bundle = resolve_bundle(repo_root, target)
        assert {"level": "CAN_VIEW", "group_name": "spark-mlops-readers"} in bundle.config["permissions"]
        grants = bundle.config["resources"]["registered_models"]["model"]["grants"]
        assert grants == [{"principal": "spark-mlops-readers", "privileges": ["EXECUTE"]}]


def test_everyone_as_readers_is_refused_in_production(bundle_copy, schema_source):
    bundle_copy.replace("databricks.yml", "    default: spark-mlops-readers\n  uc_model_readers:",
                        "    default: users\n  uc_model_readers:")
    bundle_copy.replace("databricks.yml", "    default: spark-mlops-readers\n  oncall_group:",
                        "    default: account users\n  oncall_group:")
    problems = problems_of(bundle_copy.root, schema_source, ["dev", "prod"])
    assert_problem(problems, "permissions[1].group_name: [target prod] 'users' is everyone in the workspace")
    assert_problem(problems, "resources.registered_models.model.grants[0].principal: [target prod] 'account users' "
                   "is everyone in the account")
    assert not any("[target dev]" in p for p in problems)


# ---------------------------------------------------------------- the optional quality monitor


def _include_quality_monitor(bundle_copy) -> None:
    bundle_copy.replace("databricks.yml", "include:\n  - resources/*.yml\n",
                        "include:\n  - resources/*.yml\n  - resources/optional/quality_monitor.yml\n")


def test_enabled_quality_monitor_reaches_staging_and_prod_only(bundle_copy, schema_source):
    _include_quality_monitor(bundle_copy)
    assert problems_of(bundle_copy.root, schema_source, TARGETS) == []
    for target in TARGETS:
        monitors = resolve_bundle(bundle_copy.root, target).config.get("resources", {}).get("quality_monitors")
        if target in ("staging", "prod"):
            assert monitors["predictions_monitor"]["table_name"] == f"{target}.spark_mlops.predictions"
            assert monitors["predictions_monitor"]["inference_log"]["model_id_col"] == "model_version"
        else:
            assert not monitors


def test_quality_monitor_in_a_target_that_never_scores_is_refused(bundle_copy, schema_source):
    _include_quality_monitor(bundle_copy)
    data = bundle_copy.load("resources/optional/quality_monitor.yml")
    data["targets"]["test"] = data["targets"]["staging"]
    bundle_copy.dump("resources/optional/quality_monitor.yml", data)
    problems = problems_of(bundle_copy.root, schema_source, ["test"])
    assert_problem(problems, "resources.quality_monitors.predictions_monitor: [target test] a quality monitor in "
                   "target 'test', which never scores")
