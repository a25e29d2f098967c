"""Drift and data-quality monitoring of scored batches against the scoring model's own baseline.

- **Baseline** (:func:`baseline_profile`, called by ``train``): a profile of the training split,
  computed in two Spark jobs over the cached split (nothing row-level is collected): per
  feature quantile bin edges (``percentile_approx``; from a seeded sample of about
  :data:`EDGE_SAMPLE_ROWS` rows when the split is larger), the exact fraction of non-null rows in
  each bin, the null rate, the non-null count, mean and standard deviation; the label rate; and
  the distribution of P(class 1) on the holdout and its size (from the counts the holdout
  evaluation already collected: no extra job).
  It is ``baseline.json`` in the model folder that ``train`` logs, so it is one of the version's
  own files: every version has its own baseline, a copy made by ``deploy-model`` carries it, and
  prod monitors without reading staging's runs (a workspace cannot). It is read like every file
  of a version, after the files are checked against the digest recorded at training
  (:mod:`spark_mlops.trust`), so nothing but the version itself can name its baseline.
- **Monitor** (:func:`run`): one aggregation over the batch's predictions gives, per feature,
  the exact row count in each baseline bin and the null count, and the output's bins and
  positive rate (when ``score`` kept no feature columns, the features come from the batch's
  input: its valid rows are the scored rows); the batch's rejected rows give the
  out-of-contract rate. PSI is computed from those counts on the driver. The verdict is
  written to the ``monitoring`` table (one partition per batch, replaced on re-runs), to an
  MLflow run (metrics + drift chart) and to the scoring version's tags.

PSI = sum over bins of (a - e) * ln(a / e), with a and e the batch's and the baseline's
fractions of non-null values per bin, each floored at :data:`PSI_FLOOR` so that an empty bin
does not make it infinite. Bins are ``(-inf, e1), [e1, e2), ..., [ek, +inf)``.

Sampling noise: two samples of one distribution do not give PSI 0. PSI is the Jeffreys divergence
(symmetrised Kullback-Leibler) of the two histograms; to second order around the common bin
probabilities p, (a - e) * ln(a / e) ~ (a - e)^2 / p, and sum (a - e)^2 / p divided by
(1/n_e + 1/n_a) is the two-sample Pearson chi-square statistic of the histograms, chi-square with
k - 1 degrees of freedom under no drift (k: bins populated in either sample). So with no drift
PSI ~ (1/n_e + 1/n_a) * chi2(k - 1): its mean is (k - 1)(1/n_e + 1/n_a) and its
:attr:`Thresholds.psi_noise_quantile` quantile is the *noise bound* (:func:`psi_noise_bound`).
A PSI is drift only when it reaches the threshold **and** exceeds its noise bound: a small batch
(or a small holdout, for the output) does not raise drift on sampling noise alone.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from statistics import NormalDist

from spark_mlops import constants
from spark_mlops import defaults as D
from spark_mlops import registry_tags as rt
from spark_mlops.errors import ConfigError, DataContractError, MlopsError, RegistryError

BASELINE_FORMAT = 1
BINS = 10
QUANTILE_ACCURACY = 10_000  # percentile_approx: rank error about 1/accuracy of the rows
EDGE_SAMPLE_ROWS = 20_000  # a larger training split's bin edges come from a sample of about this many rows
EDGE_SAMPLE_SEED = 7
PSI_FLOOR = 1e-4
PROBABILITY_EDGES = [round(i / BINS, 10) for i in range(1, BINS)]  # fixed deciles of P(class 1)
OUTPUT = "(output)"  # the `feature` of rows about the model's output
BATCH = "(batch)"  # the `feature` of rows about the whole batch

OK, DRIFT, QUALITY, INSUFFICIENT = "ok", "drift", "quality", "insufficient"


class DriftDetected(MlopsError):
    """The batch's verdict is drift: the drift gate's signal (``drift-check``)."""

    exit_code = constants.EXIT_DRIFT


@dataclass(frozen=True)
class Thresholds:
    psi: float = D.PSI_THRESHOLD
    null_rate_increase: float = D.NULL_RATE_INCREASE
    min_rows: int = D.MIN_ROWS_FOR_VERDICT
    psi_noise_quantile: float = D.PSI_NOISE_QUANTILE

    def check(self) -> Thresholds:
        if not self.psi > 0:
            raise ConfigError(f"--psi-threshold must be above 0, found {self.psi}")
        if not 0 <= self.psi_noise_quantile < 1:
            raise ConfigError(f"--psi-noise-quantile must be in [0, 1), found {self.psi_noise_quantile}")
        if not 0 < self.null_rate_increase <= 1:
            raise ConfigError(f"--null-rate-increase must be in (0, 1], found {self.null_rate_increase}")
        if self.min_rows < 1:
            raise ConfigError(f"--min-rows must be at least 1, found {self.min_rows}")
        return self


@dataclass(frozen=True)
class MonitorConfig:
    batch_id: str  # "" = derived from ``input`` as score derives it
    predictions_table: str = D.PREDICTIONS_TABLE
    rejected_table: str = D.SCORING_REJECTED_TABLE
    monitoring_table: str = D.MONITORING_TABLE
    input: str | None = None  # the batch's input, when the predictions carry no feature columns
    thresholds: Thresholds = field(default_factory=Thresholds)


# ---------------------------------------------------------------- pure functions


def psi(expected: list[float], actual: list[float]) -> float:
    """Population stability index of two distributions over the same bins."""
    if len(expected) != len(actual):
        raise ValueError(f"PSI needs the same bins: {len(expected)} baseline vs {len(actual)} batch")
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        e, a = max(e, PSI_FLOOR), max(a, PSI_FLOOR)
        total += (a - e) * math.log(a / e)
    return total


def chi2_quantile(q: float, df: int) -> float:
    """The ``q`` quantile of chi-square with ``df`` degrees of freedom, by the Wilson-Hilferty
    cube-root normal approximation: within 0.75% of scipy's exact value at q = 0.99 for 1 to 199
    degrees of freedom, and scipy is not a dependency of the wheel."""
    if df < 1:
        return 0.0
    h = 2 / (9 * df)
    return df * max(1 - h + NormalDist().inv_cdf(q) * math.sqrt(h), 0.0) ** 3


def populated_bins(expected: list[float], actual_counts: list[int]) -> int:
    """Bins with any value in either sample: the degrees of freedom of PSI's noise are this minus 1."""
    return sum(1 for e, a in zip(expected, actual_counts, strict=True) if e > 0 or a > 0)


