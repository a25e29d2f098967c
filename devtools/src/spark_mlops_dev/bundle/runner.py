"""Run one of the bundle's jobs locally, the way Databricks Jobs would run it.

``spark-mlops run JOB [-t TARGET] [--var k=v] [--param k=v]`` loads the bundle as the Databricks
CLI resolves it (``databricks bundle validate -o json`` where the CLI is on PATH, else the offline
loader with local workspace values: :func:`.databricks_cli.resolve_bundle`), checks the job,
then runs its tasks one at a time in this process, so every task shares one Spark session; with
``--process-per-task`` each wheel task runs in a fresh process with only its arguments and the
machine's basics (task_process.py), as on a job cluster, so state one task leaves in memory cannot
hide a bug in the next.

Supported, with Databricks semantics:

* ``python_wheel_task``: the ``entry_point`` is looked up by name in the bundle's
  ``pyproject.toml`` (``[project.scripts]``, ``[project.gui-scripts]``, any
  ``[project.entry-points.<group>]``) when its ``[project].name`` is the task's ``package_name``,
  else in the installed distribution of that name; it is called with
  ``sys.argv = [package_name, *args]``. ``named_parameters`` become ``--key=value`` (in YAML
  order) and the job's parameters are pushed down to them as Databricks does (a job parameter
  wins over a task parameter of the same name); a positional ``parameters`` list is passed as
  given (no push-down). ``SystemExit`` with code 0/None is success; any other exit code or
  exception fails the attempt.
* ``condition_task``: ``EQUAL_TO`` / ``NOT_EQUAL`` compare the operands as strings ("12.0" is
  not "12"); ``GREATER_THAN``, ``GREATER_THAN_OR_EQUAL``, ``LESS_THAN``, ``LESS_THAN_OR_EQUAL``
  compare them as numbers (a non-numeric operand fails the task).
* ``depends_on`` with ``outcome: "true" | "false"`` on condition tasks; ``run_if``:
  ALL_SUCCESS (default), AT_LEAST_ONE_SUCCESS, NONE_FAILED, ALL_DONE, AT_LEAST_ONE_FAILED,
  ALL_FAILED. A dependency edge is *excluded* when the dependency was excluded or when it is a
  condition whose result differs from the edge's ``outcome``. A task whose dependencies are all
  excluded is EXCLUDED whatever its ``run_if``; otherwise ``run_if`` is evaluated over the
  non-excluded edges (an UPSTREAM_FAILED dependency counts as failed). An unmet ALL_SUCCESS,
  AT_LEAST_ONE_SUCCESS or NONE_FAILED makes the task UPSTREAM_FAILED; an unmet
  AT_LEAST_ONE_FAILED or ALL_FAILED makes it EXCLUDED (skipped, counted as successful).
* ``max_retries`` (``-1``, "forever" on Databricks, is capped at :data:`UNLIMITED_RETRIES_CAP`)
  and ``min_retry_interval_millis`` (the local wait is capped at :data:`MAX_RETRY_WAIT_S`).
* Dynamic value references: ``{{job.id}}``, ``{{job.name}}``, ``{{job.run_id}}``,
  ``{{job.repair_count}}``, ``{{job.parameters.<name>}}``, ``{{job.start_time.<arg>}}`` and
  ``{{job.trigger.time.<arg>}}`` (iso_date, iso_datetime, iso_weekday, is_weekday, year, month,
  day, hour, minute, second, timestamp_ms; UTC), ``{{job.trigger.type}}``, ``{{task.name}}``,
  ``{{task.run_id}}``, ``{{task.execution_count}}``,
  ``{{tasks.<key>.run_id|result_state|execution_count}}``, ``{{workspace.id|url}}``; names may
  be back-quoted. As on Databricks, text that is not a reference of a known namespace stays
  literal; a bad reference in a known namespace is an error before anything runs, naming the
  task. ``{{tasks.X...}}`` must name an upstream task of the referring one.

* ``run_job_task`` of a job of the same bundle, named as ``job_id: ${resources.jobs.<key>.id}``
  (the documented way to reference a bundle job's id; the local loader leaves deploy-time ids
  unresolved, so the reference names the job): the job runs in this process with its own run
  id, ``job_parameters`` are passed through as its job parameters (references resolved first),
  and the task's result is that run's result (SUCCESS and SUCCESS_WITH_FAILURES succeed).
  Nothing else is accepted: a numeric ``job_id``, a job outside the bundle, the legacy
  ``notebook_params``/``python_params``/``jar_params``/... fields, or a job that (through
  other run_job_tasks) runs itself.
* ``max_concurrent_runs`` with ``queue: {enabled: false}``: a run started while that many runs
  of the same job are active (in this process, or in another process with the same state
  folder) is not run: its result is MAXIMUM_CONCURRENT_RUNS_REACHED ("The run was skipped
  because the maximum concurrent runs were reached", RunResultState in databricks-sdk-py
  ``databricks/sdk/service/jobs.py``), and a run_job_task that started it fails. With the queue
  enabled Databricks would queue the run; locally it runs at once.

Refused, because Databricks would not do it: ``{{tasks.<key>.values.<name>}}`` of a
``python_wheel_task``. Task values are set with ``dbutils.jobs.taskValues.set()``, which the docs
make available in Python notebooks only (docs: jobs/task-values); from a wheel task the SDK's
fallback ``set()`` silently does nothing (databricks-sdk-py ``databricks/sdk/dbutils.py``), so such a
reference would never resolve in a workspace. Gates use exit codes, ``run_if`` and conditions on
literal operands instead.

Job result (Databricks' rule): FAILED when any *leaf* task (one nothing depends on) failed or
was UPSTREAM_FAILED; SUCCESS_WITH_FAILURES when some task failed but every leaf succeeded or
was excluded; SUCCESS otherwise. ``main`` exits 0 unless the result is FAILED.

Timeouts, as Databricks applies them but checked when a task ends (a local task is never
interrupted): an attempt that ran longer than its task's ``timeout_seconds`` is TIMEDOUT, and is
retried only with ``retry_on_timeout``; a Run Job task whose child run took longer than its
``timeout_seconds`` is TIMEDOUT; once the run has lasted longer than the job's
``timeout_seconds`` (a Run Job task's wait for its child included: docs: jobs/run-job), the tasks
not yet started are CANCELED and the run's result is TIMEDOUT.

Deliberately not done locally: tasks run sequentially (no parallelism); ``health`` rules,
schedules/triggers, notifications, ``libraries``, clusters and environments are ignored; other
task types (notebook, spark_python, sql, for_each, pipeline, dbt, ...) are rejected before
anything runs.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import re
import sys
import time
import traceback
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TextIO

from spark_mlops import text
from spark_mlops.config import redact
from spark_mlops.errors import ConfigError
from spark_mlops.processes import alive
from spark_mlops_dev.bundle import entry_points, graph

MAX_RETRY_WAIT_S = 1.0
UNLIMITED_RETRIES_CAP = 5
DEBUG_ENV = "SPARK_MLOPS_DEBUG"
STATE_DIR_ENV = "SPARK_MLOPS_STATE_DIR"
STDOUT = "stdout"  # `out=` default: the sys.stdout of the moment of printing

SUPPORTED_TYPES = ("python_wheel_task", "condition_task", "run_job_task")
ACTIVE_RUNS_DIR = ("runs", "active")  # under the state folder: one file per active local job run
# docs: "Pass job_id: ${resources.jobs.<job_key>.id}" (bundles: job task types / run_job_task)
_SAME_BUNDLE_JOB = re.compile(r"^\$\{resources\.jobs\.([A-Za-z0-9_-]+)\.id\}$")
_RUN_JOB_FIELDS = ("job_id", "job_parameters")
RUN_IF = ("ALL_SUCCESS", "AT_LEAST_ONE_SUCCESS", "NONE_FAILED", "ALL_DONE", "AT_LEAST_ONE_FAILED",
          "ALL_FAILED")
CONDITION_OPS = ("EQUAL_TO", "NOT_EQUAL", "GREATER_THAN", "GREATER_THAN_OR_EQUAL", "LESS_THAN",
                 "LESS_THAN_OR_EQUAL")


class TaskStatus(enum.StrEnum):
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    UPSTREAM_FAILED = "UPSTREAM_FAILED"
    EXCLUDED = "EXCLUDED"  # skipped: unmet condition outcome or failure-handling run_if
    TIMEDOUT = "TIMEDOUT"  # ran past its timeout_seconds
    CANCELED = "CANCELED"  # not started: the run had timed out
    PENDING = "PENDING"


class RunState(enum.StrEnum):
    SUCCESS = "SUCCESS"
    SUCCESS_WITH_FAILURES = "SUCCESS_WITH_FAILURES"
    FAILED = "FAILED"
    TIMEDOUT = "TIMEDOUT"  # the run lasted longer than the job's timeout_seconds
    MAXIMUM_CONCURRENT_RUNS_REACHED = "MAXIMUM_CONCURRENT_RUNS_REACHED"  # skipped: nothing ran


@dataclass
class TaskResult:
    key: str
    type: str  # "python_wheel_task" | "condition_task" | "run_job_task"
    status: TaskStatus = TaskStatus.PENDING
    attempts: int = 0
    duration: float = 0.0  # seconds, all attempts and retry waits
    error: str | None = None  # the last failure, or why the task was skipped
    outcome: bool | None = None  # condition tasks: the evaluated result
    argv: list[str] = field(default_factory=list)  # wheel tasks: sys.argv of the last attempt
    detail: str = ""  # condition tasks: the evaluated expression
    child: JobRunResult | None = None  # run_job_task: the run it started

    @property
    def ok(self) -> bool:
        return self.status in (TaskStatus.SUCCESS, TaskStatus.EXCLUDED)


@dataclass
class JobRunResult:
    job_key: str
    job_name: str
    target: str
    run_id: str
    parameters: dict[str, str]  # resolved job parameters
    tasks: dict[str, TaskResult]  # in execution order
    state: RunState
    start_time: datetime
    duration: float
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.state in (RunState.SUCCESS, RunState.SUCCESS_WITH_FAILURES)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def statuses(self) -> dict[str, str]:
        return {k: str(t.status) for k, t in self.tasks.items()}

    def summary(self) -> str:
        rows = []
        for t in self.tasks.values():
            status = str(t.status)
            if t.outcome is not None and t.status is TaskStatus.SUCCESS:
                status += f" ({'true' if t.outcome else 'false'})"
            kind = {"python_wheel_task": "wheel", "condition_task": "condition",
                    "run_job_task": "run job"}.get(t.type, t.type)
            if t.child is not None:
                status += f" (run {t.child.run_id}: {t.child.state})"
            rows.append((t.key, kind, status, str(t.attempts), f"{t.duration:.2f}s"))
        lines = text.table(("task", "type", "status", "attempts", "duration"), rows)
        lines.append(
            f"job {self.job_key} (target {self.target}, run {self.run_id}): {self.state} "
            f"in {self.duration:.2f}s"
        )
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)


# ---------------------------------------------------------------- job checks


@dataclass
class _Task:
    key: str
    type: str
    spec: dict
    deps: list[tuple[str, str | None]]  # (task_key, outcome "true"/"false" or None)
    run_if: str
    max_retries: int
    retry_wait_s: float
    entry: str | None = None  # "module:attr" for wheel tasks
    job_key: str | None = None  # run_job_task: the bundle job it runs


def _job(bundle: Any, job_key: str) -> dict:
    jobs = bundle.jobs
    if job_key not in jobs:
        raise ConfigError(
            f"no job {job_key!r} in the bundle (target {bundle.target}); "
            f"jobs: {', '.join(jobs) or 'none'}"
        )
    job = jobs[job_key]
    if not isinstance(job, dict) or not isinstance(job.get("tasks"), list) or not job["tasks"]:
        raise ConfigError(f"job {job_key!r}: has no tasks")
    return job


def _task_type(key: str, spec: dict) -> str:
    kinds = [k for k in spec if k.endswith("_task") and spec[k] is not None]
    if len(kinds) != 1:
        found = ", ".join(kinds) or "none"
        raise ConfigError(f"task {key!r}: expected exactly one task type, found {found}")
    kind = kinds[0]
    if kind not in SUPPORTED_TYPES:
        raise ConfigError(
            f"task {key!r}: {kind} is not supported by the local runner "
            f"(supported: {', '.join(SUPPORTED_TYPES)})"
        )
    return kind


def _as_text(value: Any) -> str:
    """A YAML value as the string Databricks would pass (booleans as true/false, JSON for the rest)."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value)


