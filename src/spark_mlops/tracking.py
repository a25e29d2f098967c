"""MLflow tracking at the edge: URIs, the experiment, and the pip requirements logged with models."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import mlflow

from spark_mlops.config import Settings


def configure(settings: Settings) -> str:
    """Point MLflow at the settings' stores and return the experiment id (created if missing)."""
    # Keep local runs quiet and deterministic; our own logging is explicit.
    for name in ("mlflow", "alembic"):  # alembic logs every sqlite schema migration at INFO
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=FutureWarning, module="mlflow")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.registry_uri)
    # Databricks ML runtimes turn autologging on; it would log a second, unregistered model.
    mlflow.autolog(disable=True)
    return experiment_id(settings)


def experiment_id(settings: Settings) -> str:
    client = mlflow.MlflowClient(tracking_uri=settings.tracking_uri)
    existing = client.get_experiment_by_name(settings.experiment)
    if existing is not None:
        return existing.experiment_id
    artifact_location = None
    if settings.tracking_uri.startswith("sqlite:"):
        # Without this, a sqlite store writes artifacts to ./mlruns in the current directory.
        artifact_location = (Path(settings.state_dir) / "artifacts").resolve().as_uri()
    try:
        return client.create_experiment(settings.experiment, artifact_location=artifact_location)
    except mlflow.exceptions.MlflowException:
        # Another process created it in between.
        return client.get_experiment_by_name(settings.experiment).experiment_id


def pip_requirements() -> list[str]:
    """Explicit requirements: inferring them reloads the model in a subprocess (about 11 s more)."""
    import pyspark

    return [f"pyspark=={pyspark.__version__}", f"mlflow=={mlflow.__version__}"]
