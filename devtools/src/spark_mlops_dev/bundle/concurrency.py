"""``max_concurrent_runs`` and the queue, across every process that shares a state folder.

A job run counts as active while a marker file ``runs/active/<job>--<run id>.pid`` under the state
folder names a live process (this one, or another). When a run starts while ``max_concurrent_runs``
runs of its job are active:

* with ``queue: {enabled: true}`` it waits in QUEUED until a slot frees, as Databricks queues it
  (RunLifeCycleState QUEUED, databricks-sdk-py ``databricks/sdk/service/jobs.py``);
* otherwise it is skipped: result MAXIMUM_CONCURRENT_RUNS_REACHED ("The run was skipped because the
  maximum concurrent runs were reached", RunResultState there).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from spark_mlops.processes import alive

STATE_DIR_ENV = "SPARK_MLOPS_STATE_DIR"
ACTIVE_RUNS_DIR = ("runs", "active")  # under the state folder: one file per active local job run
QUEUE_POLL_S = 0.2

_lock = threading.Lock()
_active_in_process: dict[str, int] = {}


def state_dir() -> Path:
    return Path(os.environ.get(STATE_DIR_ENV) or ".mlops")


def _active_dir() -> Path:
    return state_dir().joinpath(*ACTIVE_RUNS_DIR)


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


def _limit(job: dict) -> int | None:
    value = job.get("max_concurrent_runs")
    return None if value is None else int(value)


def queue_enabled(job: dict) -> bool:
    return isinstance(job.get("queue"), dict) and job["queue"].get("enabled") is True


@contextlib.contextmanager
def admitted(job: dict, job_key: str, run_id: str, on_queued: Callable[[int, int], None]) -> Iterator[bool]:
    """Count the run as active while it runs. Yields False (do not run) when the job's
    ``max_concurrent_runs`` is reached and its queue is not enabled; with the queue enabled, waits
    (calling ``on_queued(active, limit)`` once) until a slot frees."""
    limit = _limit(job)
    queued = False
    while True:
        with _lock:
            if limit is None or active_runs(job_key) < limit:
                _active_in_process[job_key] = _active_in_process.get(job_key, 0) + 1
                break
        if not queue_enabled(job):
            yield False
            return
        if not queued:
            queued = True
            on_queued(active_runs(job_key), limit)
        time.sleep(QUEUE_POLL_S)
    folder = _active_dir()
    marker: Path | None = folder / f"{job_key}--{run_id}.pid"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        marker.write_text(str(os.getpid()))
    except OSError:
        marker = None  # a read-only state folder: only this process's count applies
    try:
        yield True
    finally:
        with _lock:
            _active_in_process[job_key] -= 1
        if marker is not None:
            marker.unlink(missing_ok=True)