def psi_noise_bound(n_baseline: int | None, n_batch: int, bins: int, quantile: float) -> float | None:
    """The PSI that two samples of one distribution (``n_baseline`` and ``n_batch`` values over
    ``bins`` populated bins) stay under with probability ``quantile``: (1/n_e + 1/n_a) * the
    chi-square(bins - 1) quantile (derived in the module docstring: the second-order expansion of
    the Jeffreys divergence is the two-sample Pearson chi-square). None when the baseline's size is
    unknown (a baseline recorded before sizes were): no noise allowance then."""
    if n_baseline is None:
        return None
    if n_baseline <= 0 or n_batch <= 0 or quantile <= 0:
        return 0.0
    return (1 / n_baseline + 1 / n_batch) * chi2_quantile(quantile, bins - 1)


def within_noise(psi_value: float | None, noise_bound: float | None) -> bool:
    return psi_value is not None and noise_bound is not None and psi_value <= noise_bound


def fractions(counts: list[int]) -> list[float]:
    n = sum(counts)
    return [c / n for c in counts] if n else [0.0] * len(counts)


def bin_edges(quantiles: list[float] | None) -> list[float]:
    """Distinct, sorted interior edges from quantiles (ties collapse: an integer feature with
    many equal values gets fewer, wider bins)."""
    return sorted({float(q) for q in quantiles or [] if q is not None and math.isfinite(q)})


def bin_of(value: float, edges: list[float]) -> int:
    """The bin of one value, as :func:`_bin_column` computes it in Spark (for tests and docs)."""
    return sum(1 for e in edges if value >= e)


def psi_status(psi_value: float | None, noise_bound: float | None, t: Thresholds) -> str:
    """Drift when PSI reaches the threshold and exceeds what sampling alone gives."""
    if psi_value is not None and psi_value >= t.psi and not within_noise(psi_value, noise_bound):
        return DRIFT
    return OK


def feature_status(psi_value: float | None, null_rate_change: float, t: Thresholds,
                   noise_bound: float | None = None) -> str:
    if null_rate_change >= t.null_rate_increase:
        return QUALITY
    return psi_status(psi_value, noise_bound, t)


# ---------------------------------------------------------------- Spark expressions


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


# ---------------------------------------------------------------- baseline


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


@dataclass
class FeatureResult:
    name: str
    psi: float | None
    null_rate: float
    baseline_null_rate: float
    out_of_contract_rate: float
    status: str
    psi_noise_bound: float | None = None  # None: the baseline records no sample size
    sample_sizes: tuple[int | None, int] = (None, 0)  # (baseline, batch) non-null values behind the PSI

    @property
    def within_noise(self) -> bool:
        """PSI reached the threshold but sampling alone explains it: not drift."""
        return self.status == OK and within_noise(self.psi, self.psi_noise_bound)

    @property
    def null_rate_change(self) -> float:
        return self.null_rate - self.baseline_null_rate


