"""Run one job run of the fake workspace (TEST DOUBLE: scripts/ci/fake-workspace/jobs.go) with the
project's job runner, from the job settings the Databricks CLI deployed.

    python fake_workspace_runner.py RUN_DIR
    python fake_workspace_runner.py --task-env WHEEL...   (prints the task environment's folder)

RUN_DIR/request.json (written by the fake workspace's jobs/run-now): the run id and task run ids,
the job's settings as deployed (jobs/get JSON), every job of the workspace, the run's job
parameters, the workspace's name, the wheels the tasks install (exported from the workspace's
files) and the deployment's metadata (job keys and ids, target). This script writes
RUN_DIR/state.json (replaced atomically at each change) in the shape jobs.go serves as runs/get.

The task environment is what a job cluster gives a wheel task: a virtualenv with the DEPLOYED
wheel installed as a cluster library (``--no-deps``: the runtime's packages come from the
project's own environment, as Databricks Runtime provides them), created once per wheel (its
sha256) and runtime under ``SPARK_MLOPS_TASK_ENVS`` (default ``~/.cache/spark-mlops/task-envs``).
The script re-runs itself in that environment, checks that each task's package is imported from the wheel and
not the source tree, then runs the job with every task in a process of its own
(runner ``process_per_task``), the tasks naming the same ``job_cluster_key`` attached to that
cluster's one Spark driver JVM (devtools/src/spark_mlops_dev/bundle/cluster.py), started in this
task environment.

The local stand-ins of the workspace: ``SPARK_MLOPS_STATE_DIR`` (required: the folder of the local
workspaces and the shared registry; the tasks' ``--target`` picks the workspace's tracking store,
spark_mlops.config.local_workspace).

The job runs through runner.py's execution API: ``run_job`` / ``repair_run`` over a
``DeployedJobs`` (jobs by their bundle keys from the deployment's metadata, numeric Run Job ids
mapped to keys), ``cancel_run`` on SIGTERM (the fake workspace's runs/cancel). Task states come
from the runner's progress lines and its result; each task's output is kept apart (tasks may run
in parallel) for runs/get-output.

    python fake_workspace_runner.py RUN_DIR --repair REPAIR_JSON   (runs/repair of that run)
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

IN_TASK_ENV = "SPARK_MLOPS_IN_TASK_ENV"
TASK_ENVS = "SPARK_MLOPS_TASK_ENVS"
WORKLOAD_FAILED = "Workload failed, see run output for details"  # what a workspace reports (jobs.go)
LOG_LIMIT = 200_000  # characters of a task's logs kept for runs/get-output


def now_ms() -> int:
    return int(time.time() * 1000)


# ---------------------------------------------------------------- the task environment


def task_env(wheels: list[Path]) -> Path:
    """The virtualenv with ``wheels`` installed (created once per set of wheels)."""
    # The runtime: this (project) environment's packages, after the venv's own site-packages, so
    # that the wheel installed below wins over the project's editable source tree. The
    # environment is keyed by the wheels' bytes and by that runtime.
    parents = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    digest = hashlib.sha256("\n".join(parents).encode())
    for wheel in sorted(wheels):
        digest.update(wheel.name.encode() + hashlib.sha256(wheel.read_bytes()).digest())
    root = Path(os.environ.get(TASK_ENVS) or Path.home() / ".cache" / "spark-mlops" / "task-envs")
    env = root / digest.hexdigest()[:16]
    python = env / "bin" / "python"
    if (env / ".ready").is_file():
        return env
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".env-", dir=root))
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(work)], check=True)
    site = next((work / "lib").glob("python*/site-packages"))
    (site / "zz_runtime.pth").write_text(
        "import site; " + "; ".join(f"site.addsitedir({p!r})" for p in parents) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(work / "bin" / "python"), "install", "-q",
                    "--no-deps", "--no-index", "--disable-pip-version-check", *map(str, wheels)], check=True)
    (work / ".ready").write_text("")
    try:
        work.rename(env)
    except OSError:  # another run made it first
        subprocess.run(["rm", "-rf", str(work)], check=False)
    assert python.exists()
    return env


# ---------------------------------------------------------------- states


@dataclass
class Task:
    life_cycle_state: str = "PENDING"
    result_state: str = ""
    state_message: str = ""
    start_time: int = 0
    end_time: int = 0
    attempt_number: int = 0
    error: str = ""
    error_trace: str = ""
    logs: list[str] = field(default_factory=list)

    def json(self) -> dict:
        logs = "".join(self.logs)
        return {k: v for k, v in {
            "life_cycle_state": self.life_cycle_state, "result_state": self.result_state,
            "state_message": self.state_message, "start_time": self.start_time, "end_time": self.end_time,
            "attempt_number": self.attempt_number, "error": self.error, "error_trace": self.error_trace,
            "logs": logs[-LOG_LIMIT:],
        }.items() if v not in ("", 0)}


class Reporter:
    """The run's state, written to state.json; also the runner's ``out`` stream (its progress
    lines say when a task starts and how it ended) and the tee of the task processes' output
    (each line kept as the output of the task whose process printed it)."""

    _STARTED = re.compile(r"^-> (\S+): started")
    _ENDED = re.compile(r"^<- (\S+): ([A-Z_]+)\b.*?\((\d+) attempts?, [\d.]+s\)(?:: (.*))?$")
    _SKIPPED = re.compile(r"^-- (\S+): ([A-Z_]+) \((.*)\)$")

    def __init__(self, run_dir: Path, keys: list[str], stdout, stderr):
        self.path = run_dir / "state.json"
        self.tasks = {k: Task() for k in keys}
        self.life = "PENDING"
        self.result = ""
        self.message = ""
        self._pending = ""
        self.stdout, self.stderr = stdout, stderr
        self.write()

    def write(self) -> None:
        state = {"life_cycle_state": self.life, "result_state": self.result, "state_message": self.message,
                 "tasks": {k: t.json() for k, t in self.tasks.items()}}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(self.path)

    # the runner's `out` (print() writes a line and its end separately)
    def write_progress(self, text: str) -> None:
        self.stdout.write(text)
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self._progress(line)

    def keep(self, previous: dict) -> None:
        """A repair: every task starts with its state of the run being repaired."""
        for key, saved in (previous.get("tasks") or {}).items():
            if key in self.tasks:
                t = self.tasks[key]
                for name in ("life_cycle_state", "result_state", "state_message", "start_time", "end_time",
                             "attempt_number", "error", "error_trace"):
                    setattr(t, name, saved.get(name, getattr(t, name)))
                t.logs = [saved.get("logs", "")]

    def _progress(self, line: str) -> None:
        if "(kept from the run being repaired)" in line:
            return
        if m := self._STARTED.match(line):
            key = m.group(1)
            if key in self.tasks:
                t = self.tasks[key]
                t.life_cycle_state, t.start_time, t.attempt_number = "RUNNING", now_ms(), 0
                t.result_state = t.state_message = t.error = t.error_trace = ""
                t.end_time, t.logs = 0, []
                self.write()
        elif m := self._ENDED.match(line):
            key, status, attempts, why = m.group(1), m.group(2), int(m.group(3)), m.group(4) or ""
            if key in self.tasks:
                self.end(key, status, why, attempt=attempts - 1)
        elif m := self._SKIPPED.match(line):
            key, status, why = m.groups()
            if key in self.tasks:
                self.end(key, status, why)

    def end(self, key: str, status: str, why: str, attempt: int = 0) -> None:
        t = self.tasks[key]
        t.life_cycle_state, t.result_state, t.end_time, t.attempt_number = "TERMINATED", status, now_ms(), attempt
        t.start_time = t.start_time or t.end_time
        if status in ("FAILED", "TIMEDOUT"):
            t.state_message = WORKLOAD_FAILED
            t.error, t.error_trace = failure(why, "".join(t.logs))
        elif status != "SUCCESS":
            t.state_message = why
        self.write()

    def tee(self, name: str, text: str, key: str | None = None) -> None:
        """Output of a task's process (``key``), or of this process (kept in the runner's log)."""
        (self.stdout if name == "stdout" else self.stderr).write(text)
        if key in self.tasks and text:
            self.tasks[key].logs.append(text)


def failure(why: str, logs: str) -> tuple[str, str]:
    """(error, error_trace) of a failed task from its output: the last Python traceback's
    exception line and the traceback, else the task's last output line."""
    lines = logs.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")]
    if starts:
        block = lines[starts[-1]:]
        end = next((i for i, line in enumerate(block[1:], 1) if line and not line.startswith((" ", "\t"))),
                   len(block) - 1)
        return block[end].strip(), "\n".join(block[:end + 1])
    tail = [line for line in lines if line.strip() and not line.startswith(("-> ", "<- ", "   "))]
    # The project's commands say why they stopped in one "<prog>: error: <why>" line (argparse's form).
    said = [line for line in tail if re.match(r"^[\w. -]+: error: ", line)]
    last = (said or tail or [""])[-1].strip()
    error = f"{last} ({why})" if last and why else last or why or "the task failed"
    return error, "\n".join(tail[-20:])


