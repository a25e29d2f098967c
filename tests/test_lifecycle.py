"""End to end on the embedded default: the lifecycle run twice, then the registry, MLflow and
prediction table are checked. The module shares one state folder; the fixture runs the steps."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from spark_mlops import tracking
from spark_mlops.config import build_settings
from spark_mlops.tables import tables_for
from tests.conftest import FIXTURES, run_cli

# The whole lifecycle twice: with the slow checks, beside the same story through the runner
# (tests/bundle/test_story_local.py) and the README's main command (tests/test_readme.py).
pytestmark = pytest.mark.slow


@dataclass
class Lifecycle:
    settings: object
    first_scoring: list
    rescored_count: int
    final_predictions: list
    working_directory: Path


@pytest.fixture(scope="module")
def lifecycle(spark, tmp_path_factory) -> Lifecycle:
    # Every command runs in an empty working directory: nothing may land there.
    cwd = tmp_path_factory.mktemp("working-directory")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)
        return _run_twice(spark, tmp_path_factory, cwd)


def _run_twice(spark, tmp_path_factory, cwd: Path) -> Lifecycle:
    settings = build_settings(state_dir=str(tmp_path_factory.mktemp("lifecycle")))
    common = ("--state-dir", str(settings.state_dir))
    batch = ("--input", str(FIXTURES / "scoring_batch.csv"), "--batch-id", "b1")
    tables = tables_for(spark, settings)
    output = settings.table_name("predictions")

    assert run_cli("prepare", *common, "--input", str(FIXTURES / "diabetes_train.csv")) == 0
    assert run_cli("train", *common) == 0
    assert run_cli("validate", *common) == 0
    assert run_cli("promote", *common, "--reason", "first release") == 0
    assert run_cli("score", *common, *batch) == 0
    first = tables.read(output).collect()
    assert run_cli("score", *common, *batch) == 0  # same batch again: replaced, not appended
    rescored = tables.read(output).count()

    # Second run: a new challenger is compared with the first champion.
    assert run_cli("train", *common) == 0
    assert run_cli("validate", *common) == 0
    assert run_cli("promote", *common) == 0
    assert run_cli("score", *common, *batch) == 0
    assert run_cli("monitor", *common, *batch) == 0
    assert run_cli("status", *common) == 0
    return Lifecycle(settings, first, rescored, tables.read(output).collect(), cwd)


def test_no_command_writes_outside_the_state_folder(lifecycle):
    assert sorted(p.name for p in lifecycle.working_directory.iterdir()) == []


def client(settings) -> MlflowClient:
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)


def test_aliases_follow_the_second_release(lifecycle):
    s = lifecycle.settings
    model = client(s).get_registered_model(s.model_name)
    assert {alias: str(v) for alias, v in model.aliases.items()} == {"challenger": "2", "champion": "2"}


def test_version_tags_record_validation_promotion_and_lineage(lifecycle):
    s = lifecycle.settings
    v1 = client(s).get_model_version(s.model_name, "1").tags
    v2 = client(s).get_model_version(s.model_name, "2").tags
    assert v1["validation_status"] == "passed" and v1["validation_champion_version"] == "none"
    assert v1["previous_champion_version"] == "none" and v1["promotion_reason"] == "first release"
    assert v2["validation_champion_version"] == "1" and v2["previous_champion_version"] == "1"
    assert v2["promoted_by"] and v2["promoted_at"] >= v1["promoted_at"]
    assert v2["git_commit"] == "test-commit"
    run = client(s).get_run(v2["training_run_id"])  # the version points back to its training run
    assert run.data.tags["step"] == "train"
    validation = client(s).get_run(v2["validation_run_id"])
    assert validation.data.tags["verdict"] == "passed"
    assert "champion_areaUnderROC" in validation.data.metrics


def test_training_run_logs_metrics_plots_model_and_dataset(lifecycle):
    s = lifecycle.settings
    run_id = client(s).get_model_version(s.model_name, "1").tags["training_run_id"]
    run = client(s).get_run(run_id)
    metrics = set(run.data.metrics)
    for name in ("accuracy", "areaUnderROC", "areaUnderPR", "f1", "precision", "recall"):
        assert f"holdout_{name}" in metrics
    assert run.data.params["classifier"] == "random_forest"
    assert run.inputs.dataset_inputs and run.inputs.dataset_inputs[0].tags[0].value == "training"
    plots = {a.path for a in client(s).list_artifacts(run_id, "plots")}
    assert plots == {"plots/roc_curve.png", "plots/confusion_matrix.png", "plots/feature_importances.png"}
    tracking.configure(s)  # points MLflow's fluent API at the stores without exporting them
    info = mlflow.models.get_model_info(f"models:/{s.model_name}/1")
    assert [c.name for c in info.signature.inputs.inputs][:2] == ["Pregnancies", "Glucose"]
    assert info.saved_input_example_info is not None


def test_scoring_the_same_batch_twice_keeps_the_row_count(lifecycle):
    assert len(lifecycle.first_scoring) == 200
    assert lifecycle.rescored_count == 200
    assert len(lifecycle.final_predictions) == 200


def test_predictions_carry_lineage(lifecycle):
    rows = lifecycle.final_predictions
    s = lifecycle.settings
    assert {r["model_version"] for r in lifecycle.first_scoring} == {"1"}
    assert {r["model_version"] for r in rows} == {"2"}
    assert {r["model_name"] for r in rows} == {s.model_name}
    assert {r["batch_id"] for r in rows} == {"b1"}
    assert len({r["patient_id"] for r in rows}) == 200
    assert all(r["prediction"] in (0, 1) and 0.0 <= r["probability"] <= 1.0 for r in rows)
    assert all(r["scored_at"] is not None for r in rows)
    assert 0 < sum(r["prediction"] for r in rows) < 200


def test_scoring_runs_are_logged(lifecycle):
    s = lifecycle.settings
    tracking.configure(s)
    runs = mlflow.search_runs(experiment_names=[s.experiment], filter_string="tags.step = 'score'")
    assert len(runs) == 3
    assert set(runs["metrics.rows_in"]) == {200.0} and set(runs["metrics.rows_rejected"]) == {0.0}
    assert set(runs["params.model_version"]) == {"1", "2"}


def test_status_prints_versions_aliases_and_verdicts(lifecycle, capsys):
    assert run_cli("status", "--state-dir", str(lifecycle.settings.state_dir)) == 0
    out = capsys.readouterr().out
    assert "@challenger,@champion" in out and "passed" in out


def test_a_batch_missing_a_feature_fails_and_leaves_predictions_intact(lifecycle, spark, capsys):
    s = lifecycle.settings
    code = run_cli("score", "--state-dir", str(s.state_dir), "--batch-id", "b1",
                   "--input", str(FIXTURES / "bad/scoring_missing_feature.csv"))
    assert code == 3
    assert "missing required column(s) ['Insulin']" in capsys.readouterr().err
    after = tables_for(spark, s).read(s.table_name("predictions")).collect()
    assert sorted(r["patient_id"] for r in after) == sorted(r["patient_id"] for r in lifecycle.final_predictions)