@dataclass
class BatchVerdict:
    batch_id: str
    model_name: str
    model_version: str
    rows: int
    rejected: int
    verdict: str  # ok | drift | quality | insufficient
    features: list[FeatureResult]
    output_psi: float | None
    positive_rate: float | None
    baseline_positive_rate: float | None
    output_status: str
    thresholds: Thresholds
    monitored_at: str = ""
    run_id: str = ""
    output_psi_noise_bound: float | None = None
    output_sample_sizes: tuple[int | None, int] = (None, 0)  # (holdout, batch) rows behind the output's PSI

    @property
    def output_within_noise(self) -> bool:
        return self.output_status == OK and within_noise(self.output_psi, self.output_psi_noise_bound)

    @property
    def drift(self) -> bool:
        return self.verdict == DRIFT

    def as_json(self) -> dict:
        return {
            "batch_id": self.batch_id,
            "model_version": self.model_version,
            "drift": self.drift,
            "verdict": self.verdict,
            "rows": self.rows,
            "rejected": self.rejected,
            "features": [{"name": f.name, "psi": _round(f.psi), "psi_noise_bound": _round(f.psi_noise_bound),
                          "null_rate": _round(f.null_rate), "status": f.status} for f in self.features],
            "output": {"psi": _round(self.output_psi), "psi_noise_bound": _round(self.output_psi_noise_bound),
                       "positive_rate": _round(self.positive_rate),
                       "baseline_positive_rate": _round(self.baseline_positive_rate), "status": self.output_status},
            "thresholds": asdict(self.thresholds),
            "run_id": self.run_id,
        }

    def table_lines(self) -> list[str]:
        from spark_mlops import text

        def show(x: float | None, fmt: str = ".3f") -> str:
            return "-" if x is None else format(x, fmt)

        rows = [(f.name, show(f.psi), show(f.psi_noise_bound), show(f.null_rate), f"{f.null_rate_change:+.3f}",
                 show(f.out_of_contract_rate), f.status) for f in self.features]
        rows.append(("P(class 1)", show(self.output_psi), show(self.output_psi_noise_bound), "-", "-", "-",
                     self.output_status))
        header = ("feature", "psi", "noise bound", "null rate", "vs baseline", "out of contract", "status")
        t = self.thresholds
        noise = (f"psi >= {t.psi} and above its {t.psi_noise_quantile:.0%} sampling-noise bound drift"
                 if t.psi_noise_quantile > 0 else f"psi >= {t.psi} drift (no noise bound)")
        notes = [f"{name}: psi {psi_value:.3f} >= {t.psi} but within the sampling-noise bound "
                 f"{bound:.3f} of {sizes}: not drift"
                 for name, psi_value, bound, sizes in self._within_noise()]
        return [*text.table(header, rows), *notes,
                f"positive rate {show(self.positive_rate)} (baseline {show(self.baseline_positive_rate)}); "
                f"thresholds: {noise}, null rate +{t.null_rate_increase} quality, min rows {t.min_rows}"]

    def _within_noise(self) -> list[tuple[str, float, float, str]]:
        """(name, PSI, bound, sample sizes) of each PSI at or above the threshold that the noise bound excused."""
        t = self.thresholds
        out = [(f.name, f.psi, f.psi_noise_bound, "{} baseline and {} batch values".format(*f.sample_sizes))
               for f in self.features if f.within_noise and f.psi >= t.psi]
        if self.output_within_noise and self.output_psi >= t.psi:
            out.append(("P(class 1)", self.output_psi, self.output_psi_noise_bound,
                        "{} holdout and {} batch rows".format(*self.output_sample_sizes)))
        return out


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 6)


