"""MLflow tracking at the edge: URIs, the experiment, and the pip requirements logged with models."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import mlflow

from spark_mlops import logs, remote
from spark_mlops.config import Settings, redact


def configure(settings: Settings) -> str:
    """Point MLflow at the settings' stores and return the experiment id (created if missing)."""
    # Keep local runs quiet and deterministic; our own logging is explicit.
    logs.configure()  # alembic logs every sqlite schema migration at INFO
    remote.bound_retries()  # a server that refuses connections fails in seconds, not minutes
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
    """Where a local tracking store's artifacts live: inside the state folder."""
    return (Path(settings.state_dir) / "artifacts").resolve().as_uri()


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


class _SparkFlavorNoServingCheck:
    """``mlflow.spark`` as a flavor for ``Model._log_v2``, minus MLflow's serving-input check.

    The check (``validate_serving_input``) reloads the just-saved model as a pyfunc and predicts
    the input example through a second pandas -> Spark round trip: about 3-6 s per training
    run, on a model that validation loads and scores on the whole holdout anyway.
    """

    __name__ = "mlflow.spark"

    @staticmethod
    def save_model(validate_serving_input: bool = True, **kwargs) -> None:
        import mlflow.spark

        mlflow.spark.save_model(**kwargs)


def log_spark_model(model, artifact_path: str, *, signature, input_example, dfs_tmpdir: str | None) -> None:
    """``mlflow.spark.log_model`` with a signature, an input example and explicit requirements.

    When the run's artifacts are local, ``mlflow.spark.log_model`` itself saves through
    ``Model._log_v2``; this takes the same route with ``validate_serving_input=False`` (a switch
    ``Model._log_v2`` honours). Elsewhere (Databricks, remote artifact stores) it defers to
    ``mlflow.spark.log_model`` unchanged.
    """
    import mlflow.spark
    from mlflow.models import Model
    from mlflow.utils.uri import is_local_uri

    from spark_mlops.config import on_databricks

    run = mlflow.active_run()
    if on_databricks() or run is None or not is_local_uri(run.info.artifact_uri):
        mlflow.spark.log_model(model, artifact_path=artifact_path, signature=signature, input_example=input_example,
                               pip_requirements=pip_requirements(), dfs_tmpdir=dfs_tmpdir)
        return
    Model._log_v2(artifact_path=artifact_path, flavor=_SparkFlavorNoServingCheck, spark_model=model,
                  signature=signature, input_example=input_example, pip_requirements=pip_requirements(),
                  dfs_tmpdir=dfs_tmpdir, validate_serving_input=False)


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