def _outcome(value: Any) -> str | None:
    if value is None:
        return None
    text = _as_text(value).strip().lower()
    if text not in ("true", "false"):
        raise ValueError(text)
    return text


def _parse_tasks(job_key: str, job: dict) -> dict[str, _Task]:
    tasks: dict[str, _Task] = {}
    for i, spec in enumerate(job["tasks"]):
        if not isinstance(spec, dict) or not spec.get("task_key"):
            raise ConfigError(f"job {job_key!r}: tasks[{i}] has no task_key")
        key = str(spec["task_key"])
        if key in tasks:
            raise ConfigError(f"job {job_key!r}: task_key {key!r} is used twice")
        kind = _task_type(key, spec)
        deps: list[tuple[str, str | None]] = []
        for dep in spec.get("depends_on") or []:
            if not isinstance(dep, dict) or not dep.get("task_key"):
                raise ConfigError(f"task {key!r}: depends_on entries need a task_key")
            try:
                outcome = _outcome(dep.get("outcome"))
            except ValueError as exc:
                raise ConfigError(f"task {key!r}: depends_on {dep['task_key']}: outcome must be "
                                  f"\"true\" or \"false\", found {exc}") from None
            deps.append((str(dep["task_key"]), outcome))
        run_if = str(spec.get("run_if") or "ALL_SUCCESS")
        if run_if not in RUN_IF:
            raise ConfigError(f"task {key!r}: run_if {run_if!r} is not one of {', '.join(RUN_IF)}")
        retries = int(spec.get("max_retries") or 0)
        if retries < 0:
            retries = UNLIMITED_RETRIES_CAP
        wait = min(float(spec.get("min_retry_interval_millis") or 0) / 1000.0, MAX_RETRY_WAIT_S)
        tasks[key] = _Task(key, kind, spec, deps, run_if, retries, wait)

    for t in tasks.values():
        for dep, outcome in t.deps:
            if dep not in tasks:
                raise ConfigError(f"task {t.key!r}: depends on unknown task {dep!r} "
                                  f"(tasks: {', '.join(tasks)})")
            if dep == t.key:
                raise ConfigError(f"task {t.key!r}: depends on itself")
            if outcome is not None and tasks[dep].type != "condition_task":
                raise ConfigError(f"task {t.key!r}: depends_on {dep} has an outcome, but {dep!r} "
                                  "is not a condition_task")
        if t.type == "run_job_task":
            t.job_key = _run_job_target(t)
        if t.type == "condition_task":
            cond = t.spec["condition_task"]
            if not isinstance(cond, dict) or cond.get("op") not in CONDITION_OPS:
                raise ConfigError(f"task {t.key!r}: condition_task.op must be one of "
                                  f"{', '.join(CONDITION_OPS)}")
            for side in ("left", "right"):
                if side not in cond:
                    raise ConfigError(f"task {t.key!r}: condition_task.{side} is missing")
    _order(tasks)  # raises on cycles
    return tasks


