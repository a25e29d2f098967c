"""The main job on the embedded default: the bundle's own jobs, run locally in order.

training -> release -> batch_inference of the ``dev`` target, through the local runner, from the
fixture data copied to where the bundle expects it (``/Volumes/...`` maps to ``<state>/volumes``).
Then the registry status and where the predictions are.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from spark_mlops.bundle.loader import load_bundle
from spark_mlops.bundle.runner import run_job
from spark_mlops.config import Settings
from spark_mlops.errors import ConfigError
from spark_mlops.tables import local_path

JOBS = ("training", "release", "batch_inference")
TARGET = "dev"
FIXTURES = {"training_input": "diabetes_train.csv", "scoring_input": "scoring_batch.csv"}


def bundle_root() -> Path:
    """The folder with databricks.yml: the current one or a parent, else this source checkout."""
    for folder in (Path.cwd(), *Path.cwd().parents, Path(__file__).resolve().parents[2]):
        if (folder / "databricks.yml").is_file():
            return folder
    raise ConfigError("no databricks.yml found in this folder, its parents, or the source checkout")


def stage_fixtures(settings: Settings, root: Path, variables: dict) -> None:
    for variable, fixture in FIXTURES.items():
        destination = Path(local_path(settings, str(variables[variable])))
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / "fixtures" / fixture, destination)


def _score_params(bundle) -> dict:
    score = next(t for t in bundle.jobs["batch_inference"]["tasks"] if t["task_key"] == "score")
    return score["python_wheel_task"]["named_parameters"]


def job_settings(settings: Settings, bundle) -> Settings:
    """``settings`` seen as the bundle's tasks see them: its model name, catalog and schema."""
    from dataclasses import replace

    params = _score_params(bundle)
    return replace(settings, model_name=params["model-name"], catalog=params["catalog"], schema=params["schema"])


def run(settings: Settings, runs: int = 1) -> int:
    root = bundle_root()
    bundle = load_bundle(root, TARGET, local=True)
    stage_fixtures(settings, root, bundle.variables)
    for attempt in range(1, runs + 1):
        for job in JOBS:
            print(f"\n=== demo run {attempt}/{runs}: job {job} (target {TARGET}) ===", flush=True)
            result = run_job(bundle, job, state_dir=settings.state_dir)
            if not result.ok:
                print(f"demo: job {job} ended {result.state}; stopping")
                return result.exit_code or 1
    _report(settings, bundle)
    return 0


def _report(settings: Settings, bundle) -> None:
    from spark_mlops import registry
    from spark_mlops.spark import get_spark
    from spark_mlops.tables import LocalParquetTables

    view = job_settings(settings, bundle)
    print("\n" + registry.status_table(view))
    spark = get_spark(view)
    names = LocalParquetTables(spark, view.state_dir).register_existing()
    output = view.table_name(_score_params(bundle)["output-table"])
    db, table = LocalParquetTables.local_name(output)
    print(f"\nLocal tables (parquet under {view.state_dir / 'warehouse'}): {', '.join(names)}")
    print(f"Predictions: {output} -> spark.table('{db}.{table}')")
    predictions = spark.table(f"{db}.{table}")
    predictions.orderBy("batch_id", predictions.columns[0]).show(5, truncate=False)
