"""A class-data-sharing archive for the local Spark JVM: Spark's classes parsed and verified once.

A local Spark start spends most of its seconds loading classes from the jars pyspark ships.
The JDK can write the classes a run loaded into an archive when the JVM exits
(``-XX:ArchiveClassesAtExit``, JEP 350, JDK 13+) and map that archive at every later start
(``-XX:SharedArchiveFile``). This module keeps one archive per JDK and Spark build in a cache
folder (:func:`cache_dir`) and hands :mod:`spark_mlops.spark` the java options for it.

- **Key**: the java binary Spark's launcher will run (its real path, size and modification
  time), pyspark's version, the names of its jars and the jars put before them on the class path
  (Delta Lake's: path, size and modification time). Another JDK, Spark or Delta is another
  archive; a JVM only maps an archive made with the class path it starts with.
- **Making it**: the first local session with no archive for its key takes a lock file and asks
  its JVM to write the archive at exit into a file of its own. When Python exits, :func:`_finish`
  closes the JVM's stdin (its signal to exit, pyspark ``java_gateway.launch_gateway``), waits for
  it, and renames the file into place: readers see no archive or a whole one, never half of one.
  Sessions that start meanwhile run without an archive.
- **Crashes**: a killed process leaves its lock and partial file; the next session removes
  both once their owner is gone.
- **A damaged archive** (no magic number at its start) is deleted and made again. A JVM that
  cannot map an archive for another reason (another classpath) starts without it and prints
  nothing: HotSpot's default ``-Xshare:auto``.

``SPARK_MLOPS_JVM_CACHE`` names another cache folder, or ``off`` to go without.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from spark_mlops import processes

ENV_VAR = "SPARK_MLOPS_JVM_CACHE"
OFF = "off"
WAIT_FOR_DUMP_SECONDS = 180  # writing the archive at exit takes a few seconds; a hung JVM must not hang Python
DYNAMIC_ARCHIVE_MAGIC = (0xF00BABA8).to_bytes(4, "little")
# The JVM names the archive it maps (or why it cannot) on stdout at info level; keep it quiet.
_QUIET = "-Xlog:cds=off -Xlog:cds+dynamic=off"


@dataclass(frozen=True)
class ArchivePlan:
    """What this process does with the archive: ``use`` an existing one, ``make`` one, or neither."""

    java_options: str = ""
    archive: Path | None = None
    partial: Path | None = None  # set when this process makes the archive
    lock: Path | None = None


def cache_dir() -> Path | None:
    """The folder archives are kept in, or None when turned off."""
    setting = os.environ.get(ENV_VAR, "").strip()
    if setting.lower() == OFF:
        return None
    if setting:
        return Path(setting)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "spark-mlops" / "jvm"


def java_binary() -> Path | None:
    """The java Spark's launcher runs: ``$JAVA_HOME/bin/java``, else the first on PATH (bin/spark-class)."""
    home = os.environ.get("JAVA_HOME")
    found = os.path.join(home, "bin", "java") if home else shutil.which("java")
    return Path(found).resolve() if found and os.path.exists(found) else None


def archive_key(java: Path, spark_home: Path, spark_version: str, extra_class_path: Sequence[Path] = ()) -> str:
    stat = java.stat()
    jars = sorted(os.listdir(spark_home / "jars")) if (spark_home / "jars").is_dir() else []
    extra = [f"{jar}:{jar.stat().st_size}:{jar.stat().st_mtime_ns}" for jar in extra_class_path]
    digest = hashlib.sha256("\0".join([str(java), str(stat.st_size), str(stat.st_mtime_ns), spark_version,
                                       *jars, *extra]).encode())
    return f"spark-{spark_version}-{digest.hexdigest()[:16]}"