def _run_job_target(t: _Task) -> str:
    """The bundle job a run_job_task runs; anything but ``${resources.jobs.<key>.id}`` is refused."""
    spec = t.spec["run_job_task"]
    if not isinstance(spec, dict):
        raise ConfigError(f"task {t.key!r}: run_job_task must be a mapping")
    other = sorted(k for k in spec if k not in _RUN_JOB_FIELDS)
    if other:
        raise ConfigError(f"task {t.key!r}: run_job_task.{', run_job_task.'.join(other)} is not supported by the "
                          f"local runner (supported: {', '.join(_RUN_JOB_FIELDS)})")
    m = _SAME_BUNDLE_JOB.match(str(spec.get("job_id", "")).strip())
    if not m:
        raise ConfigError(
            f"task {t.key!r}: run_job_task.job_id {spec.get('job_id')!r}: the local runner runs jobs of this "
            "bundle only, named as ${resources.jobs.<job_key>.id}"
        )
    params = spec.get("job_parameters")
    if params is not None and not isinstance(params, dict):
        raise ConfigError(f"task {t.key!r}: run_job_task.job_parameters must be a mapping")
    return m.group(1)


def _graph(tasks: dict[str, _Task]) -> dict[str, list[str]]:
    return {k: [d for d, _ in t.deps] for k, t in tasks.items()}


def _order(tasks: dict[str, _Task]) -> list[str]:
    """Topological order; among ready tasks the YAML order wins."""
    order = graph.topological_order(_graph(tasks))
    if order is None:
        cycle = graph.find_cycle(_graph(tasks)) or list(tasks)
        raise ConfigError(f"circular depends_on among tasks: {' -> '.join(cycle)}")
    return order


def _ancestors(tasks: dict[str, _Task], key: str) -> set[str]:
    return graph.ancestors(_graph(tasks), key)


# ---------------------------------------------------------------- entry points


# ---------------------------------------------------------------- references

