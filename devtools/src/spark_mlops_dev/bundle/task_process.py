"""One ``python_wheel_task`` in a process of its own, as a job cluster runs it.

``python -m spark_mlops_dev.bundle.task_process MODULE:ATTR PACKAGE [ARG ...]`` calls the entry
point with ``sys.argv = [PACKAGE, *ARGS]``; its exit code is the task's. On Databricks a wheel
task's entry point runs in a Python process of its own (each task run has its own output and exit
code), so nothing one task leaves in Python's memory (a loaded model, an MLflow setting, an
environment variable) reaches the next. This is how the runner runs wheel tasks by default; its
in-process mode (``spark-mlops run JOB --in-process``) shares all of that, and the Spark session too.

A task on a cluster (cluster.py) is given the cluster's py4j gateway (``PYSPARK_GATEWAY_PORT``,
``PYSPARK_GATEWAY_SECRET``) and attaches to it before its entry point runs
(:func:`spark_mlops_dev.bundle.cluster.attach`): ``SparkSession.builder.getOrCreate()`` then returns
a session on the cluster's SparkContext, as on a Databricks cluster. A task with no cluster starts
its own local Spark if it uses any.

The process gets only what a job cluster would give it: its arguments, and an environment of the
machine's basics (:data:`MACHINE`: path, home, locale, temporary folder, Java, the Python path)
plus the local stand-ins for the workspace (:data:`KIT`: the state folder, which holds the local
workspaces and Unity Catalog, and the kit's own switches). No MLflow, Databricks or other
``SPARK_MLOPS_`` variable of the parent passes.

A task past its ``timeout_seconds`` (or in a run that timed out or was canceled) is stopped:
SIGTERM to its process group, SIGKILL after :data:`KILL_GRACE_S` (:func:`run`). A task that
raises prints its traceback (redacted) and is FAILED with the exception's line as its error, as in
the runner's in-process mode.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

MACHINE = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "JAVA_HOME", "PYTHONPATH",
           "VIRTUAL_ENV", "PYSPARK_PYTHON")
MACHINE_PREFIXES = ("LC_",)
KIT = ("SPARK_MLOPS_STATE_DIR", "SPARK_MLOPS_JVM_CACHE", "SPARK_MLOPS_VERBOSE", "SPARK_MLOPS_DEBUG")
KILL_GRACE_S = 10.0  # SIGTERM, then SIGKILL this much later
ERROR_FILE = "SPARK_MLOPS_TASK_ERROR_FILE"  # where the task says which exception ended it
POLL_S = 0.05


def task_environment(parent: Mapping[str, str] | None = None) -> dict[str, str]:
    parent = os.environ if parent is None else parent
    return {k: v for k, v in parent.items() if k in MACHINE or k in KIT or k.startswith(MACHINE_PREFIXES)}


def command(entry: str, package: str, argv: list[str]) -> list[str]:
    return [sys.executable, "-m", __name__, entry, package, *argv]


@dataclass(frozen=True)
class Outcome:
    """How a task's process ended: its exit code, or why the runner stopped it."""

    code: int | None  # None when it was stopped
    stopped: str | None = None  # "timeout" | "canceled"
    killed: bool = False  # it outlived SIGTERM by the grace period and got SIGKILL
    error: str | None = None  # the exception that ended it ("RuntimeError: ..."), redacted


def run(entry: str, package: str, argv: list[str], *, timeout: float | None = None,
        cancel: threading.Event | None = None, grace: float = KILL_GRACE_S,
        env: Mapping[str, str] | None = None) -> Outcome:
    """Run the task in a new process; its output goes to this process's stdout and stderr as it comes.

    After ``timeout`` seconds, or when ``cancel`` is set, the process group (the task and what it
    started, a JVM included) gets SIGTERM, then SIGKILL ``grace`` seconds later: as Databricks ends
    a task at its timeout_seconds, nothing the task would do after it (a ``finally``) is promised.
    ``env``: added to the task's environment (a cluster's gateway); the cluster's JVM is not in the
    task's process group and outlives it."""
    fd, error_file = tempfile.mkstemp(prefix="task-error-")
    os.close(fd)
    proc = subprocess.Popen(command(entry, package, argv),
                            env={**task_environment(), **(env or {}), ERROR_FILE: error_file},
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, bufsize=1, start_new_session=True)
    copies = [threading.Thread(target=_copy, args=(proc.stdout, "stdout"), daemon=True),
              threading.Thread(target=_copy, args=(proc.stderr, "stderr"), daemon=True)]
    for t in copies:
        t.start()
    deadline = time.monotonic() + timeout if timeout else None
    stopped: str | None = None
    killed = False
    try:
        while proc.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                stopped = "timeout"
            elif cancel is not None and cancel.is_set():
                stopped = "canceled"
            if stopped:
                killed = _stop(proc, grace)
                break
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=POLL_S)
    except BaseException:
        _stop(proc, 0)
        raise
    finally:
        error = Path(error_file).read_text(encoding="utf-8").strip() or None
        Path(error_file).unlink(missing_ok=True)
    for t in copies:
        t.join(timeout=grace)
    return Outcome(None if stopped else proc.returncode, stopped, killed, error)


def _stop(proc: subprocess.Popen, grace: float) -> bool:
    """SIGTERM to the task's process group, SIGKILL after ``grace`` s; True when SIGKILL was needed."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            return sig == signal.SIGKILL
        except subprocess.TimeoutExpired:
            continue
    return True


def _copy(stream: TextIO, name: str) -> None:
    # Looked up per line: tests capture by replacing sys.stdout / sys.stderr.
    for line in stream:
        target = getattr(sys, name)
        target.write(line)
        target.flush()
    stream.close()


def main(args: list[str]) -> None:
    from spark_mlops_dev.bundle import cluster, entry_points

    entry, package, *argv = args
    if os.environ.get(cluster.GATEWAY_PORT):
        cluster.attach()
    sys.argv = [package, *argv]
    try:
        entry_points.load(entry)()
    except Exception as exc:  # noqa: BLE001 - the task's failure, said as the in-process mode says it
        from spark_mlops.config import redact

        print(redact("".join(traceback.format_exception(exc))), file=sys.stderr, end="", flush=True)
        if os.environ.get(ERROR_FILE):
            Path(os.environ[ERROR_FILE]).write_text(redact(f"{type(exc).__name__}: {exc}"), encoding="utf-8")
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
