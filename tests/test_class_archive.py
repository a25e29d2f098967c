"""The JVM class archive: one maker per JDK and Spark build, stale makers cleared, damaged archives
made again, and a made archive mapped by the next JVM."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from spark_mlops_dev import class_archive

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def spark_home(tmp_path) -> Path:
    home = tmp_path / "spark"
    (home / "jars").mkdir(parents=True)
    (home / "jars" / "spark-core.jar").write_bytes(b"")
    return home


@pytest.fixture
def java() -> Path:
    found = class_archive.java_binary()
    assert found is not None, "Spark needs java; the test machine has none"
    return found


def dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    return int(done.stdout)


def test_the_first_session_makes_the_archive_and_a_concurrent_one_goes_without(tmp_path, java, spark_home):
    folder = tmp_path / "cache"
    first = class_archive.plan(folder, java, spark_home, "4.1.0")
    assert first.partial is not None and first.partial.parent == folder
    assert f"-XX:ArchiveClassesAtExit={first.partial}" in first.java_options
    assert first.lock.read_text() == str(os.getpid())
    assert class_archive.plan(folder, java, spark_home, "4.1.0") == class_archive.ArchivePlan()

    first.archive.write_bytes(class_archive.DYNAMIC_ARCHIVE_MAGIC + b"the rest")
    first.lock.unlink()
    using = class_archive.plan(folder, java, spark_home, "4.1.0")
    assert using.partial is None
    assert using.java_options.startswith(f"-XX:SharedArchiveFile={first.archive} ")


def test_another_spark_build_is_another_archive(tmp_path, java, spark_home):
    key = class_archive.archive_key(java, spark_home, "4.1.0")
    assert class_archive.archive_key(java, spark_home, "4.1.1") != key
    (spark_home / "jars" / "extra.jar").write_bytes(b"")
    assert class_archive.archive_key(java, spark_home, "4.1.0") != key


def test_jars_before_sparks_own_are_part_of_the_key(tmp_path, java, spark_home):
    """A JVM maps an archive only with the class path it was made with: Delta's jars (another
    version, or the same file replaced) are another archive."""
    delta = tmp_path / "delta-spark.jar"
    delta.write_bytes(b"one")
    key = class_archive.archive_key(java, spark_home, "4.1.0", [delta])
    assert key != class_archive.archive_key(java, spark_home, "4.1.0")
    renamed = tmp_path / "delta-spark-2.jar"
    renamed.write_bytes(b"one")
    assert key != class_archive.archive_key(java, spark_home, "4.1.0", [renamed])
    delta.write_bytes(b"other")
    assert class_archive.archive_key(java, spark_home, "4.1.0", [delta]) != key
    made = class_archive.plan(tmp_path / "cache", java, spark_home, "4.1.0", [delta])
    assert made.archive.name == f"{class_archive.archive_key(java, spark_home, '4.1.0', [delta])}.jsa"


def test_a_dead_makers_lock_and_partial_file_are_cleared(tmp_path, java, spark_home):
    folder = tmp_path / "cache"
    folder.mkdir()
    key = class_archive.archive_key(java, spark_home, "4.1.0")
    gone = dead_pid()
    (folder / f"{key}.lock").write_text(str(gone))
    leftover = folder / f"{key}.{gone}.partial"
    leftover.write_bytes(b"half an archive")

    taken = class_archive.plan(folder, java, spark_home, "4.1.0")
    assert taken.partial == folder / f"{key}.{os.getpid()}.partial"
    assert taken.lock.read_text() == str(os.getpid())
    assert not leftover.exists()


def test_a_damaged_archive_is_made_again(tmp_path, java, spark_home):
    folder = tmp_path / "cache"
    folder.mkdir()
    damaged = folder / f"{class_archive.archive_key(java, spark_home, '4.1.0')}.jsa"
    damaged.write_bytes(b"\0" * 4096)  # the JVM writes the header, with the magic number, last
    again = class_archive.plan(folder, java, spark_home, "4.1.0")
    assert again.archive == damaged and again.partial is not None
    assert not damaged.exists()


def test_turned_off_or_unwritable_means_no_archive_and_no_error(tmp_path, monkeypatch, java, spark_home):
    monkeypatch.setenv(class_archive.ENV_VAR, "off")
    assert class_archive.cache_dir() is None
    assert class_archive.plan(None, java, spark_home, "4.1.0") == class_archive.ArchivePlan()
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    assert class_archive.plan(blocked / "cache", java, spark_home, "4.1.0") == class_archive.ArchivePlan()


# A process that starts a local session and prints the archives its JVM has mapped.
_MAPPED = textwrap.dedent("""
    import sys
    from pathlib import Path
    from pyspark import SparkContext
    from spark_mlops.config import build_settings
    from spark_mlops.spark import get_spark
    spark = get_spark(build_settings(state_dir=sys.argv[1]))
    # A job through Python workers: they report to the driver's accumulator server, whose
    # connections must not be cut mid-read when the archive is written at exit.
    assert spark.sparkContext.parallelize(range(100), 2).map(lambda x: x * 2).sum() == 9900
    maps = Path(f"/proc/{SparkContext._gateway.proc.pid}/maps").read_text().splitlines()
    print("\\n".join(sorted({line.split()[-1] for line in maps if line.endswith(".jsa")})))
""")


def _start_session(state: Path, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, class_archive.ENV_VAR: str(cache),
           "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "src"), str(REPO_ROOT / "devtools" / "src")])}
    return subprocess.run([sys.executable, "-c", _MAPPED, str(state)], env=env, capture_output=True, text=True,
                          timeout=600, check=False)


@pytest.mark.slow
def test_a_made_archive_is_mapped_by_the_next_jvm(tmp_path):
    cache = tmp_path / "cache"
    made = _start_session(tmp_path / "state", cache)
    assert made.returncode == 0, made.stderr
    assert made.stderr == ""  # no traceback while the archive is written at exit
    archives = list(cache.glob("*.jsa"))
    assert len(archives) == 1 and archives[0].stat().st_size > 1_000_000
    assert sorted(p.name for p in cache.iterdir()) == [archives[0].name]  # no lock, no partial file left

    used = _start_session(tmp_path / "state", cache)
    assert used.returncode == 0, used.stderr
    assert str(archives[0]) in used.stdout.splitlines()
    assert used.stderr == ""
