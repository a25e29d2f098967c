"""Validation: test a candidate version on the holdout before it may become ``@champion``.

Three kinds of checks, each a row of the verdict table:
- the model contract: signature matches the data contract, outputs present, predictions in
  {0, 1}, probabilities in [0, 1];
- absolute thresholds (e.g. areaUnderROC >= 0.75);
- no worse than the current champion, on the same holdout, by more than a tolerance.

Metrics are computed with Spark aggregations (the holdout is never collected) and wrapped in
MLflow ``EvaluationResult`` objects, so the gate itself is MLflow's ``MetricThreshold`` logic
(``mlflow.validate_evaluation_results``) rather than hand-written comparisons.
The verdict is an MLflow run in the workspace's experiment (tags ``step=validate`` and
``verdict``, params naming the registered model, the version and the champion it was compared
with, the challenger's metrics): that run is the evidence ``promote`` re-reads. The version's
verdict tags repeat it for ``status`` and name the run (``validation_run_id``). A rejection raises
:class:`ValidationFailed` (exit 6): in a job the gate is the task's exit code, since a wheel task
cannot publish task values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

import mlflow
from mlflow.models import MetricThreshold
from mlflow.models.evaluation import EvaluationResult
from mlflow.models.evaluation.validation import ModelValidationFailedException
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from spark_mlops import contract as dc
from spark_mlops import evaluation, registry, text, tracking
from spark_mlops import registry_tags as rt
from spark_mlops.config import Settings, ValidateConfig, parse_version, same_version
from spark_mlops.errors import ConfigError, DataContractError, ValidationFailed
from spark_mlops.spark import get_spark
from spark_mlops.tables import tables_for
from spark_mlops.timing import span

CHALLENGER_ALIAS, CHAMPION_ALIAS = rt.CHALLENGER_ALIAS, rt.CHAMPION_ALIAS


@dataclass(frozen=True)
class Check:
    name: str
    found: str
    expected: str
    passed: bool


@dataclass
class ValidationReport:
    model_name: str
    version: str
    champion_version: str | None
    metrics: dict[str, float]
    champion_metrics: dict[str, float] | None
    checks: list[Check] = field(default_factory=list)
    run_id: str | None = None

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def reason(self) -> str:
        return "; ".join(f"{c.name}: found {c.found}, expected {c.expected}" for c in self.failures)

    def table(self) -> str:
        lines = text.table(("check", "found", "expected", "result"),
                           [(c.name, c.found, c.expected, "PASS" if c.passed else "FAIL") for c in self.checks])
        against = f"@{CHAMPION_ALIAS} v{self.champion_version}" if self.champion_version else f"no @{CHAMPION_ALIAS}"
        verdict = "PASSED" if self.passed else "REJECTED"
        return "\n".join(
            [f"validation of {self.model_name} v{self.version} (against {against}): {verdict}", *lines]
        )


# ---------------------------------------------------------------- pure checks


def contract_checks(signature, contract: dc.DataContract, result: evaluation.Evaluation, columns: list[str]) -> list[Check]:
    """Checks of the model's interface against the data contract and of its outputs' ranges."""
    checks: list[Check] = []
    expected = {name: "double" for name in contract.feature_names}
    found = {c.name: str(c.type) for c in signature.inputs.inputs} if signature and signature.inputs else {}
    found = {k: v.replace("DataType.", "") for k, v in found.items()}
    if found == expected:
        checks.append(Check("signature inputs", f"{len(found)} contract features, double", "the contract's", True))
    else:
        diff = {k: found.get(k, "missing") for k in expected if found.get(k) != "double"}
        extra = sorted(set(found) - set(expected))
        checks.append(Check("signature inputs", (_fmt_schema(diff) or "no signature") +
                            (f"; extra {extra}" if extra else ""), "contract features as double", False))
    missing = [c for c in (evaluation.PREDICTION_COLUMN, evaluation.PROBABILITY_COLUMN) if c not in columns]
    checks.append(Check("output columns", "missing " + ", ".join(missing) if missing else "prediction, probability",
                        "prediction, probability", not missing))
    checks.append(Check("predictions in {0,1}", f"{result.bad_predictions} of {result.rows} outside", "0 outside",
                        result.bad_predictions == 0))
    checks.append(Check("P(class 1) in [0,1]", f"{result.bad_probabilities} of {result.rows} outside", "0 outside",
                        result.bad_probabilities == 0))
    return checks


def _fmt_schema(columns: dict[str, str]) -> str:
    return ", ".join(f"{k}:{v}" for k, v in columns.items())


def _gate(name: str, thresholds: dict[str, MetricThreshold], metrics: dict[str, float]) -> bool:
    try:
        mlflow.validate_evaluation_results(thresholds, EvaluationResult(metrics=metrics, artifacts={}))
        return True
    except ModelValidationFailedException:
        return False


def threshold_checks(metrics: dict[str, float], thresholds: dict[str, float]) -> list[Check]:
    unknown = sorted(set(thresholds) - set(evaluation.METRICS))
    if unknown:
        raise ConfigError(f"--thresholds: unknown metric(s) {unknown}; known: {list(evaluation.METRICS)}")
    return [
        Check(f"{name} >= {minimum}", f"{metrics[name]:.4f}", f">= {minimum}",
              _gate(name, {name: MetricThreshold(threshold=minimum, greater_is_better=True)}, metrics))
        for name, minimum in thresholds.items()
    ]


def champion_check(metrics: dict[str, float], champion: dict[str, float], primary: str, tolerance: float) -> Check:
    """The challenger may trail the champion by at most ``tolerance`` on the primary metric.

    MetricThreshold's ``min_absolute_change`` only expresses "better by at least", so the
    tolerated floor (champion - tolerance) is given as the threshold.
    """
    floor = champion[primary] - tolerance
    ok = _gate(primary, {primary: MetricThreshold(threshold=floor, greater_is_better=True)}, metrics)
    return Check(f"{primary} vs @{CHAMPION_ALIAS}", f"{metrics[primary]:.4f}",
                 f">= {champion[primary]:.4f} - {tolerance} = {floor:.4f}", ok)


# ---------------------------------------------------------------- the step


def _evaluate_version(settings: Settings, version: str, holdout: DataFrame, contract: dc.DataContract):
    with span("validate.load_model"):
        fitted, signature = registry.load_spark_model(settings, version)
    predictions = fitted.transform(holdout).cache()
    try:
        with span("validate.evaluate"):
            result = evaluation.evaluate(predictions, contract.label, contract.positive_label)
        columns = predictions.columns
    finally:
        predictions.unpersist()
    return result, columns, signature


def run(settings: Settings, conf: ValidateConfig) -> ValidationReport:
    if not conf.thresholds:
        raise ConfigError("no thresholds: the release gate needs at least one minimum metric value")
    if conf.primary_metric not in evaluation.METRICS:
        raise ConfigError(f"--primary-metric {conf.primary_metric!r}: known metrics {list(evaluation.METRICS)}")
    spark = get_spark(settings)
    contract = dc.load_contract(settings.contract)
    experiment_id = tracking.configure(settings)
    version = parse_version(conf.version) or registry.require_alias(settings, CHALLENGER_ALIAS, "run train first")
    registry.get_version(settings, version)  # clear error for an unknown --version
    champion = registry.alias_version(settings, CHAMPION_ALIAS)

    clean_name = settings.table_name(conf.clean_table)
    holdout = tables_for(spark, settings).read(clean_name).where(F.col(dc.SPLIT_COLUMN) == "holdout").cache()
    try:
        if holdout.isEmpty():
            raise DataContractError(f"{clean_name}: the holdout split is empty (0 rows); run prepare first")
        result, columns, signature = _evaluate_version(settings, version, holdout, contract)
        report = ValidationReport(settings.model_name, str(version), champion, result.metrics, None)
        report.checks += contract_checks(signature, contract, result, columns)
        report.checks += threshold_checks(result.metrics, conf.thresholds)
        if champion is not None and not same_version(champion, version):
            champion_result, _, _ = _evaluate_version(settings, champion, holdout, contract)
            report.champion_metrics = champion_result.metrics
            report.checks.append(champion_check(result.metrics, champion_result.metrics,
                                                conf.primary_metric, conf.tolerance))
    finally:
        holdout.unpersist()

    _record(settings, conf, report, experiment_id)
    print(report.table())
    if not report.passed and not conf.report_only:
        raise ValidationFailed(f"{settings.model_name} v{version} was rejected: {report.reason()}")
    return report


def _record(settings: Settings, conf: ValidateConfig, report: ValidationReport, experiment_id: str) -> None:
    status = rt.PASSED if report.passed else rt.FAILED
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"validate-v{report.version}",
                          tags=tracking.safe({**settings.run_tags(), rt.RUN_STEP: rt.STEP_VALIDATE,
                                              rt.RUN_MODEL_VERSION: report.version, rt.RUN_VERDICT: status})) as run:
        tracking.log_params({rt.RUN_MODEL_NAME: settings.model_name, rt.RUN_MODEL_VERSION: report.version,
                             rt.RUN_CHAMPION_VERSION: report.champion_version or rt.NO_CHAMPION,
                             "thresholds": json.dumps(conf.thresholds), "primary_metric": conf.primary_metric,
                             "tolerance": conf.tolerance})
        mlflow.log_metrics({f"{rt.RUN_METRIC_PREFIX}{k}": v for k, v in report.metrics.items()})
        if report.champion_metrics:
            mlflow.log_metrics({f"champion_{k}": v for k, v in report.champion_metrics.items()})
        mlflow.log_text(report.table(), "validation_report.txt")
        report.run_id = run.info.run_id
    registry.set_tags(settings, report.version, {
        rt.VALIDATION_STATUS: status,
        rt.VALIDATION_METRICS: {k: round(v, 6) for k, v in report.metrics.items()},
        # The champion this verdict was reached against (promotion compares the run's with the
        # champion at promotion time).
        rt.VALIDATION_CHAMPION_VERSION: report.champion_version or rt.NO_CHAMPION,
        # The evidence: promotion re-reads this run, never these tags alone.
        rt.VALIDATION_RUN_ID: report.run_id,
        rt.VALIDATED_AT: datetime.now(UTC).isoformat(timespec="seconds"),
        rt.VALIDATION_FAILURES: report.reason() or rt.UNSET,
        rt.VALIDATION_MODEL_NAME: settings.model_name,
        rt.VALIDATION_JOB_RUN_ID: settings.job_run_id or rt.UNSET,
        rt.VALIDATION_THRESHOLDS: conf.thresholds,
        rt.VALIDATION_TOLERANCE: conf.tolerance,
    })
