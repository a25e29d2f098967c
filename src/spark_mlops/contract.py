"""The data contract: which columns a dataset must have, their types and allowed values.

Everything dataset-specific lives in a contract YAML (the packaged example is
``contracts/pima_diabetes.yml``). The functions here are pure DataFrame -> DataFrame
transformations; checks that need a Spark action return counts for the caller to judge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from spark_mlops.errors import ConfigError, DataContractError

REASON_COLUMN = "rejection_reason"
SPLIT_COLUMN = "split"
_TYPES = {"double": "double", "int": "int", "long": "bigint", "string": "string"}


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    type: str = "double"
    min: float | None = None
    max: float | None = None
    missing_values: tuple[float, ...] = ()
    nullable: bool = True


@dataclass(frozen=True)
class DataContract:
    name: str
    label: str
    features: tuple[FeatureSpec, ...]
    label_values: tuple[int, ...] = (0, 1)
    key_columns: tuple[str, ...] = field(default_factory=tuple)

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def positive_label(self) -> int:
        return max(self.label_values)


def load_contract(path: str | None = None) -> DataContract:
    """Load a contract YAML; ``None`` loads the packaged example contract."""
    if path is None:
        text = resources.files("spark_mlops.contracts").joinpath("pima_diabetes.yml").read_text()
        origin = "packaged contract pima_diabetes.yml"
    else:
        if not Path(path).is_file():
            raise ConfigError(f"data contract {path} does not exist")
        text, origin = Path(path).read_text(), path
    try:
        raw = yaml.safe_load(text)
        features = tuple(
            FeatureSpec(
                name=f["name"],
                type=f.get("type", "double"),
                min=f.get("min"),
                max=f.get("max"),
                missing_values=tuple(f.get("missing_values", ())),
                nullable=bool(f.get("nullable", True)),
            )
            for f in raw["features"]
        )
        contract = DataContract(
            name=raw["name"],
            label=raw["label"],
            features=features,
            label_values=tuple(raw.get("label_values", (0, 1))),
            key_columns=tuple(raw.get("key_columns", ())),
        )
    except (KeyError, TypeError, yaml.YAMLError) as exc:
        raise ConfigError(f"data contract {origin} is malformed: {exc!r}") from exc
    unknown = [f.name for f in contract.features if f.type not in _TYPES]
    if unknown:
        raise ConfigError(f"data contract {origin}: unsupported type for {unknown}; use one of {sorted(_TYPES)}")
    return contract


def expected_columns(contract: DataContract, *, with_label: bool) -> list[str]:
    return [*contract.key_columns, *contract.feature_names, *([contract.label] if with_label else [])]


def check_columns(columns: list[str], contract: DataContract, source: str, *, with_label: bool) -> None:
    """Raise when a required column is missing, naming the source and what was found."""
    missing = [c for c in expected_columns(contract, with_label=with_label) if c not in columns]
    if missing:
        raise DataContractError(
            f"{source}: missing required column(s) {missing}; found columns {columns} "
            f"(contract {contract.name})"
        )


def _cast(column: str, spark_type: str) -> Column:
    # try_cast: with ANSI mode (the Spark 4 default) a plain cast of "abc" fails the whole job.
    return F.col(column).try_cast(spark_type)


def type_error_counts(df: DataFrame, contract: DataContract, *, with_label: bool) -> DataFrame:
    """One row: for each contract column, how many non-empty values do not cast to its type."""
    checks = [(f.name, _TYPES[f.type]) for f in contract.features]
    if with_label:
        checks.append((contract.label, "int"))
    aggs = []
    for name, spark_type in checks:
        raw = F.col(name)
        bad = raw.isNotNull() & (F.trim(raw.cast("string")) != "") & _cast(name, spark_type).isNull()
        aggs.append(F.sum(F.when(bad, 1).otherwise(0)).alias(name))
    return df.agg(*aggs)


def conform(df: DataFrame, contract: DataContract, *, with_label: bool) -> DataFrame:
    """Cast contract columns to their types (keys as strings); other columns pass through."""
    out = df
    for key in contract.key_columns:
        out = out.withColumn(key, F.col(key).cast("string"))
    for f in contract.features:
        out = out.withColumn(f.name, _cast(f.name, _TYPES[f.type]))
    if with_label:
        out = out.withColumn(contract.label, _cast(contract.label, "int"))
    return out


def apply_missing_markers(df: DataFrame, contract: DataContract) -> DataFrame:
    """Replace sentinel values that mean "not measured" (e.g. 0 for Glucose) with null."""
    out = df
    for f in contract.features:
        if f.missing_values:
            out = out.withColumn(
                f.name, F.when(F.col(f.name).isin(list(f.missing_values)), F.lit(None)).otherwise(F.col(f.name))
            )
    return out


def with_rejection_reason(df: DataFrame, contract: DataContract, *, with_label: bool) -> DataFrame:
    """Add ``rejection_reason``: null for a valid row, else every broken rule joined by '; '."""
    reasons: list[Column] = []
    if with_label:
        label = F.col(contract.label)
        reasons.append(F.when(label.isNull(), F.lit(f"{contract.label} is missing")))
        reasons.append(
            F.when(
                label.isNotNull() & ~label.isin(list(contract.label_values)),
                F.concat(F.lit(f"{contract.label}="), label.cast("string"),
                         F.lit(f" not in {list(contract.label_values)}")),
            )
        )
    for key in contract.key_columns:
        reasons.append(F.when(F.col(key).isNull(), F.lit(f"{key} is missing")))
    for f in contract.features:
        c = F.col(f.name)
        if not f.nullable:
            reasons.append(F.when(c.isNull(), F.lit(f"{f.name} is missing")))
        if f.min is not None:
            reasons.append(F.when(c < f.min, F.concat(F.lit(f"{f.name}="), c.cast("string"), F.lit(f" < {f.min}"))))
        if f.max is not None:
            reasons.append(F.when(c > f.max, F.concat(F.lit(f"{f.name}="), c.cast("string"), F.lit(f" > {f.max}"))))
    reason = F.concat_ws("; ", *reasons)
    return df.withColumn(REASON_COLUMN, F.when(reason == "", F.lit(None)).otherwise(reason))


def assign_split(df: DataFrame, contract: DataContract, holdout_fraction: float, seed: int) -> DataFrame:
    """Add ``split`` = train | holdout from a seeded hash of the row key (or of all contract columns).

    A hash, unlike ``randomSplit``, gives every row the same split whatever the partitioning.
    """
    if not 0.0 < holdout_fraction < 1.0:
        raise ConfigError(f"--holdout-fraction must be between 0 and 1, found {holdout_fraction}")
    key_cols = list(contract.key_columns) or [*contract.feature_names, contract.label]
    bucket = F.pmod(F.xxhash64(F.lit(seed), *[F.col(c) for c in key_cols]), F.lit(10_000))
    return df.withColumn(
        SPLIT_COLUMN, F.when(bucket < int(holdout_fraction * 10_000), "holdout").otherwise("train")
    )
