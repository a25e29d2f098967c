"""Tables: Delta Lake tables, written and read by the same code locally and on Databricks.

:class:`DeltaTables` is the one implementation: a whole-table overwrite, a ``replaceWhere`` of one
batch, a ``DELETE`` of one batch, the table's history and version. What differs between the two
places is only where a name points, one small adapter (:class:`TableNames`):

- **Databricks** (:class:`UnityCatalogNames`): a name is a Unity Catalog table
  ``catalog.schema.table``, quoted part by part; a table written for the first time is a managed
  table in its schema's managed location.
- **Locally** (:class:`LocalWarehouse`): a name maps to a folder,
  ``<state>/warehouse/<catalog>/<schema>/<table>`` (``spark_catalog`` and ``default`` stand in for
  a missing catalog or schema, as in Spark), read and written as the path-based table
  ``delta.`<folder>```. Every process with the same state folder finds the same table under the
  same name, with no metastore to share (an embedded Derby metastore admits one process at a time).

Each write is one Delta commit, atomic on its own (the commit file in the table's ``_delta_log``):
readers see the table before the write or after it. A write killed before its commit leaves data
files no commit references; readers never see them and ``VACUUM`` removes them (retention and
VACUUM are the platform's, docs/tables.md). Delta has no transaction across tables: a step that
writes several tables orders its writes so that rerunning it repairs any crash point (see
``prepare`` and ``scoring``).

Every commit records who made it in its ``userMetadata``: a JSON object with the job run id, git
commit and bundle target where known, and the batch id of a batch write, so ``DESCRIBE HISTORY``
answers which run wrote a version.

Table names are validated (:func:`spark_mlops.config.check_table_name`) before they become
folders or SQL, so no name can point outside the warehouse.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pyspark.sql import DataFrame, Row, SparkSession

from spark_mlops.config import Settings, check_table_name, on_databricks, volume_local_path
from spark_mlops.errors import ConfigError, MlopsError
from spark_mlops.timing import span

_SAFE_VALUE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
# Delta's session setting for the userMetadata of commits made by SQL (DELETE), where there is
# no writer option (docs: delta-batch, "Set user-defined commit metadata").
_USER_METADATA_CONF = "spark.databricks.delta.commitInfo.userMetadata"


def local_path(settings: Settings, path: str) -> str:
    """Map a Unity Catalog volume path onto the local state folder when not on Databricks.

    The mapped path must stay under ``<state>/volumes``: ``/Volumes/../../etc`` is refused.
    """
    if on_databricks() or not path.startswith("/Volumes/"):
        return path
    return volume_local_path(settings.state_dir, path)


def is_path(source: str) -> bool:
    """A source with a slash or a file suffix is a path; anything else is a table name."""
    return "/" in source or source.endswith((".csv", ".parquet")) or source.startswith(("dbfs:", "s3:", "abfss:"))


def check_partition_value(value: str, what: str) -> str:
    if not _SAFE_VALUE.match(value):
        raise ConfigError(f"{what} {value!r}: use 1-128 characters from A-Z a-z 0-9 _ . -")
    return value


def quote_identifier(name: str) -> str:
    """``a.b.c`` -> ```a`.`b`.`c``` (backticks inside a part are doubled, as Spark SQL escapes them)."""
    return ".".join(f"`{part.replace('`', '``')}`" for part in name.split("."))


def sql_string(value: str) -> str:
    """A Spark SQL string literal: backslashes and single quotes escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# ---------------------------------------------------------------- where a name points


class TableNames(Protocol):
    def identifier(self, name: str) -> str:
        """The table in Spark SQL and ``spark.table`` / ``saveAsTable``."""

    def exists(self, spark: SparkSession, name: str) -> bool: ...

    def dataset_source(self, name: str) -> dict[str, str]:
        """Keyword arguments for ``mlflow.data.from_spark`` naming where the table lives."""


@dataclass(frozen=True)
class UnityCatalogNames:
    """Databricks: Unity Catalog tables by their three-level name."""

    def identifier(self, name: str) -> str:
        return quote_identifier(check_table_name(name))

    def exists(self, spark: SparkSession, name: str) -> bool:
        return spark.catalog.tableExists(self.identifier(name))

    def dataset_source(self, name: str) -> dict[str, str]:
        return {"table_name": name}


@dataclass(frozen=True)
class LocalWarehouse:
    """Locally: each name is a path-based Delta table in a folder of the warehouse."""

    root: Path

    def location(self, name: str) -> Path:
        parts = check_table_name(name).split(".")
        return self.root.joinpath(*("spark_catalog", "default")[: 3 - len(parts)], *parts)

    def identifier(self, name: str) -> str:
        return "delta.`" + str(self.location(name)).replace("`", "``") + "`"

    def exists(self, spark: SparkSession, name: str) -> bool:
        from delta.tables import DeltaTable

        return DeltaTable.isDeltaTable(spark, str(self.location(name)))

    def dataset_source(self, name: str) -> dict[str, str]:
        return {"path": str(self.location(name))}

    def names(self) -> list[str]:
        """Every table in the warehouse, as ``catalog.schema.table``."""
        return sorted(".".join(log.parent.relative_to(self.root).parts)
                      for log in self.root.glob("*/*/*/_delta_log") if any(log.glob("*.json")))


# ---------------------------------------------------------------- the tables


