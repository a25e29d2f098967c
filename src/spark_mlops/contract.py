"""The data contract held against data: which columns a dataset must have, their types and values.

Everything dataset-specific lives in a contract file, an Open Data Contract Standard document
read by :mod:`spark_mlops.contract_file` (the packaged example is ``contracts/pima_diabetes.yml``).
The functions here are pure DataFrame -> DataFrame transformations; checks that need a Spark
action return counts for the caller to judge.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from spark_mlops.contract_file import DataContract, FeatureSpec, load_contract  # noqa: F401 (the contract API)
from spark_mlops.errors import ConfigError, DataContractError

REASON_COLUMN = "rejection_reason"
SPLIT_COLUMN = "split"
_TYPES = {"double": "double", "int": "int", "long": "bigint", "string": "string"}


def expected_columns(
    contract: DataContract, *, with_label: bool, identity: tuple[str, ...] | None = None
) -> list[str]:
    """Identity columns (the keys by default), features, and the label when asked for."""
    keys = contract.key_columns if identity is None else identity
    return [*keys, *contract.feature_names, *([contract.label] if with_label else [])]


def identity_columns(columns: list[str], contract: DataContract, source: str) -> tuple[str, ...]:
    """What identifies a row of this input: the contract's key columns when the input has them all;
    otherwise (when the contract allows it) the row id column, given or to be derived."""
    keys = tuple(contract.key_columns)
    present = [k for k in keys if k in columns]
    if keys and len(present) == len(keys):
        return keys
    if present or (keys and contract.require_key_columns):
        missing = [k for k in keys if k not in columns]
        raise DataContractError(
            f"{source}: missing key column(s) {missing}; found columns {columns} (contract {contract.name})"
        )
    return (contract.row_id_column,)


def check_columns(columns: list[str], contract: DataContract, source: str, *, with_label: bool) -> tuple[str, ...]:
    """Raise when a required column is missing, naming the source and what was found.
    Returns the identity columns of the input (see :func:`identity_columns`)."""
    identity = identity_columns(columns, contract, source)
    required = expected_columns(contract, with_label=with_label, identity=())
    missing = [c for c in required if c not in columns]
    if missing:
        raise DataContractError(
            f"{source}: missing required column(s) {missing}; found columns {columns} "
            f"(contract {contract.name})"
        )
    return identity


def with_row_id(df: DataFrame, contract: DataContract, *, with_label: bool) -> DataFrame:
    """Add the row id column to an input that has no key: ``<hash>-<n>``.

    ``<hash>``: 16 hex digits of xxhash64 over the row's contract feature values as typed by the
    contract (so the same row gets the same id in a CSV or a parquet file, in any file, on any
    rerun); nulls are hashed as a marker, so (null, 5) and (5, null) differ. The label is not
    hashed, so a row keeps its id between a training file and a scoring batch.
    ``<n>``: the occurrence number among rows with identical feature values in this input
    (1, 2, ...), ordered by label. Limit: identical rows are indistinguishable, so which of them
    is ``-1`` and which ``-2`` is arbitrary (their predictions are identical too), and an id is
    only unique within one input. Costs one shuffle (a window over the hash).
    """
    from pyspark.sql import Window

    values = [F.coalesce(F.col(c).cast("string"), F.lit("\u0000")) for c in contract.feature_names]
    digest = F.xxhash64(F.concat_ws("\u001f", *values))
    order = [F.col(contract.label).asc_nulls_first()] if with_label else [F.lit(1)]
    occurrence = F.row_number().over(Window.partitionBy(digest).orderBy(*order))
    return df.withColumn(
        contract.row_id_column, F.concat(F.lpad(F.lower(F.hex(digest)), 16, "0"), F.lit("-"), occurrence.cast("string"))
    )


def spark_type(feature: FeatureSpec) -> str:
    return _TYPES[feature.type]


def _cast(column: str, spark_type: str) -> Column:
    # try_cast: with ANSI mode (the Spark 4 default) a plain cast of "abc" fails the whole job.
    return F.col(column).try_cast(spark_type)


# Spark types whose every value casts to the contract type (the same type, or a narrower number):
# such a column needs no cast check.
_CASTS_WITHOUT_FAILURE = {
    "double": {"tinyint", "smallint", "int", "bigint", "float", "double"},
    "bigint": {"tinyint", "smallint", "int", "bigint"},
    "int": {"tinyint", "smallint", "int"},
}  # and anything casts to a string


def checked_types(contract: DataContract, *, with_label: bool) -> dict[str, str]:
    """The contract's columns (features, and the label when asked for) and their Spark types."""
    return {**{f.name: _TYPES[f.type] for f in contract.features}, **({contract.label: "int"} if with_label else {})}