def plan(folder: Path | None, java: Path | None, spark_home: Path, spark_version: str,
         extra_class_path: Sequence[Path] = ()) -> ArchivePlan:
    """Use the archive for this JDK, Spark and class path if there is one; else make it, if no
    other process is. ``extra_class_path``: the jars the JVM gets before Spark's own."""
    if folder is None or java is None:
        return ArchivePlan()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        key = archive_key(java, spark_home, spark_version, extra_class_path)
        archive = folder / f"{key}.jsa"
        if archive.is_file():
            if _whole(archive):
                return ArchivePlan(f"-XX:SharedArchiveFile={archive} {_QUIET}", archive)
            archive.unlink()  # a JVM given it would drop the JDK's own archive too, and start slower
        lock = folder / f"{key}.lock"
        if not _take_lock(lock):
            return ArchivePlan()
        partial = folder / f"{key}.{os.getpid()}.partial"
        partial.unlink(missing_ok=True)
        return ArchivePlan(f"-XX:ArchiveClassesAtExit={partial} {_QUIET}", archive, partial, lock)
    except OSError:
        return ArchivePlan()  # an unwritable cache folder costs speed, never the run


def _whole(archive: Path) -> bool:
    """Whether ``archive`` starts with HotSpot's magic number for a dynamic archive, which the JVM
    writes last (``CDS_DYNAMIC_ARCHIVE_MAGIC`` in HotSpot's cds/cds_globals.hpp)."""
    with open(archive, "rb") as data:
        return data.read(4) == DYNAMIC_ARCHIVE_MAGIC


def _take_lock(lock: Path) -> bool:
    """Create ``lock`` holding this pid; a lock whose process is gone is stale and taken over."""
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _lock_owner(lock)
            if owner is not None and processes.alive(owner):
                return False
            if owner is not None:
                (lock.parent / f"{lock.name.removesuffix('.lock')}.{owner}.partial").unlink(missing_ok=True)
            lock.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as out:
            out.write(str(os.getpid()))
        return True
    return False


def _lock_owner(lock: Path) -> int | None:
    try:
        return int(lock.read_text().strip() or "0") or None
    except (OSError, ValueError):
        return None  # unreadable or half-written: treated as stale


def finish_at_exit(made: ArchivePlan, jvm: Callable[[], subprocess.Popen | None]) -> None:
    """When this process makes the archive, complete it when Python exits. ``jvm`` gives the JVM's
    process then (None if it never started: the lock is just released)."""
    if made.partial is not None:
        atexit.register(_finish, made, jvm)


def _quiet_accumulator_server() -> None:
    """The driver JVM keeps a connection to pyspark's accumulator server once Python workers have
    run; when the JVM exits here (Python is still alive, waiting for the archive), that connection
    ends mid-read and socketserver prints an EOFError traceback (pyspark/accumulators.py,
    ``accum_updates``). The JVM is ended on purpose: that error is not reported."""
    from pyspark import SparkContext

    server = getattr(SparkContext._active_spark_context, "_accumulatorServer", None)
    if server is not None:
        server.handle_error = lambda request, client_address: None


def _finish(made: ArchivePlan, jvm_process: Callable[[], subprocess.Popen | None]) -> None:
    try:
        jvm = jvm_process()
        if jvm is not None:
            _quiet_accumulator_server()
            if sys.stderr.isatty():  # the one slow exit, said where someone is watching it
                print(f"spark-mlops: saving Spark's classes for faster starts (once per JDK and Spark) in "
                      f"{made.archive}", file=sys.stderr, flush=True)
            with contextlib.suppress(OSError, ValueError):
                jvm.stdin.close()
            jvm.wait(timeout=WAIT_FOR_DUMP_SECONDS)
            if jvm.returncode == 0 and made.partial.is_file() and made.partial.stat().st_size > 0:
                os.replace(made.partial, made.archive)
    except (OSError, subprocess.SubprocessError):
        pass
    finally:
        made.partial.unlink(missing_ok=True)
        made.lock.unlink(missing_ok=True)
