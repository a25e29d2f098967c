"""Batch scoring with ``@champion``: the Spark model's own ``transform`` (no Python UDF).

The alias is resolved to a version number once, and that number is both what is loaded and
what every output row records. Each batch id is one partition of the output table, replaced
atomically, so rerunning a batch replaces it and duplicates nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath

import mlflow
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from spark_mlops import contract as dc
from spark_mlops import evaluation, registry, tracking
from spark_mlops.config import CHAMPION_ALIAS, ScoreConfig, Settings, redact
from spark_mlops.errors import NoChampion
from spark_mlops.prepare import read_checked
from spark_mlops.spark import get_spark
from spark_mlops.tables import check_partition_value, is_path, tables_for
from spark_mlops.timing import span

BATCH_COLUMN = "batch_id"


def default_batch_id(source: str) -> str:
    """A stable id from the input's name, so rerunning the same input replaces its batch."""
    name = PurePosixPath(source.rstrip("/")).stem if is_path(source) else source
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:128] or "batch"


def with_lineage(
    scored: DataFrame, contract: dc.DataContract, model_name: str, version: str, scored_at: datetime
) -> DataFrame:
    """The output rows: the input's keys, the prediction, P(class 1) and which model made them."""
    return scored.select(
        *contract.key_columns,
        F.col(evaluation.PREDICTION_COLUMN).cast("int").alias("prediction"),
        evaluation.positive_probability().alias("probability"),
        F.lit(model_name).alias("model_name"),
        F.lit(str(version)).alias("model_version"),
        F.lit(scored_at).cast("timestamp").alias("scored_at"),
    )


@dataclass(frozen=True)
class ScoreResult:
    batch_id: str
    model_version: str
    rows_in: int
    rows_out: int
    rows_rejected: int
    positive_rate: float
    output_table: str


def run(settings: Settings, conf: ScoreConfig) -> ScoreResult:
    spark = get_spark(settings)
    contract = dc.load_contract(settings.contract)
    batch_id = check_partition_value(conf.batch_id or default_batch_id(conf.input), "--batch-id")
    experiment_id = tracking.configure(settings)
    version = registry.alias_version(settings, CHAMPION_ALIAS)
    if version is None:
        raise NoChampion(redact(f"model {settings.model_name} has no @{CHAMPION_ALIAS} in {settings.registry_uri} "
                                "yet, so there is nothing to score with: run the release (or, in prod, the "
                                "model_deployment) job first"))
    checked = read_checked(spark, settings, conf.input, contract, with_label=False)
    with span("score.load_model"):
        fitted, _ = registry.load_spark_model(settings, version)

    valid = F.col(dc.REASON_COLUMN).isNull()
    features = [*contract.key_columns, *contract.feature_names]
    scored_at = datetime.now(UTC).replace(microsecond=0)
    predictions = with_lineage(fitted.transform(checked.where(valid).select(*features)), contract,
                               settings.model_name, version, scored_at)
    rejected = checked.where(~valid).select(*features, dc.REASON_COLUMN, F.lit(scored_at).alias("rejected_at"))

    output, rejected_table = settings.table_name(conf.output_table), settings.table_name(conf.rejected_table)
    tables = tables_for(spark, settings)
    tables.replace_partition(rejected_table, rejected, BATCH_COLUMN, batch_id)
    tables.replace_partition(output, predictions, BATCH_COLUMN, batch_id)

    # Counted from what was written: one pass over each written batch, not over the input again.
    written = tables.read(output).where(F.col(BATCH_COLUMN) == batch_id)
    stats = written.agg(F.count(F.lit(1)).alias("n"), F.avg("prediction").alias("rate")).first()
    n_rejected = tables.read(rejected_table).where(F.col(BATCH_COLUMN) == batch_id).count()
    result = ScoreResult(batch_id, str(version), int(stats["n"]) + n_rejected, int(stats["n"]), n_rejected,
                         float(stats["rate"] or 0.0), output)

    with mlflow.start_run(experiment_id=experiment_id, run_name=f"score-{batch_id}",
                          tags={**settings.run_tags(), "step": "score", "model_version": result.model_version}):
        mlflow.log_params({"model_name": settings.model_name, "model_version": result.model_version,
                           "batch_id": batch_id, "input": conf.input, "output_table": output})
        mlflow.log_metrics({"rows_in": result.rows_in, "rows_out": result.rows_out,
                            "rows_rejected": result.rows_rejected, "positive_rate": result.positive_rate})
    print(
        f"score: batch {batch_id}: {result.rows_in} rows in, {result.rows_out} scored by {settings.model_name} "
        f"v{version} into {output}, {result.rows_rejected} rejected into {rejected_table}; "
        f"positive rate {result.positive_rate:.3f}"
    )
    return result
