"""A second real dataset through the whole story, with nothing changed but the contract and the input.

The Breast Cancer Wisconsin (Diagnostic) data (fixtures/breast_cancer/, CC BY 4.0) and its ODCS
contract go through the bundle's own jobs exactly as the Pima data does in test_story_local.py:
staging trains and releases, prod deploys staging's @champion through its own gate with staging's
workspace out of reach, then scores a batch and monitors it, every task in a process of its own.
The bundle variables set are the inputs, the contract and the model name the contract declares
(a bundle names its registered model at deploy time, before any contract is read)."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from spark_mlops import contract_file as cf
from spark_mlops import registry
from spark_mlops import registry_tags as rt
from spark_mlops.config import build_settings
from spark_mlops.spark import get_spark
from spark_mlops.tables import local_path, tables_for
from spark_mlops_dev import demo, workspace
from spark_mlops_dev.bundle.databricks_cli import resolve_bundle
from spark_mlops_dev.bundle.runner import run_job
from tests.bundle.test_story_local import _deploy_to_prod, workspace_away
from tests.conftest import FIXTURES, REPO_ROOT

DATA = FIXTURES / "breast_cancer"
CONTRACT = cf.load_contract(str(DATA / "breast_cancer.yml"))


def _bundle(target: str, settings) -> object:
    """The target's bundle with the dataset's variables, and its files staged where they point."""
    base = resolve_bundle(REPO_ROOT, target).variables
    raw = f"/Volumes/{base['catalog']}/{base['base_schema']}/raw"
    variables = {
        "training_input": f"{raw}/training/breast_cancer.csv",
        "scoring_input": f"{raw}/scoring/breast_cancer.csv",
        "contract": f"{raw}/contracts/breast_cancer.yml",
        "model_name": CONTRACT.model_name,
    }
    for variable, fixture in (("training_input", "train.csv"), ("scoring_input", "scoring_batch.csv"),
                              ("contract", "breast_cancer.yml")):
        destination = Path(local_path(settings, variables[variable]))
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(DATA / fixture, destination)
    return resolve_bundle(REPO_ROOT, target, variables)


@pytest.fixture(scope="module")
def story(spark, tmp_path_factory):
    state = tmp_path_factory.mktemp("breast-cancer") / "state"
    settings = build_settings(state_dir=str(state))
    bundles = {t: _bundle(t, settings) for t in ("staging", "prod")}
    workspace.link(settings, bundles["prod"])  # as CD links it after `bundle deploy -t prod`
    runs = {}
    for job in ("training", "release"):
        runs[job] = run_job(bundles["staging"], job, state_dir=state, out=None, process_per_task=True)
        assert runs[job].ok, runs[job].summary()
    with workspace_away(state, "staging"):
        # model_deployment copies; the new version's deployment job waits for approval, is approved
        # and repaired, as in test_story_local.py
        runs["model_deployment"], started, repaired = _deploy_to_prod(state, bundles, process_per_task=True)
        assert [s.version for s in started] == ["1"] and len(repaired) == 1
        runs["batch_inference"] = run_job(bundles["prod"], "batch_inference", state_dir=state, out=None,
                                          process_per_task=True)
        assert runs["batch_inference"].ok, runs["batch_inference"].summary()
    views = {t: demo.job_settings(settings, b) for t, b in bundles.items()}
    return views, runs


@pytest.mark.slow
def test_the_second_dataset_reaches_prod_under_its_own_model_name(story):
    views, _ = story
    prod, staging = views["prod"], views["staging"]
    assert CONTRACT.model_name == "breast_cancer_classifier"
    assert prod.model_name == "prod.spark_mlops.breast_cancer_classifier"
    champion = registry.alias_version(prod, "champion")
    tags = registry.get_version(prod, champion).tags
    assert tags[rt.DEPLOYED_FROM] == "models:/staging.spark_mlops.breast_cancer_classifier/1"
    assert tags[rt.CONTRACT] == "breast_cancer_wisconsin"
    assert registry.alias_version(staging, "champion") == "1"
    # Nothing was registered under the example model's name.
    assert registry.alias_version(replace(prod, model_name="prod.spark_mlops.diabetes_classifier"), "champion") is None


@pytest.mark.slow
def test_prod_scores_and_monitors_the_second_datasets_batch(story):
    views, _ = story
    prod = views["prod"]
    spark = get_spark(prod)
    tables = tables_for(spark, prod)
    predictions = tables.read(prod.table_name("predictions"))
    assert predictions.count() == 113  # every row of the batch: the contract holds for all of them
    assert {r[0] for r in predictions.select("model_name").distinct().collect()} == {prod.model_name}
    assert set(CONTRACT.feature_names) <= set(predictions.columns)  # no key: the features are carried
    assert CONTRACT.row_id_column in predictions.columns
    champion = registry.alias_version(prod, "champion")
    assert registry.get_version(prod, champion).tags[rt.MONITORING_LAST_VERDICT] in ("ok", "drift", "quality")


# The entry points that read the contract (prepare, train, validate, check-batch, score, monitor).
READS_THE_CONTRACT = {"prepare", "train", "validate", "check-batch", "score", "monitor"}


@pytest.mark.parametrize("target", ["dev", "prod"])
def test_every_task_that_reads_data_gets_the_bundles_contract(target):
    bundle = resolve_bundle(REPO_ROOT, target, {"contract": "/Volumes/c/s/raw/contracts/mine.yml"})
    seen = set()
    for name, job in bundle.jobs.items():
        for task in job.get("tasks") or []:
            wheel = task.get("python_wheel_task") or {}
            if wheel.get("entry_point") in READS_THE_CONTRACT:
                seen.add(wheel["entry_point"])
                assert wheel["named_parameters"].get("contract") == "/Volumes/c/s/raw/contracts/mine.yml", \
                    f"{name}.{task['task_key']}"
    assert seen == READS_THE_CONTRACT
