"""The local runner applies timeouts as Databricks does: a task past its timeout_seconds is
stopped (its process, the runner's default), or in the in-process mode judged when it ends; an
attempt past its task's timeout_seconds is TIMEDOUT (retried only with retry_on_timeout), a Run
Job task's wait for its child counts against its own timeout and the parent job's (docs:
jobs/run-job), and a run past the job's timeout_seconds cancels what has not started.

Tiny bundles in tmp_path, entry points from tests.bundle.sample_tasks; the sleeps outlast the
1-second timeouts by a margin, so the outcome does not depend on the machine's speed."""

from __future__ import annotations

import io
import json
from pathlib import Path

import yaml

from spark_mlops_dev.bundle import runner
from spark_mlops_dev.bundle.databricks_cli import resolve_bundle

PYPROJECT = """\
[project]
name = "sample-tasks"
version = "0.0.1"

[project.entry-points."spark_mlops.tasks"]
ok = "tests.bundle.sample_tasks:ok"
sleep = "tests.bundle.sample_tasks:sleep"
stubborn = "tests.bundle.sample_tasks:stubborn"
"""


def wheel(key: str, entry: str = "ok", *, after: str | None = None, log: Path | None = None, **extra) -> dict:
    named = {k: v for k, v in extra.items() if k == "seconds"}
    if log is not None:
        named.update(name=key, log=str(log))
    task = {"task_key": key, "python_wheel_task": {"package_name": "sample_tasks", "entry_point": entry,
                                                   "named_parameters": named},
            "environment_key": "default"}  # the CLI refuses a wheel task without compute
    task.update({k: v for k, v in extra.items() if k != "seconds"})
    if after:
        task["depends_on"] = [{"task_key": after}]
    return task