_REF = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")
_KNOWN_NAMESPACES = ("job", "task", "tasks", "workspace")
_TIME_ARGS = ("iso_date", "iso_datetime", "iso_weekday", "is_weekday", "year", "month", "day", "hour",
              "minute", "second", "timestamp_ms")


class _RefError(Exception):
    """A reference that cannot be resolved (message names the reason)."""


_SEGMENT = r"(?:`[^`]+`|[A-Za-z0-9_\-]+)"
_PATH = re.compile(rf"{_SEGMENT}(?:\.{_SEGMENT})*")


def _split_path(text: str) -> list[str] | None:
    """``tasks.`my task`.values.x`` -> ``["tasks", "my task", "values", "x"]``; None if not a path."""
    if not _PATH.fullmatch(text):
        return None
    return [m.group(0).strip("`") for m in re.finditer(_SEGMENT, text)]


def _time_value(moment: datetime, arg: str) -> str:
    return {
        "iso_date": moment.date().isoformat(),
        "iso_datetime": moment.isoformat(timespec="milliseconds").replace("+00:00", ""),
        "iso_weekday": str(moment.isoweekday()),
        "is_weekday": "true" if moment.isoweekday() <= 5 else "false",
        "year": str(moment.year),
        "month": str(moment.month),
        "day": str(moment.day),
        "hour": str(moment.hour),
        "minute": str(moment.minute),
        "second": str(moment.second),
        "timestamp_ms": str(int(moment.timestamp() * 1000)),
    }[arg]


class _Context:
    """What dynamic value references can see during one job run."""

    def __init__(self, *, job_key: str, job: dict, run_id: str, start: datetime, parameters: dict[str, str],
                 tasks: dict[str, _Task], results: dict[str, TaskResult]):
        self.job_key = job_key
        self.job = job
        self.run_id = run_id
        self.job_id = str(zlib.crc32(job_key.encode()) or 1)
        self.start = start
        self.parameters = parameters
        self.tasks = tasks
        self.results = results
        self.task_index = {k: i + 1 for i, k in enumerate(tasks)}
        self.process_per_task = False  # run each wheel task in a process of its own

    def task_run_id(self, key: str) -> str:
        return f"{self.run_id}{self.task_index[key]:03d}" if self.run_id.isdigit() else \
            f"{self.run_id}-{self.task_index[key]}"

    # check=True: validate the shape only (before the run), value lookups are not done
    def lookup(self, parts: list[str], task_key: str | None, *, check: bool = False) -> str:
        head, rest = parts[0], parts[1:]
        if head == "job":
            return self._job(rest)
        if head == "workspace":
            if rest == ["id"]:
                return "0"
            if rest == ["url"]:
                return "http://localhost"
            raise _RefError("unknown workspace field (workspace.id and workspace.url exist)")
        if head == "task":
            if task_key is None:
                raise _RefError("task references exist only in task fields")
            return self._task(task_key, rest, check=check)
        if head == "tasks":
            if len(rest) < 2:
                raise _RefError("expected tasks.<task_key>.<field>")
            return self._tasks(task_key, rest[0], rest[1:], check=check)
        raise _RefError(f"unknown namespace {head!r}")

    def _job(self, rest: list[str]) -> str:
        if rest == ["id"]:
            return self.job_id
        if rest == ["name"]:
            return str(self.job.get("name") or self.job_key)
        if rest == ["run_id"]:
            return self.run_id
        if rest == ["repair_count"]:
            return "0"
        if rest == ["trigger", "type"]:
            return "one_time"
        if len(rest) == 2 and rest[0] == "parameters":
            if rest[1] not in self.parameters:
                raise _RefError(f"no job parameter {rest[1]!r} "
                                      f"(job parameters: {', '.join(self.parameters) or 'none'})")
            return self.parameters[rest[1]]
        if len(rest) == 2 and rest[0] == "start_time" or len(rest) == 3 and rest[:2] == ["trigger", "time"]:
            arg = rest[-1]
            if arg not in _TIME_ARGS:
                raise _RefError(f"unknown time field {arg!r} (one of {', '.join(_TIME_ARGS)})")
            return _time_value(self.start, arg)
        raise _RefError("unknown job field")

    def _task(self, key: str, rest: list[str], *, check: bool) -> str:
        if rest == ["name"]:
            return key
        if rest == ["run_id"]:
            return self.task_run_id(key)
        if rest == ["execution_count"]:
            return "1" if check else str(max(1, self.results[key].attempts))
        raise _RefError("unknown task field (name, run_id, execution_count)")

    def _tasks(self, task_key: str | None, other: str, rest: list[str], *, check: bool) -> str:
        if other not in self.tasks:
            raise _RefError(f"no task {other!r} in this job (tasks: {', '.join(self.tasks)})")
        if task_key is not None and other not in _ancestors(self.tasks, task_key):
            raise _RefError(f"task {other!r} is not upstream of {task_key!r} (add it to depends_on)")
        if len(rest) == 2 and rest[0] == "values":
            # Only notebook tasks can set task values (docs: jobs/task-values), and the local
            # runner runs no notebook tasks: such a reference could never resolve here.
            raise _RefError(f"{{{{tasks.{other}.values.{rest[1]}}}}}: task {other!r} is a "
                            f"{self.tasks[other].type}; task values can only be set from Python notebook "
                            "tasks (dbutils.jobs.taskValues, docs: jobs/task-values), so this would never "
                            "resolve in a workspace; gate on exit codes, run_if or a condition on a literal")
        if rest == ["run_id"]:
            return self.task_run_id(other)
        if rest == ["result_state"]:
            return "" if check else str(self.results[other].status)
        if rest == ["execution_count"]:
            return "" if check else str(self.results[other].attempts)
        raise _RefError("unknown field (values.<name>, run_id, result_state, execution_count)")

    def resolve(self, text: str, task_key: str | None, *, check: bool = False) -> str:
        def repl(m: re.Match) -> str:
            parts = _split_path(m.group(1))
            if not parts or parts[0] not in _KNOWN_NAMESPACES:
                return m.group(0)  # like Databricks: not a reference of a known namespace = literal
            try:
                return self.lookup(parts, task_key, check=check)
            except _RefError as exc:
                where = f"task {task_key!r}" if task_key else f"job {self.job_key!r}"
                raise _RefError(f"{where}: cannot resolve {m.group(0)}: {exc}") from None

        return _REF.sub(repl, text)


