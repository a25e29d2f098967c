"""Run the bundle's jobs locally the way Databricks Workflows runs them, and repair their runs.

``spark-mlops run JOB [-t TARGET] [--var k=v] [--param k=v] [--in-process]`` loads the bundle
as the Databricks CLI resolves it (:func:`.databricks_cli.resolve_bundle`), checks the job before
anything runs (job_plan.py), then runs it. ``spark-mlops run --repair RUN_ID [--rerun TASK]
[--rerun-dependent] [--param k=v]`` repairs a recorded run.

Execution API (for callers that hold job definitions as deployed, e.g. a fake workspace):

* ``run_job(jobs, job_key, parameters, run_id, state_dir=..., out=..., options=RunOptions(...))``
  runs one job and returns a :class:`JobRunResult` (``.state`` a RunResultState,
  ``.api_state()`` the ``state`` of runs/get, ``.tasks`` per task). ``jobs`` is anything with
  ``root``, ``target`` and ``jobs`` (job key -> Jobs API JobSettings): a loaded bundle, or a
  :class:`DeployedJobs` whose ``job_ids`` map deployed job ids (a Run Job task's numeric
  ``job_id``) to job keys. The run is recorded under ``state_dir`` (``runs/history/<run id>.json``).
* ``repair_run(jobs, run_id, rerun_tasks=[...] | rerun_all_failed=True, rerun_dependent=...,
  job_parameters=..., latest_repair_id=..., state_dir=...)`` repairs a recorded run, as the Jobs
  API's ``runs/repair`` does, with the job definitions as they are now.
* ``get_run(run_id, state_dir=...)``: the run's record, written when it is queued or starts, after
  each task and when it ends; ``.api_state()`` is runs/get's ``state`` (QUEUED, RUNNING,
  TERMINATED, SKIPPED; INTERNAL_ERROR when the process running it is gone).
* ``cancel_run(run_id, state_dir=...)``: runs/cancel, from any process sharing the state folder.
* ``RunOptions(process_per_task=True, max_parallel=N, max_retry_wait_s=..., kill_grace_s=...,
  shared_cluster=False)``: how tasks run locally (``process_per_task=False``: the in-process mode;
  ``shared_cluster``: this process's Spark serves every run, as an all-purpose cluster would).
  run_job and repair_run raise ConfigError before anything runs when the job cannot run.

How tasks run (cluster.py, task_process.py), as on Databricks: each wheel task in a Python process
of its own, with only its arguments; the tasks of a run that name the same ``job_cluster_key``
(or ``existing_cluster_id``) share that cluster's one Spark driver JVM, started when the first of
them starts and stopped when none of them is left to run; a task with a ``new_cluster`` of its own
gets a driver of its own; a task with none (serverless) starts Spark itself if it uses it. The
in-process mode (``process_per_task=False``, ``--in-process``) runs every task in this Python, one
at a time, with one Spark session: for a debugger's breakpoints in a task, and for the runner's
own tests of scheduling with tasks that use no Spark; it cannot stop a task at its timeout.

Jobs semantics, each as Databricks documents it:

* ``python_wheel_task``: the ``entry_point`` is looked up by name in the entry-point metadata
  (entry_points.py) and called with ``sys.argv = [package_name, *args]``; ``named_parameters``
  become ``--key=value`` in YAML order and the job's parameters are pushed down to them (a job
  parameter wins over a task parameter of the same name; docs: jobs/task-parameters); a
  positional ``parameters`` list is passed as given. Exit code 0/None is success.
* ``condition_task``: ``EQUAL_TO`` / ``NOT_EQUAL`` compare strings, the other operators numbers.
* A job parameter that, pushed down through Run Job tasks, would override a parameter of a job
  below it is printed as a warning before the run (:func:`~.job_plan.pushdown_collisions`).
* ``run_job_task`` of a job of the same bundle (``${resources.jobs.<key>.id}``, or a deployed id
  :class:`DeployedJobs` maps): the job runs with its own run id; its job parameters are the task's
  ``job_parameters`` with the parent's job parameters pushed down over them ("Job parameter
  pushdown", docs: jobs/job-parameters), declared by the child or not; the task's result is that
  run's (SUCCESS and SUCCESS_WITH_FAILURES succeed); the task waits for the run, and at its
  ``timeout_seconds`` the run is canceled (docs: jobs/run-job). Circular Run Job tasks are refused.
* Dependencies and ``run_if`` (scheduling.py, docs: jobs/run-if): tasks whose dependencies have
  ended start at once, up to ``max_parallel`` together (in-process tasks share sys.argv, the
  environment and one Spark session, so they run one at a time).
* Timeouts: a task is stopped at its ``timeout_seconds`` (SIGTERM to its process group, SIGKILL
  after ``kill_grace_s``; task_process.py) and is TIMEDOUT, retried only with ``retry_on_timeout``;
  at the job's ``timeout_seconds`` the running tasks are stopped, tasks not started are CANCELED
  unless their ``run_if`` handles failure (those still run), and the run is TIMEDOUT; a canceled
  run (``cancel_run``) ends the same way as CANCELED. A stopped task's Spark jobs are canceled on
  its cluster, which goes on serving the run's other tasks. An in-process task cannot be stopped:
  it is judged when it ends (said in the run's notes), and a cancel takes effect after it.
* Retries: ``max_retries`` (``-1`` is capped at :data:`~.job_plan.UNLIMITED_RETRIES_CAP`) after
  ``min_retry_interval_millis``, waited in full unless ``SPARK_MLOPS_MAX_RETRY_WAIT_S`` (or
  ``--max-retry-wait``) shortens it, which the output says.
* ``max_concurrent_runs`` (concurrency.py): with ``queue: {enabled: true}`` a run waits in QUEUED
  for a free slot; otherwise it is skipped (MAXIMUM_CONCURRENT_RUNS_REACHED, life cycle SKIPPED).
* Repair (run_state.py, docs: jobs/repair-job-failures): the chosen tasks re-run within the same
  run id, the others keep their results; ``{{job.repair_count}}`` counts repairs.
* Dynamic value references (references.py): ``{{job.*}}``, ``{{task.*}}``, ``{{tasks.<key>.*}}``,
  ``{{workspace.*}}``; a bad reference in a known namespace is an error before anything runs.
* The run's result (results.py): FAILED when a leaf task (one nothing depends on) did not
  succeed, SUCCESS_WITH_FAILURES when another task did not, else SUCCESS; TIMEDOUT at the job's
  timeout; CANCELED for a child run its Run Job task canceled. ``main`` exits 0 unless the run
  did not succeed.

Refused, because Databricks would not do it: ``{{tasks.<key>.values.<name>}}`` of a wheel task
(task values are set from Python notebooks only, docs: jobs/task-values; from a wheel the SDK's
``set()`` silently does nothing). Not done locally: ``health`` rules, schedules/triggers,
notifications, ``libraries`` (the fake workspace installs the deployed wheel), cluster sizes
and Spark settings of a cluster spec, environments; other task types are rejected before anything
runs.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TextIO

from spark_mlops.config import redact
from spark_mlops.errors import ConfigError
from spark_mlops_dev.bundle import cluster, concurrency, entry_points, run_state, scheduling, task_process
from spark_mlops_dev.bundle.job_plan import (  # noqa: F401 (re-exported: the runner's public names)
    CONDITION_OPS,
    RUN_IF,
    SUPPORTED_TYPES,
    DeployedJobs,
    JobPlan,
    Task,
    plan_job,
    pushdown_collisions,
    task_graph,
)
from spark_mlops_dev.bundle.references import Context, RefError, as_text
from spark_mlops_dev.bundle.results import JobRunResult, RunState, TaskResult, TaskStatus  # noqa: F401

DEFAULT_MAX_PARALLEL = 2  # ready tasks at once: the machines this runs on have 2 cores
MAX_PARALLEL_ENV = "SPARK_MLOPS_MAX_PARALLEL_TASKS"
MAX_RETRY_WAIT_ENV = "SPARK_MLOPS_MAX_RETRY_WAIT_S"  # unset: min_retry_interval_millis is waited in full
SHARED_CLUSTER_ENV = "SPARK_MLOPS_SHARED_CLUSTER"  # 1: this process's Spark is every run's cluster
DEBUG_ENV = "SPARK_MLOPS_DEBUG"
STATE_DIR_ENV = concurrency.STATE_DIR_ENV  # the state folder a run exports to its tasks
STDOUT = "stdout"  # `out=` default: the sys.stdout of the moment of printing


# ---------------------------------------------------------------- running

_last_run_id = 0
_run_id_lock = threading.Lock()


def new_run_id() -> str:
    """An increasing, timestamp-based local run id (milliseconds since the epoch)."""
    global _last_run_id
    with _run_id_lock:
        _last_run_id = max(_last_run_id + 1, int(time.time() * 1000))
        return str(_last_run_id)


@dataclass(frozen=True)
class RunOptions:
    """How the runner runs tasks locally (none of this changes what a task is given)."""

    process_per_task: bool = True  # each wheel task in a process of its own (task_process.py); False: in-process
    max_parallel: int = DEFAULT_MAX_PARALLEL  # ready tasks at once; process-per-task only
    max_retry_wait_s: float | None = None  # shortens min_retry_interval_millis locally (stated in the output)
    kill_grace_s: float = task_process.KILL_GRACE_S  # SIGTERM, then SIGKILL this much later
    # The tasks attach to this process's own Spark, which outlives the run, as an all-purpose
    # cluster does (cluster.this_process); False: a job cluster's driver started for each run.
    shared_cluster: bool = False

    @classmethod
    def from_env(cls, *, process_per_task: bool = True, max_parallel: int | None = None,
                 max_retry_wait_s: float | None = None) -> RunOptions:
        """Options with ``SPARK_MLOPS_MAX_PARALLEL_TASKS`` / ``SPARK_MLOPS_MAX_RETRY_WAIT_S`` /
        ``SPARK_MLOPS_SHARED_CLUSTER`` read where an argument is None."""
        if max_parallel is None:
            max_parallel = _env_number(MAX_PARALLEL_ENV, int) or DEFAULT_MAX_PARALLEL
        if max_retry_wait_s is None:
            max_retry_wait_s = _env_number(MAX_RETRY_WAIT_ENV, float)
        if max_parallel < 1:
            raise ConfigError(f"max parallel tasks must be at least 1, found {max_parallel}")
        return cls(process_per_task=process_per_task, max_parallel=max_parallel, max_retry_wait_s=max_retry_wait_s,
                   shared_cluster=os.environ.get(SHARED_CLUSTER_ENV, "").strip() == "1")

    @property
    def parallel(self) -> int:
        # In-process tasks share sys.argv, the environment and one Spark session: one at a time.
        return self.max_parallel if self.process_per_task else 1


def _env_number(name: str, kind: type) -> Any:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        return kind(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r}: expected a number") from None


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


def _wheel_args(t: Task, ctx: Context) -> list[str]:
    wheel = t.spec["python_wheel_task"]
    named = wheel.get("named_parameters")
    if named:
        values = {str(k): ctx.resolve(as_text(v), t.key) for k, v in named.items()}
        for name, value in ctx.parameters.items():  # job parameter pushdown; the job's value wins
            values[name] = value
        return [f"--{k}={v}" for k, v in values.items()]
    return [ctx.resolve(as_text(v), t.key) for v in wheel.get("parameters") or []]


def _run_job_parameters(t: Task, ctx: Context) -> dict[str, str]:
    """The child run's job parameters: the task's ``job_parameters``, then the parent's job
    parameters pushed down over them. Run Job is a key-value task, and "a job parameter takes
    precedence over a task parameter with the same key" (docs: jobs/job-parameters, "Job
    parameter pushdown"; jobs/task-parameters)."""
    params = {str(k): ctx.resolve(as_text(v), t.key)
              for k, v in (t.spec["run_job_task"].get("job_parameters") or {}).items()}
    params.update(ctx.parameters)
    return params


