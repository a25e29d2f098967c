"""The local runner's run_job_task (jobs of the same bundle) and max_concurrent_runs without a
queue, on tiny bundles written to tmp_path (no Spark). The entry points are this module's
functions: each appends one JSON line (task name, argv) to the file given as ``--log``."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from spark_mlops.errors import ConfigError
from spark_mlops_dev.bundle import runner
from spark_mlops_dev.bundle.databricks_cli import resolve_bundle

PYPROJECT = """\
[project]
name = "run-job-sample"
version = "0.0.1"

[project.entry-points."spark_mlops.tasks"]
record = "tests.bundle.test_runner_run_job:record"
exit_with = "tests.bundle.test_runner_run_job:exit_with"
"""


def _args() -> dict[str, str]:
    return dict(a.removeprefix("--").partition("=")[::2] for a in sys.argv[1:])


def record() -> None:
    args = _args()
    with Path(args["log"]).open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"task": args.get("name"), "args": args}) + "\n")


def exit_with() -> None:
    record()
    sys.exit(int(_args().get("code", "0")))


def wheel(key: str, log: Path, entry: str = "record", after: list | None = None, **named) -> dict:
    task = {"task_key": key, "python_wheel_task": {
        "package_name": "run_job_sample", "entry_point": entry,
        "named_parameters": {"name": key, "log": str(log), **named}},
        "environment_key": "default"}  # the CLI refuses a wheel task without compute
    if after:
        task["depends_on"] = [{"task_key": a} if isinstance(a, str) else {"task_key": a[0], "outcome": a[1]}
                              for a in after]
    return task


def write_bundle(root: Path, jobs: dict, variables: dict | None = None) -> Path:
    config = {"bundle": {"name": "run-job-sample"},
              "variables": {k: {"default": v} for k, v in (variables or {}).items()},
              "targets": {"dev": {"default": True}},
              "resources": {"jobs": jobs}}
    (root / "databricks.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    (root / "pyproject.toml").write_text(PYPROJECT)
    return root


def run(root: Path, job: str, variables: dict | None = None, **kwargs) -> runner.JobRunResult:
    bundle = resolve_bundle(root, None, variables)
    kwargs.setdefault("out", io.StringIO())
    kwargs.setdefault("state_dir", root / "state")
    return runner.run_job(bundle, job, **kwargs)


def calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def child_job(log: Path, **job) -> dict:
    return {"name": "child", "parameters": [{"name": "reason", "default": "schedule"}],
            "tasks": [wheel("child_task", log, reason="{{job.parameters.reason}}")], **job}


def test_run_job_task_runs_the_bundle_job_with_its_own_run_id_and_parameters(tmp_path):
    log = tmp_path / "calls.jsonl"
    parent = {"name": "parent", "tasks": [
        wheel("first", log),
        {"task_key": "start_child", "depends_on": [{"task_key": "first"}],
         "run_job_task": {"job_id": "${resources.jobs.child.id}", "job_parameters": {"reason": "run {{job.run_id}}"}}},
    ]}
    write_bundle(tmp_path, {"parent": parent, "child": child_job(log)})
    result = run(tmp_path, "parent", run_id="100")
    task = result.tasks["start_child"]
    assert result.state is runner.RunState.SUCCESS and task.status is runner.TaskStatus.SUCCESS
    assert task.child is not None and task.child.job_key == "child" and task.child.run_id != "100"
    assert task.child.parameters == {"reason": "run 100"}
    assert [(c["task"], c["args"].get("reason")) for c in calls(log)] == [("first", None), ("child_task", "run 100")]


def test_a_failed_child_run_fails_the_run_job_task(tmp_path):
    log = tmp_path / "calls.jsonl"
    failing = {"name": "child", "tasks": [wheel("boom", log, "exit_with", code="3")]}
    parent = {"name": "parent", "tasks": [{"task_key": "go", "run_job_task": {"job_id": "${resources.jobs.child.id}"}}]}
    write_bundle(tmp_path, {"parent": parent, "child": failing})
    result = run(tmp_path, "parent")
    assert result.state is runner.RunState.FAILED
    assert result.tasks["go"].status is runner.TaskStatus.FAILED and "FAILED" in result.tasks["go"].error


@pytest.mark.parametrize(("spec", "message"), [
    ({"job_id": 123}, "jobs of this bundle only"),
    ({"job_id": "${resources.jobs.nope.id}"}, "run_job_task names job 'nope', which is not in the bundle"),
    ({"job_id": "${resources.jobs.child.id}", "python_params": ["a"]}, "run_job_task.python_params is not supported"),
    ({"job_id": "${resources.jobs.child.id}", "job_parameters": {"unknown": "x"}}, "has no parameter(s) ['unknown']"),
    ({"job_id": "${resources.jobs.parent.id}"}, "run_job_task cycle: parent -> parent"),
])
def test_anything_but_a_job_of_this_bundle_is_refused_before_anything_runs(tmp_path, spec, message):
    log = tmp_path / "calls.jsonl"
    parent = {"name": "parent", "tasks": [wheel("first", log), {"task_key": "go", "run_job_task": spec}]}
    write_bundle(tmp_path, {"parent": parent, "child": child_job(log)})
    with pytest.raises(ConfigError) as err:
        run(tmp_path, "parent")
    assert message in str(err.value)
    assert calls(log) == []


def drift_gate_bundle(root: Path, log: Path, *, monitor_code: int, drift_code: int) -> Path:
    """batch_inference's drift gate (resources/batch_inference.job.yml) with stand-in tasks."""
    batch = {"name": "batch", "tasks": [
        wheel("monitor", log, "exit_with", code=str(monitor_code)),
        {"task_key": "monitored", "depends_on": [{"task_key": "monitor"}],
         "condition_task": {"op": "EQUAL_TO", "left": "{{job.run_id}}", "right": "{{job.run_id}}"}},
        {**wheel("drift_check", log, "exit_with", after=["monitor"], code=str(drift_code)), "run_if": "ALL_DONE"},
        {"task_key": "retrain_on_drift", "depends_on": [{"task_key": "drift_check"}], "run_if": "ALL_FAILED",
         "condition_task": {"op": "EQUAL_TO", "left": "${var.retrain_on_drift}", "right": "true"}},
        {"task_key": "retrain", "depends_on": [{"task_key": "retrain_on_drift", "outcome": "true"}],
         "run_job_task": {"job_id": "${resources.jobs.retraining.id}"}},
    ]}
    retraining = {"name": "retraining", "max_concurrent_runs": 1, "queue": {"enabled": False},
                  "tasks": [wheel("retrain_task", log)]}
    return write_bundle(root, {"batch": batch, "retraining": retraining}, {"retrain_on_drift": "false"})