def run(root: Path, jobs: dict, job: str, **kwargs) -> runner.JobRunResult:
    config = {"bundle": {"name": "timeouts"}, "targets": {"dev": {"default": True, "mode": "development"}},
              "resources": {"jobs": jobs}}
    (root / "databricks.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    (root / "pyproject.toml").write_text(PYPROJECT)
    kwargs.setdefault("out", io.StringIO())
    kwargs.setdefault("state_dir", root / "state")
    return runner.run_job(resolve_bundle(root, None), job, **kwargs)


def events(log: Path) -> list[str]:
    return [json.loads(line)["task"] for line in log.read_text().splitlines()] if log.exists() else []


# ---------------------------------------------------------------- in-process tasks: judged when they end

IN_PROCESS = runner.RunOptions(process_per_task=False)


def test_an_attempt_past_its_timeout_is_timedout_and_not_retried_by_default(tmp_path):
    result = run(tmp_path, {"j": {"name": "j", "tasks": [
        wheel("slow", "sleep", seconds="1.5", timeout_seconds=1, max_retries=2),
        wheel("next", after="slow")]}}, "j", options=IN_PROCESS)
    slow = result.tasks["slow"]
    assert slow.status is runner.TaskStatus.TIMEDOUT and slow.attempts == 1
    assert slow.error.startswith("attempt 1 ran 1.") and "over its timeout_seconds 1" in slow.error
    assert result.tasks["next"].status is runner.TaskStatus.UPSTREAM_FAILED
    assert result.state is runner.RunState.FAILED


def test_retry_on_timeout_retries_a_timed_out_attempt(tmp_path):
    result = run(tmp_path, {"j": {"name": "j", "tasks": [
        wheel("slow", "sleep", seconds="1.5", timeout_seconds=1, max_retries=1, retry_on_timeout=True)]}}, "j",
                 options=IN_PROCESS)
    assert result.tasks["slow"].status is runner.TaskStatus.TIMEDOUT
    assert result.tasks["slow"].attempts == 2


def _parent_and_child(parent_timeout: int, task_timeout: int | None = None) -> dict:
    wait = {"task_key": "wait", "run_job_task": {"job_id": "${resources.jobs.child.id}"}}
    if task_timeout:
        wait["timeout_seconds"] = task_timeout
    return {
        "child": {"name": "child", "timeout_seconds": 600, "tasks": [wheel("work", "sleep", seconds="1.5")]},
        "parent": {"name": "parent", "timeout_seconds": parent_timeout,
                   "tasks": [wait, wheel("after", after="wait")]},
    }


def test_the_parent_timeout_covers_the_wait_for_its_child(tmp_path):
    result = run(tmp_path, _parent_and_child(parent_timeout=1), "parent", options=IN_PROCESS)
    assert result.tasks["wait"].child.state is runner.RunState.SUCCESS  # the child itself finished
    assert result.tasks["after"].status is runner.TaskStatus.CANCELED
    assert "over the job's timeout_seconds 1" in result.tasks["after"].error
    assert result.state is runner.RunState.TIMEDOUT and result.exit_code == 1


def test_a_run_job_task_times_out_on_its_own_timeout(tmp_path):
    result = run(tmp_path, _parent_and_child(parent_timeout=600, task_timeout=1), "parent", options=IN_PROCESS)
    wait = result.tasks["wait"]
    assert wait.status is runner.TaskStatus.TIMEDOUT and "over its timeout_seconds 1" in wait.error
    assert result.state is runner.RunState.FAILED


def test_coherent_timeouts_let_the_wait_finish(tmp_path):
    result = run(tmp_path, _parent_and_child(parent_timeout=600, task_timeout=600), "parent", options=IN_PROCESS)
    assert result.statuses() == {"wait": "SUCCESS", "after": "SUCCESS"}
    assert result.state is runner.RunState.SUCCESS


# ---------------------------------------------------------------- stopping tasks (process per task, the default)

PER_TASK = runner.RunOptions(process_per_task=True, kill_grace_s=1.0)


def test_a_task_is_stopped_at_its_timeout_and_its_finally_does_not_run(tmp_path):
    # Databricks ends a task at its timeout_seconds (docs: jobs/configure-task "Timeout"): the
    # runner used to let it finish and judge it afterwards, so a `finally` always ran locally.
    log = tmp_path / "calls.jsonl"
    result = run(tmp_path, {"j": {"name": "j", "tasks": [
        wheel("slow", "sleep", log=log, seconds="20", timeout_seconds=1)]}}, "j", options=PER_TASK)
    slow = result.tasks["slow"]
    assert slow.status is runner.TaskStatus.TIMEDOUT
    assert "stopped at its timeout_seconds 1 (SIGTERM," in slow.error
    assert events(log) == ["slow"]  # neither "slow.done" nor "slow.finally"


def test_a_task_that_ignores_sigterm_gets_sigkill_after_the_grace_period(tmp_path):
    log = tmp_path / "calls.jsonl"
    result = run(tmp_path, {"j": {"name": "j", "tasks": [
        wheel("stuck", "stubborn", log=log, seconds="20", timeout_seconds=1)]}}, "j", options=PER_TASK)
    assert result.tasks["stuck"].status is runner.TaskStatus.TIMEDOUT
    assert "(SIGTERM, then SIGKILL," in result.tasks["stuck"].error
    assert events(log) == ["stuck"]


def test_on_a_job_timeout_the_running_task_stops_and_only_failure_handling_tasks_run(tmp_path):
    # docs: jobs/run-if: "If a task run is canceled, the cancellation propagates to downstream
    # tasks, and tasks with a Run if condition that handles failure are run".
    log = tmp_path / "calls.jsonl"
    result = run(tmp_path, {"j": {"name": "j", "timeout_seconds": 1, "tasks": [
        wheel("slow", "sleep", log=log, seconds="20"),
        wheel("next", log=log, after="slow"),
        wheel("cleanup", log=log, after="slow", run_if="ALL_DONE")]}}, "j", options=PER_TASK)
    assert result.statuses() == {"slow": "TIMEDOUT", "next": "CANCELED", "cleanup": "SUCCESS"}
    assert result.state is runner.RunState.TIMEDOUT and result.exit_code == 1
    assert result.api_state()["life_cycle_state"] == "TERMINATED"
    assert events(log) == ["slow", "cleanup"]


def test_a_run_job_task_at_its_timeout_cancels_the_run_it_waits_for(tmp_path):
    log = tmp_path / "calls.jsonl"
    jobs = {
        "child": {"name": "child", "timeout_seconds": 600, "tasks": [wheel("work", "sleep", log=log, seconds="20"),
                                                                      wheel("more", log=log, after="work")]},
        "parent": {"name": "parent", "timeout_seconds": 600, "tasks": [
            {"task_key": "wait", "timeout_seconds": 1, "run_job_task": {"job_id": "${resources.jobs.child.id}"}}]},
    }
    result = run(tmp_path, jobs, "parent", options=PER_TASK)
    wait = result.tasks["wait"]
    assert wait.status is runner.TaskStatus.TIMEDOUT and wait.child.state is runner.RunState.CANCELED
    assert wait.child.statuses() == {"work": "CANCELED", "more": "CANCELED"}
    assert events(log) == ["work"]