class DeltaTables:
    def __init__(self, spark: SparkSession, names: TableNames, provenance: dict[str, str] | None = None):
        self.spark = spark
        self.names = names
        self.provenance = dict(provenance or {})

    # -- reads
    def read(self, name: str, *, version: int | None = None) -> DataFrame:
        """The table now, or as it was at ``version`` (Delta time travel)."""
        target = self.names.identifier(name)
        if version is None:
            return self.spark.table(target)
        return self.spark.sql(f"SELECT * FROM {target} VERSION AS OF {int(version)}")

    def exists(self, name: str) -> bool:
        return self.names.exists(self.spark, name)

    def history(self, name: str, limit: int | None = None) -> list[Row]:
        """``DESCRIBE HISTORY``, newest commit first (docs: delta-utility, "Retrieve Delta table history")."""
        query = f"DESCRIBE HISTORY {self.names.identifier(name)}" + (f" LIMIT {int(limit)}" if limit else "")
        return self.spark.sql(query).collect()

    def version(self, name: str) -> str | None:
        """The table's current Delta version; None if there is no such table."""
        if not self.exists(name):
            return None
        return str(self.history(name, 1)[0]["version"])

    def dataset_source(self, name: str) -> dict[str, str]:
        return self.names.dataset_source(name)

    # -- writes: each is one commit
    def replace(self, name: str, df: DataFrame) -> None:
        """Overwrite the whole table (columns included) with ``df``; creates it if absent."""
        writer = df.write.format("delta").mode("overwrite").option("overwriteSchema", "true")
        writer.option("userMetadata", self._commit_info()).saveAsTable(self.names.identifier(name))

    def replace_partition(self, name: str, df: DataFrame, column: str, value: str, *,
                          metrics: bool = True) -> dict[str, int]:
        """Replace the rows with ``column == value`` by ``df`` (which has no ``column``): Delta's
        ``replaceWhere``, one commit, other batches untouched. Creates the table, partitioned by
        ``column``, if absent. Returns the commit's operation metrics (:meth:`commit_metrics`), or
        ``{}`` with ``metrics=False`` (a caller that knows what it wrote skips reading the history)."""
        from pyspark.sql import functions as F

        check_partition_value(value, column)
        out = df.withColumn(column, F.lit(value))
        if self.exists(name):
            self._check_columns(name, out)
        commit_info = self._commit_info(value)
        # replaceWhere is a SQL predicate: the column is quoted and the value escaped.
        (out.write.format("delta").mode("overwrite").partitionBy(column)
         .option("replaceWhere", f"{quote_identifier(column)} = {sql_string(value)}")
         .option("userMetadata", commit_info)
         .saveAsTable(self.names.identifier(name)))
        return self.commit_metrics(name, commit_info) if metrics else {}

    def commit_metrics(self, name: str, user_metadata: str) -> dict[str, int]:
        """What the newest commit made with ``user_metadata`` wrote, as Delta recorded it in the
        commit itself: ``DESCRIBE HISTORY``'s ``operationMetrics`` (for a write ``numOutputRows``,
        ``numFiles``, ``numOutputBytes``, and ``numRemovedFiles`` for a ``replaceWhere``; docs:
        delta-utility, "Operation metrics keys"). The rows a write wrote, without reading them back."""
        with span("delta.commit_metrics"):
            history = self.history(name, 10)
        for commit in history:  # newest first: a later writer of this table is skipped
            if commit["userMetadata"] == user_metadata:
                return {k: int(v) for k, v in (commit["operationMetrics"] or {}).items() if v.isdigit()}
        raise MlopsError(f"table {name}: no commit with userMetadata {user_metadata} among its 10 newest")


    def delete_partition(self, name: str, column: str, value: str) -> None:
        """Remove the rows with ``column == value``; an absent table stays absent, and Delta makes
        no commit when no row matches. Deleting by a partition column drops whole files, no rewrite."""
        check_partition_value(value, column)
        if not self.exists(name):
            return
        previous = self.spark.conf.get(_USER_METADATA_CONF, None)
        self.spark.conf.set(_USER_METADATA_CONF, self._commit_info(value))
        try:  # docs: sql-ref-syntax-dml-delete-from
            self.spark.sql(f"DELETE FROM {self.names.identifier(name)} "
                           f"WHERE {quote_identifier(column)} = {sql_string(value)}")
        finally:
            if previous is None:
                self.spark.conf.unset(_USER_METADATA_CONF)
            else:
                self.spark.conf.set(_USER_METADATA_CONF, previous)

    def _commit_info(self, batch_id: str | None = None) -> str:
        return json.dumps({**self.provenance, **({"batch_id": batch_id} if batch_id else {})}, sort_keys=True)

    def _check_columns(self, name: str, out: DataFrame) -> None:
        """One line instead of Delta's schema-mismatch error (and the stack trace it logs) when a
        batch does not have the table's columns."""
        table = {f.name: f.dataType.simpleString() for f in self.read(name).schema}
        batch = {f.name: f.dataType.simpleString() for f in out.schema}
        if table != batch:
            raise MlopsError(
                f"table {name}: the new batch's columns {[f'{n} {t}' for n, t in batch.items()]} do not match "
                f"the table's {[f'{n} {t}' for n, t in table.items()]}; write to another table or drop this one"
            )


def rows_written(metrics: dict[str, int]) -> int:
    """The rows a write committed, from its operation metrics: Delta records no ``numOutputRows``
    for a write that added no file (``numFiles`` 0), which wrote no row."""
    if "numOutputRows" in metrics:
        return metrics["numOutputRows"]
    if metrics.get("numFiles") == 0:
        return 0
    raise MlopsError(f"the commit's operation metrics {metrics} do not say how many rows it wrote")


def tables_for(spark: SparkSession, settings: Settings) -> DeltaTables:
    names = UnityCatalogNames() if on_databricks() else LocalWarehouse(settings.state_dir / "warehouse")
    return DeltaTables(spark, names, settings.run_tags())