@pytest.mark.parametrize(("monitor_code", "drift_code", "enabled", "retrained", "state"), [
    (0, 7, "true", True, "SUCCESS_WITH_FAILURES"),  # drift: drift_check FAILED, retraining ran
    (0, 0, "true", False, "SUCCESS"),  # no drift
    (0, 7, "false", False, "SUCCESS_WITH_FAILURES"),  # drift, retraining off (dev, test)
    (1, 0, "true", False, "FAILED"),  # monitor crashed: no verdict, no retraining, the run fails
])
def test_drift_gate_shape(tmp_path, monitor_code, drift_code, enabled, retrained, state):
    log = tmp_path / "calls.jsonl"
    drift_gate_bundle(tmp_path, log, monitor_code=monitor_code, drift_code=drift_code)
    result = run(tmp_path, "batch", {"retrain_on_drift": enabled})
    assert ("retrain_task" in [c["task"] for c in calls(log)]) is retrained
    assert str(result.state) == state, result.summary()


def test_with_the_queue_enabled_a_run_waits_in_queued_until_a_slot_frees(tmp_path):
    # docs: jobs "queue": a queued run waits for a free slot (RunLifeCycleState QUEUED); the
    # runner used to start it at once.
    import threading

    log = tmp_path / "calls.jsonl"
    write_bundle(tmp_path, {"nightly": {"name": "nightly", "max_concurrent_runs": 1, "queue": {"enabled": True},
                                        "tasks": [wheel("work", log)]}})
    active = tmp_path / "state" / "runs" / "active"
    active.mkdir(parents=True)
    holder = active / "nightly--1.pid"
    holder.write_text(str(os.getppid()))  # another live process holds the one slot
    out = io.StringIO()
    results: list[runner.JobRunResult] = []
    waiter = threading.Thread(target=lambda: results.append(run(tmp_path, "nightly", out=out)))
    waiter.start()
    waiter.join(timeout=1.0)
    assert waiter.is_alive() and calls(log) == []  # queued, not run, not skipped
    assert "QUEUED (1 run(s) active, max_concurrent_runs 1)" in out.getvalue()
    holder.unlink()  # the other run ends
    waiter.join(timeout=30)
    assert results and results[0].state is runner.RunState.SUCCESS
    assert [c["task"] for c in calls(log)] == ["work"]


def test_a_skipped_run_reports_the_api_states(tmp_path):
    log = tmp_path / "calls.jsonl"
    write_bundle(tmp_path, {"nightly": {"name": "nightly", "max_concurrent_runs": 1, "queue": {"enabled": False},
                                        "tasks": [wheel("work", log)]}})
    active = tmp_path / "state" / "runs" / "active"
    active.mkdir(parents=True)
    (active / "nightly--1.pid").write_text(str(os.getppid()))
    result = run(tmp_path, "nightly")
    assert result.api_state()["life_cycle_state"] == "SKIPPED"
    assert result.api_state()["result_state"] == "MAXIMUM_CONCURRENT_RUNS_REACHED"