def _reference_fields(t: _Task) -> list[tuple[str, Any]]:
    """(field path, value) of the task fields the runner resolves references in."""
    out: list[tuple[str, Any]] = []
    if t.type == "python_wheel_task":
        wheel = t.spec["python_wheel_task"]
        for name, value in (wheel.get("named_parameters") or {}).items():
            out.append((f"named_parameters.{name}", value))
        for i, value in enumerate(wheel.get("parameters") or []):
            out.append((f"parameters[{i}]", value))
    elif t.type == "run_job_task":
        for name, value in (t.spec["run_job_task"].get("job_parameters") or {}).items():
            out.append((f"job_parameters.{name}", value))
    else:
        cond = t.spec["condition_task"]
        out.extend((side, cond.get(side)) for side in ("left", "right"))
    return out


# ---------------------------------------------------------------- plan


@dataclass
class JobPlan:
    """A checked job: what :func:`run_job` will run (built before anything runs)."""

    bundle: Any
    job_key: str
    job: dict
    tasks: dict[str, _Task]
    order: list[str]
    parameters: dict[str, str]  # defaults + overrides, references not yet resolved

    @property
    def task_keys(self) -> list[str]:
        return list(self.order)


def plan_job(bundle: Any, job_key: str, parameters: Mapping[str, Any] | None = None,
             _callers: tuple[str, ...] = ()) -> JobPlan:
    """Check a job of a loaded bundle; raise :class:`ConfigError` on anything that would stop it.
    Jobs started by its run_job_tasks are checked too (with their declared parameters)."""
    if job_key in _callers:
        raise ConfigError(f"run_job_task cycle: {' -> '.join((*_callers, job_key))}")
    job = _job(bundle, job_key)
    tasks = _parse_tasks(job_key, job)
    declared: dict[str, str] = {}
    for i, p in enumerate(job.get("parameters") or []):
        if not isinstance(p, dict) or not p.get("name"):
            raise ConfigError(f"job {job_key!r}: parameters[{i}] has no name")
        declared[str(p["name"])] = _as_text(p.get("default", ""))
    for name, value in (parameters or {}).items():
        if name not in declared:
            raise ConfigError(f"job {job_key!r} has no parameter {name!r} "
                              f"(parameters: {', '.join(declared) or 'none'})")
        declared[name] = _as_text(value)
    root = Path(bundle.root)
    for t in tasks.values():
        if t.type == "python_wheel_task":
            wheel = t.spec["python_wheel_task"]
            if not isinstance(wheel, dict):
                raise ConfigError(f"task {t.key!r}: python_wheel_task must be a mapping")
            if wheel.get("named_parameters") and wheel.get("parameters"):
                raise ConfigError(f"task {t.key!r}: python_wheel_task has both named_parameters and parameters")
            t.entry = entry_points.resolve(root, wheel.get("package_name"), wheel.get("entry_point"),
                                           where=f"task {t.key!r}")
        elif t.type == "run_job_task":
            if t.job_key not in bundle.jobs:
                raise ConfigError(f"task {t.key!r}: run_job_task names job {t.job_key!r}, which is not in the "
                                  f"bundle (target {bundle.target}); jobs: {', '.join(bundle.jobs) or 'none'}")
            child = plan_job(bundle, t.job_key, None, (*_callers, job_key))
            unknown = sorted(set(t.spec["run_job_task"].get("job_parameters") or {}) - set(child.parameters))
            if unknown:
                raise ConfigError(f"task {t.key!r}: job {t.job_key!r} has no parameter(s) {unknown} "
                                  f"(parameters: {', '.join(child.parameters) or 'none'})")
    plan = JobPlan(bundle, job_key, job, tasks, _order(tasks), declared)
    _check_references(plan)
    return plan


def _check_references(plan: JobPlan) -> None:
    ctx = _Context(job_key=plan.job_key, job=plan.job, run_id="0", start=datetime.now(UTC),
                   parameters=plan.parameters, tasks=plan.tasks, results={})
    problems: list[str] = []
    for name, value in plan.parameters.items():
        if re.search(r"\{\{\s*(job\.parameters|tasks?)\.", value):
            problems.append(f"job {plan.job_key!r}: parameter {name!r}: {value!r}: job parameters "
                            "cannot reference other parameters or tasks")
            continue
        try:
            ctx.resolve(value, None, check=True)
        except _RefError as exc:
            problems.append(f"parameter {name!r}: {exc}")
    for t in plan.tasks.values():
        for where, value in _reference_fields(t):
            try:
                ctx.resolve(_as_text(value), t.key, check=True)
            except _RefError as exc:
                problems.append(f"{exc} (in {t.type}.{where})")
    if problems:
        raise ConfigError("invalid dynamic value references:\n  " + "\n  ".join(problems))


# ---------------------------------------------------------------- running

_last_run_id = 0


def new_run_id() -> str:
    """An increasing, timestamp-based local run id (milliseconds since the epoch)."""
    global _last_run_id
    _last_run_id = max(_last_run_id + 1, int(time.time() * 1000))
    return str(_last_run_id)


