"""Drift and data-quality monitoring of scored batches against the scoring model's own baseline.

Three modules: :mod:`.statistics` (PSI, its noise bound, verdicts; pure Python), :mod:`.profiling`
(the Spark aggregations behind a baseline and a batch) and :mod:`.step` (the steps' I/O). This
package exposes what the other layers use.

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
  of a version, after the files are checked against the signature made at training
  (:mod:`spark_mlops.trust`), so nothing but the version itself can name its baseline.
- **Monitor** (:func:`run`): one aggregation over the batch's predictions gives, per feature,
  the exact row count in each baseline bin and the null count, and the output's bins and
  positive rate (when ``score`` kept no feature columns, the features come from the batch's
  input: its valid rows are the scored rows); the batch's rejected rows give the
  out-of-contract rate. PSI is computed from those counts on the driver. The verdict is
  written to the ``monitoring`` table (one partition per batch, replaced on re-runs), to an
  MLflow run (metrics + drift chart) and to the scoring version's tags.
"""

from spark_mlops.monitoring.profiling import BASELINE_FORMAT, baseline_profile, batch_stats, output_profile
from spark_mlops.monitoring.statistics import (
    BATCH,
    DRIFT,
    INSUFFICIENT,
    OK,
    OUTPUT,
    QUALITY,
    BatchVerdict,
    FeatureResult,
    Thresholds,
    bin_edges,
    bin_of,
    chi2_quantile,
    feature_rows,
    feature_status,
    fractions,
    judge,
    populated_bins,
    psi,
    psi_noise_bound,
    psi_status,
    verdict_rows,
    within_noise,
)
from spark_mlops.monitoring.step import (
    DriftDetected,
    MonitorConfig,
    drift_check,
    drift_figure,
    load_baseline,
    print_verdicts,
    resolve_batch_id,
    run,
)

__all__ = [
    "BASELINE_FORMAT", "BATCH", "DRIFT", "INSUFFICIENT", "OK", "OUTPUT", "QUALITY", "BatchVerdict", "DriftDetected",
    "FeatureResult", "MonitorConfig", "Thresholds", "baseline_profile", "batch_stats", "bin_edges", "bin_of",
    "chi2_quantile", "drift_check", "drift_figure", "feature_rows", "feature_status", "fractions", "judge", "load_baseline",
    "output_profile", "populated_bins", "print_verdicts", "psi", "psi_noise_bound", "psi_status",
    "resolve_batch_id", "run", "verdict_rows", "within_noise",
]
