"""One ``python_wheel_task`` in a process of its own, as a job cluster runs it.

``python -m spark_mlops_dev.bundle.task_process MODULE:ATTR PACKAGE [ARG ...]`` calls the entry
point with ``sys.argv = [PACKAGE, *ARGS]``; its exit code is the task's. On Databricks a wheel
task's entry point runs in a Python process of its own (each task run has its own output and exit
code), so nothing one task leaves in Python's memory (a loaded model, an MLflow setting, an
environment variable) reaches the next. The local runner's in-process mode shares all of that,
and the Spark session too; ``spark-mlops run JOB --process-per-task`` runs each task here instead.

The process gets only what a job cluster would give it: its arguments, and an environment of the
machine's basics (:data:`MACHINE`: path, home, locale, temporary folder, Java, the Python path)
plus the local stand-ins for the workspace (:data:`KIT`: the state folder, which holds the local
workspaces and Unity Catalog, and the kit's own switches). No MLflow, Databricks or other
``SPARK_MLOPS_`` variable of the parent passes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Mapping
from typing import TextIO

MACHINE = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "JAVA_HOME", "PYTHONPATH",
           "VIRTUAL_ENV", "PYSPARK_PYTHON")
MACHINE_PREFIXES = ("LC_",)
KIT = ("SPARK_MLOPS_STATE_DIR", "SPARK_MLOPS_JVM_CACHE", "SPARK_MLOPS_VERBOSE", "SPARK_MLOPS_DEBUG")


def task_environment(parent: Mapping[str, str] | None = None) -> dict[str, str]:
    parent = os.environ if parent is None else parent
    return {k: v for k, v in parent.items() if k in MACHINE or k in KIT or k.startswith(MACHINE_PREFIXES)}


def command(entry: str, package: str, argv: list[str]) -> list[str]:
    return [sys.executable, "-m", __name__, entry, package, *argv]


def run(entry: str, package: str, argv: list[str]) -> int:
    """Run the task in a new process; its output goes to this process's stdout and stderr as it comes."""
    proc = subprocess.Popen(command(entry, package, argv), env=task_environment(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, bufsize=1)
    copies = [threading.Thread(target=_copy, args=(proc.stdout, "stdout"), daemon=True),
              threading.Thread(target=_copy, args=(proc.stderr, "stderr"), daemon=True)]
    for t in copies:
        t.start()
    try:
        code = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    for t in copies:
        t.join()
    return code


def _copy(stream: TextIO, name: str) -> None:
    # Looked up per line: tests capture by replacing sys.stdout / sys.stderr.
    for line in stream:
        target = getattr(sys, name)
        target.write(line)
        target.flush()
    stream.close()


def main(args: list[str]) -> None:
    from spark_mlops_dev.bundle import entry_points

    entry, package, *argv = args
    sys.argv = [package, *argv]
    entry_points.load(entry)()


if __name__ == "__main__":
    main(sys.argv[1:])
