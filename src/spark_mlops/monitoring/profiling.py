"""Profiles in Spark: the training baseline every version carries, and the counts of a scored batch.

Nothing row-level is collected: each profile is one or two aggregations, and the statistics are
computed from their counts (:mod:`spark_mlops.monitoring.statistics`).
"""

from __future__ import annotations

import math
import re

from spark_mlops.errors import DataContractError
from spark_mlops.monitoring.statistics import BINS, PROBABILITY_EDGES, bin_edges, fractions

BASELINE_FORMAT = 1
QUANTILE_ACCURACY = 10_000  # percentile_approx: rank error about 1/accuracy of the rows
EDGE_SAMPLE_ROWS = 20_000  # a larger training split's bin edges come from a sample of about this many rows
EDGE_SAMPLE_SEED = 7


def _bin_column(column, edges: list[float]):
    """Bin index 0..len(edges) of a numeric column (null stays null), computed in the JVM."""
    from pyspark.sql import functions as F

    if not edges:
        return F.when(column.isNotNull(), F.lit(0))
    index = sum((column >= F.lit(e)).cast("int") for e in edges)
    return F.when(column.isNotNull(), index)


def histograms(frame, columns: dict[int, object]) -> dict[int, dict[int | None, int]]:
    """Row counts per value of each integer column expression (bin indexes; null counted as
    None), in one Spark job: the columns are exploded into (key, value) pairs and grouped.
    Much cheaper than one ``sum(when(bin == i))`` per bin, which Spark evaluates (and
    recomputes the bin of) once per aggregate."""
    from pyspark.sql import functions as F

    pairs = F.array(*[F.struct(F.lit(k).alias("k"), c.cast("int").alias("v")) for k, c in columns.items()])
    counted = frame.select(F.explode(pairs).alias("p")).groupBy("p.k", "p.v").count().collect()
    out: dict[int, dict[int | None, int]] = {k: {} for k in columns}
    for r in counted:
        out[int(r["k"])][None if r["v"] is None else int(r["v"])] = int(r["count"])
    return out


# ---------------------------------------------------------------- the baseline


def baseline_profile(train, contract, evaluation, *, bins: int = BINS, split_rows: int | None = None,
                     edge_sample_rows: int = EDGE_SAMPLE_ROWS) -> dict:
    """The training split's profile, in two Spark jobs over ``train`` (cache it): quantile edges
    and moments, then the exact row count per bin. (One job with a 999-quantile grid to derive
    the fractions from was 2-3x slower: ``percentile_approx`` pays per requested quantile.)

    ``split_rows``, the split's row count when the caller has it: above ``edge_sample_rows``
    the quantile edges come from a seeded sample of about that many rows (``percentile_approx``
    pays per row it takes in, and decile edges need no more); the same data in the same
    partitions gives the same sample. Fractions, null rates and moments always count every row.
    """
    from pyspark.sql import functions as F

    features = contract.feature_names
    probabilities = [k / bins for k in range(1, bins)]
    sampled = split_rows is not None and split_rows > edge_sample_rows
    # Spark takes no random expression inside an aggregate: the draw is a column first.
    source = train.withColumn("__edge_sample", F.rand(EDGE_SAMPLE_SEED) < edge_sample_rows / split_rows) \
        if sampled else train

    def quantile_input(f: str):
        value = F.col(f).cast("double")
        return F.when(F.col("__edge_sample"), value) if sampled else value  # percentile_approx skips nulls

    stats = source.agg(
        F.count(F.lit(1)).alias("__rows"),
        F.avg(F.col(contract.label).cast("double")).alias("__label_rate"),
        *[F.percentile_approx(quantile_input(f), probabilities, QUANTILE_ACCURACY).alias(f"q_{i}")
          for i, f in enumerate(features)],
        *[F.avg(F.col(f)).alias(f"mean_{i}") for i, f in enumerate(features)],
        *[F.stddev(F.col(f)).alias(f"std_{i}") for i, f in enumerate(features)],
    ).first()
    rows = int(stats["__rows"])
    edges = {f: bin_edges(stats[f"q_{i}"]) for i, f in enumerate(features)}
    counts = histograms(train, {i: _bin_column(F.col(f).cast("double"), edges[f]) for i, f in enumerate(features)})
    profile: dict = {"format": BASELINE_FORMAT, "bins": bins, "rows": rows,
                     "label": contract.label, "label_rate": _num(stats["__label_rate"]), "features": {}}
    for i, f in enumerate(features):
        profile["features"][f] = {
            "edges": edges[f],
            "fractions": fractions([counts[i].get(b, 0) for b in range(len(edges[f]) + 1)]),
            "null_rate": counts[i].get(None, 0) / rows if rows else 0.0,
            "rows": rows - counts[i].get(None, 0),  # non-null values: the sample size of the fractions
            "mean": _num(stats[f"mean_{i}"]),
            "std": _num(stats[f"std_{i}"]),
        }
    profile["output"] = output_profile(evaluation, contract.positive_label)
    return profile