def _call_entry(t: Task, argv: list[str]) -> str | None:
    """Run one attempt in this process; None on success, else the failure message."""
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


class _Printer:
    """Everything the runner prints (progress, task errors, the summary) goes through the
    project's one redaction: a parameter or an error may quote a URI with a password in it."""

    def __init__(self, out: TextIO | None | str):
        self.out = out
        self.lock = threading.Lock()

    def __call__(self, text: str) -> None:
        if self.out is None:
            return
        with self.lock:
            print(redact(text), file=sys.stdout if self.out == STDOUT else self.out, flush=True)


class _Indented(_Printer):
    def __init__(self, parent: _Printer):
        super().__init__(parent.out)
        self.parent = parent

    def __call__(self, text: str) -> None:
        self.parent("\n".join(f"   | {line}" for line in text.split("\n")))


def run_job(
    bundle: Any,
    job_key: str,
    parameters: Mapping[str, Any] | None = None,
    run_id: str | int | None = None,
    *,
    state_dir: str | os.PathLike | None = None,
    out: TextIO | None | str = STDOUT,
    process_per_task: bool = True,
    options: RunOptions | None = None,
) -> JobRunResult:
    """Run ``job_key`` of ``bundle`` (see the module docstring: anything with ``root``, ``target``
    and ``jobs``) and record the run under the state folder for a later :func:`repair_run`.

    ``parameters`` override the job's parameter defaults (unknown names are an error);
    ``state_dir`` is exported as ``SPARK_MLOPS_STATE_DIR`` for the run; progress and the summary
    go to ``out`` (a text stream; None = silent; default: sys.stdout). Raises :class:`ConfigError`
    before running anything when the job cannot run; task failures are reported in the result,
    never raised."""
    options = options or RunOptions.from_env(process_per_task=process_per_task)
    plan = plan_job(bundle, job_key, parameters)
    run_id = str(run_id) if run_id is not None else new_run_id()
    state = str(Path(state_dir).resolve()) if state_dir is not None else None
    say = _Printer(out)
    for line in pushdown_collisions(bundle, job_key):
        say(f"warning: {line}")
    with _patched_env(STATE_DIR_ENV, state):
        return _Run(bundle, plan, run_id, say, options).start()