class _Stream:
    def __init__(self, write):
        self._write = write

    def write(self, text: str) -> int:
        self._write(text)
        return len(text)

    def flush(self) -> None:
        pass


# ---------------------------------------------------------------- the job, as the runner loads it


def deployed_jobs(request: dict, root: Path):
    """The runner's DeployedJobs over the workspace's jobs (keys from the deployment's metadata,
    as `bundle run` names them), and the key of the job to run."""
    from spark_mlops_dev.bundle.runner import DeployedJobs

    meta = ((request.get("deployment_metadata") or {}).get("config") or {})
    keys = {str(v.get("id")): k for k, v in ((meta.get("resources") or {}).get("jobs") or {}).items()}
    ids = {str(job_id): keys.get(str(job_id), f"job_{job_id}") for job_id in request.get("jobs") or {}}
    jobs = {ids[str(job_id)]: settings for job_id, settings in (request.get("jobs") or {}).items()}
    target = (meta.get("bundle") or {}).get("target") or request.get("workspace") or ""
    return DeployedJobs(root=root, target=target, jobs=jobs, job_ids=ids), ids[str(request["job_id"])]


def wheel_packages(request: dict) -> set[str]:
    """The package_name of every wheel task of the workspace's jobs."""
    return {str(t["python_wheel_task"]["package_name"]) for job in (request.get("jobs") or {}).values()
            for t in (job or {}).get("tasks") or [] if isinstance(t.get("python_wheel_task"), dict)}


