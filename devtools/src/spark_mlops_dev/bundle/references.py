"""Dynamic value references (``{{job.run_id}}``, ``{{tasks.X.result_state}}``, ...) as Databricks
resolves them in task fields (docs: jobs/dynamic-value-references).

As on Databricks, text that is not a reference of a known namespace stays literal; a bad reference
in a known namespace is an error (:class:`RefError`) naming the task.
"""

from __future__ import annotations

import json
import re
import zlib
from datetime import datetime
from typing import Any

from spark_mlops_dev.bundle import graph

_REF = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")
_KNOWN_NAMESPACES = ("job", "task", "tasks", "workspace")
_TIME_ARGS = ("iso_date", "iso_datetime", "iso_weekday", "is_weekday", "year", "month", "day", "hour",
              "minute", "second", "timestamp_ms")


class RefError(Exception):
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


class Context:
    """What dynamic value references can see during one job run."""

    def __init__(self, *, job_key: str, job: dict, run_id: str, start: datetime, parameters: dict[str, str],
                 tasks: dict[str, Any], results: dict[str, Any], repair_count: int = 0):
        self.job_key = job_key
        self.job = job
        self.run_id = run_id
        self.job_id = str(zlib.crc32(job_key.encode()) or 1)
        self.start = start
        self.parameters = parameters
        self.tasks = tasks
        self.results = results
        self.task_index = {k: i + 1 for i, k in enumerate(tasks)}
        self.repair_count = repair_count  # {{job.repair_count}}: 0, then 1 per repair of the run
        self.graph = {k: [d for d, _ in t.deps] for k, t in tasks.items()}

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
            raise RefError("unknown workspace field (workspace.id and workspace.url exist)")
        if head == "task":
            if task_key is None:
                raise RefError("task references exist only in task fields")
            return self._task(task_key, rest, check=check)
        if head == "tasks":
            if len(rest) < 2:
                raise RefError("expected tasks.<task_key>.<field>")
            return self._tasks(task_key, rest[0], rest[1:], check=check)
        raise RefError(f"unknown namespace {head!r}")

    def _job(self, rest: list[str]) -> str:
        if rest == ["id"]:
            return self.job_id
        if rest == ["name"]:
            return str(self.job.get("name") or self.job_key)
        if rest == ["run_id"]:
            return self.run_id
        if rest == ["repair_count"]:
            return str(self.repair_count)
        if rest == ["trigger", "type"]:
            return "one_time"
        if len(rest) == 2 and rest[0] == "parameters":
            if rest[1] not in self.parameters:
                raise RefError(f"no job parameter {rest[1]!r} "
                                      f"(job parameters: {', '.join(self.parameters) or 'none'})")
            return self.parameters[rest[1]]
        if len(rest) == 2 and rest[0] == "start_time" or len(rest) == 3 and rest[:2] == ["trigger", "time"]:
            arg = rest[-1]
            if arg not in _TIME_ARGS:
                raise RefError(f"unknown time field {arg!r} (one of {', '.join(_TIME_ARGS)})")
            return _time_value(self.start, arg)
        raise RefError("unknown job field")

    def _task(self, key: str, rest: list[str], *, check: bool) -> str:
        if rest == ["name"]:
            return key
        if rest == ["run_id"]:
            return self.task_run_id(key)
        if rest == ["execution_count"]:
            return "1" if check else str(max(1, self.results[key].attempts))
        raise RefError("unknown task field (name, run_id, execution_count)")

    def _tasks(self, task_key: str | None, other: str, rest: list[str], *, check: bool) -> str:
        if other not in self.tasks:
            raise RefError(f"no task {other!r} in this job (tasks: {', '.join(self.tasks)})")
        if task_key is not None and other not in graph.ancestors(self.graph, task_key):
            raise RefError(f"task {other!r} is not upstream of {task_key!r} (add it to depends_on)")
        if len(rest) == 2 and rest[0] == "values":
            # Only notebook tasks can set task values (docs: jobs/task-values), and the local
            # runner runs no notebook tasks: such a reference could never resolve here.
            raise RefError(f"{{{{tasks.{other}.values.{rest[1]}}}}}: task {other!r} is a "
                            f"{self.tasks[other].type}; task values can only be set from Python notebook "
                            "tasks (dbutils.jobs.taskValues, docs: jobs/task-values), so this would never "
                            "resolve in a workspace; gate on exit codes, run_if or a condition on a literal")
        if rest == ["run_id"]:
            return self.task_run_id(other)
        if rest == ["result_state"]:
            return "" if check else str(self.results[other].status)
        if rest == ["execution_count"]:
            return "" if check else str(self.results[other].attempts)
        raise RefError("unknown field (values.<name>, run_id, result_state, execution_count)")

    def resolve(self, text: str, task_key: str | None, *, check: bool = False) -> str:
        def repl(m: re.Match) -> str:
            parts = _split_path(m.group(1))
            if not parts or parts[0] not in _KNOWN_NAMESPACES:
                return m.group(0)  # like Databricks: not a reference of a known namespace = literal
            try:
                return self.lookup(parts, task_key, check=check)
            except RefError as exc:
                where = f"task {task_key!r}" if task_key else f"job {self.job_key!r}"
                raise RefError(f"{where}: cannot resolve {m.group(0)}: {exc}") from None

        return _REF.sub(repl, text)


def reference_fields(t: Any) -> list[tuple[str, Any]]:
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


def as_text(value: Any) -> str:
    """A YAML value as the string Databricks would pass (booleans as true/false, JSON for the rest)."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value)