def repair_run(
    bundle: Any,
    run_id: str | int,
    *,
    rerun_tasks: list[str] | None = None,
    rerun_all_failed: bool = False,
    rerun_dependent: bool = False,
    job_parameters: Mapping[str, Any] | None = None,
    latest_repair_id: str | None = None,
    state_dir: str | os.PathLike | None = None,
    out: TextIO | None | str = STDOUT,
    process_per_task: bool = True,
    options: RunOptions | None = None,
) -> JobRunResult:
    """Repair a recorded run as ``POST /api/2.2/jobs/runs/repair`` does: re-run ``rerun_tasks``
    (or, with ``rerun_all_failed``, every task that did not succeed), with ``rerun_dependent``
    also every task downstream of them, "as part of the original job run", with "the current job
    and task settings" (the job as ``bundle`` has it now); the other tasks keep their results.
    ``job_parameters`` override the run's; ``{{job.repair_count}}`` is one more than before
    (docs: jobs/repair-job-failures; the Jobs API's runs/repair)."""
    options = options or RunOptions.from_env(process_per_task=process_per_task)
    state = Path(state_dir).resolve() if state_dir is not None else concurrency.state_dir().resolve()
    record = run_state.load(state, str(run_id))
    parameters = {**record.parameters, **{k: as_text(v) for k, v in (job_parameters or {}).items()}}
    plan = plan_job(bundle, record.job_key, parameters, _undeclared_ok=True)
    rerun = run_state.repair_plan(record, task_graph(plan.tasks), rerun_tasks=rerun_tasks,
                                  rerun_all_failed=rerun_all_failed, rerun_dependent=rerun_dependent,
                                  latest_repair_id=latest_repair_id)
    kept = {k: _result_from_record(k, plan.tasks[k].type, record.tasks[k])
            for k in plan.order if k not in rerun and k in record.tasks}
    with _patched_env(STATE_DIR_ENV, str(state)):
        run = _Run(bundle, plan, record.run_id, _Printer(out), options, kept=kept,
                   repair_count=record.repair_count + 1, repair_ids=record.repair_ids,
                   start=datetime.fromisoformat(record.start_time))
        return run.start()