@contextlib.contextmanager
def _patched_env(name: str, value: str | None) -> Iterator[None]:
    if value is None:
        yield
        return
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def _decide(t: _Task, results: dict[str, TaskResult], tasks: dict[str, _Task]) -> tuple[bool, TaskStatus, str]:
    """(run?, status when not run, why) from the dependencies' results and run_if."""
    if not t.deps:
        return True, TaskStatus.PENDING, ""
    edges: list[str] = []  # "success" | "failed" | "excluded"
    for dep, outcome in t.deps:
        r = results[dep]
        if r.status is TaskStatus.EXCLUDED:
            edges.append("excluded")
        elif r.status is not TaskStatus.SUCCESS:
            edges.append("failed")
        elif outcome is not None and (r.outcome is True) != (outcome == "true"):
            edges.append("excluded")
        else:
            edges.append("success")
    live = [e for e in edges if e != "excluded"]
    if not live:
        return False, TaskStatus.EXCLUDED, "all dependencies were excluded"
    ok, failed = live.count("success"), live.count("failed")
    rule = t.run_if
    if rule == "ALL_DONE":
        return True, TaskStatus.PENDING, ""
    met = {
        "ALL_SUCCESS": failed == 0,
        "AT_LEAST_ONE_SUCCESS": ok > 0,
        "NONE_FAILED": failed == 0,
        "AT_LEAST_ONE_FAILED": failed > 0,
        "ALL_FAILED": ok == 0,
    }[rule]
    if met:
        return True, TaskStatus.PENDING, ""
    status = TaskStatus.EXCLUDED if rule in ("AT_LEAST_ONE_FAILED", "ALL_FAILED") else TaskStatus.UPSTREAM_FAILED
    upstream = ", ".join(f"{dep} {results[dep].status}" for dep, _ in t.deps)
    return False, status, f"run_if {rule} not met: {upstream}"


def _number(text: str) -> Decimal:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a number") from None
    if not value.is_finite():
        raise ValueError(f"{text!r} is not a finite number")
    return value


def evaluate_condition(op: str, left: str, right: str) -> bool:
    """Databricks' condition_task: string equality, numeric ordering."""
    if op == "EQUAL_TO":
        return left == right
    if op == "NOT_EQUAL":
        return left != right
    a, b = _number(left), _number(right)
    return {"GREATER_THAN": a > b, "GREATER_THAN_OR_EQUAL": a >= b, "LESS_THAN": a < b,
            "LESS_THAN_OR_EQUAL": a <= b}[op]


def _wheel_args(t: _Task, ctx: _Context) -> list[str]:
    wheel = t.spec["python_wheel_task"]
    named = wheel.get("named_parameters")
    if named:
        values = {str(k): ctx.resolve(_as_text(v), t.key) for k, v in named.items()}
        for name, value in ctx.parameters.items():  # job parameter push-down; the job's value wins
            values[name] = value
        return [f"--{k}={v}" for k, v in values.items()]
    return [ctx.resolve(_as_text(v), t.key) for v in wheel.get("parameters") or []]


def _call_entry(t: _Task, argv: list[str]) -> str | None:
    """Run one attempt; None on success, else the failure message."""
    package = str(t.spec["python_wheel_task"]["package_name"])
    saved = sys.argv
    sys.argv = [package, *argv]
    try:
        func = entry_points.load(t.entry or "")
        func()
        return None
    except SystemExit as exc:
        code = exc.code
        if code is None or code == 0:
            return None
        return f"exited with code {code}" if isinstance(code, int) else f"exited: {code}"
    except Exception as exc:  # noqa: BLE001 - any error fails the attempt, like on Databricks
        if os.environ.get(DEBUG_ENV):
            print(redact("".join(traceback.format_exception(exc))), file=sys.stderr, end="")
        return redact(f"{type(exc).__name__}: {exc}")
    finally:
        sys.argv = saved


def _call_entry_process(t: _Task, argv: list[str]) -> str | None:
    """Run one attempt in a process of its own; None on success, else the failure message."""
    from spark_mlops_dev.bundle import task_process

    code = task_process.run(t.entry or "", str(t.spec["python_wheel_task"]["package_name"]), argv)
    return None if code == 0 else f"exited with code {code}"


class _Printer:
    """Everything the runner prints (progress, task errors, the summary) goes through the
    project's one redaction: a parameter or an error may quote a URI with a password in it."""

    def __init__(self, out: TextIO | None | str):
        self.out = out

    def __call__(self, text: str) -> None:
        if self.out is None:
            return
        print(redact(text), file=sys.stdout if self.out == STDOUT else self.out, flush=True)


def run_job(
    bundle: Any,
    job_key: str,
    parameters: Mapping[str, Any] | None = None,
    run_id: str | int | None = None,
    *,
    state_dir: str | os.PathLike | None = None,
    out: TextIO | None | str = STDOUT,
    process_per_task: bool = False,
) -> JobRunResult:
    """Run ``job_key`` of a loaded bundle (``load_bundle(..., local=True)``) in this process, or
    with ``process_per_task`` each wheel task in a process of its own (see task_process.py).

    ``parameters`` override the job's parameter defaults (unknown names are an error);
    ``state_dir`` is exported as ``SPARK_MLOPS_STATE_DIR`` for the run; progress and the summary
    go to ``out`` (a text stream; None = silent; default: sys.stdout). Raises :class:`ConfigError` before running anything when the
    job cannot run; task failures are reported in the result, never raised.
    """
    plan = plan_job(bundle, job_key, parameters)
    run_id = str(run_id) if run_id is not None else new_run_id()
    state = str(Path(state_dir).resolve()) if state_dir is not None else None
    with _patched_env(STATE_DIR_ENV, state), _active_run(plan.job, job_key, run_id) as admitted:
        if not admitted:
            return _skipped(bundle, plan, job_key, run_id, _Printer(out))
        return _run_plan(bundle, plan, job_key, run_id, _Printer(out), process_per_task)


