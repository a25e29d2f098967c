"""Batch scoring with ``@champion``: the Spark model's own ``transform`` (no Python UDF).

The alias is resolved to a version number once, and that number is both what is loaded and
what every output row records. Each batch id is one partition of the output table and of the
rejects table, each replaced by its own Delta commit (``replaceWhere``), so rerunning a batch
replaces it and duplicates nothing. Without ``--batch-id`` the id names the input itself (see
:func:`default_batch_id`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import mlflow
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from spark_mlops import batch_check, evaluation, registry, tracking
from spark_mlops import contract as dc
from spark_mlops.config import CHAMPION_ALIAS, ScoreConfig, Settings, redact
from spark_mlops.errors import ConfigError, DataContractError, NoChampion
from spark_mlops.prepare import INPUT_SUFFIX, read_checked
from spark_mlops.spark import get_spark
from spark_mlops.tables import DeltaTables, check_partition_value, rows_written, tables_for
from spark_mlops.timing import span

BATCH_COLUMN = "batch_id"
# The message of the predictions' guard (see run): a row out of contract in a batch vouched clean.
_VOUCHED_ROW_REJECTED = "score: a row of a batch check-batch counted clean breaks the contract"


def default_batch_id(source: str, settings: Settings | None = None, tables: DeltaTables | None = None) -> str:
    """An id that names the input itself: ``<name>-<digest>``.

    - A local file or folder (``/Volumes/…`` included): the digest is SHA-256 over the absolute
      path and each data file's relative path, size and modification time (nanoseconds), read
      from the file system without reading the data, so ``score``, ``monitor`` and
      ``drift-check`` each name the batch at the cost of a ``stat`` per file and all three agree.
      ``/in/a/latest.csv`` and ``/in/b/latest.csv`` never collide; re-running the same unchanged
      input gives the same id (and replaces exactly its own batch); a file written again at the
      same path is a new batch. Only a copy that keeps both size and modification time (``cp -p``
      of other content) would be mistaken for the same batch: pass ``--batch-id`` when inputs are
      made that way.
    - A table: the digest covers the qualified name and the table's current Delta version.
    - A remote URI (``abfss:``, ``s3:``, ``dbfs:``): only the URI is digested, since its content
      cannot be read without Spark; pass ``--batch-id`` to tell versions apart.
    ``<name>`` is the file (or table) name, for people reading the table; the digest makes it unique.
    """
    return batch_check.input_identity(source, settings, tables).batch_id


def with_lineage(
    scored: DataFrame, contract: dc.DataContract, model_name: str, version: str, scored_at: datetime,
    *, identity: tuple[str, ...] | None = None, pass_through: list[str] = (),
) -> DataFrame:
    """The output rows: what identifies the input row (keys, or row id plus pass-through columns
    with their input values), the prediction, P(class 1) and which model made them."""
    return scored.select(
        *(contract.key_columns if identity is None else identity),
        *[F.col(f"{c}{INPUT_SUFFIX}").alias(c) if f"{c}{INPUT_SUFFIX}" in scored.columns else F.col(c)
          for c in pass_through],
        F.col(evaluation.PREDICTION_COLUMN).cast("int").alias("prediction"),
        evaluation.positive_probability().alias("probability"),
        F.lit(model_name).alias("model_name"),
        F.lit(str(version)).alias("model_version"),
        F.lit(scored_at).cast("timestamp").alias("scored_at"),
    )


def without_raw_prediction(model):
    """The model, minus its final classifier's raw prediction column when nothing after it reads it:
    the probability is then computed from the features directly, without a raw vector per row
    (ProbabilisticClassificationModel.transform in Spark's ml/classification/ProbabilisticClassifier.scala).
    The loaded model is not changed (the stage is copied); a model without the param is returned as is."""
    from pyspark.ml import PipelineModel

    stages = list(model.stages) if isinstance(model, PipelineModel) else [model]
    for i in range(len(stages) - 1, -1, -1):
        stage = stages[i]
        if not stage.hasParam("rawPredictionCol") or not stage.getOrDefault("rawPredictionCol"):
            continue
        raw_column = stage.getOrDefault("rawPredictionCol")
        if any(_reads(later, raw_column) for later in stages[i + 1:]):
            return model
        stages[i] = stage.copy({stage.getParam("rawPredictionCol"): ""})
        return PipelineModel(stages) if isinstance(model, PipelineModel) else stages[i]
    return model


def _reads(stage, column: str) -> bool:
    """Whether any of ``stage``'s column parameters names ``column``."""
    for param in stage.params:
        if stage.isDefined(param):
            value = stage.getOrDefault(param)
            if value == column or (isinstance(value, list | tuple) and column in value):
                return True
    return False


# mlflow's column types (mlflow.types.DataType names) for Spark's simple type names.
_MLFLOW_TYPES = {"double": "double", "float": "float", "int": "integer", "bigint": "long",
                 "string": "string", "boolean": "boolean"}


def check_signature(signature, columns: dict[str, str], version: str, source: str) -> None:
    """Refuse a batch whose columns do not give the champion what its signature asks for.

    ``columns`` maps the batch's column names to Spark type names (``df.dtypes``).
    """
    if signature is None or signature.inputs is None:
        print(f"score: champion v{version} has no signature; its inputs are not checked")
        return
    wanted = {spec.name: spec.type.name for spec in signature.inputs.inputs}
    missing = sorted(n for n in wanted if n not in columns)
    mistyped = {n: f"{_MLFLOW_TYPES.get(columns[n], columns[n])} (model expects {t})"
                for n, t in wanted.items() if n in columns and _MLFLOW_TYPES.get(columns[n], columns[n]) != t}
    if missing or mistyped:
        problems = ([f"missing {missing}"] if missing else []) + [f"{n} is {d}" for n, d in mistyped.items()]
        raise DataContractError(
            f"{source}: the batch does not fit the champion v{version}'s signature: {'; '.join(problems)} "
            "(was the model trained under another data contract?)"
        )


def _counted_clean(settings: Settings, experiment_id: str, identity: batch_check.InputIdentity, contract) -> bool:
    record = batch_check.find(settings, experiment_id, identity, contract)
    if record is None:
        return False
    print(f"score: check-batch of this job run counted {record.rows} rows, {record.rejected} rejected, in this input")
    return record.rejected == 0


@dataclass(frozen=True)
class ScoreResult:
    batch_id: str
    model_version: str
    rows_in: int
    rows_out: int
    rows_rejected: int
    output_table: str


def run(settings: Settings, conf: ScoreConfig) -> ScoreResult:
    # Names first: bad table names or batch ids stop the step before anything is read or written.
    output, rejected_table = settings.table_name(conf.output_table), settings.table_name(conf.rejected_table)
    if output == rejected_table:
        raise ConfigError(f"--output-table and --rejected-table are the same table {output}")
    if conf.batch_id:
        check_partition_value(conf.batch_id, "--batch-id")
    spark = get_spark(settings)
    tables = tables_for(spark, settings)
    # The input's identity before anything reads it: a check record is trusted only for this identity.
    input_identity = batch_check.input_identity(conf.input, settings, tables)
    batch_id = conf.batch_id or check_partition_value(input_identity.batch_id, "batch id")
    contract = dc.load_contract(settings.contract)
    experiment_id = tracking.configure(settings)
    version = registry.alias_version(settings, CHAMPION_ALIAS)
    if version is None:
        raise NoChampion(redact(f"model {settings.model_name} has no @{CHAMPION_ALIAS} in {settings.registry_uri} "
                                "yet, so there is nothing to score with: run the release (or, in prod, the "
                                "model_deployment) job first" + registry.other_models_hint(settings)))
    pass_through_hint = contract.pass_through_columns or contract.feature_names
    # The contract's structure (columns, types) from the schema. A typed input (parquet, a table)
    # is then read only by the writes below: counting it first would be a pass over the batch that
    # the job's check_batch has made already (and recorded: batch_check.py). An input whose values
    # may fail their types (a CSV) is counted here, rejects included, since a bad value must stop
    # the step before anything is written.
    with span("score.check"):
        checked = read_checked(spark, settings, conf.input, contract, with_label=False, count_missing=False,
                               count_rejected=True, only_if_needed=True,
                               keep_input=tuple(c for c in pass_through_hint if c in contract.feature_names))
    identity = checked.identity
    pass_through = contract.pass_through(identity)
    absent = [c for c in pass_through if c not in checked.df.columns]
    if absent:
        raise DataContractError(f"{conf.input}: pass-through column(s) {absent} of contract {contract.name} "
                                f"are not in the batch; found {checked.df.columns}")
    with span("score.load_model"):
        fitted, signature = registry.load_spark_model(settings, version)
    check_signature(signature, dict(checked.df.dtypes), version, conf.input)

    valid = checked.valid
    carried = [*identity, *[c for c in checked.df.columns if c.endswith(INPUT_SUFFIX)],
               *[c for c in pass_through if c not in contract.feature_names]]
    model_inputs = [*dict.fromkeys([*carried, *contract.feature_names])]
    scored_at = datetime.now(UTC).replace(microsecond=0)
    # A typed batch this job run's check-batch counted clean (batch_check.py says what is trusted).
    vouched = checked.rejected is None and _counted_clean(settings, experiment_id, input_identity, contract)
    model = without_raw_prediction(fitted)

    def predictions(rows: Column) -> DataFrame:
        scored = model.transform(checked.df.where(rows).select(*model_inputs))
        return with_lineage(scored, contract, settings.model_name, version, scored_at, identity=identity,
                            pass_through=pass_through)

    rejected = checked.df.where(~valid).select(
        *dict.fromkeys([*identity, *contract.feature_names, *pass_through]), dc.REASON_COLUMN,
        F.lit(scored_at).alias("rejected_at"))

    # One Delta commit per table, none across them: the rejects first, the predictions last, so
    # a batch's predictions never appear before its rejects. A crash in between leaves this batch's
    # new rejects beside its old predictions (or none); rerunning the batch replaces both, and other
    # batches are never touched. Rejects counted as none (here, or by this job run's check-batch of
    # this very input) are not written (a DELETE clears the batch's old ones); otherwise they are
    # written even when there are none (the commit then empties the batch's partition), since only
    # reading the batch would tell. The row counts are what each commit records it wrote (Delta's
    # operation metrics), not another pass. Not DataFrame.observe: once a score had observed its write, later Spark jobs over cached
    # data in the same session failed with "Task not serializable: ObservationManager" (Spark 4.1.4,
    # seen when the local runner's next task trained and evaluated in the same process). The
    # positive rate is the monitor's, which reads the predictions anyway.
    # A batch vouched clean by its check is read once: its old rejects are deleted (whole files, no
    # read of the batch) and the predictions' write is the one pass. That write holds every row it
    # reads to the contract again (the guard: a rejected row fails the write's Spark job, so nothing
    # is committed), since a change of content that the input's identity does not show (a copy that
    # keeps size and modification time, a rewrite while score reads) must never be scored on the
    # strength of an older check: then the batch is written as an unvouched one, rejects first.
    with span("score.write"):
        rows_out = None
        if checked.rejected == 0 or vouched:
            with span("score.delete_rejects"):
                tables.delete_partition(rejected_table, BATCH_COLUMN, batch_id)
            rows_rejected = 0
            guard = F.when(valid, F.lit(True)).otherwise(F.raise_error(F.lit(_VOUCHED_ROW_REJECTED)))
            try:
                rows_out = rows_written(tables.replace_partition(
                    output, predictions(guard if vouched else valid), BATCH_COLUMN, batch_id))
            except Exception as exc:  # the guard's failure arrives wrapped in Spark's job failure
                if not vouched or _VOUCHED_ROW_REJECTED not in str(exc):
                    raise
                print(f"score: {conf.input} has rows out of contract that check-batch did not count (it "
                      "changed since the check): writing its rejects first, as for an unchecked batch")
        if rows_out is None:
            rows_rejected = rows_written(tables.replace_partition(rejected_table, rejected, BATCH_COLUMN, batch_id))
            rows_out = rows_written(tables.replace_partition(output, predictions(valid), BATCH_COLUMN, batch_id))
    result = ScoreResult(batch_id, str(version), rows_out + rows_rejected, rows_out, rows_rejected, output)

    with span("score.log_run"), mlflow.start_run(experiment_id=experiment_id, run_name=f"score-{batch_id}",
                          tags=tracking.safe({**settings.run_tags(), "step": "score",
                                              "model_version": result.model_version})):
        tracking.log_params({"model_name": settings.model_name, "model_version": result.model_version,
                             "batch_id": batch_id, "input": conf.input, "output_table": output})
        mlflow.log_metrics({"rows_in": result.rows_in, "rows_out": result.rows_out,
                            "rows_rejected": result.rows_rejected})
    print(
        f"score: batch {batch_id}: {result.rows_in} rows in, {result.rows_out} scored by {settings.model_name} "
        f"v{version} into {output}, {result.rows_rejected} rejected"
        f"{f' into {rejected_table}' if result.rows_rejected else ''}"
    )
    return result