class _TaskOutputs:
    """Which task a line of task output belongs to, with tasks running in parallel: the task's
    thread starts its process (task_process.run), and that process's pipes name the task."""

    def __init__(self, reporter: Reporter):
        from spark_mlops_dev.bundle import runner, task_process

        self.reporter = reporter
        self.local = threading.local()
        self.pipes: dict[int, str] = {}
        outputs = self
        run_task = runner._Run._run_task

        def _run_task(run, t, result):  # the task's own thread
            outputs.local.key = t.key
            return run_task(run, t, result)

        class _Subprocess:  # task_process's `subprocess`, remembering which task opened each pipe
            def __getattr__(self, name):
                return getattr(subprocess, name)

            @staticmethod
            def Popen(*args, **kwargs):  # noqa: N802 - subprocess.Popen's name
                proc = subprocess.Popen(*args, **kwargs)
                key = getattr(outputs.local, "key", None)
                for pipe in (proc.stdout, proc.stderr):
                    if pipe is not None and key:
                        outputs.pipes[id(pipe)] = key
                return proc

        def _copy(stream, name):
            key = outputs.pipes.get(id(stream))
            for line in stream:
                reporter.tee(name, line, key)
            stream.close()

        runner._Run._run_task = _run_task
        task_process.subprocess = _Subprocess()
        task_process._copy = _copy


def _stopped_by_fake_workspace(run_id: str, state_dir: str) -> None:
    """SIGTERM from the fake workspace (runs/cancel): cancel the run as the Jobs API does (running
    tasks stopped, failure-handling tasks still run); the workspace kills the group after a grace."""
    from spark_mlops_dev.bundle import runner

    def handler(signum, frame):
        runner.cancel_run(run_id, state_dir=state_dir)

    signal.signal(signal.SIGTERM, handler)