def _run_plan(bundle: Any, plan: JobPlan, job_key: str, run_id: str, say: _Printer,
              process_per_task: bool = False) -> JobRunResult:
    start = datetime.now(UTC)
    clock = time.monotonic()
    results: dict[str, TaskResult] = {}
    ctx = _Context(job_key=job_key, job=plan.job, run_id=run_id, start=start, parameters={},
                   tasks=plan.tasks, results=results)
    ctx.process_per_task = process_per_task
    try:
        ctx.parameters = {k: ctx.resolve(v, None) for k, v in plan.parameters.items()}
    except _RefError as exc:
        raise ConfigError(str(exc)) from None
    name = str(plan.job.get("name") or job_key)
    say(f"job {job_key} ({name}) run {run_id}, target {bundle.target}: {len(plan.order)} tasks")
    if ctx.parameters:
        say("parameters: " + ", ".join(f"{k}={v}" for k, v in ctx.parameters.items()))

    limit = _seconds(plan.job.get("timeout_seconds"))
    timed_out = False
    for key in plan.order:
        t = plan.tasks[key]
        result = results[key] = TaskResult(key=key, type=t.type)
        if limit and time.monotonic() - clock > limit:
            timed_out = True
            result.status = TaskStatus.CANCELED
            result.error = f"the run timed out: it lasted {time.monotonic() - clock:.1f} s, over the job's timeout_seconds {limit}"
            say(f"-- {key}: {result.status} ({result.error})")
            continue
        run, status, why = _decide(t, results, plan.tasks)
        if not run:
            result.status, result.error = status, why
            say(f"-- {key}: {status} ({why})")
            continue
        _run_task(t, result, ctx, say, bundle)

    timed_out = timed_out or bool(limit and time.monotonic() - clock > limit)
    state_ = RunState.TIMEDOUT if timed_out else _job_state(plan.tasks, results)
    notes = []
    if any(plan.job.get("timeout_seconds") or t.spec.get("timeout_seconds") for t in plan.tasks.values()):
        notes.append("timeouts are checked when a task ends: a local task is never interrupted")
    result = JobRunResult(
        job_key=job_key, job_name=name, target=bundle.target, run_id=run_id, parameters=ctx.parameters,
        tasks=results, state=state_, start_time=start,
        duration=time.monotonic() - clock, notes=notes,
    )
    say("")
    say(result.summary())
    return result


def _run_task(t: _Task, result: TaskResult, ctx: _Context, say: _Printer, bundle: Any) -> None:
    clock = time.monotonic()
    say(f"-> {t.key}: started ({t.type})")
    try:
        if t.type == "condition_task":
            _run_condition(t, result, ctx)
        elif t.type == "run_job_task":
            _run_job_task(t, result, ctx, say, bundle)
        else:
            _run_wheel(t, result, ctx, say)
    finally:
        result.duration = time.monotonic() - clock
    extra = f" -> {'true' if result.outcome else 'false'}" if result.outcome is not None else ""
    tail = f": {result.error}" if result.status is TaskStatus.FAILED and result.error else ""
    say(f"<- {t.key}: {result.status}{extra} ({result.attempts} attempt"
        f"{'s' if result.attempts != 1 else ''}, {result.duration:.2f}s){tail}")


def _run_job_task(t: _Task, result: TaskResult, ctx: _Context, say: _Printer, bundle: Any) -> None:
    result.attempts = 1
    try:
        params = {str(k): ctx.resolve(_as_text(v), t.key)
                  for k, v in (t.spec["run_job_task"].get("job_parameters") or {}).items()}
    except _RefError as exc:
        result.status, result.error = TaskStatus.FAILED, str(exc)
        return
    try:
        child = _run_child(bundle, str(t.job_key), params, _Indented(say), ctx.process_per_task)
    except ConfigError as exc:
        result.status, result.error = TaskStatus.FAILED, str(exc)
        return
    result.child = child
    result.detail = f"job {t.job_key} run {child.run_id}: {child.state}"
    limit = _seconds(t.spec.get("timeout_seconds"))
    if limit and child.duration > limit:  # the task waits for its run (docs: jobs/run-job)
        result.status = TaskStatus.TIMEDOUT
        result.error = f"waited {child.duration:.1f} s for {result.detail}, over its timeout_seconds {limit}"
    elif child.ok:
        result.status = TaskStatus.SUCCESS
    else:
        result.status, result.error = TaskStatus.FAILED, result.detail


def _run_child(bundle: Any, job_key: str, params: dict[str, str], say: _Printer,
               process_per_task: bool) -> JobRunResult:
    plan = plan_job(bundle, job_key, params)
    run_id = new_run_id()
    with _active_run(plan.job, job_key, run_id) as admitted:
        if not admitted:
            return _skipped(bundle, plan, job_key, run_id, say)
        return _run_plan(bundle, plan, job_key, run_id, say, process_per_task)


class _Indented(_Printer):
    def __init__(self, parent: _Printer):
        super().__init__(parent.out)
        self.parent = parent

    def __call__(self, text: str) -> None:
        self.parent("\n".join(f"   | {line}" for line in text.split("\n")))


# ---------------------------------------------------------------- concurrency

_active_in_process: dict[str, int] = {}


def _active_dir() -> Path:
    return Path(os.environ.get(STATE_DIR_ENV) or ".mlops").joinpath(*ACTIVE_RUNS_DIR)


def active_runs(job_key: str) -> int:
    """Active local runs of ``job_key``: this process's, plus other live processes' files."""
    others = 0
    folder = _active_dir()
    for marker in folder.glob(f"{job_key}--*.pid") if folder.is_dir() else []:
        try:
            pid = int(marker.read_text().strip() or 0)
        except (OSError, ValueError):
            continue
        if pid != os.getpid() and alive(pid):
            others += 1
    return _active_in_process.get(job_key, 0) + others


