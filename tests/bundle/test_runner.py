"""The local job runner on tiny bundles written to tmp_path (no Spark, no mocks).

Each bundle has a ``databricks.yml`` with one target and one job, and a ``pyproject.toml``
whose ``spark_mlops.tasks`` entry points are the functions of ``tests.bundle.sample_tasks``.
"""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import pytest
import yaml

from spark_mlops import cli
from spark_mlops.errors import ConfigError
from spark_mlops_dev.bundle import runner
from spark_mlops_dev.bundle.databricks_cli import resolve_bundle

PYPROJECT = """\
[project]
name = "sample-tasks"
version = "0.0.1"

[project.scripts]
sample-tasks = "tests.bundle.sample_tasks:ok"

[project.entry-points."spark_mlops.tasks"]
ok = "tests.bundle.sample_tasks:ok"
fail_once = "tests.bundle.sample_tasks:fail_once"
always_fail = "tests.bundle.sample_tasks:always_fail"
exit_with = "tests.bundle.sample_tasks:exit_with"
remember = "tests.bundle.sample_tasks:remember"
recall = "tests.bundle.sample_tasks:recall"
sleep = "tests.bundle.sample_tasks:sleep"
"""


class Job:
    """Builds one job in a tmp bundle; every wheel task logs to ``log`` by default."""

    def __init__(self, root: Path, key: str = "demo"):
        self.root = root
        self.key = key
        self.log = root / "calls.jsonl"
        self.tasks: list[dict] = []
        self.parameters: list[dict] = []

    def wheel(self, task_key: str, entry: str = "ok", /, *, after: list | None = None, log: bool = True,
              **named) -> dict:
        params = {"name": task_key, **({"log": str(self.log)} if log else {}), **named}
        task = {
            "task_key": task_key,
            "python_wheel_task": {"package_name": "sample_tasks", "entry_point": entry,
                                  "named_parameters": params},
            "environment_key": "default",  # ignored locally
        }
        return self._add(task, after)

    def condition(self, key: str, left, op: str, right, *, after: list | None = None) -> dict:
        return self._add({"task_key": key, "condition_task": {"op": op, "left": left, "right": right}},
                         after)

    def _add(self, task: dict, after: list | None) -> dict:
        if after:
            task["depends_on"] = [
                {"task_key": a} if isinstance(a, str) else {"task_key": a[0], "outcome": a[1]} for a in after
            ]
        self.tasks.append(task)
        return task

    def write(self) -> Path:
        job: dict = {"name": f"{self.key} job", "tasks": self.tasks}
        if self.parameters:
            job["parameters"] = self.parameters
        config = {
            "bundle": {"name": "sample"},
            "variables": {"suffix": {"default": "v1"}},
            "targets": {"dev": {"default": True, "mode": "development"}},
            "resources": {"jobs": {self.key: job}},
        }
        (self.root / "databricks.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        (self.root / "pyproject.toml").write_text(PYPROJECT)
        return self.root

    def run(self, parameters: dict | None = None, **kwargs) -> runner.JobRunResult:
        self.write()
        bundle = resolve_bundle(self.root, None)
        kwargs.setdefault("out", io.StringIO())
        kwargs.setdefault("state_dir", self.root / "state")
        return runner.run_job(bundle, self.key, parameters, **kwargs)

    def calls(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def order(self) -> list[str]:
        return [c["task"] for c in self.calls()]


@pytest.fixture
def job(tmp_path: Path) -> Job:
    return Job(tmp_path)


# ---------------------------------------------------------------- order and dependencies


def test_graph_order_follows_depends_on_then_yaml_order(job: Job):
    job.wheel("c", after=["b"])
    job.wheel("a")
    job.wheel("b", after=["a"])
    job.wheel("d")
    job.wheel("e", after=["a", "d"])
    result = job.run(options=runner.RunOptions(max_parallel=1))  # one at a time: the start order shows
    assert job.order() == ["a", "b", "c", "d", "e"]
    assert list(result.tasks) == ["a", "b", "c", "d", "e"]
    assert result.state == runner.RunState.SUCCESS
    assert result.exit_code == 0
    assert all(t.status == "SUCCESS" and t.attempts == 1 for t in result.tasks.values())


def test_named_parameters_become_key_value_args_in_the_deployed_order(job: Job):
    # named_parameters is a map: the CLI deploys it with its keys sorted (its JSON), not in YAML order
    job.wheel("a", alpha="1", beta=2, gamma=True)
    job.run()
    (call,) = job.calls()
    assert call["argv"] == ["sample_tasks", "--alpha=1", "--beta=2", "--gamma=true", f"--log={job.log}",
                            "--name=a"]


def test_positional_parameters_are_passed_as_given(job: Job):
    task = job.wheel("a")
    del task["python_wheel_task"]["named_parameters"]
    task["python_wheel_task"]["parameters"] = ["--log", str(job.log), "plain", "{{task.name}}"]
    result = job.run()
    assert result.tasks["a"].argv == ["--log", str(job.log), "plain", "a"]


def test_cycle_and_unknown_dependency_are_errors(job: Job):
    job.wheel("a", after=["b"])
    job.wheel("b", after=["a"])
    with pytest.raises(ConfigError, match="circular depends_on"):
        job.run()
    job.tasks[:] = []
    job.wheel("a", after=["nope"])
    with pytest.raises(ConfigError, match="task 'a': depends on unknown task 'nope'"):
        job.run()


# ---------------------------------------------------------------- failures and retries


def test_task_failing_once_succeeds_on_retry(job: Job, tmp_path: Path):
    task = job.wheel("flaky", "fail_once", counter=str(tmp_path / "count"))
    task["max_retries"] = 2
    task["min_retry_interval_millis"] = 10
    job.wheel("after", after=["flaky"])
    result = job.run()
    assert result.tasks["flaky"].status == "SUCCESS"
    assert result.tasks["flaky"].attempts == 2
    assert result.tasks["after"].status == "SUCCESS"
    assert job.order() == ["flaky", "flaky", "after"]
    assert result.ok


def test_a_retry_waits_min_retry_interval_millis(job: Job, tmp_path: Path):
    # docs: jobs/configure-task "Retries": the minimum interval between the start of the failed
    # run and the retry; the runner used to cap it at 1 s.
    task = job.wheel("flaky", "fail_once", counter=str(tmp_path / "count"))
    task["max_retries"] = 1
    task["min_retry_interval_millis"] = 2500
    out = io.StringIO()
    result = job.run(out=out)
    first, second = (c["time"] for c in job.calls())
    assert result.tasks["flaky"].attempts == 2 and result.ok
    assert second - first >= 2.5
    assert "retrying in 2.5s (retry 1 of 1)" in out.getvalue()


def test_a_setting_shortens_retry_waits_locally_and_says_so(job: Job, tmp_path: Path):
    task = job.wheel("flaky", "fail_once", counter=str(tmp_path / "count"))
    task["max_retries"] = 1
    task["min_retry_interval_millis"] = 600_000
    out = io.StringIO()
    result = job.run(out=out, options=runner.RunOptions(max_retry_wait_s=0.1))
    assert result.tasks["flaky"].attempts == 2 and result.ok
    assert ("retrying in 0.1s (retry 1 of 1; min_retry_interval_millis 600000 shortened locally by "
            "SPARK_MLOPS_MAX_RETRY_WAIT_S=0.1)") in out.getvalue()


def test_always_failing_task_stops_its_dependants_and_fails_the_job(job: Job):
    job.wheel("a")
    fail = job.wheel("b", "always_fail", after=["a"])
    fail["max_retries"] = 1
    job.wheel("c", after=["b"])
    job.wheel("d", after=["c"])
    job.wheel("side", after=["a"])
    out = io.StringIO()
    result = job.run(out=out, options=runner.RunOptions(max_parallel=1))
    assert result.statuses() == {"a": "SUCCESS", "b": "FAILED", "c": "UPSTREAM_FAILED",
                                 "d": "UPSTREAM_FAILED", "side": "SUCCESS"}
    assert result.tasks["b"].attempts == 2
    assert result.tasks["b"].error == "RuntimeError: this task always fails"
    assert result.tasks["c"].attempts == 0
    assert job.order() == ["a", "b", "b", "side"]
    assert result.state == runner.RunState.FAILED
    assert result.exit_code == 1
    text = out.getvalue()
    assert "<- b: FAILED (2 attempts" in text and "this task always fails" in text
    assert "-- c: UPSTREAM_FAILED" in text
    assert "job demo (target dev, run " in text and "): FAILED" in text


def test_exit_codes_of_entry_points(job: Job):
    job.wheel("zero", "exit_with", code="0")
    job.wheel("three", "exit_with", code="3")
    result = job.run()
    assert result.tasks["zero"].status == "SUCCESS"
    assert result.tasks["three"].status == "FAILED"
    assert result.tasks["three"].error == "exited with code 3"


def test_main_returns_1_when_a_leaf_failed_and_prints_a_summary(job: Job, capsys):
    job.wheel("a", "always_fail")
    job.write()
    assert runner.main(root=job.root, job="demo", target="dev", variables={}, parameters={},
                       state_dir=None) == 1
    out = capsys.readouterr().out
    assert "task" in out and "status" in out and "attempts" in out and "duration" in out
    assert "a     wheel  FAILED" in out


def test_sys_argv_and_environment_are_restored(job: Job, tmp_path: Path):
    job.wheel("a")
    job.wheel("b", "always_fail")
    before = list(sys.argv)
    os.environ.pop(runner.STATE_DIR_ENV, None)
    result = job.run(state_dir=tmp_path / "state")
    assert sys.argv == before
    assert runner.STATE_DIR_ENV not in os.environ
    assert {c["state_dir"] for c in job.calls()} == {str((tmp_path / "state").resolve())}
    assert result.tasks["a"].status == "SUCCESS"


# ---------------------------------------------------------------- run_if


def test_run_if_all_done_runs_after_a_failure(job: Job):
    job.wheel("a", "always_fail")
    cleanup = job.wheel("cleanup", after=["a"])
    cleanup["run_if"] = "ALL_DONE"
    result = job.run()
    assert result.statuses() == {"a": "FAILED", "cleanup": "SUCCESS"}
    # Databricks: the leaves decide; a failed non-leaf task gives SUCCESS_WITH_FAILURES
    assert result.state == runner.RunState.SUCCESS_WITH_FAILURES
    assert result.exit_code == 0


def test_failure_handling_run_ifs_are_excluded_when_nothing_failed(job: Job):
    job.wheel("a")
    for rule in ("AT_LEAST_ONE_FAILED", "ALL_FAILED"):
        job.wheel(rule.lower(), after=["a"])["run_if"] = rule
    result = job.run()
    assert result.statuses() == {"a": "SUCCESS", "at_least_one_failed": "EXCLUDED", "all_failed": "EXCLUDED"}
    assert result.state == runner.RunState.SUCCESS  # excluded counts as successful


def test_run_if_rules_with_one_failed_and_one_succeeded_dependency(job: Job):
    job.wheel("good")
    job.wheel("bad", "always_fail")
    for rule in runner.RUN_IF:
        job.wheel(rule.lower(), after=["good", "bad"])["run_if"] = rule
    result = job.run()
    assert result.statuses() == {
        "good": "SUCCESS",
        "bad": "FAILED",
        "all_success": "UPSTREAM_FAILED",
        "at_least_one_success": "SUCCESS",
        "none_failed": "UPSTREAM_FAILED",
        "all_done": "SUCCESS",
        "at_least_one_failed": "SUCCESS",
        "all_failed": "EXCLUDED",
    }
    assert result.state == runner.RunState.FAILED  # leaves all_success and none_failed


def test_upstream_failed_counts_as_failed_downstream(job: Job):
    job.wheel("a", "always_fail")
    job.wheel("b", after=["a"])
    job.wheel("alert", after=["b"])["run_if"] = "AT_LEAST_ONE_FAILED"
    result = job.run()
    assert result.statuses() == {"a": "FAILED", "b": "UPSTREAM_FAILED", "alert": "SUCCESS"}


# ---------------------------------------------------------------- condition tasks


def _branching_job(job: Job) -> None:
    job.parameters = [{"name": "threshold", "default": "0.7"}, {"name": "auc", "default": "0.8"}]
    job.wheel("score")
    job.condition("good_enough", "{{job.parameters.auc}}", "GREATER_THAN",
                  "{{job.parameters.threshold}}", after=["score"])
    job.wheel("promote", after=[("good_enough", "true")])
    job.wheel("reject", after=[("good_enough", "false")])
    job.wheel("after_reject", after=["reject"])
    job.wheel("report", after=["promote", "reject"])["run_if"] = "NONE_FAILED"


def test_condition_true_branch_runs_and_false_branch_is_excluded(job: Job):
    _branching_job(job)
    result = job.run()
    assert result.statuses() == {"score": "SUCCESS", "good_enough": "SUCCESS", "promote": "SUCCESS",
                                 "reject": "EXCLUDED", "after_reject": "EXCLUDED", "report": "SUCCESS"}
    assert result.tasks["good_enough"].outcome is True
    assert result.tasks["good_enough"].detail == "'0.8' GREATER_THAN '0.7'"
    assert job.order() == ["score", "promote", "report"]
    assert result.state == runner.RunState.SUCCESS
    assert "SUCCESS (true)" in result.summary()


def test_condition_false_branch_with_a_param_override(job: Job):
    _branching_job(job)
    result = job.run({"threshold": "0.9"}, options=runner.RunOptions(max_parallel=1))  # after_reject, then report
    assert result.tasks["good_enough"].outcome is False
    assert result.statuses()["promote"] == "EXCLUDED"
    assert result.statuses()["reject"] == "SUCCESS"
    assert result.statuses()["after_reject"] == "SUCCESS"
    assert job.order() == ["score", "reject", "after_reject", "report"]


def test_condition_on_a_literal_boolean(job: Job):
    job.condition("check", "${var.suffix}", "EQUAL_TO", "v1")
    job.wheel("yes", after=[("check", "true")])
    job.wheel("no", after=[("check", True)])  # YAML booleans are accepted as outcomes
    result = job.run()
    assert result.tasks["check"].outcome is True
    assert result.statuses()["yes"] == result.statuses()["no"] == "SUCCESS"


def test_failed_condition_fails_its_branches(job: Job):
    job.condition("check", "abc", "GREATER_THAN", "1")
    job.wheel("yes", after=[("check", "true")])
    result = job.run()
    assert result.tasks["check"].status == "FAILED"
    assert "'abc' is not a number" in result.tasks["check"].error
    assert result.tasks["yes"].status == "UPSTREAM_FAILED"
    assert result.exit_code == 1


@pytest.mark.parametrize(("code", "statuses"), [
    ("0", {"validate": "SUCCESS", "promote": "SUCCESS", "record_rejection": "EXCLUDED"}),
    ("6", {"validate": "FAILED", "promote": "UPSTREAM_FAILED", "record_rejection": "SUCCESS"}),
])
def test_release_shaped_gate_on_exit_codes_fails_the_run_on_rejection(job: Job, code: str, statuses: dict):
    job.wheel("validate", "exit_with", code=code)
    job.wheel("promote", after=["validate"])
    job.wheel("record_rejection", after=["validate"])["run_if"] = "ALL_FAILED"
    result = job.run()
    assert result.statuses() == statuses
    # A rejection fails the run: promote, a leaf, did not run.
    assert result.state == ("SUCCESS" if code == "0" else "FAILED")


@pytest.mark.parametrize(
    ("op", "left", "right", "expected"),
    [
        ("EQUAL_TO", "12.0", "12", False),  # string comparison, as on Databricks
        ("EQUAL_TO", "a", "a", True),
        ("NOT_EQUAL", "12.0", "12", True),
        ("GREATER_THAN_OR_EQUAL", "12.0", "12", True),  # numeric comparison
        ("GREATER_THAN_OR_EQUAL", "10.0", "12", False),
        ("GREATER_THAN", "10", "9", True),  # numbers, not strings
        ("GREATER_THAN", " 1e3 ", "999", True),
        ("LESS_THAN", "-1.5", "0", True),
        ("LESS_THAN_OR_EQUAL", "2", "2.0", True),
    ],
)
def test_condition_operators(op, left, right, expected):
    assert runner.evaluate_condition(op, left, right) is expected


def test_outcome_on_a_non_condition_dependency_is_an_error(job: Job):
    job.wheel("a")
    job.wheel("b", after=[("a", "true")])
    with pytest.raises(ConfigError, match="'a' is not a condition_task"):
        job.run()


# ---------------------------------------------------------------- parameters and references


def test_job_parameters_defaults_override_and_push_down(job: Job):
    job.parameters = [{"name": "x", "default": "from-default"}, {"name": "n", "default": 3}]
    job.wheel("a", arg="value-{{job.parameters.x}}", x="task-value")
    result = job.run()
    assert result.parameters == {"x": "from-default", "n": "3"}
    # job parameters are pushed down to named_parameters; the job's value wins over the task's
    assert result.tasks["a"].argv == ["--arg=value-from-default", f"--log={job.log}", "--name=a",
                                      "--x=from-default", "--n=3"]  # the deployed (sorted) keys, then pushed-down ones
    result = job.run({"x": "override"})
    assert "--arg=value-override" in result.tasks["a"].argv
    assert "--x=override" in result.tasks["a"].argv


def test_job_parameters_are_not_pushed_down_to_positional_parameters(job: Job):
    job.parameters = [{"name": "x", "default": "1"}]
    task = job.wheel("a")
    task["python_wheel_task"] = {"package_name": "sample_tasks", "entry_point": "ok",
                                 "parameters": ["--got={{job.parameters.x}}"]}
    assert job.run().tasks["a"].argv == ["--got=1"]


def test_unknown_param_is_an_error(job: Job):
    job.parameters = [{"name": "x", "default": "1"}]
    job.wheel("a")
    with pytest.raises(ConfigError, match=r"job 'demo' has no parameter 'y' \(parameters: x\)"):
        job.run({"y": "2"})


def test_task_value_references_of_wheel_tasks_are_refused_before_anything_runs(job: Job):
    # dbutils.jobs.taskValues.set() works in Python notebooks only (docs: jobs/task-values): from a
    # wheel task the value is never set, so the runner must not pretend it resolves.
    job.wheel("a")
    job.wheel("b", after=["a"], got="{{tasks.a.values.verdict}}")
    with pytest.raises(ConfigError) as info:
        job.run()
    assert "task 'a' is a python_wheel_task; task values can only be set from Python notebook tasks" in str(info.value)
    assert job.calls() == []


def test_task_value_in_a_condition_is_refused_too(job: Job):
    job.wheel("validate")
    job.condition("gate", "{{tasks.validate.values.verdict}}", "EQUAL_TO", "passed", after=["validate"])
    with pytest.raises(ConfigError, match="task values can only be set from Python notebook tasks"):
        job.run()


def test_run_metadata_references(job: Job):
    job.parameters = [{"name": "day", "default": "{{job.start_time.iso_date}}"}]
    job.wheel("a", run="{{job.run_id}}", task="{{task.name}}", job_id="{{job.id}}",
              job_name="{{job.name}}", other="{{other.thing}}", bundle_var="${var.suffix}")
    result = job.run(run_id=42)
    args = result.tasks["a"].argv
    # development mode: the job is named as the CLI deploys it for the local identity
    assert "--run=42" in args and "--task=a" in args and "--job_name=[dev tester] demo job" in args
    assert f"--day={result.start_time.date().isoformat()}" in args
    assert "--other={{other.thing}}" in args  # unknown namespace: literal, like Databricks
    assert "--bundle_var=v1" in args  # ${...} resolved by the CLI
    assert next(a for a in args if a.startswith("--job_id=")).removeprefix("--job_id=").isdigit()
    assert result.run_id == "42"


def test_backquoted_names_and_task_metadata(job: Job):
    job.wheel("my-task")
    job.wheel("b", after=["my-task"], state="{{tasks.`my-task`.result_state}}", when="{{job.trigger.time.year}}")
    result = job.run()
    args = result.tasks["b"].argv
    assert "--state=SUCCESS" in args
    assert f"--when={result.start_time.year}" in args


def test_local_run_ids_increase():
    ids = [int(runner.new_run_id()) for _ in range(3)]
    assert ids == sorted(ids) and len(set(ids)) == 3


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{{job.parameters.nope}}", "task 'a': cannot resolve {{job.parameters.nope}}: no job parameter 'nope'"),
        ("{{tasks.b.run_id}}", "task 'a': cannot resolve {{tasks.b.run_id}}: task 'b' is not upstream of 'a'"),
        ("{{tasks.zz.run_id}}", "no task 'zz' in this job"),
        ("{{job.naem}}", "task 'a': cannot resolve {{job.naem}}: unknown job field"),
        ("{{job.start_time.century}}", "unknown time field 'century'"),
    ],
)
def test_bad_references_are_errors_before_anything_runs(job: Job, value: str, message: str):
    job.wheel("a", ref=value)
    job.wheel("b")
    with pytest.raises(ConfigError) as info:
        job.run()
    assert message in str(info.value)
    assert "named_parameters.ref" in str(info.value)
    assert job.calls() == []