def cancel_run(run_id: str | int, *, state_dir: str | os.PathLike | None = None) -> bool:
    """Ask a run in progress (in any process with this state folder) to stop, as the Jobs API's
    runs/cancel does: its running tasks are stopped, tasks not started are CANCELED unless their
    run_if handles failure, and its result is CANCELED. False when the run has already ended."""
    state = Path(state_dir) if state_dir is not None else concurrency.state_dir()
    record = run_state.load(state, str(run_id))
    if record.life_cycle_state not in run_state.IN_PROGRESS or record.orphaned:
        return False
    run_state.request_cancel(state, str(run_id))
    return True


def get_run(run_id: str | int, *, state_dir: str | os.PathLike | None = None) -> run_state.RunRecord:
    """A recorded run, in progress or ended (``.api_state()`` is the ``state`` of runs/get)."""
    return run_state.load(Path(state_dir) if state_dir is not None else concurrency.state_dir(), str(run_id))


def _result_from_record(key: str, kind: str, saved: dict) -> TaskResult:
    return TaskResult(key=key, type=kind, status=TaskStatus(saved["status"]), attempts=int(saved.get("attempts", 0)),
                      duration=float(saved.get("duration", 0.0)), error=saved.get("error"),
                      outcome=saved.get("outcome"), detail=saved.get("detail", ""), kept=True)


