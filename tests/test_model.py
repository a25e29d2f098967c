"""The pipeline definition, the CrossValidator search, and the Spark-side metrics."""

from __future__ import annotations

import math
import random

import pytest
from pyspark.ml.linalg import Vectors

from spark_mlops import contract as dc
from spark_mlops import evaluation, model, training
from spark_mlops.config import TrainConfig
from spark_mlops.errors import ConfigError
from spark_mlops_dev.synthetic import generate

CONTRACT = dc.load_contract()


@pytest.fixture(scope="module")
def train_df(spark):
    frame = generate(400, seed=21)
    df = dc.apply_missing_markers(dc.conform(spark.createDataFrame(frame), CONTRACT, with_label=True), CONTRACT)
    return df.cache()


def test_unknown_classifier_and_hyperparameter_are_named(spark):
    with pytest.raises(ConfigError, match="'svm' is not supported"):
        model.build_pipeline(CONTRACT, "svm")
    with pytest.raises(ConfigError, match=r"unknown hyperparameter\(s\) \['numTress'\]"):
        model.build_pipeline(CONTRACT, "random_forest", {"numTress": 5})


def test_fit_imputes_missing_values_and_reports_importances(train_df):
    fitted, search = training.fit(train_df, CONTRACT, TrainConfig(params={"numTrees": 10}))
    assert search == {}
    out = fitted.transform(train_df.where("Insulin IS NULL")).select("prediction", "probability").collect()
    assert out and all(r["prediction"] in (0.0, 1.0) for r in out)
    importances = model.feature_importances(fitted, CONTRACT)
    assert set(importances) == set(CONTRACT.feature_names)
    assert max(importances, key=importances.get) == "Glucose"


def test_cross_validator_search_picks_from_the_grid(train_df):
    conf = TrainConfig(classifier="logistic_regression", cv_folds=2, grid={"regParam": [0.0, 10.0]})
    fitted, search = training.fit(train_df, CONTRACT, conf)
    assert search["cv_candidates"] == 2
    assert search["best_regParam"] == 0.0  # heavy regularisation cannot win on this signal
    assert 0.5 < search["cv_best_areaUnderROC"] <= 1.0
    with pytest.raises(ConfigError, match="--grid needs --cv-folds"):
        training.fit(train_df, CONTRACT, TrainConfig(grid={"maxDepth": [2]}))


def predictions_frame(spark, rows):
    """A pipeline's output columns from (label y, prediction, P(class 1)) rows."""
    from pyspark.ml.linalg import VectorUDT
    from pyspark.sql.types import DoubleType, IntegerType, StructField, StructType

    schema = StructType([StructField("y", IntegerType()), StructField("prediction", DoubleType()),
                         StructField("probability", VectorUDT())])
    return spark.createDataFrame([(y, p, Vectors.dense([1 - q, q])) for y, p, q in rows], schema)


def test_metrics_match_a_hand_computed_confusion_matrix(spark):
    # label, prediction, P(class 1): tp=2, fp=1, fn=1, tn=2
    rows = [(1, 1.0, 0.9), (1, 1.0, 0.8), (1, 0.0, 0.4), (0, 1.0, 0.6), (0, 0.0, 0.2), (0, 0.0, 0.1)]
    df = predictions_frame(spark, rows)
    result = evaluation.evaluate(df, "y")
    assert result.metrics["accuracy"] == pytest.approx(4 / 6)
    assert result.metrics["precision"] == pytest.approx(2 / 3)
    assert result.metrics["recall"] == pytest.approx(2 / 3)
    assert result.metrics["f1"] == pytest.approx(2 / 3)
    assert result.metrics["areaUnderROC"] == pytest.approx(8 / 9)  # 8 of 9 (pos, neg) pairs ranked right
    assert result.confusion == {(1, 1): 2, (1, 0): 1, (0, 1): 1, (0, 0): 2}
    assert result.roc[0] == (0.0, 0.0) and result.roc[-1] == (1.0, 1.0)
    assert (result.bad_predictions, result.bad_probabilities) == (0, 0)


def test_hyperparameters_from_text_are_typed_per_the_estimators_params():
    assert model.parse_params("random_forest", "numTrees=20, bootstrap=false, subsamplingRate=1e-1, impurity=entropy") \
        == {"numTrees": 20, "bootstrap": False, "subsamplingRate": 0.1, "impurity": "entropy"}
    assert model.parse_grid("logistic_regression", "regParam=0|1e-3,fitIntercept=true|false") \
        == {"regParam": [0.0, 0.001], "fitIntercept": [True, False]}
    with pytest.raises(ConfigError, match=r"numTrees='2\.5' is not an integer"):
        model.parse_params("random_forest", "numTrees=2.5")
    with pytest.raises(ConfigError, match="bootstrap='maybe' is not a boolean"):
        model.parse_params("random_forest", "bootstrap=maybe")
    with pytest.raises(ConfigError, match=r"gbt has no hyperparameter 'numTrees'; valid: .*maxIter \(integer\)"):
        model.parse_grid("gbt", "numTrees=1|2")
    with pytest.raises(ConfigError, match="no hyperparameter 'featuresCol'"):  # the pipeline owns columns
        model.parse_params("random_forest", "featuresCol=x")


def test_areas_under_the_curves_are_those_of_sparks_evaluator(spark):
    """Computed from per-probability counts on the driver, or by the evaluator itself when it
    would down-sample its curves: either way the value Spark's evaluator gives."""
    from pyspark.ml.evaluation import BinaryClassificationEvaluator

    rng = random.Random(5)

    def scored(n: int, score) -> list[tuple[int, float, float]]:
        rows = []
        for _ in range(n):
            q = score()
            rows.append((int(rng.random() < 0.2 + 0.6 * q), float(q >= 0.5), q))  # both labels at every score
        return rows

    # name -> (rows, tolerance): down-sampled curves depend on how Spark's sort splits the
    # scores, so two runs of the evaluator on the same data differ by about 1e-5.
    cases = {
        "few distinct, many ties": (scored(300, lambda: rng.randint(0, 10) / 10), 1e-12),
        "all distinct": (scored(1500, rng.random), 1e-12),
        "more distinct than the evaluator keeps": (scored(2500, rng.random), 1e-3),
        "one class only": ([(0, 0.0, q / 10) for q in range(10)], 1e-12),
    }
    for name, (rows, tolerance) in cases.items():
        df = predictions_frame(spark, rows).cache()
        got = evaluation.evaluate(df, "y").metrics
        for metric in ("areaUnderROC", "areaUnderPR"):
            want = BinaryClassificationEvaluator(labelCol="y", rawPredictionCol="probability",
                                                 metricName=metric).evaluate(df)
            assert got[metric] == pytest.approx(want, abs=tolerance) or (math.isnan(want) and math.isnan(got[metric])), (
                name, metric)
        df.unpersist()


def test_outputs_out_of_range_are_counted(spark):
    rows = [(1, 1.0, 0.9), (0, 2.0, 0.3), (0, 0.0, 1.5), (1, 1.0, -0.2), (0, 0.0, 0.1)]
    result = evaluation.evaluate(predictions_frame(spark, rows), "y")
    assert (result.rows, result.bad_predictions, result.bad_probabilities) == (5, 1, 2)
    assert result.confusion == {(1, 1): 2, (0, 2): 1, (0, 0): 2}
    assert sum(result.probability_counts) == 4  # -0.2 falls in no bucket of [0, 1]
