"""Table and file I/O: the only module that knows where tables physically live.

- On Databricks tables are Unity Catalog Delta tables (three-part names); Delta makes each
  overwrite and each ``replaceWhere`` atomic, one table at a time.
- Locally (no Delta jars here) a table ``catalog.schema.t`` is a folder
  ``<state>/warehouse/catalog_schema.db/t`` holding immutable version folders ``v-<commit>``.
  One manifest, ``<state>/warehouse/_manifest.json``, names the current version of every
  table; a write stages new version folders and commits them all with one ``os.replace`` of
  the manifest. Readers therefore see the old set of tables or the new set, never a missing
  table or a mixed pair (see :class:`LocalTableStore`).
- ``/Volumes/<catalog>/<schema>/<volume>/…`` paths map to ``<state>/volumes/…`` locally.

Table names are validated (:func:`spark_mlops.config.check_table_name`) before they become
folder names or SQL, so no name can point outside the warehouse.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType

from spark_mlops.config import Settings, check_table_name, on_databricks, volume_local_path
from spark_mlops.errors import ConfigError, MlopsError
from spark_mlops.processes import alive

_SAFE_VALUE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_MANIFEST = "_manifest.json"
_LOCK = "_manifest.lock"
_STAGING = "_staging-"
_VERSION = "v-"

# Test-only fault injection: when this variable names a step of a local commit ("staged",
# "before-commit", "after-commit"), the writing process prints "paused at <step>" and sleeps,
# so that a test can SIGKILL it exactly there (tests/test_tables.py). Never set it elsewhere.
PAUSE_ENV = "SPARK_MLOPS_TEST_PAUSE_AT"
COMMIT_STEPS = ("staged", "before-commit", "after-commit")


class Tables(Protocol):
    def read(self, name: str) -> DataFrame: ...

    def exists(self, name: str) -> bool: ...

    def version(self, name: str) -> str | None:
        """An id of the table's current content (local commit id, Delta version); None if absent."""

    def dataset_source(self, name: str) -> dict[str, str]:
        """Keyword arguments for ``mlflow.data.from_spark`` naming where the table lives."""

    def replace(self, writes: dict[str, DataFrame]) -> None:
        """Overwrite each table with its DataFrame, all together; a failure leaves every table as it was."""

    def replace_partitions(self, writes: dict[str, DataFrame], column: str, value: str,
                           *, write_if: dict[str, Callable[[], bool]] | None = None) -> None:
        """In each table, replace the rows with ``column == value`` by its DataFrame (which has no
        ``column``), all tables together. Creates a table partitioned by ``column`` if absent.

        Tables are written in the order given. A table named in ``write_if`` is written only when
        its test, asked after the tables before it are written, is true; otherwise its rows with
        ``column == value`` are removed (an absent table stays absent)."""

    def replace_partition(self, name: str, df: DataFrame, column: str, value: str) -> None:
        """``replace_partitions`` for one table."""


def tables_for(spark: SparkSession, settings: Settings) -> Tables:
    return DeltaTables(spark) if on_databricks() else LocalParquetTables(spark, settings.state_dir)


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


