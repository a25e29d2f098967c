"""Test harness for tests/test_crashes.py: run one ``spark-mlops`` step and stop it at a named point
of its table writes, so that the test can SIGKILL the whole process group (Python, the JVM and
its Python workers) exactly there. Nothing in ``src/`` knows about it.

    python -m tests.crash_points POINT MARKER -- SPARK_MLOPS_ARGS...

POINT is ``mid-write:N`` or ``after-commit:N``, counting the step's table writes (each
``DataFrame.write`` the step makes is one Delta commit of one table; the steps write nothing else
with it):

- ``mid-write:N``: the N-th write runs on its rows split in two tasks: the first writes its
  data file, the second stops before handing over any row, so the write has written data files
  and its commit cannot happen (two tasks at once: a machine with at least two cores);
- ``after-commit:N``: the N-th write has committed (``saveAsTable`` returned), and the step goes
  no further.

On reaching the point the process (for ``mid-write``, the second task's Python worker) creates
the file MARKER and sleeps until it is killed. Its own module, not a test module, so that the subprocess
does not import tests/conftest.py.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

MARKER_ENV = "CRASH_POINT_MARKER"


def stop_here() -> None:
    Path(os.environ[MARKER_ENV]).touch()
    while True:
        time.sleep(60)


def first_task_only(batches):
    """A ``mapInArrow`` function: the first task's rows pass through; any other task stops."""
    from pyspark import TaskContext

    if TaskContext.get().partitionId() != 0:
        stop_here()
    yield from batches


def install(point: str) -> None:
    from pyspark.sql.classic.dataframe import DataFrame

    kind, _, number = point.partition(":")
    if kind not in ("mid-write", "after-commit") or not number.isdigit():
        raise SystemExit(f"unknown point {point!r}: expected mid-write:N or after-commit:N")
    target = int(number)
    original = DataFrame.write
    writes = 0

    def write(self):
        nonlocal writes
        writes += 1
        if writes != target:
            return original.fget(self)
        if kind == "mid-write":
            return original.fget(self.repartition(2).mapInArrow(first_task_only, self.schema))
        writer = original.fget(self)
        save = writer.saveAsTable

        def save_then_stop(*args, **kwargs):
            save(*args, **kwargs)
            stop_here()

        writer.saveAsTable = save_then_stop
        return writer

    DataFrame.write = property(write)


def main(argv: list[str]) -> int:
    point, marker, separator, *args = argv
    assert separator == "--", "usage: python -m tests.crash_points POINT MARKER -- ARGS..."
    os.environ[MARKER_ENV] = marker  # before the JVM starts: its Python workers inherit it
    install(point)
    from spark_mlops.cli import main as spark_mlops

    return spark_mlops(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
