"""Table and file I/O: the only module that knows where tables physically live.

- On Databricks tables are Unity Catalog Delta tables (three-part names); Delta makes each
  overwrite and each ``replaceWhere`` atomic.
- Locally (no Delta jars here) a table ``catalog.schema.t`` is a parquet folder
  ``<state>/warehouse/catalog_schema.db/t`` registered as ``catalog_schema.t`` in Spark's
  catalog. Writes go to a staging folder first and are swapped in with a directory rename,
  so a failed write leaves the previous table (or batch partition) intact.
- ``/Volumes/<catalog>/<schema>/<volume>/…`` paths map to ``<state>/volumes/…`` locally.
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from pathlib import Path
from typing import Protocol

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType

from spark_mlops.config import Settings, on_databricks
from spark_mlops.errors import ConfigError, MlopsError

_SAFE_VALUE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_SIDECAR = "_table.json"  # leading underscore: Spark's file listing ignores it


class Tables(Protocol):
    def read(self, name: str) -> DataFrame: ...

    def exists(self, name: str) -> bool: ...

    def dataset_source(self, name: str) -> dict[str, str]:
        """Keyword arguments for ``mlflow.data.from_spark`` naming where the table lives."""

    def replace(self, writes: dict[str, DataFrame]) -> None:
        """Overwrite each table with its DataFrame; a failure leaves every table as it was."""

    def replace_partition(self, name: str, df: DataFrame, column: str, value: str) -> None:
        """Replace the rows with ``column == value`` by ``df`` (which has no ``column``)."""


def tables_for(spark: SparkSession, settings: Settings) -> Tables:
    return DeltaTables(spark) if on_databricks() else LocalParquetTables(spark, settings.state_dir)


def local_path(settings: Settings, path: str) -> str:
    """Map a Unity Catalog volume path onto the local state folder when not on Databricks."""
    if not on_databricks() and path.startswith("/Volumes/"):
        return str(settings.state_dir / "volumes" / path[len("/Volumes/") :])
    return path


def is_path(source: str) -> bool:
    """A source with a slash or a file suffix is a path; anything else is a table name."""
    return "/" in source or source.endswith((".csv", ".parquet")) or source.startswith(("dbfs:", "s3:", "abfss:"))


def check_partition_value(value: str, what: str) -> str:
    if not _SAFE_VALUE.match(value):
        raise ConfigError(f"{what} {value!r}: use 1-128 characters from A-Z a-z 0-9 _ . -")
    return value


class DeltaTables:
    def __init__(self, spark: SparkSession):
        self.spark = spark

    def read(self, name: str) -> DataFrame:
        return self.spark.table(name)

    def exists(self, name: str) -> bool:
        return self.spark.catalog.tableExists(name)

    def dataset_source(self, name: str) -> dict[str, str]:
        return {"table_name": name}

    def replace(self, writes: dict[str, DataFrame]) -> None:
        # Each Delta overwrite is atomic on its own.
        for name, df in writes.items():
            df.write.format("delta").mode("overwrite").option("overwriteSchema", "true").saveAsTable(name)

    def replace_partition(self, name: str, df: DataFrame, column: str, value: str) -> None:
        from pyspark.sql import functions as F

        out = df.withColumn(column, F.lit(value))
        if not self.exists(name):
            out.write.format("delta").partitionBy(column).saveAsTable(name)
            return
        (
            out.write.format("delta")
            .mode("overwrite")
            .option("replaceWhere", f"{column} = '{value}'")
            .saveAsTable(name)
        )


class LocalParquetTables:
    def __init__(self, spark: SparkSession, state_dir: Path):
        self.spark = spark
        self.warehouse = state_dir / "warehouse"

    # -- naming
    @staticmethod
    def local_name(name: str) -> tuple[str, str]:
        parts = name.split(".")
        if len(parts) == 1:
            return "default", parts[0]
        return "_".join(parts[:-1]), parts[-1]

    def _path(self, name: str) -> Path:
        db, table = self.local_name(name)
        return self.warehouse / f"{db}.db" / table

    # -- reads
    def exists(self, name: str) -> bool:
        return (self._path(name) / _SIDECAR).exists()

    def dataset_source(self, name: str) -> dict[str, str]:
        # Not table_name: MLflow would run DESCRIBE DETAIL, which only Delta tables answer.
        return {"path": str(self._path(name))}

    def read(self, name: str) -> DataFrame:
        """Read by path with the recorded schema: no catalog round trips, no partition type guessing."""
        path = self._path(name)
        if not self.exists(name):
            db, table = self.local_name(name)
            raise MlopsError(f"table {name} does not exist (local table {db}.{table}, expected at {path})")
        return self.spark.read.schema(_full_schema(_read_sidecar(path))).parquet(str(path))

    # -- writes
    def replace(self, writes: dict[str, DataFrame]) -> None:
        staged: list[tuple[str, Path, Path]] = []
        try:
            for name, df in writes.items():
                target = self._path(name)
                target.parent.mkdir(parents=True, exist_ok=True)
                staging = target.parent / f"_staging-{target.name}-{uuid.uuid4().hex[:8]}"
                df.write.parquet(str(staging))
                _write_sidecar(staging, df.schema, [])
                staged.append((name, staging, target))
        except BaseException:
            for _, staging, _ in staged:
                shutil.rmtree(staging, ignore_errors=True)
            raise
        for _, staging, target in staged:
            _swap(staging, target)

    def replace_partition(self, name: str, df: DataFrame, column: str, value: str) -> None:
        check_partition_value(value, column)
        target = self._path(name)
        if self.exists(name):
            existing = _read_sidecar(target)
            if existing["schema"] != json.loads(df.schema.json()) or existing["partition_by"] != [column]:
                raise MlopsError(
                    f"table {name}: the new batch's columns {df.columns} do not match the table's "
                    f"{[f['name'] for f in existing['schema']['fields']]} (partitioned by "
                    f"{existing['partition_by']}); write to another table or drop {target}"
                )
        target.mkdir(parents=True, exist_ok=True)
        staging = target / f"_staging-{uuid.uuid4().hex[:8]}"
        try:
            df.write.parquet(str(staging))
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _swap(staging, target / f"{column}={value}")
        if not self.exists(name):
            _write_sidecar(target, df.schema, [column])

    # -- catalog
    def register_existing(self) -> list[str]:
        """Register every local table in Spark's (in-memory) catalog, so that it can be queried
        by name, e.g. ``spark.table("main_mlops_dev.predictions")``. Returns the names."""
        names = []
        for sidecar in sorted(self.warehouse.glob(f"*.db/*/{_SIDECAR}")):
            table_dir = sidecar.parent
            db = table_dir.parent.name[: -len(".db")]
            self._register(table_dir, db, table_dir.name)
            names.append(f"{db}.{table_dir.name}")
        return names

    def _register(self, path: Path, db: str, table: str) -> None:
        qualified = f"`{db}`.`{table}`"
        meta = _read_sidecar(path)
        parts = meta["partition_by"]
        ddl = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in _full_schema(meta).fields)
        self.spark.sql(f"CREATE DATABASE IF NOT EXISTS `{db}` LOCATION '{path.parent}'")
        self.spark.sql(f"DROP TABLE IF EXISTS {qualified}")
        partitioned = f" PARTITIONED BY ({', '.join(f'`{c}`' for c in parts)})" if parts else ""
        self.spark.sql(f"CREATE TABLE {qualified} ({ddl}) USING parquet{partitioned} LOCATION '{path}'")
        if parts:
            self.spark.sql(f"ALTER TABLE {qualified} RECOVER PARTITIONS")


def _full_schema(meta: dict) -> StructType:
    """The data columns plus the partition columns (always strings here)."""
    from pyspark.sql.types import StringType, StructField

    schema = StructType.fromJson(meta["schema"])
    for column in meta["partition_by"]:
        if column not in schema.fieldNames():
            schema = schema.add(StructField(column, StringType()))
    return schema


def _write_sidecar(folder: Path, schema: StructType, partition_by: list[str]) -> None:
    (folder / _SIDECAR).write_text(json.dumps({"schema": json.loads(schema.json()), "partition_by": partition_by}))


def _read_sidecar(folder: Path) -> dict:
    return json.loads((folder / _SIDECAR).read_text())


def _swap(staging: Path, target: Path) -> None:
    """Put ``staging`` in place of ``target``; the old folder is removed only after the rename."""
    trash = target.parent / f"_trash-{target.name}-{uuid.uuid4().hex[:8]}"
    if target.exists():
        target.rename(trash)
    staging.rename(target)
    shutil.rmtree(trash, ignore_errors=True)