class DeltaTables:
    def __init__(self, spark: SparkSession):
        self.spark = spark

    def read(self, name: str) -> DataFrame:
        return self.spark.table(quote_identifier(check_table_name(name)))

    def exists(self, name: str) -> bool:
        return self.spark.catalog.tableExists(check_table_name(name))

    def version(self, name: str) -> str | None:
        if not self.exists(name):
            return None
        # DESCRIBE HISTORY lists the newest commit first (docs: delta/history).
        row = self.spark.sql(f"DESCRIBE HISTORY {quote_identifier(name)} LIMIT 1").first()
        return str(row["version"])

    def dataset_source(self, name: str) -> dict[str, str]:
        return {"table_name": name}

    def replace(self, writes: dict[str, DataFrame]) -> None:
        # Each Delta overwrite is atomic on its own; Delta has no transaction across tables, so
        # a failure between two tables leaves the first replaced (documented in the README).
        for name, df in writes.items():
            (df.write.format("delta").mode("overwrite").option("overwriteSchema", "true")
             .saveAsTable(quote_identifier(check_table_name(name))))

    def replace_partitions(self, writes: dict[str, DataFrame], column: str, value: str,
                           *, write_if: dict[str, Callable[[], bool]] | None = None) -> None:
        check_partition_value(value, column)
        for name, df in writes.items():
            if name not in (write_if or {}) or write_if[name]():
                self.replace_partition(name, df, column, value)
            elif self.exists(name):  # Delta's DELETE FROM ... WHERE (docs: sql-ref-syntax-dml-delete-from)
                self.spark.sql(f"DELETE FROM {quote_identifier(check_table_name(name))} "
                               f"WHERE {quote_identifier(column)} = {sql_string(value)}")

    def replace_partition(self, name: str, df: DataFrame, column: str, value: str) -> None:
        from pyspark.sql import functions as F

        check_partition_value(value, column)
        out = df.withColumn(column, F.lit(value))
        target = quote_identifier(check_table_name(name))
        if not self.exists(name):
            out.write.format("delta").partitionBy(column).saveAsTable(target)
            return
        # replaceWhere is a SQL predicate: the column is quoted and the value escaped.
        (
            out.write.format("delta")
            .mode("overwrite")
            .option("replaceWhere", f"{quote_identifier(column)} = {sql_string(value)}")
            .saveAsTable(target)
        )


# ---------------------------------------------------------------- local tables


@dataclass(frozen=True)
class StagedTable:
    """A table's new content, written under ``path`` (a staging folder in the table's folder)."""

    path: Path
    schema: dict  # StructType.jsonValue() of the data columns
    partition_by: tuple[str, ...] = ()