# ---------------------------------------------------------------- job and task checks


def test_unsupported_task_type_is_an_error_before_anything_runs(job: Job):
    job.wheel("a")
    job.tasks.append({"task_key": "nb", "notebook_task": {"notebook_path": "./nb.ipynb"}, "depends_on": [
        {"task_key": "a"}]})
    (job.root / "nb.ipynb").write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    with pytest.raises(ConfigError, match=r"task 'nb': notebook_task is not supported by the local runner"):
        job.run()
    assert job.calls() == []


def test_unknown_job_lists_the_job_keys(job: Job):
    job.wheel("a")
    job.write()
    with pytest.raises(ConfigError, match=r"no job 'nope' in the bundle \(target dev\); jobs: demo"):
        runner.run_bundle_job(job.root, "nope", out=None)


def test_undeclared_entry_point_is_an_error(job: Job):
    job.wheel("a", "missing")
    with pytest.raises(ConfigError, match=r"task 'a': entry point 'missing' is not declared"):
        job.run()


def test_unknown_package_is_an_error(job: Job):
    job.wheel("a")["python_wheel_task"]["package_name"] = "no-such-package-xyz"
    with pytest.raises(ConfigError, match="package 'no-such-package-xyz' is neither the bundle's project"):
        job.run()


def test_entry_point_from_project_scripts(job: Job):
    job.wheel("a", "sample-tasks")
    assert job.run().tasks["a"].status == "SUCCESS"


