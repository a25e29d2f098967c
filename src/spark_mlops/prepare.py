"""Data preparation: read raw data, hold it to the contract, write clean and quarantine tables.

Structural problems (missing file, empty input, corrupt CSV lines, missing column, wrong type)
stop the step with a DataContractError and write nothing. Row-level problems (out-of-range
values, a missing label) send the row to quarantine with a reason.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from spark_mlops import contract as dc
from spark_mlops.config import PrepareConfig, Settings
from spark_mlops.errors import DataContractError
from spark_mlops.spark import get_spark
from spark_mlops.tables import is_path, local_path, tables_for

_CORRUPT = "_corrupt_record"


def read_source(spark: SparkSession, settings: Settings, source: str) -> DataFrame:
    """A CSV file/folder, a parquet file/folder, or a table, as raw columns.

    CSV columns are read as strings (typing is the contract's job) with malformed lines kept
    in ``_corrupt_record`` so that they can be counted instead of silently dropped.
    """
    if not is_path(source):
        return tables_for(spark, settings).read(settings.table_name(source))
    path = local_path(settings, source)
    if "://" not in path and not path.startswith("dbfs:"):
        if not os.path.exists(path):
            raise DataContractError(f"{source}: no such file or folder")
        if os.path.isfile(path) and os.path.getsize(path) == 0:
            raise DataContractError(f"{source}: the file is empty (0 bytes, no header, 0 rows)")
    if path.endswith(".parquet") or (os.path.isdir(path) and not _has_csv(path)):
        return spark.read.parquet(path)
    header = _simple_header(path) or spark.read.option("header", True).csv(path).columns
    if not header:
        raise DataContractError(f"{source}: the file is empty (no header, 0 rows)")
    schema = StructType([StructField(c, StringType()) for c in header] + [StructField(_CORRUPT, StringType())])
    return (
        spark.read.schema(schema)
        .option("header", True)
        .option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", _CORRUPT)
        .csv(path)
        .cache()  # Spark refuses queries on the corrupt-record column of an uncached CSV scan
    )


_PLAIN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _simple_header(path: str) -> list[str] | None:
    """The column names of a local CSV file read in Python, when they are plain and unique.

    Spark reads a header with a job of its own (about 1-2 s on a cold JVM, paid by prepare,
    check-batch and score); plain names parse the same either way. Anything else (quotes, blanks,
    duplicates, folders, remote paths) returns None and Spark reads the header.
    """
    if "://" in path or path.startswith("dbfs:") or not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8", errors="replace", newline="") as handle:
        line = handle.readline(1 << 16).rstrip("\r\n")
    names = line.split(",")
    if not line or len({n.lower() for n in names}) != len(names) or not all(_PLAIN_NAME.match(n) for n in names):
        return None
    return names


def _has_csv(folder: str) -> bool:
    return any(name.endswith(".csv") for name in os.listdir(folder))


def read_checked(
    spark: SparkSession, settings: Settings, source: str, contract: dc.DataContract, *, with_label: bool
) -> DataFrame:
    """Read ``source`` and hold it to the contract.

    Raises DataContractError for problems that make the whole input unusable; returns the
    conformed rows with a ``rejection_reason`` column (null for valid rows).
    """
    raw = read_source(spark, settings, source)
    dc.check_columns(raw.columns, contract, source, with_label=with_label)
    has_corrupt = _CORRUPT in raw.columns
    stats = (
        dc.type_error_counts(raw, contract, with_label=with_label)
        .crossJoin(
            raw.agg(
                F.count(F.lit(1)).alias("__rows"),
                (F.count(_CORRUPT) if has_corrupt else F.lit(0)).alias("__corrupt"),
            )
        )
        .first()
        .asDict()
    )
    rows, corrupt = stats.pop("__rows"), stats.pop("__corrupt")
    if rows == 0:
        raise DataContractError(f"{source}: no data rows (expected at least 1, found 0)")
    if corrupt:
        sample = [r[0] for r in raw.where(F.col(_CORRUPT).isNotNull()).select(_CORRUPT).limit(3).collect()]
        raise DataContractError(
            f"{source}: {corrupt} of {rows} CSV line(s) are malformed (wrong number of fields or "
            f"unparseable); first: {sample}"
        )
    wrong = {name: n for name, n in stats.items() if n}
    if wrong:
        details = "; ".join(
            f"column {name}: {n} of {rows} value(s) are not {_type_of(contract, name)} "
            f"(e.g. {_examples(raw, contract, name)})"
            for name, n in wrong.items()
        )
        raise DataContractError(f"{source}: wrong type: {details}")
    typed = dc.conform(raw.drop(_CORRUPT) if has_corrupt else raw, contract, with_label=with_label)
    typed = dc.apply_missing_markers(typed, contract)
    return dc.with_rejection_reason(typed, contract, with_label=with_label)


def _type_of(contract: dc.DataContract, column: str) -> str:
    if column == contract.label:
        return "integers"
    return next(f.type for f in contract.features if f.name == column)


def _examples(raw: DataFrame, contract: dc.DataContract, column: str) -> list[str]:
    spark_type = "int" if column == contract.label else "double"
    bad = F.col(column).isNotNull() & (F.trim(F.col(column).cast("string")) != "") & F.col(column).try_cast(spark_type).isNull()
    return [r[0] for r in raw.where(bad).select(F.col(column).cast("string")).limit(3).collect()]


@dataclass(frozen=True)
class PrepareResult:
    rows_in: int
    rows_clean: int
    rows_quarantined: int
    class_counts: dict[int, int]
    clean_table: str
    quarantine_table: str


def run(settings: Settings, conf: PrepareConfig) -> PrepareResult:
    spark = get_spark(settings)
    contract = dc.load_contract(settings.contract)
    checked = read_checked(spark, settings, conf.input, contract, with_label=True).cache()
    try:
        result = _write_clean_and_quarantine(spark, settings, conf, contract, checked)
    finally:
        checked.unpersist()
    print(
        f"prepare: {result.rows_in} rows in -> {result.rows_clean} clean ({result.clean_table}), "
        f"{result.rows_quarantined} quarantined ({result.quarantine_table}); classes {result.class_counts}"
    )
    return result


def _write_clean_and_quarantine(
    spark: SparkSession, settings: Settings, conf: PrepareConfig, contract: dc.DataContract, checked: DataFrame
) -> PrepareResult:
    valid = F.col(dc.REASON_COLUMN).isNull()
    label = F.col(contract.label)
    counts = checked.agg(
        F.count(F.lit(1)).alias("rows"),
        F.sum(F.when(~valid, 1).otherwise(0)).alias("rejected"),
        *[F.sum(F.when(valid & (label == v), 1).otherwise(0)).alias(f"class_{v}") for v in contract.label_values],
    ).first()
    class_counts = {v: int(counts[f"class_{v}"] or 0) for v in contract.label_values}
    rows_clean = sum(class_counts.values())
    if rows_clean < conf.min_rows:
        raise DataContractError(
            f"{conf.input}: only {rows_clean} clean row(s) of {counts['rows']} (expected at least "
            f"{conf.min_rows}; {counts['rejected']} quarantined)"
        )
    present = [v for v, n in class_counts.items() if n > 0]
    if len(present) < 2:
        raise DataContractError(
            f"{conf.input}: label {contract.label} has a single class among clean rows "
            f"(expected {list(contract.label_values)}, found {class_counts})"
        )
    columns = dc.expected_columns(contract, with_label=True)
    clean = dc.assign_split(checked.where(valid).select(*columns), contract, conf.holdout_fraction, conf.split_seed)
    quarantine = checked.where(~valid).select(
        *columns, dc.REASON_COLUMN, F.lit(conf.input).alias("source"), F.current_timestamp().alias("rejected_at")
    )
    clean_name, quarantine_name = settings.table_name(conf.clean_table), settings.table_name(conf.quarantine_table)
    tables_for(spark, settings).replace({clean_name: clean, quarantine_name: quarantine})
    return PrepareResult(
        rows_in=int(counts["rows"]),
        rows_clean=rows_clean,
        rows_quarantined=int(counts["rejected"]),
        class_counts=class_counts,
        clean_table=clean_name,
        quarantine_table=quarantine_name,
    )


def check_batch(settings: Settings, source: str, *, max_rejected_fraction: float = 0.5) -> tuple[int, int]:
    """Hold a scoring batch to the contract (no label needed) without writing anything."""
    spark = get_spark(settings)
    contract = dc.load_contract(settings.contract)
    checked = read_checked(spark, settings, source, contract, with_label=False)
    row = checked.agg(
        F.count(F.lit(1)).alias("rows"), F.count(dc.REASON_COLUMN).alias("rejected")
    ).first()
    rows, rejected = int(row["rows"]), int(row["rejected"])
    print(f"check-batch: {source}: {rows} rows, {rejected} break the contract (they will not be scored)")
    if rejected > max_rejected_fraction * rows:
        raise DataContractError(
            f"{source}: {rejected} of {rows} rows break the contract (more than the allowed "
            f"{max_rejected_fraction:.0%}); first reasons: "
            f"{[r[0] for r in checked.where(F.col(dc.REASON_COLUMN).isNotNull()).select(dc.REASON_COLUMN).limit(3).collect()]}"
        )
    return rows, rejected
