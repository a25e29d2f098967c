"""How long a job of the bundle can run at most, from its tasks' timeouts: the coherence rule.

On Databricks a task attempt ends at its ``timeout_seconds``, a failed attempt is retried
``max_retries`` times after ``min_retry_interval_millis``, a Run Job task waits for the run it
started (docs: jobs/run-job), and the job's own ``timeout_seconds`` ends the whole run, that wait
included. A job is *coherent* when its timeout covers its longest task path with every retry, so
that no run is cut off by the job's timeout while each task is still within its own; a Run Job
task's budget is the child job's timeout (its own ``timeout_seconds``, when set, must cover it).

:func:`problems` lists what breaks the rule; ``spark-mlops bundle validate`` reports them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from spark_mlops_dev.bundle import graph

_JOB_ID_REF = re.compile(r"^\$\{resources\.jobs\.([\w-]+)\.id\}$")
_INSTANT = ("condition_task",)  # evaluated by the scheduler, no compute


@dataclass(frozen=True)
class Problem:
    path: tuple  # YAML path from the job: ("tasks", 3, "timeout_seconds") or ("timeout_seconds",)
    message: str


def _int(value: object) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _kind(task: dict) -> str:
    return next((k for k in task if k.endswith("_task") and task[k] is not None), "task")


def child_job(task: dict) -> str:
    """The job key a Run Job task names (``${resources.jobs.<key>.id}``), or its job_id as written."""
    job_id = str((task.get("run_job_task") or {}).get("job_id", "")).strip()
    m = _JOB_ID_REF.match(job_id)
    return m.group(1) if m else job_id


def task_budget(task: dict, jobs: Mapping[str, dict]) -> tuple[int | None, str]:
    """(the most seconds the task can take, how that was computed); None = unbounded."""
    kind = _kind(task)
    if kind in _INSTANT:
        return 0, "0 (condition)"
    if kind == "run_job_task":
        key = child_job(task)
        limit = _int((jobs.get(key) or {}).get("timeout_seconds"))
        return limit, (f"{limit} (job {key})" if limit else "unbounded")
    timeout = _int(task.get("timeout_seconds"))
    if not timeout:
        return None, "unbounded"
    retries = _int(task.get("max_retries")) or 0
    if retries < 0:
        return None, "unbounded (max_retries -1)"
    wait = (_int(task.get("min_retry_interval_millis")) or 0) // 1000
    if retries == 0:
        return timeout, str(timeout)
    waits = "" if not wait else f"+{wait}" if retries == 1 else f"+{retries}x{wait}"
    return (retries + 1) * timeout + retries * wait, f"{retries + 1}x{timeout}{waits}"


def longest_path(job: dict, jobs: Mapping[str, dict]) -> tuple[int | None, list[tuple[str, str]]]:
    """(seconds, [(task_key, budget text), ...]) of the job's longest task path; None if unbounded."""
    tasks = {str(t.get("task_key")): t for t in job.get("tasks") or [] if isinstance(t, dict)}
    deps = {k: [str(d.get("task_key")) for d in t.get("depends_on") or [] if isinstance(d, dict)]
            for k, t in tasks.items()}
    order = graph.topological_order(deps)
    if order is None:
        return None, []  # a cycle: reported elsewhere
    best: dict[str, tuple[int | None, list[tuple[str, str]]]] = {}
    for key in order:
        own, text = task_budget(tasks[key], jobs)
        before: tuple[int | None, list[tuple[str, str]]] = (0, [])
        for dep in deps[key]:
            if dep not in best:
                continue
            seconds = best[dep][0]
            if seconds is None or (before[0] is not None and seconds > before[0]):
                before = best[dep]
        total = None if own is None or before[0] is None else before[0] + own
        best[key] = (total, [*before[1], (key, text)])
    if not best:
        return 0, []
    unbounded = [v for v in best.values() if v[0] is None]
    return unbounded[0] if unbounded else max(best.values(), key=lambda v: v[0] or 0)


def problems(job_key: str, job: dict, jobs: Mapping[str, dict]) -> list[Problem]:
    """Where ``job`` breaks the coherence rule (empty when it is coherent)."""
    out: list[Problem] = []
    for i, task in enumerate(job.get("tasks") or []):
        if not isinstance(task, dict):
            continue
        key, kind = task.get("task_key"), _kind(task)
        if kind in _INSTANT:
            continue
        if kind == "run_job_task":
            child_budget, text = task_budget(task, jobs)
            own = _int(task.get("timeout_seconds"))
            if child_budget is None:
                out.append(Problem(("tasks", i, "run_job_task", "job_id"),
                                   f"task {key!r} waits for a job without timeout_seconds; expected the child "
                                   "job to set one, so that this wait is bounded"))
            elif own is not None and own < child_budget:
                out.append(Problem(("tasks", i, "timeout_seconds"),
                                   f"task {key!r} times out after {own} s but waits for a run that may take "
                                   f"{child_budget} s (the timeout of job {child_job(task)}); expected timeout_seconds >= {child_budget}"))
            continue
        if not _int(task.get("timeout_seconds")):
            out.append(Problem(("tasks", i, "timeout_seconds"),
                               f"task {key!r} has no timeout_seconds; expected one, so that the job's timeout "
                               "can cover its longest task path"))
        elif (_int(task.get("max_retries")) or 0) < 0:
            out.append(Problem(("tasks", i, "max_retries"),
                               f"task {key!r} retries forever (max_retries -1); expected a number"))
    limit = _int(job.get("timeout_seconds"))
    total, path = longest_path(job, jobs)
    steps = " + ".join(f"{k} {t}" for k, t in path)
    if not limit:
        out.append(Problem(("timeout_seconds",), f"job {job_key!r} has no timeout_seconds; expected at least "
                           f"its longest task path ({steps or 'no tasks'})"))
    elif total is not None and total > limit:
        out.append(Problem(("timeout_seconds",),
                           f"job {job_key!r} times out after {limit} s, but its longest task path can take "
                           f"{total} s ({steps}); expected timeout_seconds >= {total}, or shorter task timeouts"))
    for j, rule in enumerate((job.get("health") or {}).get("rules") or []):
        value = _int((rule or {}).get("value")) if isinstance(rule, dict) else None
        if rule.get("metric") == "RUN_DURATION_SECONDS" and limit and value is not None and value >= limit:
            out.append(Problem(("health", "rules", j, "value"),
                               f"the duration warning at {value} s never fires before the job's timeout "
                               f"({limit} s); expected a smaller value"))
    return out