def judge(batch_id: str, model_name: str, version: str, baseline: dict, stats: dict, t: Thresholds) -> BatchVerdict:
    """The verdict from the batch's counts (``stats``, see :func:`batch_stats`) and the baseline."""
    rows, rejected = stats["rows"], stats["rejected"]
    enough = rows >= t.min_rows
    results = []
    for name, base in baseline["features"].items():
        s = stats["features"][name]
        value = psi(base["fractions"], fractions(s["bins"])) if enough and sum(s["bins"]) else None
        sizes = (feature_rows(baseline, name), sum(s["bins"]))
        bound = _noise_bound(base["fractions"], sizes, s["bins"], t) if value is not None else None
        null_rate = s["nulls"] / rows if rows else 0.0
        status = feature_status(value, null_rate - base["null_rate"], t, bound) if enough else INSUFFICIENT
        results.append(FeatureResult(name, value, null_rate, base["null_rate"],
                                     s["rejected"] / (rows + rejected) if rows + rejected else 0.0, status, bound, sizes))
    out = baseline["output"]
    output_psi = psi(out["fractions"], fractions(stats["output_bins"])) if enough and rows else None
    output_sizes = (out.get("rows"), sum(stats["output_bins"]))
    output_bound = _noise_bound(out["fractions"], output_sizes, stats["output_bins"], t) if output_psi is not None else None
    output_status = INSUFFICIENT if not enough else psi_status(output_psi, output_bound, t)
    statuses = {r.status for r in results} | {output_status}
    verdict = (INSUFFICIENT if not enough else DRIFT if DRIFT in statuses else QUALITY if QUALITY in statuses else OK)
    return BatchVerdict(batch_id, model_name, version, rows, rejected, verdict, results, output_psi,
                        stats["positive_rate"], out.get("positive_rate"), output_status, t,
                        output_psi_noise_bound=output_bound, output_sample_sizes=output_sizes)


def feature_rows(baseline: dict, name: str) -> int | None:
    """The number of non-null training values behind a feature's baseline fractions."""
    base = baseline["features"][name]
    if "rows" in base:
        return int(base["rows"])
    if "rows" in baseline:  # a baseline from before per-feature sizes: its split size and null rate give it
        return round(baseline["rows"] * (1 - base["null_rate"]))
    return None


def _noise_bound(expected: list[float], sizes: tuple[int | None, int], batch_bins: list[int],
                 t: Thresholds) -> float | None:
    return psi_noise_bound(*sizes, populated_bins(expected, batch_bins), t.psi_noise_quantile)


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


def verdict_rows(v: BatchVerdict, job_run_id: str | None) -> list[tuple]:
    """Rows of the ``monitoring`` table: (model_name, model_version, metric, feature, value,
    baseline, threshold, status, rows, monitored_at, run_id, job_run_id). In ``psi`` rows ``baseline``
    is the noise bound: the PSI sampling alone stays under (null when the baseline has no sizes)."""
    t = v.thresholds
    out: list[tuple] = []

    def add(metric: str, feature: str, value, baseline, threshold, status: str) -> None:
        out.append((v.model_name, v.model_version, metric, feature, value, baseline, threshold, status,
                    v.rows, v.monitored_at, v.run_id, job_run_id))

    for f in v.features:
        add("psi", f.name, f.psi, f.psi_noise_bound, t.psi, f.status)
        add("null_rate", f.name, f.null_rate, f.baseline_null_rate, t.null_rate_increase, f.status)
        add("out_of_contract_rate", f.name, f.out_of_contract_rate, None, None, f.status)
    add("psi", OUTPUT, v.output_psi, v.output_psi_noise_bound, t.psi, v.output_status)
    add("positive_rate", OUTPUT, v.positive_rate, v.baseline_positive_rate, None, v.output_status)
    add("rows", BATCH, float(v.rows), None, float(t.min_rows), v.verdict)
    add("out_of_contract_rate", BATCH, v.rejected / (v.rows + v.rejected) if v.rows + v.rejected else 0.0,
        None, None, v.verdict)
    add("verdict", BATCH, 1.0 if v.drift else 0.0, None, None, v.verdict)
    return out


MONITORING_SCHEMA = (
    "model_name string, model_version string, metric string, feature string, value double, "
    "baseline double, threshold double, status string, rows long, monitored_at timestamp, "
    "run_id string, job_run_id string"
)


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
    from spark_mlops.spark import get_spark
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
        stats = batch_stats(scored, rejected if len(versions) == 1 else None, baseline, contract, features=inputs)
        v = judge(batch_id, settings.model_name, version, baseline, stats, t)
        v.monitored_at = datetime.now(UTC).replace(microsecond=0).isoformat()
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"monitor-{batch_id}",
                              tags=tracking.safe({**settings.run_tags(), rt.RUN_STEP: "monitor",
                                                  rt.RUN_MODEL_VERSION: version, "batch_id": batch_id,
                                                  rt.RUN_VERDICT: v.verdict})) as mlrun:
            v.run_id = mlrun.info.run_id
            _log(v)
        verdicts.append(v)

    rows = [r for v in verdicts for r in verdict_rows(v, settings.job_run_id)]
    frame = spark.createDataFrame(
        [(*r[:9], datetime.fromisoformat(r[9]), *r[10:]) for r in rows], MONITORING_SCHEMA
    )
    tables.replace_partition(monitoring_table, frame, BATCH_COLUMN, batch_id)
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
