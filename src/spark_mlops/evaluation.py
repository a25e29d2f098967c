"""Classifier metrics and plots, computed with Spark aggregations (nothing row-level is collected).

Used by training (metrics of the new run) and validation (challenger and champion on the holdout).
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.ml.functions import vector_to_array
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

METRICS = ("accuracy", "areaUnderROC", "areaUnderPR", "f1", "precision", "recall")
PROBABILITY_COLUMN = "probability"
PREDICTION_COLUMN = "prediction"
_ROC_BINS = 200


def positive_probability(positive_index: int = 1) -> Column:
    """P(class 1) from the probability vector, computed in the JVM (no Python UDF)."""
    return vector_to_array(F.col(PROBABILITY_COLUMN)).getItem(positive_index)


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, float]
    confusion: dict[tuple[int, int], int]  # (label, prediction) -> count
    roc: list[tuple[float, float]]  # (false positive rate, true positive rate), from (0,0) to (1,1)
    rows: int
    bad_predictions: int  # predictions outside {0, 1}
    bad_probabilities: int  # P(class 1) outside [0, 1] or null
    # Rows per equal-width bucket of P(class 1) over [0, 1] (the ROC buckets): the monitoring
    # baseline's output distribution, without another pass over the holdout.
    probability_counts: tuple[int, ...] = ()


def evaluate(predictions: DataFrame, label: str, positive: int = 1) -> Evaluation:
    """Metrics of ``predictions`` (output of a fitted pipeline) against ``label``.

    Cache ``predictions`` first when it is reused: this runs three Spark jobs on it.
    """
    y, yhat, p1 = F.col(label), F.col(PREDICTION_COLUMN), positive_probability()
    bucket = F.least(F.floor(p1 * _ROC_BINS), F.lit(_ROC_BINS - 1)).cast("int")
    scored = predictions.select(y.alias("y"), yhat.alias("yhat"), p1.alias("p1"), bucket.alias("bucket"))
    cells = scored.groupBy("y", "yhat", "bucket").agg(
        F.count(F.lit(1)).alias("n"),
        F.sum(F.when(~F.col("yhat").isin(0.0, 1.0), 1).otherwise(0)).alias("bad_pred"),
        F.sum(F.when(F.col("p1").isNull() | (F.col("p1") < 0) | (F.col("p1") > 1), 1).otherwise(0)).alias("bad_p"),
    ).collect()  # at most 2 x 2 x 200 rows
    confusion: dict[tuple[int, int], int] = {}
    by_bucket: dict[int, list[int]] = {}
    rows = bad_pred = bad_p = 0
    for r in cells:
        n = int(r["n"])
        rows += n
        bad_pred += int(r["bad_pred"])
        bad_p += int(r["bad_p"])
        key = (int(r["y"]), int(r["yhat"]))
        confusion[key] = confusion.get(key, 0) + n
        if r["bucket"] is not None:
            counts = by_bucket.setdefault(int(r["bucket"]), [0, 0])
            counts[1 if int(r["y"]) == positive else 0] += n
    tp = confusion.get((positive, positive), 0)
    fp = sum(n for (yy, pp), n in confusion.items() if yy != positive and pp == positive)
    fn = sum(n for (yy, pp), n in confusion.items() if yy == positive and pp != positive)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    correct = sum(n for (yy, pp), n in confusion.items() if yy == pp)
    evaluator = BinaryClassificationEvaluator(
        labelCol=label, rawPredictionCol=PROBABILITY_COLUMN, metricName="areaUnderROC"
    )
    metrics = {
        "accuracy": correct / rows if rows else 0.0,
        "areaUnderROC": evaluator.evaluate(predictions),
        "areaUnderPR": evaluator.setMetricName("areaUnderPR").evaluate(predictions),
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "precision": precision,
        "recall": recall,
    }
    counts = tuple(sum(by_bucket.get(b, (0, 0))) for b in range(_ROC_BINS))
    return Evaluation(metrics, confusion, _roc(by_bucket), rows, bad_pred, bad_p, counts)


def _roc(by_bucket: dict[int, list[int]]) -> list[tuple[float, float]]:
    negatives = sum(c[0] for c in by_bucket.values()) or 1
    positives = sum(c[1] for c in by_bucket.values()) or 1
    points, fp, tp = [(0.0, 0.0)], 0, 0
    for b in sorted(by_bucket, reverse=True):  # lower the threshold one bin at a time
        fp += by_bucket[b][0]
        tp += by_bucket[b][1]
        points.append((fp / negatives, tp / positives))
    return points


def roc_figure(evaluation: Evaluation, title: str):
    fig, ax = _axes()
    xs, ys = zip(*evaluation.roc, strict=True)
    ax.plot(xs, ys, label=f"AUC = {evaluation.metrics['areaUnderROC']:.3f}")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    ax.set(xlabel="False positive rate", ylabel="True positive rate", title=title)
    ax.legend(loc="lower right")
    return fig


def confusion_figure(evaluation: Evaluation, labels: tuple[int, ...], title: str):
    fig, ax = _axes()
    grid = [[evaluation.confusion.get((a, p), 0) for p in labels] for a in labels]
    ax.imshow(grid, cmap="Blues")
    for i, row in enumerate(grid):
        for j, n in enumerate(row):
            ax.text(j, i, str(n), ha="center", va="center")
    ax.set(xticks=range(len(labels)), yticks=range(len(labels)), xticklabels=labels, yticklabels=labels,
           xlabel="Predicted", ylabel="Actual", title=title)
    return fig


def importance_figure(importances: dict[str, float], title: str):
    fig, ax = _axes()
    ordered = sorted(importances.items(), key=lambda kv: kv[1])
    ax.barh([k for k, _ in ordered], [v for _, v in ordered])
    ax.set(xlabel="Importance", title=title)
    fig.tight_layout()
    return fig


def _axes():
    import matplotlib

    matplotlib.use("Agg")  # no display on job clusters or CI
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(6, 4.5))
