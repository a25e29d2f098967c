"""The model definition: a pyspark.ml Pipeline (impute -> assemble -> classify) built from the contract.

Only pyspark.ml stages are used, so the saved model loads anywhere Spark runs, without this
package installed.
"""

from __future__ import annotations

from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.classification import GBTClassifier, LogisticRegression, RandomForestClassifier
from pyspark.ml.feature import Imputer, VectorAssembler
from pyspark.ml.tuning import ParamGridBuilder

from spark_mlops.contract import DataContract
from spark_mlops.errors import ConfigError

CLASSIFIERS = {
    "random_forest": RandomForestClassifier,
    "gbt": GBTClassifier,
    "logistic_regression": LogisticRegression,
}
DEFAULT_PARAMS = {
    "random_forest": {"numTrees": 50, "maxDepth": 6},
    "gbt": {"maxIter": 30, "maxDepth": 4},
    "logistic_regression": {"maxIter": 50, "regParam": 0.01},
}
FEATURES_COLUMN = "features"
IMPUTED_SUFFIX = "__imputed"


def build_pipeline(
    contract: DataContract, classifier: str = "random_forest", params: dict | None = None, seed: int = 42
) -> Pipeline:
    if classifier not in CLASSIFIERS:
        raise ConfigError(f"--classifier {classifier!r} is not supported; choose one of {sorted(CLASSIFIERS)}")
    features = contract.feature_names
    imputed = [f"{c}{IMPUTED_SUFFIX}" for c in features]
    estimator = CLASSIFIERS[classifier](featuresCol=FEATURES_COLUMN, labelCol=contract.label)
    merged = {**DEFAULT_PARAMS[classifier], **(params or {})}
    if estimator.hasParam("seed"):
        merged.setdefault("seed", seed)
    _check_params(estimator, merged, classifier)
    estimator.setParams(**merged)
    return Pipeline(
        stages=[
            # Nulls (including "not measured" sentinels turned into null by the contract) get the median.
            Imputer(inputCols=features, outputCols=imputed, strategy="median"),
            VectorAssembler(inputCols=imputed, outputCol=FEATURES_COLUMN),
            estimator,
        ]
    )


def _check_params(estimator, params: dict, classifier: str) -> None:
    unknown = [k for k in params if not estimator.hasParam(k)]
    if unknown:
        valid = sorted(p.name for p in estimator.params)
        raise ConfigError(f"{classifier}: unknown hyperparameter(s) {unknown}; valid: {valid}")


def param_grid(pipeline: Pipeline, grid: dict[str, list]) -> list:
    estimator = pipeline.getStages()[-1]
    _check_params(estimator, grid, type(estimator).__name__)
    builder = ParamGridBuilder()
    for name, values in grid.items():
        builder.addGrid(estimator.getParam(name), values)
    return builder.build()


def classifier_of(model: PipelineModel):
    return model.stages[-1]


def feature_importances(model: PipelineModel, contract: DataContract) -> dict[str, float]:
    """Tree importances, or absolute coefficients for linear models."""
    clf = classifier_of(model)
    if hasattr(clf, "featureImportances"):
        values = clf.featureImportances.toArray()
    elif hasattr(clf, "coefficients"):
        values = abs(clf.coefficients.toArray())
    else:
        return {}
    return dict(zip(contract.feature_names, (float(v) for v in values), strict=True))
