"""The model definition: a pyspark.ml Pipeline (impute -> assemble -> classify) built from the contract.

Only pyspark.ml stages are used, so the saved model loads anywhere Spark runs, without this
package installed.
"""

from __future__ import annotations

from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.classification import GBTClassifier, LogisticRegression, RandomForestClassifier
from pyspark.ml.feature import Imputer, VectorAssembler
from pyspark.ml.param import Param, TypeConverters
from pyspark.ml.tuning import ParamGridBuilder

from spark_mlops.config import parse_key_values
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


# How a hyperparameter given as text is read, per the estimator's declared type converter
# (pyspark.ml.param.TypeConverters). Column-name params are the pipeline's business, and
# list/vector/matrix params cannot be written as one key=value, so neither is settable here.
_TEXT_TYPES = {
    TypeConverters.toInt: "integer",
    TypeConverters.toFloat: "number",
    TypeConverters.toBoolean: "boolean",
    TypeConverters.toString: "string",
}
_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")


def settable_params(classifier: str) -> dict[str, str]:
    """The hyperparameters ``--params``/``--grid`` may set for a classifier: name -> type.
    Read from the estimator class's Param attributes, so no Spark session is needed."""
    if classifier not in CLASSIFIERS:
        raise ConfigError(f"--classifier {classifier!r} is not supported; choose one of {sorted(CLASSIFIERS)}")
    cls = CLASSIFIERS[classifier]
    out = {}
    for name in sorted(dir(cls)):
        param = getattr(cls, name, None)
        if isinstance(param, Param) and not name.endswith("Col") and param.typeConverter in _TEXT_TYPES:
            out[name] = _TEXT_TYPES[param.typeConverter]
    return out


def parse_param_value(classifier: str, name: str, text: str, flag: str):
    """One hyperparameter value from text, typed as the estimator declares it."""
    types = settable_params(classifier)
    if name not in types:
        valid = ", ".join(f"{n} ({t})" for n, t in types.items())
        raise ConfigError(f"{flag}: {classifier} has no hyperparameter {name!r}; valid: {valid}")
    kind, value = types[name], text.strip()
    try:
        if kind == "integer":
            number = float(value)
            if not number.is_integer() or not value:
                raise ValueError
            return int(number)
        if kind == "number":
            return float(value)
        if kind == "boolean":
            if value.lower() in _TRUE:
                return True
            if value.lower() in _FALSE:
                return False
            raise ValueError
    except ValueError:
        raise ConfigError(f"{flag}: {name}={text!r} is not a{'n' if kind == 'integer' else ''} {kind} "
                          f"({classifier}.{name} takes a{'n' if kind == 'integer' else ''} {kind})") from None
    return value


def parse_params(classifier: str, text: str | None) -> dict[str, object]:
    """``--params 'numTrees=50,bootstrap=false,regParam=1e-3'`` -> typed values."""
    return {k: parse_param_value(classifier, k, v, "--params")
            for k, v in parse_key_values(text, "--params").items()}


def parse_grid(classifier: str, text: str | None) -> dict[str, list]:
    """``--grid 'maxDepth=3|5,impurity=gini|entropy'`` -> typed value lists."""
    return {k: [parse_param_value(classifier, k, v, "--grid") for v in values.split("|") if v.strip()]
            for k, values in parse_key_values(text, "--grid").items()}


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