# ---------------------------------------------------------------- through the CLI


def test_cli_run_command(job: Job, capsys):
    job.parameters = [{"name": "x", "default": "1"}]
    job.wheel("a", got="{{job.parameters.x}}")
    job.write()
    code = cli.main(["run", "demo", "--root", str(job.root), "-t", "dev", "--param", "x=7",
                     "--var", "suffix=v2"])
    assert code == 0
    assert "--got=7" in job.calls()[0]["argv"]
    out = capsys.readouterr().out
    assert "-> a: started" in out and "<- a: SUCCESS (1 attempt" in out


def test_cli_run_unknown_job_exits_with_a_config_error(job: Job, capsys):
    job.wheel("a")
    job.write()
    assert cli.main(["run", "nope", "--root", str(job.root)]) == ConfigError.exit_code
    assert "no job 'nope'" in capsys.readouterr().err


# ---------------------------------------------------------------- one process per task


def test_a_task_sees_what_an_earlier_task_left_in_process_but_not_in_a_process_of_its_own(job: Job, monkeypatch,
                                                                                          tmp_path: Path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///parent-only.db")  # the parent's, not the task's
    monkeypatch.setenv("SPARK_MLOPS_TARGET", "prod")
    monkeypatch.chdir(Path(__file__).resolve().parents[2])  # `tests.bundle.sample_tasks` importable
    job.wheel("remember", "remember")
    job.wheel("recall", "recall", after=["remember"])
    job.run(state_dir=tmp_path / "state", process_per_task=False)
    shared = job.calls()[-1]
    assert shared["global"] == ["set"] and shared["env"]["SAMPLE_TASKS_REMEMBERED"] == "1"
    assert shared["pid"] == os.getpid()
    os.environ.pop("SAMPLE_TASKS_REMEMBERED", None)

    job.log.unlink()
    result = job.run(state_dir=tmp_path / "state", process_per_task=True)
    assert result.state == runner.RunState.SUCCESS, result.summary()
    alone = job.calls()[-1]
    assert alone["pid"] != os.getpid()
    assert alone["global"] == [] and alone["env"] == {
        "SAMPLE_TASKS_REMEMBERED": None, "MLFLOW_TRACKING_URI": None, "SPARK_MLOPS_TARGET": None,
        "SPARK_MLOPS_STATE_DIR": str((tmp_path / "state").resolve())}


def test_a_failing_task_process_fails_the_attempt_with_its_exit_code(job: Job, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    job.wheel("bad", "exit_with", code="4")
    result = job.run(process_per_task=True)
    assert result.tasks["bad"].error == "exited with code 4"
    assert result.state == runner.RunState.FAILED


# ---------------------------------------------------------------- parallel tasks


def _spans(job: Job) -> dict[str, tuple[float, float]]:
    """task -> (started, done) from the sleep tasks' log."""
    times: dict[str, dict[str, float]] = {}
    for c in job.calls():
        name, _, event = c["task"].partition(".")
        times.setdefault(name, {})[event or "start"] = c["time"]
    return {k: (v["start"], v["done"]) for k, v in times.items() if "done" in v}


def test_tasks_whose_dependencies_are_met_run_in_parallel(job: Job):
    # docs: jobs/run-if: "Databricks runs upstream tasks before running downstream tasks, running
    # as many of them in parallel as possible". The runner used to run one task at a time.
    job.wheel("a", "sleep", seconds="1.5")
    job.wheel("b", "sleep", seconds="1.5")
    job.wheel("c", after=["a", "b"])
    result = job.run(options=runner.RunOptions(process_per_task=True, max_parallel=2))
    assert result.state is runner.RunState.SUCCESS
    spans = _spans(job)
    (a0, a1), (b0, b1) = spans["a"], spans["b"]
    assert a0 < b1 and b0 < a1  # they overlapped
    c_start = next(c["time"] for c in job.calls() if c["task"] == "c")
    assert c_start >= max(a1, b1)  # c waited for both


def test_parallel_tasks_are_bounded_by_the_setting(job: Job):
    job.wheel("a", "sleep", seconds="0.5")
    job.wheel("b", "sleep", seconds="0.5")
    job.wheel("c", "sleep", seconds="0.5")
    job.run(options=runner.RunOptions(process_per_task=True, max_parallel=1))
    spans = sorted(_spans(job).values())
    assert all(earlier[1] <= later[0] for earlier, later in zip(spans, spans[1:], strict=False))


def test_in_process_tasks_run_one_at_a_time_whatever_the_setting(job: Job):
    # In-process tasks share sys.argv, the environment and one Spark session.
    job.wheel("a", "sleep", seconds="0.3")
    job.wheel("b", "sleep", seconds="0.3")
    job.run(options=runner.RunOptions(process_per_task=False, max_parallel=4))
    (a0, a1), (b0, b1) = sorted(_spans(job).values())
    assert a1 <= b0