def type_error_aggregates(
    dtypes: dict[str, str], contract: DataContract, *, with_label: bool, given: dict[str, str] | None = None
) -> dict[str, Column]:
    """Per contract column whose values may fail to cast to its contract type: an aggregate counting
    the non-empty values that do not cast. A column of the contract type or of a narrower number
    (typed parquet, a table) cannot hold such a value, so it costs no check; a string column (a CSV)
    always can. ``given`` maps a column to the name its values as given are read under (default: its own)."""
    aggs = {}
    for name, spark_type in checked_types(contract, with_label=with_label).items():
        dtype = dtypes.get(name, "string")
        if (spark_type == "string" or dtype in _CASTS_WITHOUT_FAILURE[spark_type]
                or (spark_type == "double" and dtype.startswith("decimal"))):
            continue
        source = (given or {}).get(name, name)
        raw = F.col(source)
        # Only a string can be blank; a number that does not cast is out of the type's range.
        given_value = raw.isNotNull() & (F.trim(raw) != "") if dtype == "string" else raw.isNotNull()
        aggs[name] = F.sum(F.when(given_value & _cast(source, spark_type).isNull(), 1).otherwise(0))
    return aggs


def type_error_counts(df: DataFrame, contract: DataContract, *, with_label: bool) -> DataFrame:
    """One row: for each contract column that may fail to cast to its type, how many non-empty values do not."""
    aggs = type_error_aggregates(dict(df.dtypes), contract, with_label=with_label)
    return df.agg(*[agg.alias(name) for name, agg in aggs.items()]) if aggs else df.sparkSession.range(1).select()


def conform(df: DataFrame, contract: DataContract, *, with_label: bool) -> DataFrame:
    """Cast contract columns to their types (keys as strings); other columns pass through."""
    casts = {key: F.col(key).cast("string") for key in contract.key_columns if key in df.columns}
    types = checked_types(contract, with_label=with_label)
    casts.update({name: _cast(name, spark_type) for name, spark_type in types.items()})
    return df.withColumns(casts)  # one projection, not one per column


def apply_missing_markers(df: DataFrame, contract: DataContract) -> DataFrame:
    """Replace sentinel values that mean "not measured" (e.g. 0 for Glucose) with null."""
    markers = {
        f.name: F.when(F.col(f.name).isin(list(f.missing_values)), F.lit(None)).otherwise(F.col(f.name))
        for f in contract.features if f.missing_values
    }
    return df.withColumns(markers) if markers else df


def _rules(columns: list[str], contract: DataContract, *, with_label: bool) -> list[tuple[Column, Column]]:
    """Every row rule of the contract as (broken, message): ``broken`` is true when a row breaks it
    (null counts as not broken), ``message`` says how (never null when ``broken`` is true)."""
    rules: list[tuple[Column, Column]] = []
    if with_label:
        label = F.col(contract.label)
        rules.append((label.isNull(), F.lit(f"{contract.label} is missing")))
        rules.append((
            label.isNotNull() & ~label.isin(list(contract.label_values)),
            F.concat(F.lit(f"{contract.label}="), label.cast("string"),
                     F.lit(f" not in {list(contract.label_values)}")),
        ))
    for key in contract.key_columns:
        if key in columns:
            rules.append((F.col(key).isNull(), F.lit(f"{key} is missing")))
    for f in contract.features:
        c = F.col(f.name)
        if not f.nullable:
            rules.append((c.isNull(), F.lit(f"{f.name} is missing")))
        if f.min is not None:
            rules.append((c < f.min, F.concat(F.lit(f"{f.name}="), c.cast("string"), F.lit(f" < {f.min}"))))
        if f.max is not None:
            rules.append((c > f.max, F.concat(F.lit(f"{f.name}="), c.cast("string"), F.lit(f" > {f.max}"))))
    return rules


def with_rejection_reason(df: DataFrame, contract: DataContract, *, with_label: bool) -> DataFrame:
    """Add ``rejection_reason``: null for a valid row, else every broken rule joined by '; '."""
    rules = _rules(df.columns, contract, with_label=with_label)
    reason = F.concat_ws("; ", *[F.when(broken, message) for broken, message in rules])
    return df.withColumn(REASON_COLUMN, F.when(reason == "", F.lit(None)).otherwise(reason))


def is_valid(columns: list[str], contract: DataContract, *, with_label: bool) -> Column:
    """True for a row that breaks no rule: the rows whose ``rejection_reason`` is null, without
    building the reason's text (cheaper to filter on)."""
    broken = F.lit(False)
    for condition, _ in _rules(columns, contract, with_label=with_label):
        broken = broken | F.coalesce(condition, F.lit(False))
    return ~broken


def assign_split(df: DataFrame, contract: DataContract, holdout_fraction: float, seed: int) -> DataFrame:
    """Add ``split`` = train | holdout from a seeded hash of the row key (or of all contract columns).

    A hash, unlike ``randomSplit``, gives every row the same split whatever the partitioning.
    """
    if not 0.0 < holdout_fraction < 1.0:
        raise ConfigError(f"--holdout-fraction must be between 0 and 1, found {holdout_fraction}")
    key_cols = [c for c in contract.key_columns if c in df.columns] or (
        [contract.row_id_column] if contract.row_id_column in df.columns else [*contract.feature_names, contract.label]
    )
    bucket = F.pmod(F.xxhash64(F.lit(seed), *[F.col(c) for c in key_cols]), F.lit(10_000))
    return df.withColumn(
        SPLIT_COLUMN, F.when(bucket < int(holdout_fraction * 10_000), "holdout").otherwise("train")
    )
