"""Data preparation: read raw data, hold it to the contract, write clean and quarantine tables.

Structural problems (missing file, empty input, corrupt CSV lines, missing column, wrong type,
CSV files whose columns differ, parquet files that disagree on a column, repeated keys, a feature
with no value at all) stop the step with a DataContractError and write nothing. Row-level
problems (out-of-range values, a missing label) send the row to quarantine with a reason.

Everything is counted in one pass over the input (``read_checked``); an input without the
contract's key gets a derived row id (``contract.with_row_id``).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from spark_mlops import contract as dc
from spark_mlops.config import PrepareConfig, Settings
from spark_mlops.errors import ConfigError, DataContractError
from spark_mlops.spark import get_spark
from spark_mlops.tables import is_path, local_path, tables_for
from spark_mlops.timing import span

_CORRUPT = "_corrupt_record"
INPUT_SUFFIX = "__input"  # a copy of a column as read, before "not measured" markers become null
_REMOTE = ("dbfs:", "s3:", "s3a:", "abfss:", "gs:", "wasbs:")


def _is_local(path: str) -> bool:
    return "://" not in path and not path.startswith(_REMOTE)


def read_source(spark: SparkSession, settings: Settings, source: str) -> DataFrame:
    """A CSV file/folder, a parquet file/folder, or a table, as raw columns.

    CSV columns are read as strings (typing is the contract's job) with malformed lines kept
    in ``_corrupt_record`` so that they can be counted instead of silently dropped. Local CSV
    files are read by header name: each file's header is parsed here, and files whose columns
    come in another order are read with their own header and combined by name.
    """
    if not is_path(source):
        return tables_for(spark, settings).read(settings.table_name(source))
    path = local_path(settings, source)
    if not _is_local(path):
        if path.endswith(".parquet"):
            return spark.read.parquet(path)
        header = spark.read.option("header", True).csv(path).columns
        # enforceSchema=false: Spark checks every file's header against these names, by position
        # (docs: Spark CSV data source options), so a folder with reordered headers fails.
        return _read_csv(spark, [path], header, enforce_schema=False).cache()
    if not os.path.exists(path):
        raise DataContractError(f"{source}: no such file or folder")
    if os.path.isfile(path):
        if os.path.getsize(path) == 0:
            raise DataContractError(f"{source}: the file is empty (0 bytes, no header, 0 rows)")
        if path.endswith(".parquet"):
            return _read_parquet(spark, source, path, [path])
        return _read_local_csv(spark, source, [path])
    visible = sorted(n for n in os.listdir(path) if not n.startswith(("_", ".")))
    csvs = [os.path.join(path, n) for n in visible if n.endswith(".csv") and os.path.isfile(os.path.join(path, n))]
    if csvs:
        return _read_local_csv(spark, source, csvs)
    parquets = [os.path.join(path, n) for n in visible if n.endswith(".parquet") or "=" in n]
    if parquets:
        return _read_parquet(spark, source, path, parquets)
    raise DataContractError(
        f"{source}: the folder has no data files (.csv or .parquet); found {visible or 'nothing'}"
    )


def _read_csv(spark: SparkSession, paths: list[str], header: list[str], *, enforce_schema: bool = True) -> DataFrame:
    schema = StructType([StructField(c, StringType()) for c in header] + [StructField(_CORRUPT, StringType())])
    return (
        spark.read.schema(schema)
        .option("header", True)
        .option("enforceSchema", enforce_schema)
        .option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", _CORRUPT)
        .csv(paths)
    )


def _read_local_csv(spark: SparkSession, source: str, files: list[str]) -> DataFrame:
    """Read local CSV files by header name: one Spark read per distinct header, combined by name."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for file in files:
        header = _csv_header(source, file)
        if header is not None:
            groups.setdefault(tuple(header), []).append(file)
    if not groups:
        raise DataContractError(f"{source}: the file is empty (0 bytes, no header, 0 rows)")
    column_sets = {frozenset(h) for h in groups}
    if len(column_sets) > 1:
        described = "; ".join(f"{os.path.basename(fs[0])}: {list(h)}" for h, fs in groups.items())
        raise DataContractError(f"{source}: the CSV files do not have the same columns ({described})")
    frames = [_read_csv(spark, fs, list(h)) for h, fs in groups.items()]
    out = frames[0]
    for frame in frames[1:]:
        out = out.unionByName(frame)
    return out.cache()  # Spark refuses queries on the corrupt-record column of an uncached CSV scan


def _csv_header(source: str, file: str) -> list[str] | None:
    """The column names in a CSV file's first line (a UTF-8 byte order mark is dropped); None for
    a 0-byte file. Python's csv module parses quotes the way Spark's reader does."""
    with open(file, encoding="utf-8-sig", errors="replace", newline="") as handle:
        line = handle.readline(1 << 20)
    if not line:
        return None
    names = next(csv.reader([line.rstrip("\r\n")]), [])
    where = source if os.path.basename(file) in source else f"{source} ({os.path.basename(file)})"
    if len(names) == 1:
        for separator, label in ((";", "semicolon"), ("\t", "tab"), ("|", "pipe")):
            if separator in names[0]:
                raise DataContractError(
                    f"{where}: the header is one column {names[0][:80]!r}: the file looks {label}-separated; "
                    "save it comma-separated (CSV inputs are read with ',')"
                )
    blank = [i + 1 for i, n in enumerate(names) if not n.strip()]
    if blank:
        raise DataContractError(f"{where}: header column(s) {blank} have no name")
    lowered = [n.lower() for n in names]
    duplicated = sorted({n for n in names if lowered.count(n.lower()) > 1})
    if duplicated:
        raise DataContractError(f"{where}: the header repeats column(s) {duplicated}")
    return names


_NUMERIC = ("tinyint", "smallint", "int", "bigint", "float", "double", "boolean")


def _read_parquet(spark: SparkSession, source: str, folder: str, files: list[str]) -> DataFrame:
    """A parquet file or folder. Several files in a local folder must agree column by column:
    Spark takes the schema from one file, and a column typed differently elsewhere would fail
    late or be read as null."""
    data_files = [f for f in files if os.path.isfile(f) and f.endswith(".parquet")]
    if len(data_files) > 1:
        _check_parquet_files_agree(source, data_files)
    return spark.read.parquet(folder)


def _check_parquet_files_agree(source: str, files: list[str]) -> None:
    try:
        import pyarrow.parquet as pq  # a dependency of mlflow; footers only, no data read
    except ImportError:  # pragma: no cover - mlflow always brings it
        return
    first = pq.read_schema(files[0])
    for other in files[1:]:
        schema = pq.read_schema(other)
        differ = sorted(
            n for n in set(first.names) | set(schema.names)
            if n not in first.names or n not in schema.names or first.field(n).type != schema.field(n).type
        )
        if differ:
            raise DataContractError(
                f"{source}: parquet files disagree on column(s) {differ} "
                f"({os.path.basename(files[0])} vs {os.path.basename(other)})"
            )


def _check_column_types(raw: DataFrame, contract: dc.DataContract, source: str, *, with_label: bool) -> None:
    """Typed inputs (parquet, tables): every contract column must be a number or a string."""
    types = dict(raw.dtypes)
    columns = [*contract.feature_names, *([contract.label] if with_label else [])]
    wrong = {c: types[c] for c in columns if not (types[c] in _NUMERIC or types[c] == "string"
                                                   or types[c].startswith("decimal"))}
    if wrong:
        details = ", ".join(f"{c} is {t}" for c, t in wrong.items())
        raise DataContractError(f"{source}: column(s) of the wrong type: {details} (expected numbers)")


@dataclass(frozen=True)
class CheckedInput:
    """An input held to the contract, and what was counted on the way (one pass over the data)."""

    df: DataFrame  # conformed rows with ``rejection_reason`` (null for a valid row)
    valid: Column  # true for a valid row of ``df`` (``rejection_reason`` is null), without building the text
    identity: tuple[str, ...]  # the key columns, or the row id column
    rows: int | None  # None when not counted (``only_if_needed``)
    missing: dict[str, int]  # per feature: rows where it is empty, null or a "not measured" marker (when asked)
    duplicate_keys: int  # rows whose key repeats an earlier row's (only counted when asked)
    rejected: int | None = None  # rows with a rejection reason (only counted when asked)
    class_counts: dict[int, int] | None = None  # valid rows per label value (when asked, with the label)

    @property
    def row_id_derived(self) -> bool:
        return len(self.identity) == 1 and self.identity[0] not in self.df.columns


def read_checked(
    spark: SparkSession,
    settings: Settings,
    source: str,
    contract: dc.DataContract,
    *,
    with_label: bool,
    count_duplicate_keys: bool = False,
    count_missing: bool = True,
    count_rejected: bool = False,
    only_if_needed: bool = False,
    keep_input: tuple[str, ...] = (),
) -> CheckedInput:
    """Read ``source`` and hold it to the contract.

    Raises DataContractError for problems that make the whole input unusable; returns the
    conformed rows with a ``rejection_reason`` column, plus counts from one aggregation over the
    input (one Spark job; the failure messages' examples cost a job more). ``count_*`` asks for
    more counts in that same aggregation; a count not asked for costs nothing, so a typed
    parquet input whose columns always cast to the contract's types is, unasked, only counted.
    ``keep_input`` columns are also kept as ``<name>__input``, as typed but before "not
    measured" markers become null (for pass-through to the predictions).
    ``only_if_needed``: read the data only when a value may fail its type (a text input) or a
    count other than rows and rejects is asked for; otherwise one row is read, to refuse an empty
    input, and ``rows`` and ``rejected`` are None.
    """
    raw = read_source(spark, settings, source)
    columns = [c for c in raw.columns if c != _CORRUPT]
    identity = dc.check_columns(columns, contract, source, with_label=with_label)
    derive_row_id = identity == (contract.row_id_column,) and contract.row_id_column not in columns
    _check_column_types(raw, contract, source, with_label=with_label)
    has_corrupt = _CORRUPT in raw.columns
    dtypes = dict(raw.dtypes)
    keys = [] if derive_row_id or not count_duplicate_keys else list(identity)

    # The counts read the values as given (before casts and markers); rejects and classes need the
    # held rows too, so then the values as given are carried along under other names.
    given_columns = dict.fromkeys([*dc.checked_types(contract, with_label=with_label), *keys])
    if count_rejected:
        as_given = {c: f"__given_{i}" for i, c in enumerate(given_columns)}
        given = raw.select("*", *[F.col(c).alias(alias) for c, alias in as_given.items()])
        counted = dc.apply_missing_markers(dc.conform(given, contract, with_label=with_label), contract)
    else:
        as_given, counted = {c: c for c in given_columns}, raw
    type_errors = dc.type_error_aggregates(dtypes, contract, with_label=with_label, given=as_given)
    aggs = [
        F.count(F.lit(1)).alias("__rows"),
        (F.count(_CORRUPT) if has_corrupt else F.lit(0)).alias("__corrupt"),
        *[agg.alias(f"__type_{name}") for name, agg in type_errors.items()],
    ]
    if count_missing:
        aggs += [F.count(F.when(_is_missing(f, dtypes[f.name], as_given[f.name]), 1)).alias(f"__missing_{f.name}")
                 for f in contract.features]
    if keys:
        all_keys = F.lit(True)
        for k in keys:
            all_keys = all_keys & F.col(as_given[k]).isNotNull()
        aggs += [F.count(F.when(all_keys, 1)).alias("__keyed"),
                 F.count_distinct(*[F.col(as_given[k]) for k in keys]).alias("__distinct")]
    if count_rejected:
        valid = dc.is_valid(counted.columns, contract, with_label=with_label)
        aggs.append(F.count(F.when(~valid, 1)).alias("__rejected"))
        if with_label:
            label = F.col(contract.label)
            aggs += [F.count(F.when(valid & (label == v), 1)).alias(f"__class_{v}") for v in contract.label_values]
    if only_if_needed and not (type_errors or has_corrupt or count_missing or keys):
        if raw.isEmpty():
            raise DataContractError(f"{source}: no data rows (expected at least 1, found 0)")
        count_rejected, stats = False, {"__rows": None, "__corrupt": 0}
    else:
        stats = counted.agg(*aggs).first().asDict()

    rows, corrupt = stats["__rows"], stats["__corrupt"]
    if rows == 0:
        raise DataContractError(f"{source}: no data rows (expected at least 1, found 0)")
    if corrupt:
        sample = [r[0] for r in raw.where(F.col(_CORRUPT).isNotNull()).select(_CORRUPT).limit(3).collect()]
        raise DataContractError(
            f"{source}: {corrupt} of {rows} CSV line(s) are malformed (wrong number of fields or "
            f"unparseable); first: {sample}"
        )
    wrong = {name: stats[f"__type_{name}"] for name in type_errors if stats[f"__type_{name}"]}
    if wrong:
        details = "; ".join(
            f"column {name}: {n} of {rows} value(s) are not {_type_of(contract, name)} "
            f"(e.g. {_examples(raw, contract, name)})"
            for name, n in wrong.items()
        )
        raise DataContractError(f"{source}: wrong type: {details}")
    typed = _typed(raw.drop(_CORRUPT) if has_corrupt else raw, contract, with_label, keep_input)
    if derive_row_id:
        typed = dc.with_row_id(typed, contract, with_label=with_label)
    held = _held(typed, contract, with_label)
    return CheckedInput(
        held, dc.is_valid(held.columns, contract, with_label=with_label), identity, None if rows is None else int(rows),
        {f.name: int(stats[f"__missing_{f.name}"] or 0) for f in contract.features} if count_missing else {},
        int(stats["__keyed"]) - int(stats["__distinct"]) if keys else 0,
        int(stats["__rejected"]) if count_rejected else None,
        {v: int(stats[f"__class_{v}"]) for v in contract.label_values} if count_rejected and with_label else None,
    )


def _typed(df: DataFrame, contract: dc.DataContract, with_label: bool, keep_input: tuple[str, ...]) -> DataFrame:
    typed = dc.conform(df, contract, with_label=with_label)
    return typed.withColumns({f"{c}{INPUT_SUFFIX}": F.col(c) for c in keep_input}) if keep_input else typed


def _held(typed: DataFrame, contract: dc.DataContract, with_label: bool) -> DataFrame:
    return dc.with_rejection_reason(dc.apply_missing_markers(typed, contract), contract, with_label=with_label)


def _is_missing(feature: dc.FeatureSpec, dtype: str, column: str):
    """Whether ``column`` (the feature's values as given, of type ``dtype``) is empty, null or a marker."""
    raw = F.col(column)
    empty = raw.isNull() | (F.trim(raw.cast("string")) == "") if dtype == "string" else raw.isNull()
    if feature.missing_values:
        value = raw if dtype == dc.spark_type(feature) else raw.try_cast(dc.spark_type(feature))
        empty = empty | value.isin(list(feature.missing_values))
    return empty


def check_missing(checked: CheckedInput, source: str, max_fraction: float) -> None:
    """Refuse an input where a feature is missing in more than ``max_fraction`` of the rows."""
    if not 0.0 <= max_fraction <= 1.0:
        raise ConfigError(f"--max-null-fraction must be between 0 and 1, found {max_fraction}")
    over = {name: n for name, n in checked.missing.items() if n > max_fraction * checked.rows}
    if over:
        details = ", ".join(f"{name} {n} of {checked.rows} ({n / checked.rows:.0%})" for name, n in over.items())
        raise DataContractError(
            f"{source}: feature(s) missing in more than {max_fraction:.0%} of rows: {details} "
            "(empty, null or a 'not measured' value)"
        )


def check_duplicate_keys(checked: CheckedInput, source: str) -> None:
    if checked.duplicate_keys:
        keys = list(checked.identity)
        sample = (checked.df.groupBy(*keys).count().where(F.col("count") > 1).limit(3).collect())
        raise DataContractError(
            f"{source}: {checked.duplicate_keys} row(s) repeat a key {keys} of an earlier row "
            f"(e.g. {[tuple(r[k] for k in keys) for r in sample]}); keys must be unique"
        )


def _type_of(contract: dc.DataContract, column: str) -> str:
    if column == contract.label:
        return f"integers (the label must be one of {list(contract.label_values)})"
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
    # Names first: a bad table name stops the step before anything is read or written.
    clean_name, quarantine_name = settings.table_name(conf.clean_table), settings.table_name(conf.quarantine_table)
    if clean_name == quarantine_name:
        raise ConfigError(f"--clean-table and --quarantine-table are the same table {clean_name}")
    contract = dc.load_contract(settings.contract)  # a bad contract stops the step before Spark starts
    spark = get_spark(settings)
    with span("prepare.check"):  # the contract's one counting pass over the input
        checked = read_checked(spark, settings, conf.input, contract, with_label=True, count_duplicate_keys=True,
                               count_rejected=True)
    check_duplicate_keys(checked, conf.input)
    # An all-missing feature cannot be imputed (no median): refuse it here, not in train.
    empty = [name for name, n in checked.missing.items() if n == checked.rows]
    if empty:
        raise DataContractError(
            f"{conf.input}: feature(s) {empty} have no value in any of the {checked.rows} rows "
            "(empty, null or a 'not measured' value): nothing to learn or impute from"
        )
    # Cached only when two writes scan it (clean and quarantine); without rejects only one does.
    df = checked.df.cache() if checked.rejected else checked.df
    try:
        with span("prepare.write"):  # two Delta commits: quarantine, then clean
            result = _write_clean_and_quarantine(spark, settings, conf, contract, checked, df, clean_name,
                                                 quarantine_name)
    finally:
        if checked.rejected:
            df.unpersist()
    print(
        f"prepare: {result.rows_in} rows in -> {result.rows_clean} clean ({result.clean_table}), "
        f"{result.rows_quarantined} quarantined ({result.quarantine_table}); classes {result.class_counts}"
        + ("; no key column: row ids derived" if checked.row_id_derived else "")
    )
    return result


def _write_clean_and_quarantine(
    spark: SparkSession, settings: Settings, conf: PrepareConfig, contract: dc.DataContract,
    checked: CheckedInput, df: DataFrame, clean_name: str, quarantine_name: str,
) -> PrepareResult:
    valid = checked.valid
    rejected, class_counts = checked.rejected, checked.class_counts  # counted in read_checked's one pass
    rows_clean = sum(class_counts.values())
    if rows_clean < conf.min_rows:
        raise DataContractError(
            f"{conf.input}: only {rows_clean} clean row(s) of {checked.rows} (expected at least "
            f"{conf.min_rows}; {rejected} quarantined)"
        )
    present = [v for v, n in class_counts.items() if n > 0]
    if len(present) < 2:
        raise DataContractError(
            f"{conf.input}: label {contract.label} has a single class among clean rows "
            f"(expected {list(contract.label_values)}, found {class_counts})"
        )
    columns = dc.expected_columns(contract, with_label=True, identity=checked.identity)
    clean = dc.assign_split(df.where(valid).select(*columns), contract, conf.holdout_fraction, conf.split_seed)
    # No rejected row: an empty quarantine that Spark knows is empty (limit 0 needs no scan).
    quarantine = (df.limit(0) if rejected == 0 else df.where(~valid)).select(
        *columns, dc.REASON_COLUMN, F.lit(conf.input).alias("source"), F.current_timestamp().alias("rejected_at")
    )
    # One Delta commit per table, and none across tables: the quarantine first, the clean table
    # (what train reads) last. A crash between the two leaves the new quarantine beside the old
    # clean table; rerunning prepare on the same input overwrites both.
    tables = tables_for(spark, settings)
    tables.replace(quarantine_name, quarantine)
    tables.replace(clean_name, clean)
    return PrepareResult(
        rows_in=checked.rows,
        rows_clean=rows_clean,
        rows_quarantined=rejected,
        class_counts=class_counts,
        clean_table=clean_name,
        quarantine_table=quarantine_name,
    )


DEFAULT_MAX_NULL_FRACTION = 0.9


def check_batch(
    settings: Settings,
    source: str,
    *,
    max_rejected_fraction: float = 0.5,
    max_null_fraction: float = DEFAULT_MAX_NULL_FRACTION,
) -> tuple[int, int]:
    """Hold a scoring batch to the contract (no label needed) without writing anything.

    Fails when more than ``max_rejected_fraction`` of the rows break the contract, when a
    feature is missing in more than ``max_null_fraction`` of the rows (it would be imputed
    for almost every row and scored silently), or when a key repeats. A passed check of a job run
    (``settings.job_run_id``) is recorded for that run's ``score`` (batch_check.py).
    """
    from spark_mlops import batch_check

    spark = get_spark(settings)
    contract = dc.load_contract(settings.contract)
    # The input's identity before the read: a change during the check then shows as another input.
    identity = batch_check.input_identity(source, settings, tables_for(spark, settings))
    with span("check_batch.count"):  # the contract's one counting pass over the batch
        checked = read_checked(spark, settings, source, contract, with_label=False, count_duplicate_keys=True,
                               count_rejected=True)
    check_missing(checked, source, max_null_fraction)
    check_duplicate_keys(checked, source)
    rows, rejected = checked.rows, checked.rejected
    print(f"check-batch: {source}: {rows} rows, {rejected} break the contract (they will not be scored)")
    if rejected > max_rejected_fraction * rows:
        raise DataContractError(
            f"{source}: {rejected} of {rows} rows break the contract (more than the allowed "
            f"{max_rejected_fraction:.0%}); first reasons: "
            f"{[r[0] for r in checked.df.where(F.col(dc.REASON_COLUMN).isNotNull()).select(dc.REASON_COLUMN).limit(3).collect()]}"
        )
    with span("check_batch.record"):
        batch_check.record(settings, identity, contract, rows, rejected)  # for score of this job run
    return rows, rejected
