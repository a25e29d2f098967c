"""The drift statistics: PSI, its sampling-noise bound, and the verdict of a batch. Pure Python.

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

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist

from spark_mlops import defaults as D
from spark_mlops.errors import ConfigError

BINS = 10
PSI_FLOOR = 1e-4
PROBABILITY_EDGES = [round(i / BINS, 10) for i in range(1, BINS)]  # fixed deciles of P(class 1)
OUTPUT = "(output)"  # the `feature` of rows about the model's output
BATCH = "(batch)"  # the `feature` of rows about the whole batch

OK, DRIFT, QUALITY, INSUFFICIENT = "ok", "drift", "quality", "insufficient"


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


# ---------------------------------------------------------------- the verdict of a batch


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