class _Run:
    """One run (or one repair) of a planned job."""

    def __init__(self, bundle: Any, plan: JobPlan, run_id: str, say: _Printer, options: RunOptions, *,
                 kept: dict[str, TaskResult] | None = None, repair_count: int = 0,
                 repair_ids: list[str] | None = None, start: datetime | None = None):
        self.bundle, self.plan, self.run_id, self.say, self.options = bundle, plan, run_id, say, options
        self.kept = kept or {}
        self.repair_count = repair_count
        self.repair_ids = list(repair_ids or [])
        self.start_time = start or datetime.now(UTC)
        self.cancel = threading.Event()  # set: stop the running tasks (the run timed out or was canceled)
        self.children: list[threading.Event] = []  # the cancel events of child runs in progress
        self.late: dict[str, threading.Event] = {}  # tasks started after the run timed out: their own stop
        self.stop_reason: str | None = None  # "timeout" | "canceled" once the run is stopped
        self.record_lock = threading.Lock()
        self.clusters: cluster.Clusters | None = None  # the run's clusters (process per task)
        self.results: dict[str, TaskResult] = {}
        self.ctx = Context(job_key=plan.job_key, job=plan.job, run_id=run_id, start=self.start_time,
                           parameters={}, tasks=plan.tasks, results=self.results, repair_count=repair_count)

    @property
    def name(self) -> str:
        return str(self.plan.job.get("name") or self.plan.job_key)

    def start(self) -> JobRunResult:
        job, key = self.plan.job, self.plan.job_key
        try:
            with concurrency.admitted(job, key, self.run_id, self._queued) as admitted:
                if not admitted:
                    return self._skipped()
                return self._execute()
        finally:
            run_state.clear_cancel(concurrency.state_dir(), self.run_id)

    def _queued(self, active: int, limit: int) -> None:
        self.say(f"job {self.plan.job_key} run {self.run_id}: QUEUED ({active} run(s) active, "
                 f"max_concurrent_runs {limit}); it starts when one ends")
        self._record(life_cycle="QUEUED")

    def _poll(self) -> None:
        """A runs/cancel request from another process (run_state.request_cancel) stops the run."""
        if not self.cancel.is_set() and run_state.cancel_requested(concurrency.state_dir(), self.run_id):
            self.say(f"-- job {self.plan.job_key} run {self.run_id}: canceled: stopping running tasks; "
                     "only tasks whose run_if handles failure start now")
            self.stop_reason = "canceled"
            self._stop()

    def _skipped(self) -> JobRunResult:
        key = self.plan.job_key
        note = (f"skipped: {concurrency.active_runs(key)} run(s) of {key} already active, max_concurrent_runs "
                f"{self.plan.job.get('max_concurrent_runs')}, queue not enabled")
        self.say(f"job {key} run {self.run_id}: {RunState.MAXIMUM_CONCURRENT_RUNS_REACHED} ({note})")
        result = JobRunResult(job_key=key, job_name=self.name, target=self.bundle.target, run_id=self.run_id,
                              parameters=dict(self.plan.parameters), tasks={},
                              state=RunState.MAXIMUM_CONCURRENT_RUNS_REACHED, start_time=datetime.now(UTC),
                              duration=0.0, notes=[note])
        self._record(result)
        return result

    def _execute(self) -> JobRunResult:
        plan, say = self.plan, self.say
        clock = time.monotonic()
        try:
            self.ctx.parameters = {k: self.ctx.resolve(v, None) for k, v in plan.parameters.items()}
        except RefError as exc:
            raise ConfigError(str(exc)) from None
        for key in plan.order:
            self.results[key] = self.kept.get(key) or TaskResult(key=key, type=plan.tasks[key].type)
        what = f"repair {self.repair_count} of run" if self.repair_count else "run"
        say(f"job {plan.job_key} ({self.name}) {what} {self.run_id}, target {self.bundle.target}: "
            f"{len(plan.order)} tasks" + (f", {len(self.kept)} kept from before" if self.kept else ""))
        if self.ctx.parameters:
            say("parameters: " + ", ".join(f"{k}={v}" for k, v in self.ctx.parameters.items()))
        self._record(life_cycle="RUNNING")
        limit = _seconds(plan.job.get("timeout_seconds"))
        if self.options.process_per_task:
            self.clusters = cluster.Clusters(
                {k: cluster.compute_of(k, t.spec) if t.type == "python_wheel_task" and k not in self.kept else None
                 for k, t in plan.tasks.items()}, task_process.task_environment,
                shared=cluster.this_process if self.options.shared_cluster else None)
        try:
            timed_out = scheduling.execute(
                plan.order, task_graph(plan.tasks), start=self._start_task, max_parallel=self.options.parallel,
                deadline=clock + limit if limit else None, on_deadline=self._deadline,
                inline=not self.options.process_per_task, poll=self._poll)
        finally:
            if self.clusters is not None:
                self.clusters.close()
        if timed_out:
            state = RunState.TIMEDOUT
        elif self.cancel.is_set():
            state = RunState.CANCELED
        else:
            state = _job_state(plan.tasks, self.results)
        notes = []
        if not self.options.process_per_task and any(
                plan.job.get("timeout_seconds") or t.spec.get("timeout_seconds") for t in plan.tasks.values()):
            notes.append("in-process tasks are not stopped at a timeout, only judged when they end "
                         "(a process per task, the default, stops them)")
        result = JobRunResult(
            job_key=plan.job_key, job_name=self.name, target=self.bundle.target, run_id=self.run_id,
            parameters=self.ctx.parameters, tasks=self.results, state=state, start_time=self.start_time,
            duration=time.monotonic() - clock, notes=notes, repair_count=self.repair_count)
        self._record(result)
        say("")
        say(result.summary())
        return result

    def _deadline(self) -> None:
        limit = _seconds(self.plan.job.get("timeout_seconds"))
        self.say(f"-- job {self.plan.job_key} run {self.run_id}: TIMEDOUT after its timeout_seconds {limit}: "
                 "stopping running tasks; only tasks whose run_if handles failure start now")
        self.stop_reason = "timeout"
        self._stop()

    @property
    def stopped_status(self) -> TaskStatus:
        """What a task stopped by the run's stop ends as: TIMEDOUT at the job's timeout, else CANCELED."""
        return TaskStatus.TIMEDOUT if self.stop_reason == "timeout" else TaskStatus.CANCELED

    def _stop(self) -> None:
        self.cancel.set()
        for child in list(self.children):
            child.set()

    def _start_task(self, key: str, after_deadline: bool) -> Callable[[], None] | None:
        work = self._decide(key, after_deadline)
        if work is None and self.clusters is not None:
            self.clusters.release(key)  # it will not run: its cluster may not be needed any more
        return work

    def _decide(self, key: str, after_deadline: bool) -> Callable[[], None] | None:
        t, result = self.plan.tasks[key], self.results[key]
        if key in self.kept:
            self.say(f"-- {key}: {result.status} (kept from the run being repaired)")
            return None
        if (after_deadline or self.cancel.is_set()) and t.run_if not in scheduling.HANDLES_FAILURE:
            result.status = TaskStatus.CANCELED
            limit = _seconds(self.plan.job.get("timeout_seconds"))
            result.error = (f"the run timed out before this task started: over the job's timeout_seconds {limit}"
                            if after_deadline or self.stop_reason == "timeout"
                            else "the run was canceled before this task started")
            self.say(f"-- {key}: {result.status} ({result.error})")
            return None
        ended = {d: scheduling.Ended(str(self.results[d].status), self.results[d].outcome) for d, _ in t.deps}
        run, status, why = scheduling.decide(t.run_if, [scheduling.Edge(d, o) for d, o in t.deps], ended)
        if not run:
            result.status, result.error = TaskStatus(status), why
            self.say(f"-- {key}: {status} ({why})")
            return None
        if after_deadline or self.cancel.is_set():
            self.late[key] = threading.Event()  # a failure-handling task: the run's stop does not apply
        return lambda: self._run_task(t, result)

    def _stop_of(self, key: str) -> threading.Event:
        return self.late.get(key, self.cancel)

    def _run_task(self, t: Task, result: TaskResult) -> None:
        clock = time.monotonic()
        self.say(f"-> {t.key}: started ({t.type})")
        try:
            if t.type == "condition_task":
                self._run_condition(t, result)
            elif t.type == "run_job_task":
                self._run_job_task(t, result)
            else:
                self._run_wheel(t, result)
        finally:
            result.duration = time.monotonic() - clock
            if self.clusters is not None:
                self.clusters.release(t.key)
            self._record(life_cycle="RUNNING")
        extra = f" -> {'true' if result.outcome else 'false'}" if result.outcome is not None else ""
        tail = f": {result.error}" if result.status is not TaskStatus.SUCCESS and result.error else ""
        self.say(f"<- {t.key}: {result.status}{extra} ({result.attempts} attempt"
                 f"{'s' if result.attempts != 1 else ''}, {result.duration:.2f}s){tail}")

    def _run_condition(self, t: Task, result: TaskResult) -> None:
        cond = t.spec["condition_task"]
        result.attempts = 1
        try:
            left = self.ctx.resolve(as_text(cond.get("left")), t.key)
            right = self.ctx.resolve(as_text(cond.get("right")), t.key)
            result.detail = f"{left!r} {cond['op']} {right!r}"
            result.outcome = evaluate_condition(cond["op"], left, right)
            result.status = TaskStatus.SUCCESS
        except (RefError, ValueError) as exc:
            result.status, result.error = TaskStatus.FAILED, str(exc)

    def _run_job_task(self, t: Task, result: TaskResult) -> None:
        result.attempts = 1
        try:
            params = _run_job_parameters(t, self.ctx)
            plan = plan_job(self.bundle, str(t.job_key), params, _undeclared_ok=True)
        except (RefError, ConfigError) as exc:
            result.status, result.error = TaskStatus.FAILED, str(exc)
            return
        child = _Run(self.bundle, plan, new_run_id(), _Indented(self.say), self.options)
        self.children.append(child.cancel)
        limit = _seconds(t.spec.get("timeout_seconds"))
        # The task waits for its run (docs: jobs/run-job): at its timeout the run is canceled.
        timer = threading.Timer(limit, child.cancel.set) if limit else None
        if timer:
            timer.daemon = True
            timer.start()
        try:
            if self._stop_of(t.key).is_set():
                child.cancel.set()
            run = child.start()
        finally:
            if timer:
                timer.cancel()
            self.children.remove(child.cancel)
        result.child = run
        result.detail = f"job {t.job_key} run {run.run_id}: {run.state}"
        stopped = self._stop_of(t.key).is_set()
        if limit and (run.state is RunState.CANCELED or run.duration > limit) and not stopped:
            result.status = TaskStatus.TIMEDOUT
            result.error = f"waited {run.duration:.1f} s for {result.detail}, over its timeout_seconds {limit}"
        elif stopped and not run.ok:
            result.status = self.stopped_status
            result.error = f"the run was stopped ({self.stop_reason or 'canceled'}) while waiting for {result.detail}"
        elif run.ok:
            result.status = TaskStatus.SUCCESS
        else:
            result.status, result.error = TaskStatus.FAILED, result.detail

    def _run_wheel(self, t: Task, result: TaskResult) -> None:
        try:
            argv = _wheel_args(t, self.ctx)
        except RefError as exc:
            result.status, result.error = TaskStatus.FAILED, str(exc)
            return
        result.argv = argv
        stop = self._stop_of(t.key)
        limit = _seconds(t.spec.get("timeout_seconds"))
        retry_on_timeout = as_text(t.spec.get("retry_on_timeout")).strip().lower() == "true"
        for attempt in range(1, t.max_retries + 2):
            result.attempts = attempt
            error, timed_out = self._attempt(t, argv, limit, attempt)
            if stop.is_set() and error is not None:
                result.status, result.error = self.stopped_status, error
                return
            if timed_out:
                result.status, result.error = TaskStatus.TIMEDOUT, error
                if attempt <= t.max_retries and retry_on_timeout:
                    self._retry_wait(t, f"{error}; retrying (retry_on_timeout)", attempt)
                    if stop.is_set():
                        return
                    continue
                return
            if error is None:
                result.status, result.error = TaskStatus.SUCCESS, None
                return
            result.status, result.error = TaskStatus.FAILED, error
            if attempt <= t.max_retries:
                self._retry_wait(t, f"attempt {attempt} failed: {error}", attempt)
                if stop.is_set():
                    return

    def _attempt(self, t: Task, argv: list[str], limit: int | None, attempt: int) -> tuple[str | None, bool]:
        """(failure or None, timed out?) of one attempt."""
        started = time.monotonic()
        if not self.options.process_per_task:
            error = _call_entry(t, argv)
            took = time.monotonic() - started
            if limit and took > limit:
                return (f"attempt {attempt} ran {took:.1f} s, over its timeout_seconds {limit} "
                        "(Databricks would have stopped it)"), True
            return error, False
        package = str(t.spec["python_wheel_task"]["package_name"])
        try:
            driver = self.clusters.driver_for(t.key) if self.clusters is not None else None
        except cluster.ClusterError as exc:
            return f"attempt {attempt}: {exc}", False
        tag_file = driver.tags / f"{t.key}-{attempt}" if driver is not None else None
        ended = task_process.run(t.entry or "", package, argv, timeout=limit, cancel=self._stop_of(t.key),
                                 grace=self.options.kill_grace_s,
                                 env=driver.env(tag_file) if driver is not None and tag_file else None)
        if driver is not None and tag_file is not None:
            driver.cancel_jobs_of(tag_file)  # what a stopped (or dead) task left running on its cluster
        took = time.monotonic() - started
        how = "SIGTERM, then SIGKILL" if ended.killed else "SIGTERM"
        if ended.stopped == "timeout":
            return f"attempt {attempt} stopped at its timeout_seconds {limit} ({how}, {took:.1f} s)", True
        if ended.stopped == "canceled":
            return f"attempt {attempt} stopped: the run timed out or was canceled ({how}, {took:.1f} s)", False
        return (None if ended.code == 0 else ended.error or f"exited with code {ended.code}"), False

    def _retry_wait(self, t: Task, why: str, attempt: int) -> None:
        wait, cap = t.retry_wait_s, self.options.max_retry_wait_s
        shortened = ""
        if cap is not None and wait > cap:
            shortened = (f"; min_retry_interval_millis {int(wait * 1000)} shortened locally by "
                         f"{MAX_RETRY_WAIT_ENV}={cap:g}")
            wait = cap
        self.say(f"   {t.key}: {why}; retrying in {wait:.1f}s (retry {attempt} of {t.max_retries}{shortened})")
        self._stop_of(t.key).wait(wait)

    def _record(self, result: JobRunResult | None = None, *, life_cycle: str | None = None) -> None:
        """Write the run's record: in progress (``life_cycle``), or ended (``result``)."""
        if result is not None:
            life_cycle = result.life_cycle_state
            if self.repair_count:
                self.repair_ids.append(f"{self.run_id}-repair-{self.repair_count}")
        tasks = result.tasks if result is not None else self.results
        with self.record_lock:
            record = run_state.RunRecord(
                run_id=self.run_id, job_key=self.plan.job_key, target=self.bundle.target, root=str(self.bundle.root),
                parameters=dict(result.parameters if result is not None else self.ctx.parameters or
                                self.plan.parameters),
                state=str(result.state) if result is not None else "", start_time=self.start_time.isoformat(),
                repair_count=self.repair_count, repair_ids=list(self.repair_ids), life_cycle_state=str(life_cycle),
                pid=os.getpid(),
                tasks={k: {"status": str(r.status), "attempts": r.attempts, "duration": r.duration, "error": r.error,
                           "outcome": r.outcome, "detail": r.detail,
                           "child_run_id": r.child.run_id if r.child else None} for k, r in list(tasks.items())})
            try:
                run_state.save(concurrency.state_dir(), record)
            except OSError as exc:  # a read-only state folder: the run stands, it cannot be repaired later
                if result is not None:
                    result.notes.append(f"run not recorded ({exc}): it cannot be repaired")


