"""Job clusters, locally (issue 26 item 2): the tasks of a run that name the same
``job_cluster_key`` are processes of their own attached to that cluster's one Spark driver JVM, as
on Databricks; another key is another JVM; the JVMs end with the run; a task that dies or is
stopped at its timeout leaves the cluster serving the next task; nothing a task leaves in its
Python or its Spark session reaches the next task.

One job of tasks from tests.bundle.cluster_tasks runs once for the module (two clusters cost two
JVM starts); each test reads its own part of what the tasks logged. The job runs with the runner's
default options."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from spark_mlops_dev.bundle import runner
from spark_mlops_dev.bundle.job_plan import DeployedJobs

pytestmark = pytest.mark.slow  # whole jobs through the local runner, each starting its job clusters

REPO_ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = """\
[project]
name = "cluster-tasks"
version = "0.0.1"

[project.entry-points."spark_mlops.tasks"]
report = "tests.bundle.cluster_tasks:report"
die = "tests.bundle.cluster_tasks:die"
linger = "tests.bundle.cluster_tasks:linger"
stop_spark = "tests.bundle.cluster_tasks:stop_spark"
"""


def _task(key: str, entry: str, cluster: str, log: Path, *, after: list[str] | None = None, **extra) -> dict:
    named = {"name": key, "log": str(log), "runner-pid": str(os.getpid())}
    named.update({k: str(v) for k, v in extra.pop("named", {}).items()})
    task = {"task_key": key, "job_cluster_key": cluster,
            "python_wheel_task": {"package_name": "cluster_tasks", "entry_point": entry, "named_parameters": named},
            **extra}
    if after:
        task["depends_on"] = [{"task_key": a} for a in after]
    return task


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory):
    """(result, {task: its log entry}, output) of one run of the job."""
    root = tmp_path_factory.mktemp("clusters")
    log = root / "calls.jsonl"
    (root / "pyproject.toml").write_text(PYPROJECT)
    cluster = {"spark_version": "18.0.x-cpu-ml-scala2.13", "num_workers": 0}
    job = {
        "name": "clusters", "timeout_seconds": 900,
        "job_clusters": [{"job_cluster_key": "a", "new_cluster": cluster},
                         {"job_cluster_key": "b", "new_cluster": cluster}],
        "tasks": [
            _task("a1", "report", "a", log),
            _task("b1", "report", "b", log),
            _task("a2", "report", "a", log, after=["a1"]),
            _task("killer", "die", "a", log, after=["a2"]),
            _task("slow", "linger", "a", log, after=["a2"], timeout_seconds=3, named={"seconds": 60}),
            _task("stopper", "stop_spark", "a", log, after=["killer", "slow"], run_if="ALL_DONE"),
            _task("a3", "report", "a", log, after=["stopper"], named={"udf": 1, "wait_idle": 20}),
        ],
    }
    jobs = DeployedJobs(root=root, target="dev", jobs={"clusters": job})
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(REPO_ROOT)  # tests.bundle.cluster_tasks importable in the task processes
        mp.delenv(runner.SHARED_CLUSTER_ENV)  # job clusters, each started for the run (conftest.py shares one)
        result = runner.run_job(jobs, "clusters", state_dir=root / "state", out=out)
    entries: dict[str, dict] = {}
    for line in log.read_text().splitlines() if log.exists() else []:
        entry = json.loads(line)
        entries[entry["task"]] = entry
    return result, entries, out.getvalue()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_tasks_on_one_job_cluster_share_its_jvm_and_spark_context_each_in_a_process_of_its_own(cluster_run):
    result, seen, out = cluster_run
    on_a = [seen[k] for k in ("a1", "a2", "a3")]
    assert len({e["jvm_pid"] for e in on_a}) == 1, out
    assert len({e["app_id"] for e in on_a}) == 1
    assert len({e["pid"] for e in on_a}) == 3 and os.getpid() not in {e["pid"] for e in on_a}
    assert all(e["pid"] != e["jvm_pid"] for e in on_a)
    # SparkSession.builder.getOrCreate(), getActiveSession() and the lifecycle's get_spark agree.
    assert all(e["active_is_builder"] and e["product_app_id"] == e["app_id"] for e in on_a)


def test_another_job_cluster_key_is_another_jvm(cluster_run):
    result, seen, out = cluster_run
    assert seen["b1"]["jvm_pid"] != seen["a1"]["jvm_pid"], out
    assert seen["b1"]["app_id"] != seen["a1"]["app_id"]


def test_the_clusters_jvms_are_gone_after_the_run(cluster_run):
    result, seen, out = cluster_run
    pids = {seen["a1"]["jvm_pid"], seen["b1"]["jvm_pid"]}
    assert pids and not [p for p in pids if _alive(p)], out


def test_a_task_gets_no_python_state_nor_session_state_of_the_task_before_it(cluster_run):
    result, seen, out = cluster_run
    a2 = seen["a2"]
    assert a2["module_left"] == [] and a2["env_left"] is None, out
    assert a2["temp_views"] == [] and a2["conf_left"] is None


def test_a_task_killed_or_stopped_at_its_timeout_leaves_the_cluster_serving_the_next(cluster_run):
    result, seen, out = cluster_run
    statuses = result.statuses()
    assert statuses["killer"] == "FAILED" and result.tasks["killer"].error == "exited with code -9", out
    assert statuses["slow"] == "TIMEDOUT"
    assert statuses["a3"] == "SUCCESS" and seen["a3"]["jvm_pid"] == seen["killer"]["jvm_pid"]
    assert seen["a3"]["app_id"] == seen["a1"]["app_id"]
    # The killed task's endless Spark job was canceled on the cluster, not left to run.
    assert seen["a3"]["active_jobs"] == []
    assert result.state is runner.RunState.SUCCESS_WITH_FAILURES


def test_spark_stop_in_a_task_leaves_the_clusters_context_up(cluster_run):
    result, seen, out = cluster_run
    assert result.statuses()["stopper"] == "SUCCESS", out
    assert seen["stopper"]["count_after"] == 5
    assert seen["stopper"]["app_id"] == seen["a1"]["app_id"] == seen["a3"]["app_id"]


def test_python_udfs_run_on_the_shared_cluster(cluster_run):
    result, seen, out = cluster_run
    assert seen["a3"]["udf"] == [0, 2, 4], out


def test_a_shared_cluster_is_the_runners_own_spark_for_every_run_and_outlives_them(spark, tmp_path, monkeypatch):
    """RunOptions.shared_cluster: an all-purpose cluster (existing_cluster_id) serves every run."""
    log = tmp_path / "calls.jsonl"
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    cluster = {"spark_version": "18.0.x-cpu-ml-scala2.13", "num_workers": 0}
    job = {"name": "shared", "job_clusters": [{"job_cluster_key": "a", "new_cluster": cluster},
                                              {"job_cluster_key": "b", "new_cluster": cluster}],
           "tasks": [_task("a1", "report", "a", log), _task("b1", "report", "b", log, after=["a1"])]}
    jobs = DeployedJobs(root=tmp_path, target="dev", jobs={"shared": job})
    monkeypatch.chdir(REPO_ROOT)
    for _ in range(2):
        result = runner.run_job(jobs, "shared", state_dir=tmp_path / "state", out=io.StringIO(),
                                options=runner.RunOptions(shared_cluster=True))
        assert result.state is runner.RunState.SUCCESS
    seen = [json.loads(line) for line in log.read_text().splitlines()]
    ours = int(spark._jvm.java.lang.ProcessHandle.current().pid())
    assert len(seen) == 4 and {e["jvm_pid"] for e in seen} == {ours}
    assert {e["app_id"] for e in seen} == {spark.sparkContext.applicationId}
    assert len({e["pid"] for e in seen}) == 4 and os.getpid() not in {e["pid"] for e in seen}
    assert seen[1]["temp_views"] == []  # each task still has a session of its own
    assert spark.range(3).count() == 3  # the runs did not stop it