def run(run_dir: Path, repair: dict | None = None) -> int:
    request = json.loads((run_dir / "request.json").read_text())
    keys = [t["task_key"] for t in request["job"].get("tasks") or []]
    real_out, real_err = sys.stdout, sys.stderr
    reporter = Reporter(run_dir, keys, real_out, real_err)
    if repair is not None:  # the tasks that keep their results keep their states
        reporter.keep(json.loads((run_dir / "state.json.before-repair").read_text()))
    reporter.life = "RUNNING"
    reporter.write()
    run_id = str(request["run_id"])
    try:
        for package in wheel_packages(request):
            module = importlib.import_module(package)
            where = Path(module.__file__ or "").resolve()
            if Path(sys.prefix).resolve() not in where.parents:
                raise RuntimeError(f"{package} is imported from {where}, not from the deployed wheel")
        from spark_mlops_dev.bundle import runner

        jobs, job_key = deployed_jobs(request, run_dir)
        state_dir = os.environ.get("SPARK_MLOPS_STATE_DIR")
        if not state_dir:
            raise RuntimeError("SPARK_MLOPS_STATE_DIR is not set: the fake workspace has no local stores")
        _TaskOutputs(reporter)
        _stopped_by_fake_workspace(run_id, state_dir)
        options = runner.RunOptions.from_env(process_per_task=True)
        out = _Stream(reporter.write_progress)
        sys.stdout = _Stream(lambda text: reporter.tee("stdout", text))
        sys.stderr = _Stream(lambda text: reporter.tee("stderr", text))
        try:
            if repair is None:
                result = runner.run_job(jobs, job_key, request.get("job_parameters") or {}, run_id,
                                        state_dir=state_dir, out=out, options=options)
            else:
                result = runner.repair_run(jobs, run_id, rerun_tasks=repair.get("rerun_tasks") or None,
                                           rerun_all_failed=bool(repair.get("rerun_all_failed_tasks")),
                                           rerun_dependent=bool(repair.get("rerun_dependent_tasks")),
                                           job_parameters=repair.get("job_parameters") or None,
                                           state_dir=state_dir, out=out, options=options)
        finally:
            sys.stdout, sys.stderr = real_out, real_err
    except Exception as exc:  # noqa: BLE001 - the run ends INTERNAL_ERROR with the reason
        message = f"{type(exc).__name__}: {exc}"
        if type(exc).__name__ not in ("RuntimeError", "ConfigError"):
            traceback.print_exc()
        reporter.life, reporter.result, reporter.message = "INTERNAL_ERROR", "FAILED", message
        for t in reporter.tasks.values():
            if t.life_cycle_state != "TERMINATED":
                t.life_cycle_state, t.result_state, t.state_message, t.error = "TERMINATED", "FAILED", message, message
        reporter.write()
        print(f"fake workspace runner: {message}", file=sys.stderr)
        return 1
    for key, task in result.tasks.items():  # the runner's word on every task, kept ones included
        if key in reporter.tasks and reporter.tasks[key].result_state != str(task.status):
            reporter.end(key, str(task.status), task.error or "", attempt=max(task.attempts - 1, 0))
    state = str(result.state)
    api = result.api_state()
    if state == "FAILED":
        failed = next((k for k in keys if reporter.tasks[k].result_state in ("FAILED", "TIMEDOUT")), keys[-1])
        reporter.life, reporter.result = "INTERNAL_ERROR", "FAILED"
        reporter.message = f"Task {failed} failed with message: {WORKLOAD_FAILED}."
    else:
        reporter.life, reporter.result = api["life_cycle_state"], api["result_state"]
        reporter.message = "" if state == "SUCCESS" else api.get("state_message", "")
        if reporter.life == "SKIPPED":
            reporter.result = ""
        if state == "TIMEDOUT" and not reporter.message:
            limit = request["job"].get("timeout_seconds")
            reporter.message = f"Run timed out: it ran longer than the job's timeout_seconds ({limit} s)."
    for t in reporter.tasks.values():  # a task the runner never reached
        if t.life_cycle_state != "TERMINATED":
            t.life_cycle_state, t.result_state = "TERMINATED", "CANCELED"
    reporter.write()
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["--task-env"]:  # scripts/ci/pr-checks.sh local-jobs: the same environment
        print(task_env([Path(p).resolve() for p in argv[1:]]))
        return 0
    run_dir = Path(argv[0]).resolve()
    repair = json.loads(Path(argv[2]).read_text()) if argv[1:2] == ["--repair"] else None
    if os.environ.get(IN_TASK_ENV) != "1":
        request = json.loads((run_dir / "request.json").read_text())
        wheels = [Path(p) for p in (request.get("wheels") or {}).values()]
        try:
            if not wheels:
                raise RuntimeError("the job's tasks install no wheel (libraries: - whl)")
            env = task_env(wheels)
        except Exception as exc:  # noqa: BLE001
            keys = [t["task_key"] for t in request["job"].get("tasks") or []]
            reporter = Reporter(run_dir, keys, sys.stdout, sys.stderr)
            reporter.life, reporter.result = "INTERNAL_ERROR", "FAILED"
            reporter.message = f"Library installation failed: {exc}"
            reporter.write()
            print(reporter.message, file=sys.stderr)
            return 1
        python = env / "bin" / "python"
        os.environ[IN_TASK_ENV] = "1"
        os.execv(str(python), [str(python), str(Path(__file__).resolve()), *map(str, argv)])
    return run(run_dir, repair)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
