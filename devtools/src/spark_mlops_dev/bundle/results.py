"""What a local job run reports: task and run result states as the Jobs API names them
(RunResultState / RunLifeCycleState in databricks-sdk-py ``databricks/sdk/service/jobs.py``)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

from spark_mlops import text


class TaskStatus(enum.StrEnum):
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    UPSTREAM_FAILED = "UPSTREAM_FAILED"
    EXCLUDED = "EXCLUDED"  # skipped: unmet condition outcome or failure-handling run_if
    TIMEDOUT = "TIMEDOUT"  # stopped at its timeout_seconds, or when the run timed out
    CANCELED = "CANCELED"  # not started: the run had timed out or was canceled
    PENDING = "PENDING"


class RunState(enum.StrEnum):
    SUCCESS = "SUCCESS"
    SUCCESS_WITH_FAILURES = "SUCCESS_WITH_FAILURES"
    FAILED = "FAILED"
    TIMEDOUT = "TIMEDOUT"  # the run lasted longer than the job's timeout_seconds
    CANCELED = "CANCELED"  # a child run canceled by its Run Job task's timeout or its parent's
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
    kept: bool = False  # a repair kept this result from the run it repaired

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
    repair_count: int = 0

    @property
    def life_cycle_state(self) -> str:
        """As runs/get reports it: SKIPPED for a run skipped at the concurrency limit, else TERMINATED."""
        return "SKIPPED" if self.state is RunState.MAXIMUM_CONCURRENT_RUNS_REACHED else "TERMINATED"

    def api_state(self) -> dict[str, str]:
        """The run's ``state`` as the Jobs API's runs/get reports it (RunState in databricks-sdk-py)."""
        return {"life_cycle_state": self.life_cycle_state, "result_state": str(self.state),
                "state_message": "; ".join(self.notes)}

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
