"""Tables are Delta tables: the one implementation (``DeltaTables``) with the local adapter
(``LocalWarehouse``), on real Delta Lake in this machine's Spark session. Names that cannot
escape the warehouse, overwrite, replaceWhere per batch, DELETE of a batch, history with each
commit's provenance, time travel, and tables found by name from another process.

The Databricks adapter has its own tests (test_unity_catalog_tables.py); SIGKILL at each write
point of the steps is in test_crashes.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from spark_mlops.config import build_settings, check_table_name
from spark_mlops.errors import ConfigError, MlopsError
from spark_mlops.tables import (
    DeltaTables,
    LocalWarehouse,
    UnityCatalogNames,
    local_path,
    quote_identifier,
    sql_string,
    tables_for,
)
from tests.conftest import REPO_ROOT, run_cli

USER_METADATA_CONF = "spark.databricks.delta.commitInfo.userMetadata"


@pytest.fixture
def warehouse(tmp_path) -> LocalWarehouse:
    return LocalWarehouse(tmp_path / "warehouse")


@pytest.fixture
def tables(spark, warehouse) -> DeltaTables:
    return DeltaTables(spark, warehouse, {"job_run_id": "run-1"})


def frame(spark, *tags: str):
    return spark.createDataFrame([(t,) for t in tags], "tag string")


def by_batch(tables, name) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for row in tables.read(name).collect():
        out.setdefault(row["batch_id"], []).append(row["tag"])
    return {k: sorted(v) for k, v in out.items()}


def metadata(row) -> dict:
    return json.loads(row["userMetadata"])


# ---------------------------------------------------------------- names


def test_each_name_is_one_folder_of_the_warehouse(tmp_path):
    root = tmp_path / "warehouse"
    names = LocalWarehouse(root)
    assert names.location("t") == root / "spark_catalog" / "default" / "t"
    assert names.location("mlops.t") == root / "spark_catalog" / "mlops" / "t"
    assert names.location("main.mlops.t") == root / "main" / "mlops" / "t"
    assert names.location("spark_catalog.default.t") == names.location("t")  # Spark's own defaults
    assert names.identifier("main.mlops.t") == f"delta.`{root}/main/mlops/t`"
    assert LocalWarehouse(tmp_path / "a`b").identifier("t").startswith(f"delta.`{tmp_path}/a``b/")
    with pytest.raises(ConfigError, match="is not a valid name"):
        names.location("../../etc")


def test_tables_for_picks_the_local_warehouse_or_unity_catalog(spark, tmp_path, monkeypatch):
    settings = build_settings(state_dir=str(tmp_path / "state"), job_run_id="77", git_commit="abc")
    local = tables_for(spark, settings)
    assert local.names == LocalWarehouse(tmp_path / "state" / "warehouse")
    assert local.provenance == {"job_run_id": "77", "git_commit": "abc"}
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "18.0")
    assert tables_for(spark, settings).names == UnityCatalogNames()


# ---------------------------------------------------------------- Delta behaviour


def test_replace_overwrites_the_whole_table_and_earlier_versions_stay_readable(spark, tables, warehouse):
    assert not tables.exists("mlops.t") and tables.version("mlops.t") is None
    tables.replace("mlops.t", frame(spark, "a", "b", "c"))
    tables.replace("mlops.t", spark.createDataFrame([(1, "x")], "n int, other string"))
    assert [tuple(r) for r in tables.read("mlops.t").collect()] == [(1, "x")]  # columns replaced too
    assert tables.version("mlops.t") == "1"
    assert sorted(r["tag"] for r in tables.read("mlops.t", version=0).collect()) == ["a", "b", "c"]  # time travel
    history = tables.history("mlops.t")
    assert [r["version"] for r in history] == [1, 0]
    assert [metadata(r) for r in history] == [{"job_run_id": "run-1"}] * 2
    assert warehouse.names() == ["spark_catalog.mlops.t"]


def test_a_batch_write_replaces_its_own_rows_only(spark, tables, warehouse):
    tables.replace_partition("d.out", frame(spark, "x", "y", "z"), "batch_id", "b1")
    tables.replace_partition("d.out", frame(spark, "p", "q"), "batch_id", "b2")
    tables.replace_partition("d.out", frame(spark, "again"), "batch_id", "b1")
    assert by_batch(tables, "d.out") == {"b1": ["again"], "b2": ["p", "q"]}
    history = tables.history("d.out")
    assert [metadata(r)["batch_id"] for r in history] == ["b1", "b2", "b1"]  # newest first
    assert {metadata(r)["job_run_id"] for r in history} == {"run-1"}
    assert history[0]["operationParameters"]["predicate"] == "`batch_id` = 'b1'"  # replaceWhere
    detail = spark.sql(f"DESCRIBE DETAIL {warehouse.identifier('d.out')}").first()
    assert detail["partitionColumns"] == ["batch_id"] and detail["format"] == "delta"


def test_deleting_a_batch_removes_its_rows_only_and_an_absent_table_stays_absent(spark, tables):
    tables.delete_partition("d.rej", "batch_id", "b1")
    assert not tables.exists("d.rej")
    tables.replace_partition("d.rej", frame(spark, "x"), "batch_id", "b1")
    tables.replace_partition("d.rej", frame(spark, "y"), "batch_id", "b2")
    tables.delete_partition("d.rej", "batch_id", "b1")
    assert by_batch(tables, "d.rej") == {"b2": ["y"]}
    last = tables.history("d.rej", 1)[0]
    assert last["operation"] == "DELETE" and metadata(last) == {"job_run_id": "run-1", "batch_id": "b1"}
    assert spark.conf.get(USER_METADATA_CONF, None) is None  # the session setting is put back
    tables.delete_partition("d.rej", "batch_id", "b1")
    assert tables.version("d.rej") == "2"  # nothing matched: no commit
    tables.delete_partition("d.rej", "batch_id", "b2")
    assert tables.read("d.rej").count() == 0 and tables.read("d.rej").columns == ["tag", "batch_id"]


def test_a_batch_with_other_columns_is_refused_in_one_line_and_the_table_is_unchanged(spark, tables):
    tables.replace_partition("d.out", frame(spark, "x"), "batch_id", "b1")
    with pytest.raises(MlopsError) as err:
        tables.replace_partition("d.out", spark.createDataFrame([(1,)], "tag int"), "batch_id", "b2")
    assert str(err.value) == ("table d.out: the new batch's columns ['tag int', 'batch_id string'] do not match the "
                              "table's ['tag string', 'batch_id string']; write to another table or drop this one")
    assert tables.version("d.out") == "0"


@pytest.mark.slow
def test_a_table_is_found_by_name_from_another_process(spark, tmp_path):
    """No metastore: another process (its own JVM) finds the table by name in the same state
    folder, adds a batch, and this process reads it."""
    settings = build_settings(state_dir=str(tmp_path / "state"))
    tables = tables_for(spark, settings)
    tables.replace_partition("mlops.shared", frame(spark, "here"), "batch_id", "b1")
    other = textwrap.dedent("""
        import sys
        from spark_mlops.config import build_settings
        from spark_mlops.spark import get_spark
        from spark_mlops.tables import tables_for
        settings = build_settings(state_dir=sys.argv[1], job_run_id="other")
        spark = get_spark(settings)
        tables = tables_for(spark, settings)
        print(tables.read("mlops.shared").count())
        tables.replace_partition("mlops.shared", spark.createDataFrame([("there",)], "tag string"), "batch_id", "b2")
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO_ROOT / "src"), str(REPO_ROOT / "devtools" / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", other, str(settings.state_dir)], env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1"]
    assert by_batch(tables, "mlops.shared") == {"b1": ["here"], "b2": ["there"]}
    assert metadata(tables.history("mlops.shared", 1)[0]).items() >= {"job_run_id": "other", "batch_id": "b2"}.items()


# ---------------------------------------------------------------- names and paths that are refused


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
