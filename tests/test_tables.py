"""Local tables: names that cannot escape the warehouse, and one-step commits that survive SIGKILL.

The crash tests run the file side of a commit (``LocalTableStore``, no Spark) in a subprocess
that pauses at a named step (``SPARK_MLOPS_TEST_PAUSE_AT``, test-only) and is then killed with
SIGKILL; the readers are the real ``LocalParquetTables.read`` in this process's Spark session.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from spark_mlops.config import build_settings, check_table_name
from spark_mlops.errors import ConfigError
from spark_mlops.tables import (
    COMMIT_STEPS,
    PAUSE_ENV,
    LocalParquetTables,
    local_path,
    quote_identifier,
    sql_string,
)
from tests.conftest import REPO_ROOT, run_cli
from tests.table_writer import write_and_commit

TABLES = ("d.clean", "d.quarantine")


def write(warehouse, tag, *, partition="") -> None:
    write_and_commit(str(warehouse), tag, partition, *TABLES)


def start_write_and_pause(warehouse, tag, *, partition="", pause: str) -> subprocess.Popen:
    """The same write in a subprocess that stops at ``pause`` (it prints "paused at <step>")."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "src"), str(REPO_ROOT)]), PAUSE_ENV: pause}
    code = "import sys; from tests.table_writer import write_and_commit; write_and_commit(*sys.argv[1:])"
    proc = subprocess.Popen([sys.executable, "-c", code, str(warehouse), tag, partition, *TABLES],
                            env=env, stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    assert proc.stdout.readline().strip() == f"paused at {pause}"
    return proc


def tags(tables: LocalParquetTables) -> dict[tuple[str, str], set[str]]:
    """(table, partition or '') -> the tags found there, read through the real reader."""
    frames = [tables.read(name) for name in TABLES]
    df = frames[0].unionByName(frames[1])
    out: dict[tuple[str, str], set[str]] = {}
    for row in df.collect():
        out.setdefault((row["table"], row["batch_id"] if "batch_id" in df.columns else ""), set()).add(row["tag"])
    return out


@pytest.mark.slow
@pytest.mark.parametrize("partition", ["", "b1"], ids=["whole-tables", "partitions"])
@pytest.mark.parametrize("step", COMMIT_STEPS)
def test_a_write_killed_at_any_step_leaves_the_old_or_the_new_set_and_the_next_write_cleans_up(
    spark, tmp_path, step, partition
):
    warehouse = tmp_path / "state" / "warehouse"
    write(warehouse, "old", partition=partition)
    if partition:
        write(warehouse, "other", partition="b0")  # a second batch that must survive every write
    proc = start_write_and_pause(warehouse, "new", partition=partition, pause=step)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    tables = LocalParquetTables(spark, tmp_path / "state")
    expected = "new" if step == "after-commit" else "old"
    manifest = json.loads((warehouse / "_manifest.json").read_text())["tables"]
    assert manifest["d.clean"]["version"] == manifest["d.quarantine"]["version"]  # one commit, both tables
    found = tags(tables)
    for name in TABLES:
        assert found[(name, partition)] == {expected}, f"after a kill at {step}: {found}"
        if partition:
            assert found[(name, "b0")] == {"other"}
    referenced = {e[v] for e in manifest.values() for v in ("version", "previous") if e.get(v)}
    leftovers = [p.name for p in warehouse.glob("d.db/*/*") if p.name not in referenced]
    if step != "after-commit":
        assert leftovers, "the killed write left nothing behind: the test did not stop it mid-write"

    write(warehouse, "next", partition=partition)
    found = tags(tables)
    for name in TABLES:
        assert found[(name, partition)] == {"next"}
        children = sorted(p.name for p in (warehouse / "d.db" / name.split(".")[1]).iterdir())
        assert not [c for c in children if c.startswith("_staging-")], children
        assert len(children) == 2, children  # the current version and the previous one, nothing else
    assert not list(warehouse.glob("_manifest.json.tmp-*"))


@pytest.mark.parametrize("name", ["x./abs/dir", "../../x", "a/b", "a..b", "a.b.c.d", "", "a b", "a`b", "a\\b"])
def test_bad_table_names_are_refused(name):
    with pytest.raises(ConfigError, match="table name"):
        check_table_name(name)


@pytest.mark.parametrize("name", ["clean", "mlops.clean", "main.mlops_dev.predictions", "my-catalog.s.t"])
def test_unity_catalog_names_are_accepted(name):
    assert check_table_name(name) == name


@pytest.mark.parametrize("flag", ["--clean-table", "--quarantine-table"])
@pytest.mark.parametrize("name", ["x./abs/dir", "../../x"])
def test_a_bad_table_name_exits_2_and_touches_nothing(tmp_path, capsys, flag, name):
    victim = tmp_path / "abs" / "dir"
    victim.mkdir(parents=True)
    (victim / "keep.txt").write_text("precious")
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    state = tmp_path / "state"
    code = run_cli("prepare", "--state-dir", str(state), "--input", str(REPO_ROOT / "fixtures/diabetes_train.csv"),
                   flag, name.replace("/abs/dir", str(victim)))
    err = capsys.readouterr().err
    assert code == ConfigError.exit_code
    assert err.count("\n") == 1 and "is not a valid name" in err
    assert (victim / "keep.txt").read_text() == "precious"
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # not even the state folder


def test_catalog_and_schema_are_checked_when_settings_are_built(tmp_path):
    with pytest.raises(ConfigError, match="schema '../x'"):
        build_settings(state_dir=str(tmp_path), schema="../x")
    with pytest.raises(ConfigError, match="catalog 'a/b'"):
        build_settings(state_dir=str(tmp_path), catalog="a/b")


def test_volume_paths_stay_under_the_state_folder(tmp_path):
    settings = build_settings(state_dir=str(tmp_path))
    assert local_path(settings, "/Volumes/main/ml/raw/x.csv") == str(tmp_path / "volumes/main/ml/raw/x.csv")
    for escape in ("/Volumes/../../etc/passwd", "/Volumes/main/../../../x"):
        with pytest.raises(ConfigError, match="leaves /Volumes/"):
            local_path(settings, escape)
        with pytest.raises(ConfigError, match="leaves /Volumes/"):
            build_settings(state_dir=str(tmp_path), dfs_tmpdir=escape)


def test_sql_quoting():
    assert quote_identifier("main.ml.t") == "`main`.`ml`.`t`"
    assert quote_identifier("a`b") == "`a``b`"
    assert sql_string("it's \\ here") == "'it\\'s \\\\ here'"


def test_committed_tables_can_be_registered_and_queried_by_name(spark, tmp_path):
    warehouse = tmp_path / "state" / "warehouse"
    write(warehouse, "one", partition="b0")
    write(warehouse, "two", partition="b1")
    tables = LocalParquetTables(spark, tmp_path / "state")
    assert tables.register_existing() == ["d.clean", "d.quarantine"]
    rows = spark.sql("SELECT batch_id, tag FROM d.clean").collect()
    assert sorted({(r["batch_id"], r["tag"]) for r in rows}) == [("b0", "one"), ("b1", "two")]


def test_a_partition_write_can_be_skipped_and_then_clears_only_that_partition(spark, tmp_path):
    """write_if: a table whose test is false is not created when absent, and when present loses
    only the rows of this partition, in the same commit as the tables that were written."""
    tables = LocalParquetTables(spark, tmp_path / "state")
    frame = spark.createDataFrame([("x",)], "tag string")

    def write(batch, rejects):
        tables.replace_partitions({"d.out": frame, "d.rej": frame}, "batch_id", batch,
                                  write_if={"d.rej": lambda: rejects})

    write("b1", rejects=False)
    assert tables.exists("d.out") and not tables.exists("d.rej")
    write("b1", rejects=True)
    write("b2", rejects=True)
    write("b1", rejects=False)
    assert [r["batch_id"] for r in tables.read("d.rej").collect()] == ["b2"]
    assert sorted(r["batch_id"] for r in tables.read("d.out").collect()) == ["b1", "b2"]
    assert tables.version("d.out") == tables.version("d.rej")
    write("b2", rejects=False)
    assert tables.read("d.rej").count() == 0 and tables.read("d.rej").columns == ["tag", "batch_id"]
