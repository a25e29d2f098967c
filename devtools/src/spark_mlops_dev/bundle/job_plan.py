"""A job checked before anything runs: its tasks, their dependencies, entry points, parameters and
dynamic value references (:func:`plan_job`). Anything that would stop the job is a
:class:`ConfigError` naming the task, before a task runs."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from spark_mlops.errors import ConfigError
from spark_mlops_dev.bundle import entry_points, graph, job_rules
from spark_mlops_dev.bundle.references import Context, RefError, as_text, reference_fields

UNLIMITED_RETRIES_CAP = 5
SUPPORTED_TYPES = ("python_wheel_task", "condition_task", "run_job_task")
# docs: "Pass job_id: ${resources.jobs.<job_key>.id}" (bundles: job task types / run_job_task)
_SAME_BUNDLE_JOB = re.compile(r"^\$\{resources\.jobs\.([A-Za-z0-9_-]+)\.id\}$")
_RUN_JOB_FIELDS = ("job_id", "job_parameters")
RUN_IF = ("ALL_SUCCESS", "AT_LEAST_ONE_SUCCESS", "NONE_FAILED", "ALL_DONE", "AT_LEAST_ONE_FAILED",
          "ALL_FAILED")
CONDITION_OPS = ("EQUAL_TO", "NOT_EQUAL", "GREATER_THAN", "GREATER_THAN_OR_EQUAL", "LESS_THAN",
                 "LESS_THAN_OR_EQUAL")


@dataclass
class DeployedJobs:
    """Job definitions as the Databricks CLI deployed them, for :func:`run_job` and :func:`repair_run`.

    ``jobs`` maps a job key to its Jobs API ``JobSettings`` (the JSON ``jobs/get`` returns under
    ``settings``, or a job of ``bundle validate -o json``); ``job_ids`` maps a deployed job id to
    its key, so that a Run Job task's numeric ``job_id`` resolves; ``root`` is where wheel entry
    points are looked up (a project's ``pyproject.toml``, else the installed distributions)."""

    root: Path
    target: str
    jobs: dict[str, dict]
    job_ids: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------- job checks


@dataclass
class Task:
    """One task of a job, checked."""

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


def _outcome(value: Any) -> str | None:
    if value is None:
        return None
    text = as_text(value).strip().lower()
    if text not in ("true", "false"):
        raise ValueError(text)
    return text


def _parse_tasks(job_key: str, job: dict, job_ids: Mapping[str, str]) -> dict[str, Task]:
    tasks: dict[str, Task] = {}
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
        wait = float(spec.get("min_retry_interval_millis") or 0) / 1000.0
        tasks[key] = Task(key, kind, spec, deps, run_if, retries, wait)

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
            t.job_key = _run_job_target(t, job_ids)
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


def _run_job_target(t: Task, job_ids: Mapping[str, str]) -> str:
    """The job a run_job_task runs: ``${resources.jobs.<key>.id}``, or a deployed job id that
    ``job_ids`` maps to a job key; anything else is refused."""
    spec = t.spec["run_job_task"]
    if not isinstance(spec, dict):
        raise ConfigError(f"task {t.key!r}: run_job_task must be a mapping")
    other = sorted(k for k in spec if k not in _RUN_JOB_FIELDS)
    if other:
        raise ConfigError(f"task {t.key!r}: run_job_task.{', run_job_task.'.join(other)} is not supported by the "
                          f"local runner (supported: {', '.join(_RUN_JOB_FIELDS)})")
    job_id = str(spec.get("job_id", "")).strip()
    m = _SAME_BUNDLE_JOB.match(job_id)
    if not m and job_id in job_ids:
        return job_ids[job_id]
    if not m:
        raise ConfigError(
            f"task {t.key!r}: run_job_task.job_id {spec.get('job_id')!r}: the local runner runs jobs of this "
            "bundle only, named as ${resources.jobs.<job_key>.id}"
        )
    params = spec.get("job_parameters")
    if params is not None and not isinstance(params, dict):
        raise ConfigError(f"task {t.key!r}: run_job_task.job_parameters must be a mapping")
    return m.group(1)


def task_graph(tasks: dict[str, Task]) -> dict[str, list[str]]:
    return {k: [d for d, _ in t.deps] for k, t in tasks.items()}


def _order(tasks: dict[str, Task]) -> list[str]:
    """Topological order; among ready tasks the YAML order wins."""
    order = graph.topological_order(task_graph(tasks))
    if order is None:
        cycle = graph.find_cycle(task_graph(tasks)) or list(tasks)
        raise ConfigError(f"circular depends_on among tasks: {' -> '.join(cycle)}")
    return order



# ---------------------------------------------------------------- plan


@dataclass
class JobPlan:
    """A checked job: what :func:`run_job` will run (built before anything runs)."""

    bundle: Any
    job_key: str
    job: dict
    tasks: dict[str, Task]
    order: list[str]
    parameters: dict[str, str]  # defaults + overrides, references not yet resolved

    @property
    def task_keys(self) -> list[str]:
        return list(self.order)


def plan_job(bundle: Any, job_key: str, parameters: Mapping[str, Any] | None = None,
             _callers: tuple[str, ...] = (), *, _undeclared_ok: bool = False) -> JobPlan:
    """Check a job of a loaded bundle; raise :class:`ConfigError` on anything that would stop it.
    Jobs started by its run_job_tasks are checked too (with their declared parameters).

    ``parameters`` the job does not declare are an error (a typo on the command line), except for
    a run started by a Run Job task (``_undeclared_ok``): parameters pushed down from the parent
    become the child run's job parameters whether the child declares them or not, as a run's
    parameters are the job's with the run's overrides on top (databricks/cli
    ``libs/testserver/jobs.go`` ``runJobParameters``), and are pushed down again from there."""
    if job_key in _callers:
        raise ConfigError(f"run_job_task cycle: {' -> '.join((*_callers, job_key))}")
    job = _job(bundle, job_key)
    tasks = _parse_tasks(job_key, job, getattr(bundle, "job_ids", None) or {})
    declared: dict[str, str] = {}
    for i, p in enumerate(job.get("parameters") or []):
        if not isinstance(p, dict) or not p.get("name"):
            raise ConfigError(f"job {job_key!r}: parameters[{i}] has no name")
        declared[str(p["name"])] = as_text(p.get("default", ""))
    for name, value in (parameters or {}).items():
        if name not in declared and not _undeclared_ok:
            raise ConfigError(f"job {job_key!r} has no parameter {name!r} "
                              f"(parameters: {', '.join(declared) or 'none'})")
        declared[name] = as_text(value)
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
    ctx = Context(job_key=plan.job_key, job=plan.job, run_id="0", start=datetime.now(UTC),
                   parameters=plan.parameters, tasks=plan.tasks, results={})
    problems: list[str] = []
    for name, value in plan.parameters.items():
        if re.search(r"\{\{\s*(job\.parameters|tasks?)\.", value):
            problems.append(f"job {plan.job_key!r}: parameter {name!r}: {value!r}: job parameters "
                            "cannot reference other parameters or tasks")
            continue
        try:
            ctx.resolve(value, None, check=True)
        except RefError as exc:
            problems.append(f"parameter {name!r}: {exc}")
    for t in plan.tasks.values():
        for where, value in reference_fields(t):
            try:
                ctx.resolve(as_text(value), t.key, check=True)
            except RefError as exc:
                problems.append(f"{exc} (in {t.type}.{where})")
    if problems:
        raise ConfigError("invalid dynamic value references:\n  " + "\n  ".join(problems))


def pushdown_collisions(bundle: Any, job_key: str) -> list[str]:
    """Where a job parameter of ``job_key``, pushed down through Run Job tasks, overrides a
    parameter of a job below it: the validator's rule (:func:`.job_rules.pushdown_collisions`),
    for the job about to run."""
    config = {"resources": {"jobs": dict(bundle.jobs)}}
    return [f.message for f in job_rules.pushdown_collisions(
        config, origins=[job_key], job_ids=getattr(bundle, "job_ids", None) or {})]