def _seconds(value: Any) -> int | None:
    """A ``timeout_seconds`` as an int; None when unset or 0 (no timeout)."""
    try:
        return int(as_text(value)) or None
    except ValueError:
        return None


def _job_state(tasks: dict[str, Task], results: dict[str, TaskResult]) -> RunState:
    """Databricks' rule: FAILED when a leaf task did not succeed, SUCCESS_WITH_FAILURES when another
    task did not, else SUCCESS (RunResultState, databricks-sdk-py ``databricks/sdk/service/jobs.py``)."""
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
    process_per_task: bool = True,
    options: RunOptions | None = None,
) -> JobRunResult:
    """Load the bundle at ``root`` for ``target`` as the real Databricks CLI resolves it
    (databricks_cli.resolve_bundle) and run ``job``."""
    from spark_mlops_dev.bundle.databricks_cli import resolve_bundle

    bundle = resolve_bundle(root, target, dict(variables or {}))
    return run_job(bundle, job, parameters, run_id, state_dir=state_dir, out=out, process_per_task=process_per_task,
                   options=options)


def main(
    root: str | os.PathLike = ".",
    job: str = "",
    target: str | None = None,
    variables: Mapping[str, str] | None = None,
    parameters: Mapping[str, Any] | None = None,
    state_dir: str | os.PathLike | None = None,
    process_per_task: bool = True,
    *,
    repair: str | None = None,
    rerun_tasks: list[str] | None = None,
    rerun_dependent: bool = False,
    max_parallel: int | None = None,
    max_retry_wait_s: float | None = None,
) -> int:
    """``spark-mlops run``: 0 when the job run succeeded (also with failures), 1 when it failed.
    With ``repair`` (a run id), repairs that run instead: ``rerun_tasks``, else every failed task."""
    options = RunOptions.from_env(process_per_task=process_per_task, max_parallel=max_parallel,
                                  max_retry_wait_s=max_retry_wait_s)
    if repair is None:
        if not job:
            raise ConfigError("spark-mlops run: name a job (or --repair RUN_ID)")
        result = run_bundle_job(root, job, target, variables, parameters, state_dir=state_dir, options=options)
        return result.exit_code
    from spark_mlops_dev.bundle.databricks_cli import resolve_bundle

    state = Path(state_dir) if state_dir is not None else concurrency.state_dir()
    record = run_state.load(state, repair)
    if job and job != record.job_key:
        raise ConfigError(f"run {repair} is a run of job {record.job_key!r}, not {job!r}")
    bundle = resolve_bundle(root, target or record.target, dict(variables or {}))
    result = repair_run(bundle, repair, rerun_tasks=rerun_tasks or None, rerun_all_failed=not rerun_tasks,
                        rerun_dependent=rerun_dependent, job_parameters=parameters, state_dir=state,
                        options=options)
    return result.exit_code
