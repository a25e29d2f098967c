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
(runner ``process_per_task``). Jobs sharing a ``job_cluster_key`` do NOT share one JVM here: each
task process starts its own local Spark.

The local stand-ins of the workspace: ``SPARK_MLOPS_STATE_DIR`` (required: the folder of the local
workspaces and the shared registry; the tasks' ``--target`` picks the workspace's tracking store,
spark_mlops.config.local_workspace).

This is an adapter over what runner.py offers today (run_job over a loaded bundle): deployed
settings are turned into the runner's bundle (jobs by their bundle keys; a run_job_task's numeric
job id back to ``${resources.jobs.<key>.id}``), and task states are read from the runner's
progress lines.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import subprocess
import sys
import tempfile
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
    lines say when a task starts and how it ended) and the tee of the task processes' output."""

    _STARTED = re.compile(r"^-> (\S+): started")
    _ENDED = re.compile(r"^<- (\S+): ([A-Z_]+)\b.*?\((\d+) attempts?, [\d.]+s\)(?:: (.*))?$")
    _SKIPPED = re.compile(r"^-- (\S+): ([A-Z_]+) \((.*)\)$")

    def __init__(self, run_dir: Path, keys: list[str], stdout, stderr):
        self.path = run_dir / "state.json"
        self.tasks = {k: Task() for k in keys}
        self.life = "PENDING"
        self.result = ""
        self.message = ""
        self.current: str | None = None
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

    def _progress(self, line: str) -> None:
        if m := self._STARTED.match(line):
            key = m.group(1)
            if key in self.tasks:
                t = self.tasks[key]
                t.life_cycle_state, t.start_time, t.attempt_number = "RUNNING", now_ms(), 0
                self.current = key
                self.write()
        elif m := self._ENDED.match(line):
            key, status, attempts, why = m.group(1), m.group(2), int(m.group(3)), m.group(4) or ""
            if key in self.tasks:
                self._end(key, status, why, attempt=attempts - 1)
        elif m := self._SKIPPED.match(line):
            key, status, why = m.groups()
            if key in self.tasks:
                self._end(key, status, why)

    def _end(self, key: str, status: str, why: str, attempt: int = 0) -> None:
        t = self.tasks[key]
        t.life_cycle_state, t.result_state, t.end_time, t.attempt_number = "TERMINATED", status, now_ms(), attempt
        t.start_time = t.start_time or t.end_time
        if status in ("FAILED", "TIMEDOUT"):
            t.state_message = WORKLOAD_FAILED
            t.error, t.error_trace = failure(why, "".join(t.logs))
        elif status != "SUCCESS":
            t.state_message = why
        if self.current == key:
            self.current = None
        self.write()

    def tee(self, name: str, text: str) -> None:
        (self.stdout if name == "stdout" else self.stderr).write(text)
        if self.current and text:
            self.tasks[self.current].logs.append(text)


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


@dataclass
class DeployedBundle:
    """What runner.run_job reads of a bundle: jobs by key, the target, a root (no pyproject.toml:
    entry points come from the installed wheel's metadata)."""

    root: Path
    target: str
    jobs: dict[str, dict]
    variables: dict = field(default_factory=dict)


def deployed_bundle(request: dict, root: Path) -> tuple[DeployedBundle, str]:
    """The runner's bundle over the deployed jobs, and the key of the job to run."""
    meta = ((request.get("deployment_metadata") or {}).get("config") or {})
    keys = {str(v.get("id")): k for k, v in ((meta.get("resources") or {}).get("jobs") or {}).items()}
    jobs: dict[str, dict] = {}
    for job_id, settings in (request.get("jobs") or {}).items():
        key = keys.get(str(job_id), f"job_{job_id}")
        settings = json.loads(json.dumps(settings))
        for task in settings.get("tasks") or []:
            run_job = task.get("run_job_task")
            if isinstance(run_job, dict) and "job_id" in run_job:
                child = keys.get(str(run_job["job_id"]), f"job_{run_job['job_id']}")
                run_job["job_id"] = "${resources.jobs." + child + ".id}"
        jobs[key] = settings
    target = (meta.get("bundle") or {}).get("target") or request.get("workspace") or ""
    return DeployedBundle(root, target, jobs), keys.get(str(request["job_id"]), f"job_{request['job_id']}")


def wheel_packages(request: dict) -> set[str]:
    """The package_name of every wheel task of the workspace's jobs."""
    return {str(t["python_wheel_task"]["package_name"]) for job in (request.get("jobs") or {}).values()
            for t in (job or {}).get("tasks") or [] if isinstance(t.get("python_wheel_task"), dict)}


def run(run_dir: Path) -> int:
    request = json.loads((run_dir / "request.json").read_text())
    keys = [t["task_key"] for t in request["job"].get("tasks") or []]
    real_out, real_err = sys.stdout, sys.stderr
    reporter = Reporter(run_dir, keys, real_out, real_err)
    reporter.life = "RUNNING"
    reporter.write()
    try:
        for package in wheel_packages(request):
            module = importlib.import_module(package)
            where = Path(module.__file__ or "").resolve()
            if Path(sys.prefix).resolve() not in where.parents:
                raise RuntimeError(f"{package} is imported from {where}, not from the deployed wheel")
        from spark_mlops_dev.bundle import runner

        bundle, job_key = deployed_bundle(request, run_dir)
        state_dir = os.environ.get("SPARK_MLOPS_STATE_DIR")
        if not state_dir:
            raise RuntimeError("SPARK_MLOPS_STATE_DIR is not set: the fake workspace has no local stores")
        sys.stdout = _Stream(lambda text: reporter.tee("stdout", text))
        sys.stderr = _Stream(lambda text: reporter.tee("stderr", text))
        try:
            result = runner.run_job(bundle, job_key, request.get("job_parameters") or {}, request["run_id"],
                                    state_dir=state_dir, out=_Stream(reporter.write_progress), process_per_task=True)
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
    state = str(result.state)
    if state == "FAILED":
        failed = next((k for k in keys if reporter.tasks[k].result_state in ("FAILED", "TIMEDOUT")), keys[-1])
        reporter.life, reporter.result = "INTERNAL_ERROR", "FAILED"
        reporter.message = f"Task {failed} failed with message: {WORKLOAD_FAILED}."
    elif state == "MAXIMUM_CONCURRENT_RUNS_REACHED":
        reporter.life, reporter.result = "SKIPPED", ""
        reporter.message = "; ".join(result.notes) or state
    else:
        reporter.life, reporter.result = "TERMINATED", state
        reporter.message = "" if state == "SUCCESS" else "; ".join(result.notes)
    for t in reporter.tasks.values():  # a task the runner never reached (e.g. the run timed out)
        if t.life_cycle_state != "TERMINATED":
            t.life_cycle_state, t.result_state = "TERMINATED", "CANCELED"
    reporter.write()
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["--task-env"]:  # scripts/ci/pr-checks.sh local-jobs: the same environment
        print(task_env([Path(p).resolve() for p in argv[1:]]))
        return 0
    run_dir = Path(argv[0]).resolve()
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
        os.execv(str(python), [str(python), str(Path(__file__).resolve()), str(run_dir)])
    return run(run_dir)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
