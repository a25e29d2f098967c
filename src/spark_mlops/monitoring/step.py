"""The ``monitor`` and ``drift-check`` steps: read the batch and the scoring version's baseline,
judge, and write the verdict (the monitoring table, an MLflow run with the drift chart, the
version's tags); the drift gate reads it back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

from spark_mlops import constants
from spark_mlops import defaults as D
from spark_mlops import registry_tags as rt
from spark_mlops.errors import ConfigError, DataContractError, MlopsError, RegistryError
from spark_mlops.monitoring.profiling import BASELINE_FORMAT, batch_stats
from spark_mlops.monitoring.statistics import (
    DRIFT,
    INSUFFICIENT,
    MONITORING_SCHEMA,
    OK,
    QUALITY,
    BatchVerdict,
    Thresholds,
    judge,
    verdict_rows,
)
from spark_mlops.timing import span


class DriftDetected(MlopsError):
    """The batch's verdict is drift: the drift gate's signal (``drift-check``)."""

    exit_code = constants.EXIT_DRIFT


@dataclass(frozen=True)
class MonitorConfig:
    batch_id: str  # "" = derived from ``input`` as score derives it
    predictions_table: str = D.PREDICTIONS_TABLE
    rejected_table: str = D.SCORING_REJECTED_TABLE
    monitoring_table: str = D.MONITORING_TABLE
    input: str | None = None  # the batch's input, when the predictions carry no feature columns
    thresholds: Thresholds = field(default_factory=Thresholds)


def load_baseline(settings, version: str) -> dict:
    """The baseline of ``version`` (the version that scored the batch, not today's @champion), read
    from the version's own checked files."""
    from spark_mlops import registry, trust

    try:
        baseline = registry.read_version_file(settings, version, trust.BASELINE_FILE)
    except RegistryError as exc:
        if trust.BASELINE_FILE not in str(exc):
            raise
        raise RegistryError(
            f"{settings.model_name} v{version} has no {trust.BASELINE_FILE} in its files: it was trained before "
            "baselines travelled with the version; retrain it (or score with a newer version) to monitor its batches"
        ) from exc
    if baseline.get("format") != BASELINE_FORMAT:
        raise RegistryError(f"{settings.model_name} v{version} {trust.BASELINE_FILE}: baseline format "
                            f"{baseline.get('format')!r}, expected {BASELINE_FORMAT}")
    return baseline


# ---------------------------------------------------------------- monitoring a batch


def drift_figure(v: BatchVerdict):
    """PSI per feature (and of P(class 1)) as bars, with the drift threshold, the customary
    0.1 'watch' line and each PSI's sampling-noise bound drawn."""
    from spark_mlops.evaluation import pyplot

    plt = pyplot()
    names = [f.name for f in v.features] + ["P(class 1)"]
    values = [f.psi or 0.0 for f in v.features] + [v.output_psi or 0.0]
    statuses = [f.status for f in v.features] + [v.output_status]
    bounds = [f.psi_noise_bound for f in v.features] + [v.output_psi_noise_bound]
    colors = {DRIFT: "#c0392b", QUALITY: "#e67e22", OK: "#2e86c1", INSUFFICIENT: "#95a5a6"}
    fig, ax = plt.subplots(figsize=(8, 4.2), dpi=100)
    ax.barh(names[::-1], values[::-1], color=[colors[s] for s in statuses[::-1]])
    ax.axvline(v.thresholds.psi, color="#c0392b", linestyle="--", label=f"drift: PSI >= {v.thresholds.psi}")
    ax.axvline(0.1, color="grey", linestyle=":", label="watch: PSI >= 0.1")
    known = [(name, b) for name, b in zip(names, bounds, strict=True) if b is not None]
    if known:  # a PSI at or under its tick is sampling noise
        ax.scatter([b for _, b in known], [name for name, _ in known], marker="|", s=300, color="black",
                   label=f"sampling-noise bound ({v.thresholds.psi_noise_quantile:.0%})")
    for name, value, status in zip(names[::-1], values[::-1], statuses[::-1], strict=True):
        label = f"{value:.2f}" + (" (nulls)" if status == QUALITY else "")
        ax.text(value, name, " " + label, va="center", fontsize=8)
    ax.set(xlabel="population stability index vs the training baseline",
           title=f"Batch {v.batch_id} scored by v{v.model_version}: {v.verdict}")
    ax.set_xlim(0, max([*values, *[b for _, b in known], v.thresholds.psi]) * 1.25 + 0.05)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def run(settings, conf: MonitorConfig) -> list[BatchVerdict]:
    """Monitor one batch: one verdict per model version found in it (normally exactly one)."""
    import mlflow
    from pyspark.sql import functions as F

    from spark_mlops import contract as dc
    from spark_mlops import evaluation, registry, tracking
    from spark_mlops.scoring import BATCH_COLUMN
    from spark_mlops.spark import frame_of_rows, get_spark
    from spark_mlops.tables import tables_for

    t = conf.thresholds.check()
    spark = get_spark(settings)
    contract = dc.load_contract(settings.contract)
    tables = tables_for(spark, settings)
    batch_id = resolve_batch_id(settings, tables, conf.batch_id, conf.input)
    predictions_table = settings.table_name(conf.predictions_table)
    rejected_table = settings.table_name(conf.rejected_table)
    monitoring_table = settings.table_name(conf.monitoring_table)
    if not tables.exists(predictions_table):
        raise DataContractError(f"table {predictions_table} does not exist: score a batch first")
    batch = tables.read(predictions_table).where(F.col(BATCH_COLUMN) == batch_id)
    with span("monitor.versions"):
        versions = sorted({r[0] for r in batch.select("model_version").distinct().collect()})
    if not versions:
        raise DataContractError(f"{predictions_table} has no rows for batch {batch_id!r}: score it first")
    carried = all(f in batch.columns for f in contract.feature_names)
    inputs = None
    if not carried:  # score kept no feature columns: take them from the batch's input
        inputs = _input_features(spark, settings, contract, conf.input)
        if len(versions) > 1:  # only the row key can tell which version scored which row
            batch, inputs = _join_on_key(batch, inputs, contract, conf.input), None
    rejected = None
    if tables.exists(rejected_table):
        rejected = tables.read(rejected_table).where(F.col(BATCH_COLUMN) == batch_id)

    experiment_id = tracking.configure(settings)
    evaluation.import_pyplot_in_background()  # for the drift figure, while Spark counts the batch
    verdicts = []
    for version in versions:
        baseline = load_baseline(settings, version)
        scored = batch if len(versions) == 1 else batch.where(F.col("model_version") == version)
        with span("monitor.stats"):
            stats = batch_stats(scored, rejected if len(versions) == 1 else None, baseline, contract, features=inputs)
        v = judge(batch_id, settings.model_name, version, baseline, stats, t)
        v.monitored_at = datetime.now(UTC).replace(microsecond=0).isoformat()
        with span("monitor.log_run"), mlflow.start_run(experiment_id=experiment_id, run_name=f"monitor-{batch_id}",
                              tags=tracking.safe({**settings.run_tags(), rt.RUN_STEP: "monitor",
                                                  rt.RUN_MODEL_VERSION: version, "batch_id": batch_id,
                                                  rt.RUN_VERDICT: v.verdict})) as mlrun:
            v.run_id = mlrun.info.run_id
            _log(v)
        verdicts.append(v)

    rows = [r for v in verdicts for r in verdict_rows(v, settings.job_run_id)]
    frame = frame_of_rows(spark, [(*r[:9], datetime.fromisoformat(r[9]), *r[10:]) for r in rows], MONITORING_SCHEMA)
    with span("monitor.write"):
        # A few rows built here: their count is known, so the commit's history is not read.
        tables.replace_partition(monitoring_table, frame, BATCH_COLUMN, batch_id, metrics=False)
    for v in verdicts:
        registry.set_tags(settings, v.model_version, {rt.MONITORING_LAST_BATCH: batch_id,
                                                       rt.MONITORING_LAST_VERDICT: v.verdict,
                                                       rt.MONITORING_LAST_AT: v.monitored_at})
    return verdicts


def _log(v: BatchVerdict) -> None:
    import mlflow

    from spark_mlops import tracking
    from spark_mlops.evaluation import pyplot

    plt = pyplot()

    t = v.thresholds
    tracking.log_params({"batch_id": v.batch_id, "model_version": v.model_version, "psi_threshold": t.psi,
                         "null_rate_increase": t.null_rate_increase, "min_rows": t.min_rows,
                         "psi_noise_quantile": t.psi_noise_quantile})
    metrics = {"rows": v.rows, "rows_rejected": v.rejected, "drift": 1.0 if v.drift else 0.0}
    for f in v.features:
        metrics[f"null_rate_{f.name}"] = f.null_rate
        metrics[f"out_of_contract_rate_{f.name}"] = f.out_of_contract_rate
        if f.psi is not None:
            metrics[f"psi_{f.name}"] = f.psi
        if f.psi_noise_bound is not None:
            metrics[f"psi_noise_bound_{f.name}"] = f.psi_noise_bound
    if v.output_psi is not None:
        metrics["psi_output"] = v.output_psi
    if v.output_psi_noise_bound is not None:
        metrics["psi_noise_bound_output"] = v.output_psi_noise_bound
    if v.positive_rate is not None and v.baseline_positive_rate is not None:
        metrics["positive_rate"] = v.positive_rate
        metrics["positive_rate_change"] = v.positive_rate - v.baseline_positive_rate
    mlflow.log_metrics(metrics)
    mlflow.log_dict(v.as_json(), "monitoring/verdict.json")
    fig = drift_figure(v)
    mlflow.log_figure(fig, "plots/drift.png")
    plt.close(fig)


def _input_features(spark, settings, contract, source: str | None):
    """The batch input's valid rows (the rows ``score`` scored), typed as the contract says."""
    from spark_mlops import contract as dc
    from spark_mlops.prepare import read_source

    if not source:
        raise ConfigError(
            "the predictions carry no feature columns: pass --input with the batch's input (its valid rows "
            "are the scored rows)"
        )
    raw = read_source(spark, settings, source)
    dc.check_columns(raw.columns, contract, source, with_label=False)
    typed = dc.apply_missing_markers(dc.conform(raw, contract, with_label=False), contract)
    checked = dc.with_rejection_reason(typed, contract, with_label=False)
    keys = [k for k in contract.key_columns if k in checked.columns]
    return checked.where(checked[dc.REASON_COLUMN].isNull()).select(*keys, *contract.feature_names)


def _join_on_key(batch, inputs, contract, source: str):
    keys = list(contract.key_columns)
    if not keys or not all(k in batch.columns and k in inputs.columns for k in keys):
        raise ConfigError(f"several model versions scored this batch and the contract names no row key to join "
                          f"{source} on: score the batch again so that one version scores it")
    return batch.join(inputs, on=keys, how="inner")


# ---------------------------------------------------------------- the drift gate


def resolve_batch_id(settings, tables, batch_id: str | None, source: str | None) -> str:
    """``batch_id``, or the id ``score`` gives the batch read from ``source`` when none is given."""
    from spark_mlops import scoring
    from spark_mlops.tables import check_partition_value

    if batch_id:
        return check_partition_value(batch_id, "--batch-id")
    if not source:
        raise ConfigError("--batch-id is empty and there is no --input to derive it from")
    return check_partition_value(scoring.default_batch_id(source, settings, tables), "batch id")


def drift_check(settings, batch_id: str, monitoring_table: str = "monitoring", *, source: str | None = None) -> str:
    """Exit 7 (:class:`DriftDetected`) when the batch's recorded verdict is drift.

    With ``settings.job_run_id`` (in a job) only a verdict recorded by that job run counts: when
    ``monitor`` did not finish in this run there is nothing to gate, so this returns (exit 0)
    and the run's failure is reported by the failed task itself.
    """
    from pyspark.sql import functions as F

    from spark_mlops.scoring import BATCH_COLUMN
    from spark_mlops.spark import get_spark
    from spark_mlops.tables import tables_for

    spark = get_spark(settings)
    tables = tables_for(spark, settings)
    batch_id = resolve_batch_id(settings, tables, batch_id, source)
    table = settings.table_name(monitoring_table)
    scope = f" by job run {settings.job_run_id}" if settings.job_run_id else ""
    rows = []
    with span("drift_check.read"):
        if tables.exists(table):
            found = tables.read(table).where((F.col(BATCH_COLUMN) == batch_id) & (F.col("metric") == "verdict"))
            if settings.job_run_id:
                found = found.where(F.col("job_run_id") == settings.job_run_id)
            rows = found.select("model_version", "status").collect()
    if not rows:
        print(f"drift-check: no monitoring verdict for batch {batch_id} recorded{scope} in {table}; nothing to gate")
        return "none"
    drifted = sorted(r["model_version"] for r in rows if r["status"] == DRIFT)
    if drifted:
        raise DriftDetected(f"batch {batch_id}: drift against the baseline of v{', v'.join(drifted)} "
                            f"(see {table}); exit {constants.EXIT_DRIFT} starts the retraining where enabled")
    verdicts = ", ".join(f"v{r['model_version']}: {r['status']}" for r in rows)
    print(f"drift-check: batch {batch_id}: no drift ({verdicts})")
    return rows[0]["status"]


def print_verdicts(verdicts: list[BatchVerdict], as_json: bool) -> None:
    if as_json:
        body = [v.as_json() for v in verdicts]
        print(json.dumps(body[0] if len(body) == 1 else body, indent=2))
        return
    for v in verdicts:
        print(f"monitor: batch {v.batch_id}: {v.rows} scored rows ({v.rejected} rejected) by {v.model_name} "
              f"v{v.model_version}: {v.verdict.upper()}")
        if v.verdict == INSUFFICIENT:
            print(f"monitor: fewer than {v.thresholds.min_rows} scored rows: no drift verdict is computed "
                  "(lower --min-rows to force one)")
        print("\n".join(v.table_lines()))
        print(f"monitor: MLflow run {v.run_id}: metrics and plots/drift.png")
