"""``spark-mlops contract draft``: an ODCS contract drafted from data, for a person to review.

Reads the input as ``prepare`` does (a CSV or parquet file or folder, or a table), so a draft can
be made from whatever the training job will read, and profiles every column in one Spark
aggregation: how many values, how many are numbers, the observed range. The draft says what was
observed, nothing more: each number column becomes a feature with ``required`` (when no value was
empty) and its observed minimum and maximum, which a person widens to what is plausible; other
columns are kept as ``mlRole: ignored``; the label's values become its ``enum``.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from pyspark.sql import functions as F

from spark_mlops import contract_file as cf
from spark_mlops.config import Settings
from spark_mlops.errors import DataContractError
from spark_mlops.spark import get_spark
from spark_mlops.tables import is_path

_CORRUPT = "_corrupt_record"
_INTEGRAL = ("tinyint", "smallint", "int", "bigint")
_NUMERIC = (*_INTEGRAL, "float", "double")


def default_name(source: str) -> str:
    """A contract name from the input: the file or folder name without extension, or the table name."""
    base = PurePosixPath(source.rstrip("/")).stem if is_path(source) else source.split(".")[-1]
    return re.sub(r"[^0-9A-Za-z_]+", "_", base).strip("_").lower() or "dataset"


def draft(settings: Settings, source: str, label: str, keys: tuple[str, ...] = (), name: str | None = None) -> dict:
    """The ODCS document drafted from ``source`` (raises DataContractError when the label or a key
    cannot be what the lifecycle needs)."""
    from spark_mlops.prepare import read_source

    spark = get_spark(settings)
    raw = read_source(spark, settings, source)
    columns = [c for c in raw.columns if c != _CORRUPT]
    missing = [c for c in (label, *keys) if c not in columns]
    if missing:
        raise DataContractError(f"{source}: no column(s) {missing}; found columns {columns}")
    dtypes = dict(raw.dtypes)
    aggs = [F.count(F.lit(1)).alias("__rows"),
            (F.count(_CORRUPT) if _CORRUPT in raw.columns else F.lit(0)).alias("__corrupt")]
    for i, c in enumerate(columns):
        value = F.col(c)
        given = value.isNotNull() & (F.trim(value) != "") if dtypes[c] == "string" else value.isNotNull()
        number = value if dtypes[c] in _NUMERIC else value.try_cast("double")
        aggs += [F.count(F.when(given, 1)).alias(f"__given_{i}"),
                 F.count(F.when(given & number.isNotNull(), 1)).alias(f"__number_{i}"),
                 F.min(number).alias(f"__min_{i}"), F.max(number).alias(f"__max_{i}")]
    if keys:
        aggs.append(F.count_distinct(*[F.col(k) for k in keys]).alias("__distinct_keys"))
    stats = raw.agg(*aggs).first().asDict()
    rows = int(stats["__rows"])
    if rows == 0:
        raise DataContractError(f"{source}: no data rows to draft a contract from")
    if stats["__corrupt"]:
        raise DataContractError(f"{source}: {stats['__corrupt']} of {rows} CSV line(s) are malformed (wrong number "
                                "of fields or unparseable)")
    if keys and int(stats["__distinct_keys"]) != rows:
        raise DataContractError(f"{source}: key {list(keys)} is not unique: {rows} rows, "
                                f"{stats['__distinct_keys']} distinct")
    name = name or default_name(source)
    properties = []
    for position, key in enumerate(keys, start=1):
        properties.append({"name": key, "logicalType": "string", "primaryKey": True, "primaryKeyPosition": position,
                           "unique": True, "description": f"observed: unique in {rows} rows"})
    for i, c in enumerate(columns):
        if c in keys:
            continue
        given, numbers = int(stats[f"__given_{i}"]), int(stats[f"__number_{i}"])
        empty = rows - given
        if c == label:
            properties.append(_label(raw, source, label, dtypes[c], rows))
        elif given and numbers == given:
            low, high = stats[f"__min_{i}"], stats[f"__max_{i}"]
            integral = dtypes[c] in _INTEGRAL
            column = {"name": c, "logicalType": "integer" if integral else "number",
                      "physicalType": {"bigint": "bigint"}.get(dtypes[c], "int") if integral else "double"}
            if empty == 0:
                column["required"] = True
            column["logicalTypeOptions"] = {"minimum": _plain(low), "maximum": _plain(high)}
            column["description"] = (f"observed: {_plain(low)} to {_plain(high)}, {empty} of {rows} empty; "
                                     "widen the range to what is plausible")
            properties.append(column)
        else:
            why = "no value" if not given else f"{given - numbers} of {given} values are not numbers"
            properties.append({"name": c, "logicalType": "string" if dtypes[c] == "string" else "object",
                               "description": f"observed: {why}; not a feature",
                               "customProperties": [{"property": "mlRole", "value": "ignored"}]})
    return {
        "apiVersion": cf.API_VERSION, "kind": "DataContract", "id": name, "name": name, "version": "0.1.0",
        "status": "draft",
        "description": {"purpose": f"Drafted by spark-mlops contract draft from {source} ({rows} rows): "
                                   "review every range, required flag and ignored column before use."},
        "customProperties": [{"property": "modelName", "value": f"{name}_classifier"}],
        "schema": [{"name": name, "physicalType": "table", "properties": properties}],
    }


def _label(raw, source: str, label: str, dtype: str, rows: int) -> dict:
    value = F.col(label)
    given = value.isNotNull() & (F.trim(value) != "") if dtype == "string" else value.isNotNull()
    counts = raw.where(given).groupBy(label).count().limit(3).collect()
    values = {r[0]: r["count"] for r in counts}
    if len(values) > 2:
        raise DataContractError(f"{source}: label {label} has more than two values (e.g. "
                                f"{sorted(map(str, values))}): spark-mlops trains binary classifiers")
    classes = {}
    for value, n in values.items():
        number = _integer(value)
        if number is None:
            raise DataContractError(f"{source}: label {label} has the value {value!r}: the label must be an "
                                    "integer class (0/1); recode it")
        classes[number] = n
    if len(classes) < 2:
        raise DataContractError(f"{source}: label {label} has a single value {sorted(classes)}: nothing to learn")
    observed = ", ".join(f"{v}: {n} rows" for v, n in sorted(classes.items()))
    return {"name": label, "logicalType": "integer", "physicalType": "int", "required": True,
            "enum": [{"value": v} for v in sorted(classes)], "description": f"observed: {observed} of {rows}",
            "customProperties": [{"property": "mlRole", "value": "label"}]}


def _integer(value) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return int(number) if number.is_integer() else None


def _plain(value):
    """A number as YAML shows it best: an integer when it is one."""
    if value is None:
        return None
    number = float(value)
    return int(number) if number.is_integer() else number