def output_profile(evaluation, positive: int) -> dict:
    """P(class 1) on the holdout in :data:`PROBABILITY_EDGES` bins, from the evaluation's counts."""
    per_bucket = evaluation.probability_counts  # fine equal-width buckets over [0, 1]
    width = len(per_bucket) // BINS
    counts = [sum(per_bucket[b * width:(b + 1) * width]) for b in range(BINS)]
    predicted = sum(n for (_, p), n in evaluation.confusion.items() if p == positive)
    return {
        "edges": PROBABILITY_EDGES,
        "fractions": fractions(counts),
        "rows": evaluation.rows,
        "positive_rate": predicted / evaluation.rows if evaluation.rows else 0.0,
    }


def _num(value) -> float | None:
    return None if value is None or (isinstance(value, float) and not math.isfinite(value)) else float(value)


# ---------------------------------------------------------------- a scored batch


def batch_stats(scored, rejected, baseline: dict, contract, features=None) -> dict:
    """Counts of one batch for one model version: from ``scored`` (the predictions, with the
    feature columns unless ``features`` is given: the batch's valid input rows) in one job, or
    two with ``features``; plus one over the batch's ``rejected`` rows when given."""
    from pyspark.sql import functions as F

    from spark_mlops import contract as dc

    names = list(baseline["features"])
    source = scored if features is None else features
    missing = [n for n in names if n not in source.columns]
    if missing:
        raise DataContractError(f"the batch has no column(s) {missing} that the baseline profiles")
    source = dc.apply_missing_markers(source, contract)  # the baseline saw markers as nulls too
    out_key, pred_key = len(names), len(names) + 1
    feature_columns = {i: _bin_column(F.col(n).cast("double"), baseline["features"][n]["edges"])
                       for i, n in enumerate(names)}
    output_columns = {out_key: _bin_column(F.col("probability"), baseline["output"]["edges"]),
                      pred_key: F.col("prediction")}
    if features is None:
        counts = histograms(source, {**feature_columns, **output_columns})
    else:
        counts = {**histograms(source, feature_columns), **histograms(scored, output_columns)}
    rows = sum(counts[pred_key].values())
    for i in range(len(names)):
        seen = sum(counts[i].values())
        if seen != rows:
            raise DataContractError(f"the batch's input has {seen} valid rows but {rows} were scored: "
                                    "it changed since it was scored; score it again, then monitor")
    per_feature_rejected = {n: 0 for n in names}
    n_rejected = 0
    if rejected is not None:
        reason = F.col(dc.REASON_COLUMN)
        # Reasons read "<Feature>=<value> > <max>" or "<Feature> is missing", joined by "; ".
        hit = [reason.rlike(rf"(^|; ){re.escape(n)}(=| is missing)") for n in names]
        rrow = rejected.agg(F.count(F.lit(1)).alias("__n"),
                            *[F.sum(F.when(c, 1).otherwise(0)).alias(f"r_{i}") for i, c in enumerate(hit)]).first()
        n_rejected = int(rrow["__n"])
        per_feature_rejected = {n: int(rrow[f"r_{i}"] or 0) for i, n in enumerate(names)}
    return {
        "rows": rows,
        "rejected": n_rejected,
        "positive_rate": counts[pred_key].get(contract.positive_label, 0) / rows if rows else None,
        "features": {
            n: {"bins": [counts[i].get(b, 0) for b in range(len(baseline["features"][n]["edges"]) + 1)],
                "nulls": counts[i].get(None, 0), "rejected": per_feature_rejected[n]}
            for i, n in enumerate(names)
        },
        "output_bins": [counts[out_key].get(b, 0) for b in range(len(baseline["output"]["edges"]) + 1)],
    }
