"""A tiny registered Spark model for the model-cache tests, and the session-restart scenario they
run in a subprocess (stopping the shared test session would break every later test).

Its own module so that the subprocess does not import tests/conftest.py.
"""

from __future__ import annotations

import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlparse


def register_tiny_model(spark, settings, seed: int) -> tuple[str, object]:
    """Fit a two-feature pipeline on a generated frame, log it and register it; the version and the frame."""
    import mlflow
    from mlflow.models import infer_signature
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import VectorAssembler

    from spark_mlops import registry, signing, tracking
    from spark_mlops.registry_tags import MODEL_DIGEST

    experiment_id = tracking.configure(settings)
    rows = [(float((i * seed) % 7), float(i % 3), (i + seed) % 2) for i in range(40)]
    frame = spark.createDataFrame(rows, "a double, b double, label int")
    pipeline = Pipeline(stages=[VectorAssembler(inputCols=["a", "b"], outputCol="features"),
                                LogisticRegression(labelCol="label", maxIter=5)])
    fitted = pipeline.fit(frame)
    example = frame.select("a", "b").limit(3).toPandas()
    with mlflow.start_run(experiment_id=experiment_id) as run:
        digest = tracking.log_spark_model(fitted, registry.MODEL_ARTIFACT_PATH, signature=infer_signature(example),
                                          input_example=example, dfs_tmpdir=settings.dfs_tmpdir,
                                          signing_key=signing.signing_key(settings.state_dir, on_databricks=False))
    created = registry.register(settings, run.info.run_id, f"runs:/{run.info.run_id}/{registry.MODEL_ARTIFACT_PATH}",
                                {MODEL_DIGEST: digest})
    return str(created.version), frame


def files_of(settings, version: str) -> Path:
    """The folder the registry serves ``version`` from (a local file store here)."""
    from spark_mlops import registry

    uri = registry.client(settings).get_model_version_download_uri(settings.model_name, version)
    return Path(unquote(urlparse(uri).path))


@contextmanager
def files_hidden(folder: Path):
    """Move the version's files away for the block: any read from the store fails meanwhile."""
    aside = folder.with_name(folder.name + ".hidden")
    shutil.move(folder, aside)
    try:
        yield
    finally:
        shutil.move(aside, folder)


def restart_scenario(state_dir: str) -> None:
    """Load, stop the session, start another: the next load must read the store again."""
    from spark_mlops import registry
    from spark_mlops.config import build_settings
    from spark_mlops.spark import get_spark

    settings = build_settings(state_dir=state_dir)
    spark = get_spark(settings)
    version, _ = register_tiny_model(spark, settings, seed=3)
    first, _ = registry.load_spark_model(settings, version)
    spark.stop()
    spark = get_spark(settings)
    with files_hidden(files_of(settings, version)):
        try:
            registry.load_spark_model(settings, version)
        except Exception as exc:  # noqa: BLE001 - any failure to read the hidden files will do
            print(f"reload read the store: {type(exc).__name__}")
        else:
            print("reload returned a model without reading the store")
    second, _ = registry.load_spark_model(settings, version)
    frame = spark.createDataFrame([(1.0, 2.0)], "a double, b double")
    print(f"new model: {second is not first}; rows scored: {second.transform(frame).count()}")


if __name__ == "__main__":
    restart_scenario(sys.argv[1])
