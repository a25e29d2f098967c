"""Task values: the small interface tasks use to pass results to later tasks of a job.

On Databricks they go through ``dbutils.jobs.taskValues`` (via ``databricks.sdk.runtime``);
under the local job runner they go to the runner's in-memory store; anywhere else (a plain
CLI call) they are kept in memory for the process, so library code never has to ask where
it runs.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Any, Protocol

from spark_mlops.config import on_databricks


class TaskValues(Protocol):
    def set(self, key: str, value: Any) -> None: ...

    def get(self, task_key: str, key: str, default: Any = None) -> Any: ...


class InMemoryTaskValues:
    """The local runner's store: ``{task_key: {key: value}}``; values must be JSON-serialisable."""

    def __init__(self) -> None:
        self.values: dict[str, dict[str, Any]] = {}
        self.current_task: str = "__cli__"

    def set(self, key: str, value: Any) -> None:
        json.dumps(value)  # same restriction as dbutils: JSON-serialisable values only
        self.values.setdefault(self.current_task, {})[key] = value

    def get(self, task_key: str, key: str, default: Any = None) -> Any:
        return self.values.get(task_key, {}).get(key, default)


class DatabricksTaskValues:
    def __init__(self) -> None:
        from databricks.sdk.runtime import dbutils  # only importable on Databricks compute

        self._tv = dbutils.jobs.taskValues

    def set(self, key: str, value: Any) -> None:
        self._tv.set(key=key, value=value)

    def get(self, task_key: str, key: str, default: Any = None) -> Any:
        return self._tv.get(taskKey=task_key, key=key, default=default, debugValue=default)


_active: TaskValues | None = None


def current() -> TaskValues:
    global _active
    if _active is None:
        _active = DatabricksTaskValues() if on_databricks() else InMemoryTaskValues()
    return _active


@contextmanager
def task_scope(store: InMemoryTaskValues, task_key: str):
    """Used by the local runner: values set inside belong to ``task_key``."""
    global _active
    previous, previous_task = _active, store.current_task
    _active, store.current_task = store, task_key
    try:
        yield store
    finally:
        _active, store.current_task = previous, previous_task
