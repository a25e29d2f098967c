"""Every default of the lifecycle, defined once: the gate, monitoring, table names, splits.

The console script's flags, the typed configs and the bundle's variables all take their defaults
from here (``tests/test_defaults.py`` checks ``databricks.yml`` against this module). Imports
nothing, so the flag parser stays fast.
"""

from __future__ import annotations

# ---- the release gate (bundle variables min_thresholds, primary_metric, max_tolerance)
MIN_THRESHOLDS = {"areaUnderROC": 0.75, "accuracy": 0.7}  # a candidate must reach each
PRIMARY_METRIC = "areaUnderROC"  # compared with @champion
MAX_TOLERANCE = 0.01  # how much worse than @champion on the primary metric a candidate may be

# ---- the deployment job's approval (bundle variable approval_required: false in dev, test, staging)
APPROVAL_REQUIRED = True  # a person approves each version; a target that does not say otherwise needs one

# ---- monitoring (bundle variables drift_psi_threshold, drift_null_rate_increase, drift_min_rows)
PSI_THRESHOLD = 0.2  # PSI >= this: drift
NULL_RATE_INCREASE = 0.1  # null rate - baseline null rate >= this: quality alert
MIN_ROWS_FOR_VERDICT = 100  # fewer scored rows: no drift verdict
PSI_NOISE_QUANTILE = 0.99  # a PSI must also exceed this quantile of what sampling alone gives; 0: off

# ---- scoring-batch checks (check-batch)
MAX_REJECTED_FRACTION = 0.5  # more of the batch breaking the contract fails the check
MAX_NULL_FRACTION = 0.9  # a feature missing in more of the batch fails the check

# ---- prepare and train
HOLDOUT_FRACTION = 0.2
SPLIT_SEED = 42
MIN_CLEAN_ROWS = 100  # fewer clean rows fail prepare
CLASSIFIER = "random_forest"
TRAINING_SEED = 42

# ---- table names (bundle variables clean_table, quarantine_table, predictions_table, ...)
CLEAN_TABLE = "clean"
QUARANTINE_TABLE = "quarantine"
PREDICTIONS_TABLE = "predictions"
SCORING_REJECTED_TABLE = "scoring_rejected"
MONITORING_TABLE = "monitoring"

# ---- a tracking or registry server over HTTP (MLflow's variables, set only when unset: remote.py)
HTTP_MAX_RETRIES = 4  # MLFLOW_HTTP_REQUEST_MAX_RETRIES (MLflow's own: 7, minutes per request)
HTTP_BACKOFF_FACTOR = 2  # MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR: waits of 0, 4, 8 and 16 s
HTTP_BACKOFF_JITTER = 1.0  # MLFLOW_HTTP_REQUEST_BACKOFF_JITTER: up to 1 s more per wait
HTTP_TIMEOUT_S = 30  # MLFLOW_HTTP_REQUEST_TIMEOUT per attempt (MLflow's own: 120)
HTTP_CONNECT_TIMEOUT_S = 5  # SPARK_MLOPS_HTTP_CONNECT_TIMEOUT: opening a connection (MLflow: the whole timeout)
HTTP_DEADLINE_S = 50  # SPARK_MLOPS_HTTP_DEADLINE: one request, all its attempts and waits (MLflow: none)


def as_key_values(values: dict[str, float]) -> str:
    """``{"a": 0.75}`` -> ``"a=0.75"``: how a bundle variable and a flag spell a map."""
    return ",".join(f"{k}={v}" for k, v in values.items())
