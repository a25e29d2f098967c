"""The main job on the embedded default: the older design's whole story, from the bundle's own jobs.

1. target ``staging``: ``training`` then ``release`` (the candidate becomes staging's @champion);
2. target ``prod``: ``model_deployment`` copies staging's @champion into prod's model and
   validates it against prod's own holdout before it becomes prod's @champion;
3. target ``prod``: ``batch_inference`` scores a batch with prod's @champion.

Every job runs through the local runner from the same YAML a workspace deploys. Staging and prod
are separate workspaces, each with a tracking store of its own (``<state>/workspaces/<name>``),
sharing one registry, as the two workspaces share one Unity Catalog metastore: two catalogs in it
(``staging.<schema>.<model>`` and ``prod.<schema>.<model>``), version files in registry storage.
The fixture data is copied to where the targets expect their inputs (``/Volumes/...`` maps to
``<state>/volumes``). ``--process-per-task`` runs each task in a process of its own.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from spark_mlops.config import Settings
from spark_mlops.tables import local_path
from spark_mlops_dev.bundle import targets
from spark_mlops_dev.bundle.loader import Bundle
from spark_mlops_dev.bundle.runner import run_job

# (target, jobs in order): the way a model reaches production in deploy-the-model mode.
STORY = (("staging", ("training", "release")), ("prod", ("model_deployment", "batch_inference")))
FIXTURES = {"training_input": "diabetes_train.csv", "scoring_input": "scoring_batch.csv"}


def stage_fixtures(settings: Settings, root: Path, variables: dict) -> None:
    for variable, fixture in FIXTURES.items():
        destination = Path(local_path(settings, str(variables[variable])))
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / "fixtures" / fixture, destination)


def job_settings(settings: Settings, bundle: Bundle) -> Settings:
    """``settings`` seen as the bundle's tasks see them: its model name, catalog and schema."""
    return targets.settings_for_target(settings, bundle)


def run(settings: Settings, runs: int = 1, *, process_per_task: bool = False) -> int:
    root = targets.bundle_root()
    bundles = {target: targets.load_local(target, root) for target, _ in STORY}
    for bundle in bundles.values():
        stage_fixtures(settings, root, bundle.variables)
    for attempt in range(1, runs + 1):
        for target, jobs in STORY:
            for job in jobs:
                print(f"\n=== demo run {attempt}/{runs}: job {job} (target {target}) ===", flush=True)
                result = run_job(bundles[target], job, state_dir=settings.state_dir,
                                 process_per_task=process_per_task)
                if not result.ok:
                    print(f"demo: job {job} on target {target} ended {result.state}; stopping")
                    return result.exit_code or 1
    _report(settings, bundles["prod"])
    return 0


def _report(settings: Settings, prod: Bundle) -> None:
    from spark_mlops import registry
    from spark_mlops.spark import get_spark
    from spark_mlops.tables import LocalWarehouse, tables_for

    view = job_settings(settings, prod)
    print("\n" + registry.status_table(view))
    spark = get_spark(view)
    tables = tables_for(spark, view)
    warehouse = LocalWarehouse(view.state_dir / "warehouse")
    score = next(t for t in prod.jobs["batch_inference"]["tasks"] if t["task_key"] == "score")
    output = view.table_name(score["python_wheel_task"]["named_parameters"]["output-table"])
    print(f"\nLocal Delta tables under {warehouse.root}: {', '.join(warehouse.names())}")
    print(f"Predictions: {output} -> spark.table({warehouse.identifier(output)!r}) (docs/tables.md)")
    predictions = tables.read(output)
    predictions.orderBy("batch_id", predictions.columns[0]).show(5, truncate=False)
    last = tables.history(output, 1)[0]
    print(f"Its last commit: version {last['version']}, {last['operation']}, userMetadata {last['userMetadata']}")
    print("The registry as data: spark-mlops status -t prod --json")