def test_a_second_trigger_while_retraining_runs_is_skipped_not_queued(tmp_path):
    log = tmp_path / "calls.jsonl"
    drift_gate_bundle(tmp_path, log, monitor_code=0, drift_code=7)
    # Another process (our parent, alive) holds a run of `retraining` in the same state folder.
    active = tmp_path / "state" / "runs" / "active"
    active.mkdir(parents=True)
    (active / "retraining--1.pid").write_text(str(os.getppid()))
    result = run(tmp_path, "batch", {"retrain_on_drift": "true"})
    retrain = result.tasks["retrain"]
    assert retrain.child.state is runner.RunState.MAXIMUM_CONCURRENT_RUNS_REACHED
    assert retrain.status is runner.TaskStatus.FAILED and "MAXIMUM_CONCURRENT_RUNS_REACHED" in retrain.error
    assert "retrain_task" not in [c["task"] for c in calls(log)]
    # Once that run is gone (a dead pid), the next drift starts a retraining again.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (active / "retraining--1.pid").write_text(dead.stdout.strip())
    assert run(tmp_path, "batch", {"retrain_on_drift": "true"}).tasks["retrain"].status is runner.TaskStatus.SUCCESS
    assert not any(p.name.startswith("retraining--") and p.name != "retraining--1.pid" for p in active.iterdir())


# ---------------------------------------------------------------- job parameter pushdown


def test_job_parameters_are_pushed_down_into_run_job_tasks_and_win(tmp_path):
    # docs: jobs/job-parameters "Job parameter pushdown": Run Job is a key-value task, and a job
    # parameter wins over a task parameter of the same key; undeclared ones become the child
    # run's parameters too (databricks/cli libs/testserver/jobs.go runJobParameters).
    log = tmp_path / "calls.jsonl"
    child = {"name": "child", "parameters": [{"name": "input", "default": "child default"}],
             "tasks": [wheel("child_task", log, input="{{job.parameters.input}}")]}
    parent = {"name": "parent", "parameters": [{"name": "input", "default": "the parent's batch"},
                                               {"name": "batch_id", "default": "b7"}],
              "tasks": [{"task_key": "go", "run_job_task": {"job_id": "${resources.jobs.child.id}",
                                                            "job_parameters": {"input": "the task's value"}}}]}
    write_bundle(tmp_path, {"parent": parent, "child": child})
    result = run(tmp_path, "parent")
    run_of_child = result.tasks["go"].child
    assert run_of_child.parameters == {"input": "the parent's batch", "batch_id": "b7"}
    (call,) = calls(log)
    assert call["args"]["input"] == "the parent's batch" and call["args"]["batch_id"] == "b7"


def _stand_in_tasks(config: dict, log: Path, failing: dict[str, int]) -> None:
    """Every wheel task of every job becomes a sample task that logs its argv (``failing``: task
    key -> exit code), keeping its named parameters: the real job graph, no Spark."""
    for job in config["resources"]["jobs"].values():
        for task in job["tasks"]:
            wheel_task = task.get("python_wheel_task")
            if wheel_task is None:
                continue
            key = task["task_key"]
            named = {**(wheel_task.get("named_parameters") or {}), "name": key, "log": str(log)}
            if key in failing:
                named["code"] = str(failing[key])
            task["python_wheel_task"] = {"package_name": "run_job_sample", "named_parameters": named,
                                         "entry_point": "exit_with" if key in failing else "record"}


@pytest.mark.slow  # whole jobs through the local runner: a JVM per job cluster, a process per task
def test_a_scoring_batch_does_not_become_the_training_input_of_a_retraining(tmp_path):
    """batch_inference -> retrain (Run Job) -> retraining -> train (Run Job) -> training: with
    pushdown, batch_inference's job parameters reach every job below it; none may set what
    training reads (issue 26)."""
    import copy

    from spark_mlops_dev.bundle.resolved import Bundle
    from tests.conftest import REPO_ROOT

    real = resolve_bundle(REPO_ROOT, "staging", {"retrain_on_drift": "true", "model_source": "train"})
    config = copy.deepcopy(real.config)
    log = tmp_path / "calls.jsonl"
    _stand_in_tasks(config, log, failing={"drift_check": 7})  # drift: the gate starts a retraining
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    bundle = Bundle(root=tmp_path, target="staging", config=config, variables=real.variables, locations=real.locations)
    scoring_batch = str(tmp_path / "tonight.csv")
    declared = [p["name"] for p in config["resources"]["jobs"]["batch_inference"]["parameters"]]
    batch_input = next(n for n in declared if "input" in n)
    result = runner.run_job(bundle, "batch_inference", {batch_input: scoring_batch, "batch_id": "tonight"},
                            out=io.StringIO(), state_dir=tmp_path / "state")
    assert result.tasks["retrain"].status is runner.TaskStatus.SUCCESS, result.summary()
    prepare = [c for c in calls(log) if c["task"] == "prepare"]
    assert len(prepare) == 1, "the retraining did not train"
    assert prepare[0]["args"]["input"] == real.variables["training_input"]
    # The batch still travels down (pushdown), under a name no task below batch_inference reads:
    # wheel tasks ignore job parameters they do not use (spark_mlops.cli.main, ignore_unknown).
    below = [c for c in calls(log) if c["task"] in ("prepare", "train", "validate", "promote")]
    assert below and {k for c in below for k, v in c["args"].items() if v == scoring_batch} == {batch_input}
    assert batch_input not in ("input", "batch-id")


