"""MLflow tracking at the edge: URIs, the experiment, and the pip requirements logged with models."""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path

import mlflow

from spark_mlops import logs, remote
from spark_mlops.config import Settings, redact, sqlite_path


def configure(settings: Settings) -> str:
    """Point MLflow at the settings' stores and return the experiment id (created if missing)."""
    # Keep local runs quiet and deterministic; our own logging is explicit.
    logs.configure()  # alembic logs every sqlite schema migration at INFO
    remote.bound_requests()  # an unreachable server (refused or silent) fails within a minute
    warnings.filterwarnings("ignore", category=FutureWarning, module="mlflow")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # MLflow also exports the URIs as environment variables (for subprocesses). Undo that: the
    # next command in this process (local runner, demo, tests) would read them as user settings.
    exported = {var: os.environ.get(var) for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.registry_uri)
    for var, value in exported.items():
        if value is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = value
    # Databricks ML runtimes turn autologging on; it would log a second, unregistered model.
    mlflow.autolog(disable=True)
    keep_sqlite_artifacts_in_state_folder(settings)
    return experiment_id(settings)


def keep_sqlite_artifacts_in_state_folder(settings: Settings) -> None:
    """A sqlite tracking store made without an artifact root creates ``./mlruns`` in the current
    directory when it is opened, even if every experiment has an artifact location of its own
    (mlflow/tracking/_tracking_service/utils.py ``_get_sqlalchemy_store``). Stores of this
    process that MLflow opens without one get the state folder's artifact root instead."""
    if not settings.tracking_uri.startswith("sqlite:"):
        return
    from mlflow.tracking._tracking_service import utils

    root = artifact_root(settings)

    def sqlite_store(store_uri, artifact_uri=None):
        return utils._get_sqlalchemy_store(store_uri, artifact_uri or root)

    utils._tracking_store_registry.register("sqlite", sqlite_store)


def artifact_root(settings: Settings) -> str:
    """Where a local sqlite tracking store's artifacts live: ``artifacts/`` beside its database, so
    each local workspace (config.local_workspace) has runs and artifacts of its own, all inside
    the state folder for the default stores."""
    database = sqlite_path(settings.tracking_uri)
    folder = database.parent / "artifacts" if database else Path(settings.state_dir) / "artifacts"
    return folder.resolve().as_uri()


def safe(values: Mapping[str, object]) -> dict[str, str]:
    """MLflow params or tags as MLflow stores them (text), each through the project's redaction:
    they outlive the run and everyone who can read the experiment reads them."""
    return {str(k): redact(v if isinstance(v, str) else str(v)) for k, v in values.items()}


def log_params(params: Mapping[str, object]) -> None:
    """``mlflow.log_params`` of :func:`safe` values."""
    mlflow.log_params(safe(params))


def experiment_id(settings: Settings) -> str:
    client = mlflow.MlflowClient(tracking_uri=settings.tracking_uri)
    existing = client.get_experiment_by_name(settings.experiment)
    if existing is not None:
        return existing.experiment_id
    artifact_location = None
    if settings.tracking_uri.startswith("sqlite:"):
        # Without this, a sqlite store writes artifacts to ./mlruns in the current directory.
        artifact_location = artifact_root(settings)
    try:
        return client.create_experiment(settings.experiment, artifact_location=artifact_location)
    except mlflow.exceptions.MlflowException:
        # Another process created it in between.
        return client.get_experiment_by_name(settings.experiment).experiment_id


def pip_requirements() -> list[str]:
    """Explicit requirements: inferring them reloads the model in a subprocess (about 11 s more)."""
    import pyspark

    return [f"pyspark=={pyspark.__version__}", f"mlflow=={mlflow.__version__}"]


def log_spark_model(model, artifact_path: str, *, signature, input_example, dfs_tmpdir: str | None,
                    signing_key, extra_files: dict[str, dict] | None = None) -> str:
    """Save ``model`` as an MLflow Spark model with ``extra_files`` (name -> JSON) beside its MLmodel
    and a file manifest signed with ``signing_key`` (:mod:`spark_mlops.signing`), log the folder to
    the active run at ``artifact_path``, and return the model digest (also set as the run's
    ``model_digest`` tag).

    Everything a version needs travels inside this folder: in Unity Catalog a version's files are
    fixed when it is created, and a workspace cannot read another workspace's runs, so the
    monitoring baseline is one of these files, not a ``runs:/`` URI (see trust.py for the manifest).
    ``mlflow.spark.save_model`` with explicit requirements writes no input-example check and
    infers nothing in a subprocess (``log_model``'s serving-input check reloads the model: 3-6 s).
    """
    import mlflow.spark

    from spark_mlops import trust
    from spark_mlops.registry_tags import MODEL_DIGEST

    with tempfile.TemporaryDirectory(prefix="spark-mlops-save-") as tmp:
        folder = Path(tmp) / "model"
        mlflow.spark.save_model(model, str(folder), signature=signature, input_example=input_example,
                                pip_requirements=pip_requirements(), dfs_tmpdir=dfs_tmpdir)
        for name, content in (extra_files or {}).items():
            (folder / name).write_text(json.dumps(content, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        digest = trust.write_manifest(folder, signing_key)
        mlflow.log_artifacts(str(folder), artifact_path)
    mlflow.set_tag(MODEL_DIGEST, digest)
    return digest


def spark_dataset(df, *, name: str, rows: int, **source: str):
    """``mlflow.data.from_spark`` whose profile is the row count the caller already has.

    MLflow's own profile counts the rows through a Python RDD (``countApprox``): it starts Python
    workers and ships every row through them, about 3.5 s on 600 rows, and on 800k rows it
    times out after 5 s and records ``"unknown"``.
    """
    import mlflow.data
    from mlflow.data.spark_dataset import SparkDataset

    class CountedSparkDataset(SparkDataset):
        @property
        def profile(self):
            return {"approx_count": rows}

    base = mlflow.data.from_spark(df, name=name, **source)
    return CountedSparkDataset(df=base.df, source=base.source, name=base.name, digest=base.digest)