class LocalTableStore:
    """The file side of local tables, with no Spark in it (so crash tests run without a JVM).

    Layout under ``warehouse``::

        _manifest.json                      {"commit": id, "tables": {key: entry}}
        <db>.db/<table>/v-<commit>/...      one immutable folder per committed version
        <db>.db/<table>/_staging-<pid>-<id> a write in progress (or left by a crashed one)

    A commit: data is staged (Spark writes), then under an exclusive lock the staged folders
    are renamed to ``v-<commit>`` and the manifest is replaced with ``os.replace``, which is
    atomic on POSIX (rename(2)). Before that replace readers see only old versions; after it,
    only new ones. A partition replace hard-links the table's other partitions from the current
    version into the new one, so each version folder is a complete table.

    Clean-up (under the same lock, after each commit): version folders that are neither a
    table's current nor its previous version, and staging folders of processes that no longer
    run. The previous version is kept so that a reader that resolved it just before a commit
    can still finish.

    Guarantees: against a crashed or killed process, not against power loss (Spark does not
    fsync the data files it writes).
    """

    def __init__(self, warehouse: Path):
        self.warehouse = warehouse

    # -- reading the manifest
    def manifest(self) -> dict:
        try:
            return json.loads((self.warehouse / _MANIFEST).read_text())
        except FileNotFoundError:
            return {"commit": None, "tables": {}}

    def entry(self, key: str) -> dict | None:
        return self.manifest()["tables"].get(key)

    def table_dir(self, key: str) -> Path:
        db, table = key.split(".")
        return self.warehouse / f"{db}.db" / table

    def current_path(self, key: str) -> Path | None:
        entry = self.entry(key)
        return None if entry is None else self.table_dir(key) / entry["version"]

    # -- writing
    def staging_dir(self, key: str) -> Path:
        folder = self.table_dir(key)
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{_STAGING}{os.getpid()}-{uuid.uuid4().hex[:12]}"

    def commit(self, staged: dict[str, StagedTable], partition: tuple[str, str] | None = None) -> str:
        """Make every staged table current at once; ``partition=(column, value)`` means each staged
        folder holds only that partition and the table's other partitions are carried over."""
        _pause("staged")
        commit_id = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"
        version = f"{_VERSION}{commit_id}"
        with self._lock():
            manifest = self.manifest()
            tables = manifest["tables"]
            updates = {}
            for key, table in staged.items():
                old = tables.get(key)
                if partition is not None and old is not None:
                    column, value = partition
                    _link_partitions(self.table_dir(key) / old["version"], table.path, skip=f"{column}={value}")
                table.path.rename(self.table_dir(key) / version)
                updates[key] = {
                    "version": version,
                    "previous": old["version"] if old else None,
                    "schema": table.schema,
                    "partition_by": list(table.partition_by),
                }
            _pause("before-commit")
            tables.update(updates)
            _write_atomically(self.warehouse / _MANIFEST, {"commit": commit_id, "tables": tables})
            _pause("after-commit")
            self._clean_up(tables)
        return commit_id

    def discard(self, staged: dict[str, StagedTable]) -> None:
        for table in staged.values():
            shutil.rmtree(table.path, ignore_errors=True)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.warehouse.mkdir(parents=True, exist_ok=True)
        with open(self.warehouse / _LOCK, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # released when the process dies, too
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _clean_up(self, tables: dict) -> None:
        keep = {(key, e[v]) for key, e in tables.items() for v in ("version", "previous") if e.get(v)}
        for db_dir in self.warehouse.glob("*.db"):
            for table_dir in (p for p in db_dir.iterdir() if p.is_dir()):
                key = f"{db_dir.name[: -len('.db')]}.{table_dir.name}"
                for child in table_dir.iterdir():
                    if child.name.startswith(_VERSION) and (key, child.name) not in keep:
                        shutil.rmtree(child, ignore_errors=True)
                    elif child.name.startswith(_STAGING) and not _writer_alive(child.name):
                        shutil.rmtree(child, ignore_errors=True)
        for tmp in self.warehouse.glob(f"{_MANIFEST}.tmp-*"):
            if not _writer_alive(tmp.name.rsplit("tmp-", 1)[1]):
                tmp.unlink(missing_ok=True)


def _pause(step: str) -> None:
    if os.environ.get(PAUSE_ENV) == step:
        print(f"paused at {step}", flush=True)
        while True:
            time.sleep(60)


def _writer_alive(name: str) -> bool:
    """Whether the process whose pid starts ``name``'s suffix (``_staging-<pid>-…``) still runs."""
    digits = re.search(r"(\d+)", name)
    if digits is None:
        return False
    pid = int(digits.group(1))
    if pid == os.getpid():
        return True  # this process may have another write in progress
    return alive(pid)


def _link_partitions(source: Path, destination: Path, *, skip: str) -> None:
    """Hard-link every partition folder of ``source`` except ``skip`` into ``destination``
    (a copy where links are not possible). Costs one link per file, not a rewrite."""
    for partition in source.iterdir():
        if not partition.is_dir() or partition.name == skip or "=" not in partition.name:
            continue
        target = destination / partition.name
        target.mkdir(parents=True, exist_ok=True)
        for file in partition.iterdir():
            try:
                os.link(file, target / file.name)
            except OSError:
                shutil.copy2(file, target / file.name)


def _write_atomically(path: Path, content: dict) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    with open(tmp, "w") as handle:
        json.dump(content, handle, indent=1, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)  # atomic: readers see the old manifest or the new one
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class LocalParquetTables:
    def __init__(self, spark: SparkSession, state_dir: Path):
        self.spark = spark
        self.warehouse = state_dir / "warehouse"
        self.store = LocalTableStore(self.warehouse)

    # -- naming
    @staticmethod
    def local_name(name: str) -> tuple[str, str]:
        parts = check_table_name(name).split(".")
        if len(parts) == 1:
            return "default", parts[0]
        return "_".join(parts[:-1]), parts[-1]

    def _key(self, name: str) -> str:
        return ".".join(self.local_name(name))

    # -- reads
    def exists(self, name: str) -> bool:
        return self.store.entry(self._key(name)) is not None

    def version(self, name: str) -> str | None:
        entry = self.store.entry(self._key(name))
        return None if entry is None else entry["version"]

    def dataset_source(self, name: str) -> dict[str, str]:
        # Not table_name: MLflow would run DESCRIBE DETAIL, which only Delta tables answer.
        path = self.store.current_path(self._key(name))
        return {"path": str(path if path is not None else self.store.table_dir(self._key(name)))}

    def read(self, name: str) -> DataFrame:
        """Read the current version by path with the recorded schema: no catalog round trips,
        no partition type guessing."""
        key = self._key(name)
        entry = self.store.entry(key)
        if entry is None:
            legacy = (self.store.table_dir(key) / "_table.json").exists()
            raise MlopsError(
                f"table {name} does not exist (local table {key}, expected under {self.store.table_dir(key)})"
                + ("; that folder holds a table in the layout before versioned commits: "
                   "run the step that writes it again" if legacy else "")
            )
        path = self.store.table_dir(key) / entry["version"]
        return self.spark.read.schema(_full_schema(entry)).parquet(str(path))

    # -- writes
    def replace(self, writes: dict[str, DataFrame]) -> None:
        staged: dict[str, StagedTable] = {}
        try:
            for name, df in writes.items():
                key = self._key(name)
                folder = self.store.staging_dir(key)
                staged[key] = StagedTable(folder, df.schema.jsonValue())
                df.write.parquet(str(folder))
        except BaseException:
            self.store.discard(staged)
            raise
        self.store.commit(staged)

    def replace_partition(self, name: str, df: DataFrame, column: str, value: str) -> None:
        self.replace_partitions({name: df}, column, value)

    def replace_partitions(self, writes: dict[str, DataFrame], column: str, value: str,
                           *, write_if: dict[str, Callable[[], bool]] | None = None) -> None:
        check_partition_value(value, column)
        for name, df in writes.items():
            entry = self.store.entry(self._key(name))
            if entry is not None and (entry["schema"] != df.schema.jsonValue() or entry["partition_by"] != [column]):
                raise MlopsError(
                    f"table {name}: the new batch's columns {df.columns} do not match the table's "
                    f"{[f['name'] for f in entry['schema']['fields']]} (partitioned by "
                    f"{entry['partition_by']}); write to another table or drop "
                    f"{self.store.table_dir(self._key(name))}"
                )
        staged: dict[str, StagedTable] = {}
        try:
            for name, df in writes.items():
                key = self._key(name)
                if name in (write_if or {}) and not write_if[name]():
                    if self.exists(name):  # an empty staged folder: the commit carries the other partitions over
                        folder = self.store.staging_dir(key)
                        folder.mkdir()
                        staged[key] = StagedTable(folder, df.schema.jsonValue(), (column,))
                    continue
                folder = self.store.staging_dir(key)
                staged[key] = StagedTable(folder, df.schema.jsonValue(), (column,))
                df.write.parquet(str(folder / f"{column}={value}"))
        except BaseException:
            self.store.discard(staged)
            raise
        if staged:
            self.store.commit(staged, partition=(column, value))

    # -- catalog
    def register_existing(self) -> list[str]:
        """Register every local table in Spark's (in-memory) catalog, so that it can be queried
        by name, e.g. ``spark.table("main_mlops_dev.predictions")``. Returns the names."""
        names = []
        for key, entry in sorted(self.store.manifest()["tables"].items()):
            db, table = key.split(".")
            self._register(self.store.table_dir(key) / entry["version"], entry, db, table)
            names.append(key)
        return names

    def _register(self, path: Path, entry: dict, db: str, table: str) -> None:
        qualified = quote_identifier(f"{db}.{table}")
        parts = entry["partition_by"]
        ddl = ", ".join(f"{quote_identifier(f.name)} {f.dataType.simpleString()}" for f in _full_schema(entry).fields)
        self.spark.sql(f"CREATE DATABASE IF NOT EXISTS {quote_identifier(db)} "
                       f"LOCATION {sql_string(str(path.parent.parent))}")
        self.spark.sql(f"DROP TABLE IF EXISTS {qualified}")
        partitioned = f" PARTITIONED BY ({', '.join(quote_identifier(c) for c in parts)})" if parts else ""
        self.spark.sql(f"CREATE TABLE {qualified} ({ddl}) USING parquet{partitioned} LOCATION {sql_string(str(path))}")
        if parts:
            self.spark.sql(f"ALTER TABLE {qualified} RECOVER PARTITIONS")


def _full_schema(entry: dict) -> StructType:
    """The data columns plus the partition columns (always strings here)."""
    from pyspark.sql.types import StringType, StructField

    schema = StructType.fromJson(entry["schema"])
    for column in entry["partition_by"]:
        if column not in schema.fieldNames():
            schema = schema.add(StructField(column, StringType()))
    return schema