def test_jobs_as_deployed_run_and_repair_with_numeric_job_ids(tmp_path):
    """The workspace's path: Jobs API JobSettings (a Run Job task names a deployed job id), a run
    id and job parameters given by the caller, then a repair of that run."""
    log = tmp_path / "calls.jsonl"
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    jobs = runner.DeployedJobs(root=tmp_path, target="staging", job_ids={"1001": "child", "1002": "parent"}, jobs={
        "child": {"name": "[staging] child", "tasks": [wheel("child_task", log)]},
        "parent": {"name": "[staging] parent", "parameters": [{"name": "code", "default": "0"}], "tasks": [
            {"task_key": "go", "run_job_task": {"job_id": 1001}},
            wheel("check", log, "exit_with", after=["go"], code="{{job.parameters.code}}")]},
    })
    first = runner.run_job(jobs, "parent", {"code": "3"}, run_id=77, state_dir=tmp_path / "state", out=io.StringIO())
    assert first.statuses() == {"go": "SUCCESS", "check": "FAILED"}
    assert first.api_state() == {"life_cycle_state": "TERMINATED", "result_state": "FAILED", "state_message": ""}
    repaired = runner.repair_run(jobs, 77, rerun_all_failed=True, job_parameters={"code": "0"},
                                 state_dir=tmp_path / "state", out=io.StringIO())
    assert repaired.ok and repaired.repair_count == 1
    assert [c["task"] for c in calls(log)] == ["child_task", "check", "check"]


def test_a_parent_parameter_that_would_override_a_job_below_it_is_named(bundle_copy):
    # batch_inference's scoring batch was named `input`, as training's is: pushed down through
    # retrain -> retraining -> train, it replaced training's input.
    bundle_copy.replace("resources/batch_inference.job.yml", "- name: scoring_input", "- name: input")
    bundle_copy.replace("resources/batch_inference.job.yml", "{{job.parameters.scoring_input}}",
                        "{{job.parameters.input}}", count=4)
    bundle = resolve_bundle(bundle_copy.root, "staging")
    (line,) = runner.pushdown_collisions(bundle, "batch_inference")
    assert line.startswith("job parameter 'input' of batch_inference reaches job training (batch_inference -> "
                           "retraining -> training, task 'train') and overrides its parameter 'input', task "
                           "'prepare''s --input (Run Job tasks receive the job's parameters")


def test_the_bundle_s_jobs_push_nothing_down_that_overrides_a_job_below_them(repo_root):
    for target in ("dev", "test", "staging", "prod"):
        bundle = resolve_bundle(repo_root, target)
        assert {key: runner.pushdown_collisions(bundle, key) for key in bundle.jobs} == dict.fromkeys(bundle.jobs, [])


def test_an_explicitly_forwarded_parameter_is_meant(tmp_path):
    log = tmp_path / "calls.jsonl"
    child = {"name": "child", "parameters": [{"name": "input", "default": "x"}], "tasks": [wheel("c", log)]}
    parent = {"name": "parent", "parameters": [{"name": "input", "default": "y"}], "tasks": [
        {"task_key": "go", "run_job_task": {"job_id": "${resources.jobs.child.id}",
                                            "job_parameters": {"input": "{{job.parameters.input}}"}}}]}
    write_bundle(tmp_path, {"parent": parent, "child": child})
    bundle = resolve_bundle(tmp_path, None)
    assert runner.pushdown_collisions(bundle, "parent") == []
    del parent["tasks"][0]["run_job_task"]["job_parameters"]
    write_bundle(tmp_path, {"parent": parent, "child": child})
    out = io.StringIO()
    run(tmp_path, "parent", out=out)
    assert "warning: job parameter 'input' of parent reaches job child" in out.getvalue()
