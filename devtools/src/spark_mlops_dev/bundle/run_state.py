"""A job run's state, kept under the state folder so that a later process can repair the run.

Every local run (and every child run a Run Job task starts) is written to
``runs/history/<run id>.json`` when it ends: the job, the target and bundle root it ran from, its
job parameters, each task's result, its ``repair_count`` and result state. :func:`repair_plan`
chooses what a repair re-runs, with the Jobs API's rules (``POST /api/2.2/jobs/runs/repair``:
``rerun_tasks``, ``rerun_all_failed_tasks``, ``rerun_dependent_tasks``, ``latest_repair_id``;
docs: jobs/repair-job-failures). Tasks not chosen keep their result.

The record is written when the run is queued or starts, after each task, and when it ends, so
another process can answer runs/get while it runs (:meth:`RunRecord.api_state`) and ask it to stop
(:func:`request_cancel`, the runs/cancel of the Jobs API).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spark_mlops.errors import ConfigError
from spark_mlops.processes import alive
from spark_mlops_dev.bundle import graph

HISTORY_DIR = ("runs", "history")
CANCEL_DIR = ("runs", "cancel")  # runs/cancel/<run id>: a request to cancel that run
# What rerun_all_failed_tasks re-runs: every task that did not succeed (EXCLUDED counts as success;
# PENDING: a task a crashed runner never ended).
UNSUCCESSFUL = ("FAILED", "TIMEDOUT", "CANCELED", "UPSTREAM_FAILED", "UPSTREAM_CANCELED", "PENDING")
IN_PROGRESS = ("QUEUED", "PENDING", "RUNNING")


@dataclass
class RunRecord:
    run_id: str
    job_key: str
    target: str
    root: str  # the bundle's root, to load the job's *current* settings on repair
    parameters: dict[str, str]
    state: str  # the result state ("" while the run is in progress)
    tasks: dict[str, dict[str, Any]]  # task key -> {status, attempts, outcome, error, duration, child_run_id}
    start_time: str
    repair_count: int = 0
    repair_ids: list[str] = field(default_factory=list)
    life_cycle_state: str = "TERMINATED"  # QUEUED, RUNNING, TERMINATED or SKIPPED (RunLifeCycleState)
    pid: int | None = None  # the process running it

    @property
    def latest_repair_id(self) -> str | None:
        return self.repair_ids[-1] if self.repair_ids else None

    @property
    def orphaned(self) -> bool:
        """In progress by its record, but the process running it is gone (killed, crashed)."""
        return self.life_cycle_state in IN_PROGRESS and not (self.pid and alive(self.pid))

    def api_state(self) -> dict[str, str]:
        """The run's ``state`` as the Jobs API's runs/get reports it; a run whose process is gone is
        INTERNAL_ERROR ("an exceptional state", RunLifeCycleState in databricks-sdk-py)."""
        if self.orphaned:
            return {"life_cycle_state": "INTERNAL_ERROR", "result_state": "FAILED",
                    "state_message": f"the process running it ({self.pid}) is gone"}
        out = {"life_cycle_state": self.life_cycle_state, "state_message": ""}
        if self.state:
            out["result_state"] = self.state
        return out


def history_dir(state_dir: str | os.PathLike) -> Path:
    return Path(state_dir).joinpath(*HISTORY_DIR)


def save(state_dir: str | os.PathLike, record: RunRecord) -> Path:
    folder = history_dir(state_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{record.run_id}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record.__dict__, indent=1, sort_keys=True), encoding="utf-8")
    tmp.replace(path)  # a reader never sees half a record
    return path


def load(state_dir: str | os.PathLike, run_id: str) -> RunRecord:
    path = history_dir(state_dir) / f"{run_id}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no run {run_id} in {history_dir(state_dir)} (runs are kept per state folder)") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: not a run record: {exc}") from None
    return RunRecord(**data)


def request_cancel(state_dir: str | os.PathLike, run_id: str) -> None:
    folder = Path(state_dir).joinpath(*CANCEL_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / str(run_id)).touch()


def cancel_requested(state_dir: str | os.PathLike, run_id: str) -> bool:
    return Path(state_dir).joinpath(*CANCEL_DIR, str(run_id)).exists()


def clear_cancel(state_dir: str | os.PathLike, run_id: str) -> None:
    Path(state_dir).joinpath(*CANCEL_DIR, str(run_id)).unlink(missing_ok=True)


def repair_plan(record: RunRecord, upstream: dict[str, list[str]], *, rerun_tasks: list[str] | None = None,
                rerun_all_failed: bool = False, rerun_dependent: bool = False,
                latest_repair_id: str | None = None) -> list[str]:
    """The task keys a repair re-runs (in the job's order); ConfigError when the request is invalid,
    with the Jobs API's rules: exactly one of ``rerun_tasks`` / ``rerun_all_failed``; a run that is
    still running cannot be repaired; after a first repair, ``latest_repair_id`` must name the last
    one when given."""
    if record.life_cycle_state in IN_PROGRESS and not record.orphaned:
        raise ConfigError(f"run {record.run_id} is {record.life_cycle_state}: the run must not be in progress")
    if bool(rerun_tasks) == bool(rerun_all_failed):
        raise ConfigError("repair: give either the tasks to re-run or rerun_all_failed_tasks (exactly one)")
    if latest_repair_id is not None and latest_repair_id != record.latest_repair_id:
        raise ConfigError(f"repair of run {record.run_id}: latest_repair_id {latest_repair_id} is not the "
                          f"latest repair ({record.latest_repair_id or 'none yet'})")
    unknown = sorted(set(rerun_tasks or ()) - set(upstream))
    if unknown:
        raise ConfigError(f"repair of run {record.run_id}: no task(s) {unknown} in job {record.job_key!r} "
                          f"(tasks: {', '.join(upstream)})")
    if rerun_all_failed:
        chosen = {k for k, t in record.tasks.items() if t.get("status") in UNSUCCESSFUL and k in upstream}
        if not chosen:
            raise ConfigError(f"run {record.run_id} ({record.state}) has no failed task to repair")
    else:
        chosen = set(rerun_tasks or ())
    chosen |= {k for k in upstream if k not in record.tasks}  # tasks added to the job since the run
    if rerun_dependent:
        chosen |= {k for k in upstream if graph.ancestors(upstream, k) & chosen}
    return [k for k in upstream if k in chosen]
