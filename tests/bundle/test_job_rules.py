"""The validator's rules on a target's resolved jobs (spark_mlops_dev/bundle/job_rules.py).

The rules read one target's configuration as ``databricks bundle validate -o json`` prints it. The
unit tests give them plain dicts of that shape (the bundle's own job files as written have it for
everything these rules read: parameters, tasks, dependencies, Run Job references); the tests
marked ``databricks_cli`` give them the real CLI's output for the real bundle and a broken copy.
"""

from __future__ import annotations

import copy
import os
import re
import sys
from pathlib import Path

import pytest
import yaml

from spark_mlops_dev.bundle import job_rules, validate
from tests.conftest import DATABRICKS_CLI_BIN, REPO_ROOT

KEY = "ed25519:" + "A" * 43 + "="  # 32 zero bytes: a well-formed public key


def jobs_as_written(root: Path) -> dict[str, dict]:
    """Every job of resources/*.yml, as written (the shape validate -o json prints jobs in)."""
    jobs: dict[str, dict] = {}
    for path in sorted((root / "resources").glob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        jobs.update((data.get("resources") or {}).get("jobs") or {})
    return jobs


def config(jobs: dict, target: str = "staging", mode: str | None = "production", **variables: str) -> dict:
    return {"bundle": {"name": "spark-mlops", "target": target, **({"mode": mode} if mode else {})},
            "variables": {k: {"default": "", "value": v} for k, v in variables.items()},
            "resources": {"jobs": jobs}}


def messages(findings: list[job_rules.Finding]) -> list[str]:
    return [f.message for f in findings]


# ---------------------------------------------------------------- 1. job parameter pushdown


def _old_batch_inference(jobs: dict) -> dict:
    """batch_inference as it was before issue 26: its scoring batch was the job parameter `input`."""
    jobs = copy.deepcopy(jobs)
    job = jobs["batch_inference"]
    for p in job["parameters"]:
        if p["name"] == "scoring_input":
            p["name"] = "input"
    for task in job["tasks"]:
        named = (task.get("python_wheel_task") or {}).get("named_parameters") or {}
        if named.get("input") == "{{job.parameters.scoring_input}}":
            named["input"] = "{{job.parameters.input}}"
    return jobs


def test_the_scoring_batch_named_input_is_caught_reaching_training():
    findings = job_rules.pushdown_collisions(config(_old_batch_inference(jobs_as_written(REPO_ROOT))))
    (finding,) = findings
    index = [p["name"] for p in jobs_as_written(REPO_ROOT)["batch_inference"]["parameters"]].index("scoring_input")
    assert finding.path == ("resources", "jobs", "batch_inference", "parameters", index, "name")
    assert finding.severity == job_rules.ERROR
    assert finding.message.startswith(
        "job parameter 'input' of batch_inference reaches job training (batch_inference -> retraining -> training, "
        "task 'train') and overrides its parameter 'input', task 'prepare''s --input (Run Job tasks receive the "
        "job's parameters: docs: jobs/job-parameters \"Job parameter pushdown\")")


def test_the_bundle_as_it_is_pushes_nothing_that_overrides_a_job_below():
    assert job_rules.pushdown_collisions(config(jobs_as_written(REPO_ROOT))) == []


def _pair(run_job_task: dict, parent_params=("input",), child_params=("input",)) -> dict:
    child = {"parameters": [{"name": n, "default": "x"} for n in child_params],
             "tasks": [{"task_key": "work", "python_wheel_task": {"package_name": "p", "entry_point": "e"}}]}
    parent = {"parameters": [{"name": n, "default": "y"} for n in parent_params],
              "tasks": [{"task_key": "go", "run_job_task": run_job_task}]}
    return {"parent": parent, "child": child}


def test_an_explicitly_forwarded_parameter_is_meant():
    forwarded = {"job_id": "${resources.jobs.child.id}", "job_parameters": {"input": "{{job.parameters.input}}"}}
    assert job_rules.pushdown_collisions(config(_pair(forwarded))) == []
    implicit = {"job_id": "${resources.jobs.child.id}"}
    assert messages(job_rules.pushdown_collisions(config(_pair(implicit))))[0].startswith(
        "job parameter 'input' of parent reaches job child (parent -> child, task 'go') and overrides its "
        "parameter 'input'")


def test_a_task_value_for_a_pushed_name_is_overridden_and_said_so():
    literal = {"job_id": "${resources.jobs.child.id}", "job_parameters": {"input": "s3://the/task's/own"}}
    (finding,) = job_rules.pushdown_collisions(config(_pair(literal)))
    assert finding.path == ("resources", "jobs", "parent", "tasks", 0, "run_job_task", "job_parameters", "input")
    assert finding.message.startswith("task 'go' of parent runs job child with input=\"s3://the/task's/own\", but "
                                      "job parameter 'input' of parent is pushed down over it")


def test_a_deployed_child_named_by_its_numeric_id_is_followed():
    # `bundle summary` after a deploy: Run Job tasks name the child's id, and each job has its id.
    jobs = _pair({"job_id": 1234})
    jobs["child"]["id"] = "1234"
    assert len(job_rules.pushdown_collisions(config(jobs))) == 1


def test_a_wheel_keyword_argument_of_the_same_name_below_is_overridden_too():
    jobs = _pair({"job_id": "${resources.jobs.child.id}"}, parent_params=("batch_id",), child_params=())
    jobs["child"]["tasks"][0]["python_wheel_task"]["named_parameters"] = {"batch_id": "weekly"}
    assert messages(job_rules.pushdown_collisions(config(jobs)))[0].startswith(
        "job parameter 'batch_id' of parent reaches job child (parent -> child, task 'go') and overrides "
        "task 'work''s --batch_id")


# ---------------------------------------------------------------- 2. model-signing keys


@pytest.mark.parametrize("target,mode", [("staging", "production"), ("prod", "production"), ("staging", None)])
def test_empty_signing_keys_on_a_gating_target_are_one_clear_line(target, mode):
    (finding,) = job_rules.signing_keys(config({}, target, mode, model_signing_public_keys=" , "))
    assert finding.severity == job_rules.WARNING and finding.path == ("variables", "model_signing_public_keys")
    assert "\n" not in finding.message
    assert finding.message.startswith(f"target {target}: model_signing_public_keys is empty, so every model "
                                      "version is refused at load (exit 9): set BUNDLE_VAR_model_signing_public_keys")


def test_keys_that_are_not_keys_are_an_error_and_real_keys_pass():
    (finding,) = job_rules.signing_keys(config({}, "prod", "production", model_signing_public_keys="staging-key"))
    assert finding.severity == job_rules.ERROR
    assert finding.message.startswith("model_signing_public_keys: 'staging-key' is not a public key")
    assert job_rules.signing_keys(config({}, "prod", "production", model_signing_public_keys=f"{KEY},{KEY}")) == []


def test_dev_and_test_are_not_held_to_it():
    # They train and load with the developers' / the pull requests' keys, or the local key pair.
    for target in ("dev", "test"):
        mode = "development" if target == "dev" else None
        assert job_rules.signing_keys(config({}, target, mode, model_signing_public_keys="")) == []


# ---------------------------------------------------------------- 3. the deployment job


def _deployment_job() -> dict:
    return copy.deepcopy(jobs_as_written(REPO_ROOT)["deployment_job"])


def _shape(job: dict) -> list[str]:
    return messages(job_rules.deployment_job_shape(config({"deployment_job": job})))


def _task(job: dict, key: str) -> dict:
    return next(t for t in job["tasks"] if t["task_key"] == key)


def test_the_bundle_s_deployment_job_has_the_shape():
    assert _shape(_deployment_job()) == []


def test_a_third_job_parameter_or_a_missing_one_is_refused():
    job = _deployment_job()
    job["parameters"].append({"name": "reason", "default": ""})
    assert _shape(job) == ["deployment job 'deployment_job': expected exactly the job parameters model_name and "
                           "model_version, which the workspace passes for each new model version, found "
                           "['model_name', 'model_version', 'reason'] (docs: mlflow/deployment-job)"]
    job["parameters"] = [p for p in job["parameters"] if p["name"] == "model_name"]
    assert "found ['model_name']" in _shape(job)[0]


def test_model_version_as_a_task_parameter_is_the_documented_mistake():
    job = _deployment_job()
    _task(job, "evaluation")["python_wheel_task"]["named_parameters"]["model_version"] = "3"
    (line,) = _shape(job)
    assert line.startswith("deployment job 'deployment_job': task 'evaluation' declares 'model_version' as a task "
                           "parameter")


def test_retries_on_the_approval_task_are_refused():
    job = _deployment_job()
    _task(job, "Approval_Check")["max_retries"] = 2
    (finding,) = job_rules.deployment_job_shape(config({"deployment_job": job}))
    index = [t["task_key"] for t in job["tasks"]].index("Approval_Check")
    assert finding.path == ("resources", "jobs", "deployment_job", "tasks", index, "max_retries")
    assert "Approval_Check has max_retries 2; expected 0" in finding.message


@pytest.mark.parametrize("break_it", ["no_dependency", "all_done", "through_an_all_done_task"])
def test_the_approval_task_runs_only_after_a_successful_evaluation(break_it):
    job = _deployment_job()
    check = _task(job, "Approval_Check")
    if break_it == "no_dependency":
        del check["depends_on"]
    elif break_it == "all_done":
        check["run_if"] = "ALL_DONE"
    else:  # evaluation -> note (ALL_DONE: runs after a failed evaluation too) -> Approval_Check
        job["tasks"].append({"task_key": "note", "depends_on": [{"task_key": "evaluation"}], "run_if": "ALL_DONE",
                             "condition_task": {"op": "EQUAL_TO", "left": "a", "right": "a"}})
        check["depends_on"] = [{"task_key": "note"}]
    (line,) = _shape(job)
    assert line.startswith("deployment job 'deployment_job': Approval_Check can run without a successful 'evaluation'")


def test_deployment_only_after_the_approval_and_the_approval_task_by_its_name():
    job = _deployment_job()
    _task(job, "deployment")["depends_on"] = [{"task_key": "evaluation"}]
    assert _shape(job)[0].startswith("deployment job 'deployment_job': 'deployment' can run without a passed "
                                     "Approval_Check")
    job = _deployment_job()
    _task(job, "Approval_Check")["task_key"] = "approval"
    _task(job, "deployment")["depends_on"] = [{"task_key": "approval"}]
    assert _shape(job)[0].startswith("deployment job 'deployment_job': no task 'Approval_Check' (the approval "
                                     "step, whose name is the version tag the Approve button sets), found ['approval']")


def test_one_run_at_a_time_with_the_others_queued():
    job = _deployment_job()
    job["max_concurrent_runs"] = 3
    job["queue"] = {"enabled": False}
    assert _shape(job) == [
        "deployment job 'deployment_job': expected 1 (one version at a time), found 3 (docs: mlflow/deployment-job)",
        "deployment job 'deployment_job': expected queue: {enabled: true} (the versions registered meanwhile wait "
        "their turn; without a queue their runs are skipped), found {'enabled': False} (docs: mlflow/deployment-job)"]


# ---------------------------------------------------------------- through spark-mlops bundle validate


def test_validate_reports_the_old_pushdown_shape_in_the_file_that_declares_it(bundle_copy):
    bundle_copy.replace("resources/batch_inference.job.yml", "- name: scoring_input", "- name: input")
    bundle_copy.replace("resources/batch_inference.job.yml", "{{job.parameters.scoring_input}}",
                        "{{job.parameters.input}}", count=4)
    problems = [str(p) for p in validate.check(bundle_copy.root, ["staging"]).problems]
    assert [p for p in problems if "reaches job training" in p] == [
        next(p for p in problems if re.sub(r"^([^:\s]+):\d+: ", r"\1: ", p).startswith(  # file:line, line dropped
            "resources/batch_inference.job.yml: resources.jobs.batch_inference."
            "parameters[0].name: [target staging] job parameter 'input' of batch_inference reaches job training"))]


def test_validate_warns_once_per_gating_target_without_signing_keys(repo_root):
    report = validate.check(repo_root, ["dev", "staging", "prod"])
    assert report.problems == []
    keys = [w for w in report.warnings if "model_signing_public_keys is empty" in w]
    assert [w.split(":")[0] for w in keys] == ["target staging", "target prod"]


# ---------------------------------------------------------------- on the real CLI's output


@pytest.fixture(scope="module")
def cli_workspace(tmp_path_factory):
    sys.path.insert(0, str(REPO_ROOT / "scripts" / "ci"))
    from fake_workspace import FakeWorkspace, find_bin

    if DATABRICKS_CLI_BIN:
        os.environ["SPARK_MLOPS_DATABRICKS_CLI_BIN"] = DATABRICKS_CLI_BIN
    try:
        found = find_bin()
    finally:
        os.environ.pop("SPARK_MLOPS_DATABRICKS_CLI_BIN", None)
    if found is None:
        message = "the Databricks CLI and fake-workspace are not built (scripts/ci/build-databricks-cli.sh)"
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(f"CI=true: {message}")
        pytest.skip(message)
    with FakeWorkspace(found, tmp_path_factory.mktemp("fake-workspace")) as ws:
        yield ws


def _cli_config(ws, root: Path, target: str) -> dict:
    return ws.cli("bundle", "validate", "-o", "json", "-t", target, cwd=root).json()


@pytest.mark.databricks_cli
@pytest.mark.slow
def test_the_rules_read_the_clis_resolved_configuration(cli_workspace, tmp_path):
    from fake_workspace import copy_bundle

    real = copy_bundle(REPO_ROOT, tmp_path / "real")
    for target in ("dev", "test", "staging", "prod"):
        findings = job_rules.check(_cli_config(cli_workspace, real, target))
        assert [f for f in findings if f.severity == job_rules.ERROR] == [], target
    staging = _cli_config(cli_workspace, real, "staging")
    assert [f.path for f in job_rules.check(staging)] == [("variables", "model_signing_public_keys")]

    old = copy_bundle(REPO_ROOT, tmp_path / "old")
    path = old / "resources" / "batch_inference.job.yml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("- name: scoring_input", "- name: input")
                    .replace("{{job.parameters.scoring_input}}", "{{job.parameters.input}}"), encoding="utf-8")
    found = job_rules.pushdown_collisions(_cli_config(cli_workspace, old, "prod"))
    assert [f.message.split(" (")[0] for f in found] == ["job parameter 'input' of batch_inference reaches job training"]