@contextlib.contextmanager
def _active_run(job: dict, job_key: str, run_id: str) -> Iterator[bool]:
    """Count this run as active while it runs; yield False (do not run) when the job's
    ``max_concurrent_runs`` is reached and its queue is disabled."""
    limit = job.get("max_concurrent_runs")
    queue_disabled = isinstance(job.get("queue"), dict) and job["queue"].get("enabled") is False
    if limit is not None and queue_disabled and active_runs(job_key) >= int(limit):
        yield False
        return
    folder = _active_dir()
    marker = folder / f"{job_key}--{run_id}.pid"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        marker.write_text(str(os.getpid()))
    except OSError:
        marker = None  # a read-only state folder: only this process's count applies
    _active_in_process[job_key] = _active_in_process.get(job_key, 0) + 1
    try:
        yield True
    finally:
        _active_in_process[job_key] -= 1
        if marker is not None:
            marker.unlink(missing_ok=True)


def _skipped(bundle: Any, plan: JobPlan, job_key: str, run_id: str, say: _Printer) -> JobRunResult:
    limit = plan.job.get("max_concurrent_runs")
    note = (f"skipped: {active_runs(job_key)} run(s) of {job_key} already active, max_concurrent_runs {limit}, "
            "queue disabled")
    say(f"job {job_key} run {run_id}: {RunState.MAXIMUM_CONCURRENT_RUNS_REACHED} ({note})")
    return JobRunResult(job_key=job_key, job_name=str(plan.job.get("name") or job_key), target=bundle.target,
                        run_id=run_id, parameters=dict(plan.parameters), tasks={},
                        state=RunState.MAXIMUM_CONCURRENT_RUNS_REACHED, start_time=datetime.now(UTC),
                        duration=0.0, notes=[note])


def _run_condition(t: _Task, result: TaskResult, ctx: _Context) -> None:
    cond = t.spec["condition_task"]
    result.attempts = 1
    try:
        left = ctx.resolve(_as_text(cond.get("left")), t.key)
        right = ctx.resolve(_as_text(cond.get("right")), t.key)
        result.detail = f"{left!r} {cond['op']} {right!r}"
        result.outcome = evaluate_condition(cond["op"], left, right)
        result.status = TaskStatus.SUCCESS
    except (_RefError, ValueError) as exc:
        result.status, result.error = TaskStatus.FAILED, str(exc)


def _run_wheel(t: _Task, result: TaskResult, ctx: _Context, say: _Printer) -> None:
    try:
        argv = _wheel_args(t, ctx)
    except _RefError as exc:  # e.g. an upstream task set no such value: retrying cannot help
        result.status, result.error = TaskStatus.FAILED, str(exc)
        return
    result.argv = argv
    limit = _seconds(t.spec.get("timeout_seconds"))
    retry_on_timeout = _as_text(t.spec.get("retry_on_timeout")).strip().lower() == "true"
    for attempt in range(1, t.max_retries + 2):
        result.attempts = attempt
        started = time.monotonic()
        error = _call_entry_process(t, argv) if ctx.process_per_task else _call_entry(t, argv)
        took = time.monotonic() - started
        if limit and took > limit:
            result.status = TaskStatus.TIMEDOUT
            result.error = (f"attempt {attempt} ran {took:.1f} s, over its timeout_seconds {limit} "
                            "(Databricks would have stopped it)")
            if attempt <= t.max_retries and retry_on_timeout:
                say(f"   {t.key}: {result.error}; retrying (retry_on_timeout)")
                time.sleep(t.retry_wait_s)
                continue
            return
        if error is None:
            result.status, result.error = TaskStatus.SUCCESS, None
            return
        result.status, result.error = TaskStatus.FAILED, error
        if attempt <= t.max_retries:
            say(f"   {t.key}: attempt {attempt} failed: {error}; retrying in {t.retry_wait_s:.1f}s "
                f"(retry {attempt} of {t.max_retries})")
            time.sleep(t.retry_wait_s)


def _seconds(value: Any) -> int | None:
    """A ``timeout_seconds`` as an int; None when unset or 0 (no timeout)."""
    try:
        return int(_as_text(value)) or None
    except ValueError:
        return None


def _job_state(tasks: dict[str, _Task], results: dict[str, TaskResult]) -> RunState:
    upstream = {d for t in tasks.values() for d, _ in t.deps}
    leaves = [k for k in tasks if k not in upstream]
    if any(not results[k].ok for k in leaves):
        return RunState.FAILED
    if any(not r.ok for r in results.values()):
        return RunState.SUCCESS_WITH_FAILURES
    return RunState.SUCCESS


# ---------------------------------------------------------------- CLI


def run_bundle_job(
    root: str | os.PathLike = ".",
    job: str = "",
    target: str | None = None,
    variables: Mapping[str, str] | None = None,
    parameters: Mapping[str, Any] | None = None,
    *,
    state_dir: str | os.PathLike | None = None,
    run_id: str | int | None = None,
    out: TextIO | None | str = STDOUT,
    process_per_task: bool = False,
) -> JobRunResult:
    """Load the bundle at ``root`` for ``target`` and run ``job``: resolved by the Databricks CLI
    where it is on PATH, else offline with local workspace values (databricks_cli.resolve_bundle)."""
    from spark_mlops_dev.bundle.databricks_cli import resolve_bundle

    bundle = resolve_bundle(root, target, dict(variables or {}))
    return run_job(bundle, job, parameters, run_id, state_dir=state_dir, out=out, process_per_task=process_per_task)


def main(
    root: str | os.PathLike = ".",
    job: str = "",
    target: str | None = None,
    variables: Mapping[str, str] | None = None,
    parameters: Mapping[str, Any] | None = None,
    state_dir: str | os.PathLike | None = None,
    process_per_task: bool = False,
) -> int:
    """``spark-mlops run``: 0 when the job run succeeded (also with failures), 1 when it failed."""
    result = run_bundle_job(root, job, target, variables, parameters, state_dir=state_dir,
                            process_per_task=process_per_task)
    return result.exit_code
