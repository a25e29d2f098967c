"""SIGKILL at each point of prepare, score and monitor, against real Delta tables; then the same
step again on the same input repairs the tables.

Each test runs the step as a real process (``tests/crash_points.py``) that stops at one point of
its table writes: while the N-th write is writing data files (``mid-write:N``) or just after its
commit (``after-commit:N``). The whole process group (Python, JVM, Python workers) is then killed
with SIGKILL. The test checks what a reader sees at that moment (the state production can reach:
Delta commits one table at a time), reruns the step in this process, and checks exact row counts,
that earlier batches are untouched, and that the only new files no Delta commit references are
the killed write's own (``VACUUM`` removes those; docs/tables.md).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from spark_mlops.config import build_settings
from spark_mlops.tables import LocalWarehouse, tables_for
from tests.conftest import FIXTURES, REPO_ROOT, released, run_cli

POINTS_TWO_TABLES = ["mid-write:1", "after-commit:1", "mid-write:2", "after-commit:2"]
MARKER_WAIT_S = 600  # a JVM start and a step on a loaded 2-core machine


# ---------------------------------------------------------------- helpers


def killed_at(point: str, args: list[str], tmp_path: Path, written: Path) -> None:
    """Run ``spark-mlops ARGS`` until it reaches ``point``, then SIGKILL its whole process group.
    ``written``: the table the point's write writes; at ``mid-write`` the kill waits for a data file
    of it that no commit references and that was not there before (an earlier write of an empty
    DataFrame leaves such a file too: see :func:`unreferenced`)."""
    before = unreferenced(written)
    marker = tmp_path / f"reached-{point.replace(':', '-')}"
    log = tmp_path / f"killed-{point.replace(':', '-')}.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO_ROOT / "src"), str(REPO_ROOT / "devtools" / "src"), str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tests.crash_points", point, str(marker), "--", *args],
                                cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + MARKER_WAIT_S
        while not marker.exists():
            assert proc.poll() is None, f"the step ended ({proc.returncode}) before {point}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"{point} not reached in {MARKER_WAIT_S} s:\n{log.read_text()}"
            time.sleep(0.2)
        while point.startswith("mid-write") and not unreferenced(written) - before:
            assert time.monotonic() < deadline, f"no data file written before {point}:\n{log.read_text()}"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        _wait_for_group_to_end(proc.pid)


def _wait_for_group_to_end(pgid: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError(f"processes of group {pgid} survived SIGKILL")


def committed_files(table: Path) -> set[str]:
    """Every data file some commit of the table added (any version: time travel may read them)."""
    added = set()
    for commit in (table / "_delta_log").glob("*.json"):
        for line in commit.read_text().splitlines():
            action = json.loads(line)
            if "add" in action:
                added.add(urllib.parse.unquote(action["add"]["path"]))
    return added


def data_files(table: Path) -> set[str]:
    return {str(p.relative_to(table)) for p in table.rglob("*")
            if p.is_file() and "_delta_log" not in p.parts and not p.name.startswith(".")}


def unreferenced(table: Path) -> set[str]:
    """Data files no commit references. Besides a killed write's files, Delta leaves one of these
    at every write of an empty DataFrame (an empty file it does not record): hence the tests
    compare with the files there were before the kill."""
    return data_files(table) - committed_files(table) if table.exists() else set()


def only_delta_tables(warehouse: Path) -> None:
    """Nothing in the warehouse but Delta table folders (data files and ``_delta_log``)."""
    for schema in warehouse.glob("*/*"):
        for entry in schema.iterdir():
            assert entry.is_dir() and (entry / "_delta_log").is_dir(), f"not a Delta table: {entry}"


def last_run_ids(tables, name: str, n: int) -> list[str | None]:
    return [json.loads(r["userMetadata"] or "{}").get("job_run_id") for r in tables.history(name, n)]


# ---------------------------------------------------------------- prepare


@pytest.mark.slow
@pytest.mark.parametrize("point", POINTS_TWO_TABLES)
def test_prepare_killed_at_each_write_point_is_repaired_by_a_rerun(spark, tmp_path, point):
    """prepare writes the quarantine, then the clean table. Before: 1,000 clean rows, no quarantine
    rows. The killed and the rerun prepare read a file with 290 clean and 10 bad rows."""
    settings = build_settings(state_dir=str(tmp_path / "state"))
    common = ["--state-dir", str(settings.state_dir)]
    assert run_cli("prepare", *common, "--input", str(FIXTURES / "diabetes_train.csv"), "--job-run-id", "before") == 0
    tables, warehouse = tables_for(spark, settings), LocalWarehouse(settings.state_dir / "warehouse")
    order = [settings.table_name("quarantine"), settings.table_name("clean")]
    old, new = {order[0]: 0, order[1]: 1000}, {order[0]: 10, order[1]: 290}
    versions = {name: tables.version(name) for name in order}
    earlier = {name: unreferenced(warehouse.location(name)) for name in order}

    bad_rows = str(FIXTURES / "diabetes_with_bad_rows.csv")
    kind, n = point.split(":")
    killed_at(point, ["prepare", *common, "--input", bad_rows, "--job-run-id", "killed"], tmp_path,
              warehouse.location(order[int(n) - 1]))

    for i, name in enumerate(order, start=1):
        written = i < int(n) or (i == int(n) and kind == "after-commit")
        assert tables.read(name).count() == (new if written else old)[name], f"{name} after a kill at {point}"
        assert (tables.version(name) != versions[name]) == written
    stopped = order[int(n) - 1]
    leftovers = unreferenced(warehouse.location(stopped)) - earlier[stopped]
    assert bool(leftovers) == (kind == "mid-write"), leftovers  # the kill came mid-write, or after a commit

    assert run_cli("prepare", *common, "--input", bad_rows, "--job-run-id", "rerun") == 0
    assert tables.read(order[0]).count() == 10 and tables.read(order[1]).count() == 290
    for name in order:
        ids = [r["patient_id"] for r in tables.read(name).select("patient_id").collect()]
        assert len(ids) == len(set(ids))  # every row once
        assert last_run_ids(tables, name, 1) == ["rerun"]
        assert unreferenced(warehouse.location(name)) - earlier[name] == (leftovers if name == stopped else set())
    only_delta_tables(warehouse.root)


# ---------------------------------------------------------------- score


def batch_with_rejects(folder: Path) -> Path:
    """The scoring fixture with its first two rows out of contract (Glucose 999)."""
    header, *rows = (FIXTURES / "scoring_batch.csv").read_text().splitlines()
    bad = [",".join([r.split(",")[0], r.split(",")[1], "999", *r.split(",")[3:]]) for r in rows[:2]]
    path = folder / "with_rejects.csv"
    path.write_text("\n".join([header, *bad, *rows[2:]]) + "\n")
    return path


def batch_counts(tables, name: str) -> dict[str, int]:
    if not tables.exists(name):
        return {}
    return {r["batch_id"]: r["count"] for r in tables.read(name).groupBy("batch_id").count().collect()}


def as_parquet(csv: Path, folder: Path) -> Path:
    """A CSV batch as a typed parquet folder: score does not count it before writing."""
    import pandas as pd

    folder.mkdir()
    frame = pd.read_csv(csv)
    frame.astype({c: "float64" for c in frame.columns if c != "patient_id"}).to_parquet(
        folder / "part-00000.parquet", index=False)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["csv", "parquet"])
@pytest.mark.parametrize("point", POINTS_TWO_TABLES)
def test_score_killed_at_each_write_point_is_repaired_by_a_rerun(spark, trained, tmp_path, point, kind):
    """score writes the batch's rejects, then its predictions. Before: batches b0 and b1 scored
    from the clean fixture (200 rows each, no rejects). The killed and the rerun score give b1
    198 predictions and 2 rejects; b0 is never touched. A CSV batch is counted first (its rejects
    are not written when there are none); a parquet batch is read by the writes only (its rejects
    are always written, of no rows for the clean batches)."""
    view, args = released(trained, "1")
    suffix = f"{kind}_" + point.replace(":", "_").replace("-", "_")
    names = ["--output-table", f"p_{suffix}", "--rejected-table", f"r_{suffix}"]
    output, rejected = view.table_name(f"p_{suffix}"), view.table_name(f"r_{suffix}")
    clean = FIXTURES / "scoring_batch.csv"
    if kind == "parquet":
        clean = as_parquet(clean, tmp_path / "clean")
    for batch in ("b0", "b1"):
        assert run_cli("score", *args, *names, "--input", str(clean), "--batch-id", batch) == 0
    tables, warehouse = tables_for(spark, view), LocalWarehouse(view.state_dir / "warehouse")
    b0 = sorted(tuple(r) for r in tables.read(output).where(F.col("batch_id") == "b0").collect())
    assert len(b0) == 200 and batch_counts(tables, rejected) == {}
    assert tables.exists(rejected) == (kind == "parquet")
    earlier = unreferenced(warehouse.location(output)) | unreferenced(warehouse.location(rejected))

    bad = batch_with_rejects(tmp_path)
    bad = str(as_parquet(bad, tmp_path / "with_rejects") if kind == "parquet" else bad)
    stage, n = point.split(":")
    killed_at(point, ["score", *args, *names, "--input", bad, "--batch-id", "b1", "--job-run-id", "killed"],
              tmp_path, warehouse.location([rejected, output][int(n) - 1]))

    written = [i < int(n) or (i == int(n) and stage == "after-commit") for i in (1, 2)]
    assert batch_counts(tables, rejected) == ({"b1": 2} if written[0] else {})
    assert batch_counts(tables, output) == {"b0": 200, "b1": 198 if written[1] else 200}
    leftovers = unreferenced(warehouse.location([rejected, output][int(n) - 1])) - earlier
    assert bool(leftovers) == (stage == "mid-write"), leftovers

    assert run_cli("score", *args, *names, "--input", bad, "--batch-id", "b1", "--job-run-id", "rerun") == 0
    assert batch_counts(tables, rejected) == {"b1": 2}
    assert batch_counts(tables, output) == {"b0": 200, "b1": 198}
    ids = [r["patient_id"] for r in tables.read(output).where(F.col("batch_id") == "b1").select("patient_id").collect()]
    assert len(set(ids)) == 198  # every scored row exactly once
    assert sorted(tuple(r) for r in tables.read(output).where(F.col("batch_id") == "b0").collect()) == b0
    assert last_run_ids(tables, output, 1) == last_run_ids(tables, rejected, 1) == ["rerun"]
    assert unreferenced(warehouse.location(output)) | unreferenced(warehouse.location(rejected)) == earlier | leftovers
    only_delta_tables(warehouse.root)


@pytest.mark.slow
@pytest.mark.parametrize("point", ["mid-write:1", "after-commit:1"])
def test_score_of_a_batch_checked_clean_killed_at_its_write_is_repaired_by_a_rerun(spark, trained, tmp_path, point):
    """A parquet batch the job run's check-batch counted clean: score deletes the batch's old
    rejects (a DELETE, no DataFrame write) and writes its predictions, its one write. Before: b0
    and b1 scored from the batch with 2 rejects. The killed score and its rerun (the same job run,
    as a task retry) give b1 200 predictions and no rejects; b0 is never touched."""
    view, args = released(trained, "1")
    suffix = "checked_" + point.replace(":", "_").replace("-", "_")
    names = ["--output-table", f"p_{suffix}", "--rejected-table", f"r_{suffix}"]
    output, rejected = view.table_name(f"p_{suffix}"), view.table_name(f"r_{suffix}")
    bad = str(as_parquet(batch_with_rejects(tmp_path), tmp_path / "with_rejects"))
    clean = str(as_parquet(FIXTURES / "scoring_batch.csv", tmp_path / "clean"))
    for batch in ("b0", "b1"):
        assert run_cli("score", *args, *names, "--input", bad, "--batch-id", batch) == 0
    tables, warehouse = tables_for(spark, view), LocalWarehouse(view.state_dir / "warehouse")
    b0 = sorted(tuple(r) for r in tables.read(output).where(F.col("batch_id") == "b0").collect())
    assert batch_counts(tables, rejected) == {"b0": 2, "b1": 2} and batch_counts(tables, output) == {"b0": 198, "b1": 198}
    earlier = unreferenced(warehouse.location(output)) | unreferenced(warehouse.location(rejected))
    assert run_cli("check-batch", *args, "--input", clean, "--job-run-id", "job7") == 0

    job = ["score", *args, *names, "--input", clean, "--batch-id", "b1", "--job-run-id", "job7"]
    killed_at(point, job, tmp_path, warehouse.location(output))
    committed = point.startswith("after-commit")
    assert batch_counts(tables, rejected) == {"b0": 2}  # the DELETE came first
    assert batch_counts(tables, output) == {"b0": 198, "b1": 200 if committed else 198}
    leftovers = unreferenced(warehouse.location(output)) - earlier
    assert bool(leftovers) == (not committed), leftovers

    assert run_cli(*job) == 0
    assert batch_counts(tables, rejected) == {"b0": 2}
    assert batch_counts(tables, output) == {"b0": 198, "b1": 200}
    ids = [r["patient_id"] for r in tables.read(output).where(F.col("batch_id") == "b1").select("patient_id").collect()]
    assert len(set(ids)) == 200  # every scored row exactly once
    assert sorted(tuple(r) for r in tables.read(output).where(F.col("batch_id") == "b0").collect()) == b0
    assert [c["operation"] for c in tables.history(rejected, 1)] == ["DELETE"]  # no rejects write read the batch
    assert last_run_ids(tables, output, 1) == ["job7"]
    assert unreferenced(warehouse.location(output)) | unreferenced(warehouse.location(rejected)) == earlier | leftovers
    only_delta_tables(warehouse.root)


# ---------------------------------------------------------------- monitor


@pytest.mark.slow
@pytest.mark.parametrize("point", ["mid-write:1", "after-commit:1"])
def test_monitor_killed_mid_write_or_after_its_commit_is_repaired_by_a_rerun(spark, trained, tmp_path, point):
    """monitor writes one table. Before: b0 and b1 monitored (run "before"); b1 is then scored
    again from another input, and the killed and the rerun monitor replace b1's rows."""
    view, args = released(trained, "1")
    suffix = point.replace(":", "_").replace("-", "_")
    names = ["--output-table", f"mp_{suffix}", "--rejected-table", f"mr_{suffix}"]
    watched = ["--predictions-table", f"mp_{suffix}", "--rejected-table", f"mr_{suffix}",
               "--monitoring-table", f"m_{suffix}"]
    table = view.table_name(f"m_{suffix}")
    clean, bad = str(FIXTURES / "scoring_batch.csv"), str(batch_with_rejects(tmp_path))
    for batch in ("b0", "b1"):  # the predictions carry the key, not the features: monitor reads them from --input
        assert run_cli("score", *args, *names, "--input", clean, "--batch-id", batch) == 0
        assert run_cli("monitor", *args, *watched, "--input", clean, "--batch-id", batch, "--job-run-id", "before") == 0
    tables, warehouse = tables_for(spark, view), LocalWarehouse(view.state_dir / "warehouse")

    def rows(batch: str) -> list:
        return sorted(tables.read(table).where(F.col("batch_id") == batch).collect(), key=tuple)

    b0, per_batch = rows("b0"), len(rows("b1"))
    assert per_batch > 0
    assert run_cli("score", *args, *names, "--input", bad, "--batch-id", "b1") == 0

    earlier = unreferenced(warehouse.location(table))
    killed_at(point, ["monitor", *args, *watched, "--input", bad, "--batch-id", "b1", "--job-run-id", "killed"], tmp_path,
              warehouse.location(table))

    written = point == "after-commit:1"
    assert {r["job_run_id"] for r in rows("b1")} == {"killed" if written else "before"}
    leftovers = unreferenced(warehouse.location(table)) - earlier
    assert bool(leftovers) == (not written), leftovers

    assert run_cli("monitor", *args, *watched, "--input", bad, "--batch-id", "b1", "--job-run-id", "rerun") == 0
    after = rows("b1")
    assert len(after) == per_batch and {r["job_run_id"] for r in after} == {"rerun"}
    keys = [(r["model_version"], r["metric"], r["feature"]) for r in after]  # each once
    assert len(keys) == len(set(keys))
    assert rows("b0") == b0
    assert unreferenced(warehouse.location(table)) == earlier | leftovers
    only_delta_tables(warehouse.root)
