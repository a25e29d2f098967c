"""Repair runs (docs: jobs/repair-job-failures; Jobs API ``runs/repair``): a failed run resumes
from its failed and skipped tasks, keeps its successful tasks' results, and counts
``{{job.repair_count}}``; a later process repairs it from the state folder.

Tiny bundles in tmp_path (tests/bundle/test_runner.py's ``Job``), no Spark."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from spark_mlops.errors import ConfigError
from spark_mlops_dev.bundle import runner
from spark_mlops_dev.bundle.databricks_cli import resolve_bundle
from tests.bundle.test_runner import Job


@pytest.fixture
def job(tmp_path: Path) -> Job:
    return Job(tmp_path)


def _failing_middle(job: Job, tmp_path: Path) -> None:
    """a -> flaky (fails on its first call only) -> c; ``repair`` logs {{job.repair_count}}."""
    job.wheel("a")
    job.wheel("flaky", "fail_once", after=["a"], counter=str(tmp_path / "count"))
    job.wheel("c", after=["flaky"], repair="{{job.repair_count}}")


def _repair(job: Job, run_id: str, **kwargs) -> runner.JobRunResult:
    kwargs.setdefault("out", io.StringIO())
    kwargs.setdefault("state_dir", job.root / "state")
    return runner.repair_run(resolve_bundle(job.root, None), run_id, **kwargs)


def test_a_repair_reruns_the_failed_and_skipped_tasks_and_keeps_the_rest(job: Job, tmp_path: Path):
    _failing_middle(job, tmp_path)
    first = job.run(run_id="500")
    assert first.statuses() == {"a": "SUCCESS", "flaky": "FAILED", "c": "UPSTREAM_FAILED"}
    assert first.state is runner.RunState.FAILED
    out = io.StringIO()
    repaired = _repair(job, "500", rerun_all_failed=True, out=out)
    assert repaired.run_id == "500" and repaired.repair_count == 1
    assert repaired.statuses() == {"a": "SUCCESS", "flaky": "SUCCESS", "c": "SUCCESS"}
    assert repaired.state is runner.RunState.SUCCESS and repaired.ok
    assert repaired.tasks["a"].kept and not repaired.tasks["flaky"].kept
    assert job.order() == ["a", "flaky", "flaky", "c"]  # a ran once: its result was kept
    assert "--repair=1" in job.calls()[-1]["argv"]  # {{job.repair_count}}
    assert "-- a: SUCCESS (kept from the run being repaired)" in out.getvalue()


def test_a_later_process_repairs_the_run_from_the_state_folder(job: Job, tmp_path: Path, capsys):
    _failing_middle(job, tmp_path)
    assert job.run(run_id="600").state is runner.RunState.FAILED
    # `spark-mlops run --repair 600`: a new invocation, with only the state folder to go by.
    assert runner.main(root=job.root, repair="600", state_dir=job.root / "state") == 0
    assert "job demo (target dev, run 600): SUCCESS" in capsys.readouterr().out
    # A second repair counts on.
    second = _repair(job, "600", rerun_tasks=["c"])
    assert second.repair_count == 2 and second.statuses()["c"] == "SUCCESS"
    assert "--repair=2" in job.calls()[-1]["argv"]


def test_rerun_tasks_with_dependents_and_new_job_parameters(job: Job, tmp_path: Path):
    job.parameters = [{"name": "mode", "default": "first"}]
    job.wheel("a")
    job.wheel("b", after=["a"])
    job.wheel("c", after=["b"])
    job.wheel("side", after=["a"])
    assert job.run(run_id="700").state is runner.RunState.SUCCESS
    repaired = _repair(job, "700", rerun_tasks=["b"], rerun_dependent=True, job_parameters={"mode": "second"})
    assert [c["task"] for c in job.calls()][4:] == ["b", "c"]  # side and a kept
    assert all("--mode=second" in c["argv"] for c in job.calls()[4:])
    assert repaired.parameters == {"mode": "second"}


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"rerun_all_failed": True}, "has no failed task to repair"),
    ({"rerun_all_failed": True, "rerun_tasks": ["a"]}, "exactly one"),
    ({"rerun_tasks": ["nope"]}, "no task(s) ['nope']"),
    ({"rerun_tasks": ["a"], "latest_repair_id": "x"}, "is not the latest repair"),
])
def test_repairs_the_jobs_api_refuses(job: Job, kwargs, message):
    job.wheel("a")
    job.run(run_id="800")
    with pytest.raises(ConfigError) as err:
        _repair(job, "800", **kwargs)
    assert message in str(err.value)


def test_an_unknown_run_is_an_error(job: Job):
    job.wheel("a")
    job.write()
    with pytest.raises(ConfigError, match="no run 999 in"):
        _repair(job, "999", rerun_all_failed=True)


# ---------------------------------------------------------------- runs/get and runs/cancel from another caller


def test_a_run_in_progress_is_recorded_and_can_be_canceled(job: Job):
    """What a fake workspace answers for runs/get and runs/cancel: the record is RUNNING while the
    run runs; a cancel stops the running task, failure-handling tasks still run, and the run ends
    CANCELED (docs: jobs/run-if; RunResultState CANCELED)."""
    import threading
    import time

    job.wheel("slow", "sleep", seconds="30")
    job.wheel("next", after=["slow"])
    cleanup = job.wheel("cleanup", after=["slow"])
    cleanup["run_if"] = "ALL_DONE"
    job.write()
    bundle = resolve_bundle(job.root, None)
    state = job.root / "state"
    results: list[runner.JobRunResult] = []
    options = runner.RunOptions(process_per_task=True, kill_grace_s=1.0)
    worker = threading.Thread(target=lambda: results.append(runner.run_job(
        bundle, "demo", run_id="900", state_dir=state, out=io.StringIO(), options=options)))
    worker.start()
    for _ in range(200):  # until the slow task has started
        if [c["task"] for c in job.calls()] == ["slow"]:
            break
        time.sleep(0.05)
    assert runner.get_run("900", state_dir=state).api_state() == {"life_cycle_state": "RUNNING", "state_message": ""}
    with pytest.raises(ConfigError, match="must not be in progress"):
        _repair(job, "900", rerun_all_failed=True)
    assert runner.cancel_run("900", state_dir=state) is True
    worker.join(timeout=60)
    (result,) = results
    assert result.state is runner.RunState.CANCELED
    assert result.statuses() == {"slow": "CANCELED", "next": "CANCELED", "cleanup": "SUCCESS"}
    assert runner.get_run("900", state_dir=state).api_state()["result_state"] == "CANCELED"
    assert runner.cancel_run("900", state_dir=state) is False  # already ended
    # A canceled run is repaired like a failed one.
    repaired = _repair(job, "900", rerun_tasks=["next"])
    assert repaired.statuses()["next"] == "UPSTREAM_FAILED"  # slow stays CANCELED: next's ALL_SUCCESS is unmet


def test_a_run_whose_process_is_gone_reports_internal_error_and_can_be_repaired(job: Job, tmp_path: Path):
    import json
    import subprocess
    import sys

    _failing_middle(job, tmp_path)
    job.run(run_id="950")
    path = job.root / "state" / "runs" / "history" / "950.json"
    record = json.loads(path.read_text())
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    record.update(life_cycle_state="RUNNING", state="", pid=int(gone.stdout))
    record["tasks"]["c"]["status"] = "PENDING"  # the runner was killed before c ended
    path.write_text(json.dumps(record))
    assert runner.get_run("950", state_dir=job.root / "state").api_state()["life_cycle_state"] == "INTERNAL_ERROR"
    repaired = _repair(job, "950", rerun_all_failed=True)
    assert repaired.ok and repaired.statuses() == {"a": "SUCCESS", "flaky": "SUCCESS", "c": "SUCCESS"}
