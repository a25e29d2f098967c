"""Classifier metrics and plots, computed with Spark aggregations (nothing row-level is collected).

Used by training (metrics of the new run) and validation (challenger and champion on the holdout).
"""

from __future__ import annotations

import functools
import math
import threading
from dataclasses import dataclass

from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.ml.functions import vector_to_array
from pyspark.sql import Column, DataFrame, Window
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

    Cache ``predictions`` first when it is reused. Usually one Spark job: the rows are counted
    per (label, prediction, P(class 1)) and, when there are fewer distinct probabilities than
    Spark's evaluator would down-sample, every metric follows from those counts on the driver,
    the areas under the curves as :class:`BinaryClassificationEvaluator` computes them (see
    :func:`_areas`). Otherwise (many distinct probabilities, or outputs out of range, which
    the validation checks report) the areas come from that evaluator itself: more jobs.
    """
    y, yhat, p1 = F.col(label), F.col(PREDICTION_COLUMN), positive_probability()
    # Grouped by the values themselves, so every per-row quantity below is a function of the key.
    grouped = (predictions.select(y.alias("y"), yhat.alias("yhat"), p1.alias("p1"))
               .groupBy("y", "yhat", "p1").agg(F.count(F.lit(1)).alias("n")))
    exact = _counted_exactly(grouped)
    if exact is not None:
        return _from_counts(exact, positive)
    cells = grouped.groupBy("y", "yhat", _bucket(F.col("p1")).alias("bucket")).agg(
        F.sum("n").alias("n"),
        F.sum(F.when(~F.col("yhat").isin(0.0, 1.0), F.col("n")).otherwise(0)).alias("bad_pred"),
        F.sum(F.when(F.col("p1").isNull() | (F.col("p1") < 0) | (F.col("p1") > 1), F.col("n"))
              .otherwise(0)).alias("bad_p"),
    ).collect()  # at most 2 x 2 x 200 rows
    evaluator = BinaryClassificationEvaluator(
        labelCol=label, rawPredictionCol=PROBABILITY_COLUMN, metricName="areaUnderROC"
    )
    areas = (evaluator.evaluate(predictions), evaluator.setMetricName("areaUnderPR").evaluate(predictions))
    return _summarise(
        [(r["y"], r["yhat"], r["bucket"], int(r["n"]), int(r["bad_pred"]), int(r["bad_p"])) for r in cells],
        positive, areas,
    )


def _bucket(p1: Column) -> Column:
    """The ROC bucket of P(class 1): ``_ROC_BINS`` equal-width buckets over [0, 1]."""
    return F.least(F.floor(p1 * _ROC_BINS), F.lit(_ROC_BINS - 1)).cast("int")


@functools.cache
def _evaluator_bins() -> int:
    return BinaryClassificationEvaluator().getNumBins()  # a JVM object: dozens of py4j calls


def _counted_exactly(grouped: DataFrame) -> list[tuple[int, float, float, int]] | None:
    """The (label, prediction, P(class 1), rows) counts, when the metrics can be computed from
    them exactly as Spark computes them: labels and predictions in {0, 1}, every P(class 1) in
    [0, 1], both classes present, and fewer distinct P(class 1) than make Spark's evaluator
    down-sample its curves (2 x ``numBins``: mllib/evaluation/BinaryClassificationMetrics.scala
    in apache/spark). None otherwise."""
    most = 2 * _evaluator_bins()
    cap = 4 * most  # per P(class 1): at most 2 labels x 2 predictions
    # Nothing comes back when there are more groups than that: bounded without a limit's
    # incremental scans (one job; `limit(n).collect()` took three times as long here).
    rows = grouped.withColumn("groups", F.count(F.lit(1)).over(Window.partitionBy())).where(
        F.col("groups") <= cap).collect()
    if not rows or len({r["p1"] for r in rows}) >= most:
        return None
    counts = []
    for r in rows:
        y, yhat, p1 = r["y"], r["yhat"], r["p1"]
        if y not in (0, 1) or yhat not in (0.0, 1.0) or p1 is None or not 0.0 <= p1 <= 1.0:
            return None
        counts.append((int(y), float(yhat), float(p1), int(r["n"])))
    if {y for y, _, _, _ in counts} != {0, 1}:
        return None
    return counts


def _from_counts(counts: list[tuple[int, float, float, int]], positive: int) -> Evaluation:
    # The bucket as _bucket computes it in Spark: the same IEEE product and floor.
    cells = [(y, yhat, min(math.floor(p1 * _ROC_BINS), _ROC_BINS - 1), n, 0, 0) for y, yhat, p1, n in counts]
    return _summarise(cells, positive, _areas(counts))


def _areas(counts: list[tuple[int, float, float, int]]) -> tuple[float, float]:
    """Areas under the ROC and precision-recall curves, as ``BinaryClassificationEvaluator``
    computes them without down-sampling (mllib/evaluation/BinaryClassificationMetrics.scala,
    AreaUnderCurve.scala and binary/BinaryClassificationMetricComputers.scala in apache/spark):
    one point per distinct score, in descending order; label > 0.5 is positive; the ROC curve
    runs from (0, 0) to (1, 1), the PR curve starts at (0, precision at the first threshold);
    trapezoids between consecutive points. Needs both classes present."""
    per_score: dict[float, list[int]] = {}
    for y, _, p1, n in counts:
        per_score.setdefault(p1, [0, 0])[1 if y > 0.5 else 0] += n
    negatives = sum(c[0] for c in per_score.values())
    positives = sum(c[1] for c in per_score.values())
    roc, pr = [(0.0, 0.0)], []
    fp = tp = 0
    for score in sorted(per_score, reverse=True):
        fp += per_score[score][0]
        tp += per_score[score][1]
        roc.append((fp / negatives, tp / positives))
        pr.append((tp / positives, tp / (tp + fp)))
    roc.append((1.0, 1.0))
    pr.insert(0, (0.0, pr[0][1]))
    return _trapezoids(roc), _trapezoids(pr)


def _trapezoids(curve: list[tuple[float, float]]) -> float:
    return sum((x2 - x1) * (y2 + y1) / 2.0 for (x1, y1), (x2, y2) in zip(curve, curve[1:], strict=False))


def _summarise(cells, positive: int, areas: tuple[float, float]) -> Evaluation:
    """The evaluation from (label, prediction, ROC bucket, rows, bad predictions, bad
    probabilities) cells and the two areas under the curves."""
    confusion: dict[tuple[int, int], int] = {}
    by_bucket: dict[int, list[int]] = {}
    rows = bad_pred = bad_p = 0
    for y, yhat, bucket, n, bad_n, bad_pn in cells:
        rows += n
        bad_pred += bad_n
        bad_p += bad_pn
        key = (int(y), int(yhat))
        confusion[key] = confusion.get(key, 0) + n
        if bucket is not None:
            counts = by_bucket.setdefault(int(bucket), [0, 0])
            counts[1 if int(y) == positive else 0] += n
    tp = confusion.get((positive, positive), 0)
    fp = sum(n for (yy, pp), n in confusion.items() if yy != positive and pp == positive)
    fn = sum(n for (yy, pp), n in confusion.items() if yy == positive and pp != positive)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    correct = sum(n for (yy, pp), n in confusion.items() if yy == pp)
    metrics = {
        "accuracy": correct / rows if rows else 0.0,
        "areaUnderROC": areas[0],
        "areaUnderPR": areas[1],
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
    return pyplot().subplots(figsize=(6, 4.5))


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (no display on job clusters or CI)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def import_pyplot_in_background() -> None:
    """Start importing matplotlib (about a second) on a thread while the caller waits on Spark.
    A later :func:`pyplot` waits for that import to finish (Python's per-module import lock)."""
    threading.Thread(target=pyplot, name="import-pyplot", daemon=True).start()
