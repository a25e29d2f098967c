"""The Databricks adapter of the tables (``UnityCatalogNames``): three-level names, quoted part by
part, through ``saveAsTable``, ``spark.table``, ``catalog.tableExists`` and SQL.

Unity Catalog is not reachable from the tests. These run the adapter with the same
``DeltaTables`` calls as production against this machine's real Spark catalog, whose one catalog
is ``spark_catalog``: ``spark_catalog.<schema>.<table>`` is a real three-level name there, and a
managed Delta table is created in the schema's location as Unity Catalog creates it in the
schema's managed location. With reserved keywords enforced, a schema named ``select`` and a table
named ``from`` can be reached only through correct quoting.
"""

from __future__ import annotations

import json

import pytest
from pyspark.errors import ParseException

from spark_mlops.config import ConfigError
from spark_mlops.tables import DeltaTables, UnityCatalogNames, quote_identifier


@pytest.fixture
def reserved_names(spark):
    spark.conf.set("spark.sql.ansi.enforceReservedKeywords", "true")
    spark.sql("CREATE SCHEMA IF NOT EXISTS `select`")
    yield "spark_catalog.select.from"
    spark.sql("DROP SCHEMA IF EXISTS `select` CASCADE")
    spark.conf.unset("spark.sql.ansi.enforceReservedKeywords")


def test_names_are_quoted_part_by_part_and_checked():
    names = UnityCatalogNames()
    assert names.identifier("main.mlops_dev.predictions") == "`main`.`mlops_dev`.`predictions`"
    assert names.identifier("my-catalog.s.t") == "`my-catalog`.`s`.`t`"
    assert quote_identifier("a`b.c") == "`a``b`.`c`"
    assert names.dataset_source("main.ml.t") == {"table_name": "main.ml.t"}
    for bad in ("a.b.c.d", "a/b.c", "x.y`z"):
        with pytest.raises(ConfigError, match="is not a valid name"):
            names.identifier(bad)


def test_every_table_call_works_on_a_quoted_three_level_name(spark, reserved_names):
    name = reserved_names
    with pytest.raises(ParseException):
        spark.table(name)  # unquoted, the reserved words do not parse: the adapter's quoting is what works
    tables = DeltaTables(spark, UnityCatalogNames(), {"job_run_id": "42"})
    assert not tables.exists(name) and tables.version(name) is None

    rows = spark.createDataFrame([("x",), ("y",)], "tag string")
    tables.replace_partition(name, rows, "batch_id", "b1")
    tables.replace_partition(name, rows.limit(1), "batch_id", "b2")
    tables.replace_partition(name, rows, "batch_id", "b2")
    tables.delete_partition(name, "batch_id", "b1")
    assert tables.exists(name) and tables.version(name) == "3"
    assert sorted((r["batch_id"], r["tag"]) for r in tables.read(name).collect()) == [("b2", "x"), ("b2", "y")]
    assert sorted(r["tag"] for r in tables.read(name, version=0).collect()) == ["x", "y"]
    history = tables.history(name)
    assert [r["operation"] for r in history] == ["DELETE", "WRITE", "WRITE", "WRITE"]
    assert [json.loads(r["userMetadata"])["batch_id"] for r in history] == ["b1", "b2", "b2", "b1"]
    assert spark.catalog.tableExists("`spark_catalog`.`select`.`from`")  # a catalog table, not a path

    tables.replace(name, spark.createDataFrame([(1,)], "n int"))
    assert tables.read(name).columns == ["n"] and tables.version(name) == "4"
