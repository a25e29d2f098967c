"""Training: fit the pipeline on the train split, log everything to MLflow, register ``@challenger``."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import mlflow
import mlflow.spark
from mlflow.models import infer_signature
from pyspark.ml import PipelineModel
from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.ml.tuning import CrossValidator
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from spark_mlops import alias_lock, evaluation, model, monitoring, registry, signing, tracking, trust
from spark_mlops import contract as dc
from spark_mlops import registry_tags as rt
from spark_mlops.config import Settings, TrainConfig, on_databricks
from spark_mlops.errors import ConfigError, DataContractError
from spark_mlops.spark import get_spark
from spark_mlops.tables import tables_for
from spark_mlops.timing import span


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    version: str
    metrics: dict[str, float]


def fit(train: DataFrame, contract: dc.DataContract, conf: TrainConfig) -> tuple[PipelineModel, dict]:
    """Fit the pipeline (or a CrossValidator search); return the model and what to log about the search."""
    pipeline = model.build_pipeline(contract, conf.classifier, conf.params, conf.seed)
    if conf.cv_folds <= 1:
        if conf.grid:
            raise ConfigError("--grid needs --cv-folds of 2 or more")
        return pipeline.fit(train), {}
    if not conf.grid:
        raise ConfigError(f"--cv-folds {conf.cv_folds} needs a --grid to search, e.g. 'maxDepth=3|6'")
    grid = model.param_grid(pipeline, conf.grid)
    search = CrossValidator(
        estimator=pipeline,
        estimatorParamMaps=grid,
        evaluator=BinaryClassificationEvaluator(labelCol=contract.label, rawPredictionCol="probability"),
        numFolds=conf.cv_folds,
        seed=conf.seed,
        parallelism=2,
    ).fit(train)
    best = max(range(len(grid)), key=lambda i: search.avgMetrics[i])
    chosen = {f"best_{p.name}": v for p, v in grid[best].items()}
    return search.bestModel, {**chosen, "cv_best_areaUnderROC": search.avgMetrics[best], "cv_candidates": len(grid)}


def run(settings: Settings, conf: TrainConfig) -> TrainResult:
    # Before any work: without the training identity's key there is nothing to register.
    signing_key = signing.signing_key(settings.state_dir, on_databricks=on_databricks())
    spark = get_spark(settings)
    contract = dc.load_contract(settings.contract)
    clean_name = settings.table_name(conf.clean_table)
    tables = tables_for(spark, settings)
    clean = tables.read(clean_name)
    dc.check_columns(clean.columns, contract, clean_name, with_label=True)
    train = clean.where(F.col(dc.SPLIT_COLUMN) == "train").cache()
    holdout = clean.where(F.col(dc.SPLIT_COLUMN) == "holdout")
    experiment_id = tracking.configure(settings)

    with mlflow.start_run(experiment_id=experiment_id, run_name=f"train-{conf.classifier}",
                          tags=tracking.safe({**settings.run_tags(), rt.RUN_STEP: "train"})) as run:
        rows = train.count()
        if rows == 0:
            raise DataContractError(f"{clean_name}: the train split is empty (0 rows); run prepare first")
        tracking.log_params({
            "classifier": conf.classifier,
            **{f"param_{k}": v for k, v in conf.params.items()},
            "cv_folds": conf.cv_folds,
            "grid": conf.grid or "-",
            "seed": conf.seed,
            "train_rows": rows,
            "contract": contract.name,
        })
        with warnings.catch_warnings():
            # The dataset's schema has the int label: MLflow's hint about ints in *model* inputs
            # does not apply (the model's signature is all doubles).
            warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
            mlflow.log_input(
                tracking.spark_dataset(train, name=f"{clean_name}[train]", rows=rows, **tables.dataset_source(clean_name)),
                context="training",
            )
        evaluation.import_pyplot_in_background()  # the figures below need it; fit leaves the driver idle
        with span("train.fit"):
            fitted, search = fit(train, contract, conf)
        for key, value in search.items():
            if key.startswith("cv_"):
                mlflow.log_metric(key, value)
            else:
                tracking.log_params({key: value})

        predictions = fitted.transform(holdout).cache()
        result = evaluation.evaluate(predictions, contract.label, contract.positive_label)
        predictions.unpersist()
        mlflow.log_metrics({f"holdout_{k}": v for k, v in result.metrics.items()})
        _log_figures(result, model.feature_importances(fitted, contract), contract)
        with span("train.baseline"):  # two aggregations over the cached train split
            baseline = monitoring.baseline_profile(train, contract, result, split_rows=rows)

        # Five rows and their predictions in one job: the input example and the output's schema.
        scored = fitted.transform(train.select(*contract.feature_names).limit(5))
        rows = scored.select(*contract.feature_names, evaluation.PREDICTION_COLUMN).toPandas()
        example = rows[list(contract.feature_names)]
        signature = infer_signature(example, rows[[evaluation.PREDICTION_COLUMN]])
        with span("train.log_model"):
            digest = tracking.log_spark_model(fitted, registry.MODEL_ARTIFACT_PATH, signature=signature,
                                              input_example=example, dfs_tmpdir=settings.dfs_tmpdir,
                                              signing_key=signing_key, extra_files={trust.BASELINE_FILE: baseline})
        run_id = run.info.run_id
    train.unpersist()

    with span("train.register"):
        version = str(registry.register(
            settings,
            run_id,
            f"runs:/{run_id}/{registry.MODEL_ARTIFACT_PATH}",
            {rt.TRAINING_EXPERIMENT_ID: experiment_id, rt.CLASSIFIER: conf.classifier, rt.CONTRACT: contract.name,
             rt.MODEL_DIGEST: digest},
        ).version)
        with alias_lock.held(settings, "train"):
            registry.set_alias(settings, rt.CHALLENGER_ALIAS, version)
    print(
        f"train: run {run_id}: holdout areaUnderROC={result.metrics['areaUnderROC']:.3f} "
        f"accuracy={result.metrics['accuracy']:.3f}; registered {settings.model_name} v{version} as @{rt.CHALLENGER_ALIAS}"
    )
    return TrainResult(run_id, str(version), result.metrics)


def _log_figures(result: evaluation.Evaluation, importances: dict[str, float], contract: dc.DataContract) -> None:
    plt = evaluation.pyplot()
    figures = {
        "plots/roc_curve.png": evaluation.roc_figure(result, "ROC curve (holdout)"),
        "plots/confusion_matrix.png": evaluation.confusion_figure(result, contract.label_values,
                                                                  "Confusion matrix (holdout)"),
    }
    if importances:
        figures["plots/feature_importances.png"] = evaluation.importance_figure(importances, "Feature importances")
    for path, fig in figures.items():
        mlflow.log_figure(fig, path)
        plt.close(fig)
