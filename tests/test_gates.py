"""The release gates, on one registry whose @champion is v1. The tests build on each other in
file order (pytest's default), each adding versions to the same registry:
v2 is trained on shuffled labels, v3 is a good challenger."""

from __future__ import annotations

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from spark_mlops.config import build_settings
from spark_mlops.errors import PromotionRefused, RegistryError, ValidationFailed
from tests.conftest import FIXTURES, run_cli


@pytest.fixture(scope="module")
def registry(spark, tmp_path_factory):
    folder = tmp_path_factory.mktemp("gates")
    settings = build_settings(state_dir=str(folder / "state"))
    common = ("--state-dir", str(settings.state_dir))
    assert run_cli("prepare", *common, "--input", str(FIXTURES / "diabetes_train.csv")) == 0
    assert run_cli("train", *common) == 0
    assert run_cli("validate", *common) == 0
    assert run_cli("promote", *common) == 0
    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)
    return settings, common, client, folder


def champion(client, settings) -> str:
    return str(client.get_model_version_by_alias(settings.model_name, "champion").version)


def test_a_model_trained_on_shuffled_labels_fails_validation_and_is_not_promoted(registry, capsys):
    settings, common, client, folder = registry
    shuffled = pd.read_csv(FIXTURES / "diabetes_train.csv")
    shuffled["Outcome"] = shuffled["Outcome"].sample(frac=1.0, random_state=1).to_numpy()
    shuffled.to_csv(folder / "shuffled.csv", index=False)
    assert run_cli("prepare", *common, "--input", str(folder / "shuffled.csv"),
                   "--clean-table", "clean_shuffled", "--quarantine-table", "quarantine_shuffled") == 0
    assert run_cli("train", *common, "--clean-table", "clean_shuffled") == 0  # v2

    # Validated on the real holdout: below the thresholds and far below the champion.
    assert run_cli("validate", *common) == ValidationFailed.exit_code
    out = capsys.readouterr().out
    assert "REJECTED" in out and "areaUnderROC >= 0.75" in out and "FAIL" in out
    tags = client.get_model_version(settings.model_name, "2").tags
    assert tags["validation_status"] == "failed"
    assert "areaUnderROC vs @champion" in tags["validation_failures"]

    assert run_cli("promote", *common) == PromotionRefused.exit_code
    assert "did not pass validation" in capsys.readouterr().err
    assert champion(client, settings) == "1"


def test_report_only_records_the_verdict_but_exits_zero(registry):
    settings, common, client, _ = registry
    assert run_cli("validate", *common, "--report-only") == 0
    assert client.get_model_version(settings.model_name, "2").tags["validation_status"] == "failed"


def test_promotion_refuses_a_version_that_was_never_validated(registry, capsys):
    settings, common, client, _ = registry
    assert run_cli("train", *common) == 0  # v3, not validated yet
    assert run_cli("promote", *common) == PromotionRefused.exit_code
    assert "version 3 was never validated" in capsys.readouterr().err
    assert champion(client, settings) == "1"


def test_compare_and_set_refuses_when_the_champion_moved_after_validation(registry, capsys):
    settings, common, client, _ = registry
    assert run_cli("validate", *common) == 0  # v3 passes against champion v1
    client.set_registered_model_alias(settings.model_name, "champion", "2")  # someone moved it
    assert run_cli("promote", *common) == PromotionRefused.exit_code
    err = capsys.readouterr().err
    assert "validated against @champion 1, but @champion is now 2" in err
    client.set_registered_model_alias(settings.model_name, "champion", "1")


def test_promotion_with_legacy_stages_then_rollback_restores_the_previous_champion(registry, capsys):
    settings, common, client, _ = registry
    assert run_cli("promote", *common, "--stages", "--reason", "better model") == 0
    assert champion(client, settings) == "3"
    assert client.get_model_version(settings.model_name, "3").current_stage == "Production"
    assert client.get_model_version(settings.model_name, "3").tags["previous_champion_version"] == "1"

    assert run_cli("rollback", *common, "--reason", "bad batch results") == 0
    assert champion(client, settings) == "1"
    v3 = client.get_model_version(settings.model_name, "3").tags
    assert v3["rolled_back_to"] == "1" and v3["rollback_reason"] == "bad batch results"
    assert v3["validation_status"] == "revoked"
    # A rolled-back version needs a new validation before it can come back.
    assert run_cli("promote", *common, "--version", "3") == PromotionRefused.exit_code
    # v1 was never promoted over anything: there is nothing further to roll back to.
    assert run_cli("rollback", *common) == RegistryError.exit_code
    assert "no previous champion is recorded" in capsys.readouterr().err


def test_reject_records_the_rejection_and_fails(registry, capsys):
    settings, common, client, _ = registry
    code = run_cli("reject", *common, "--version", "2", "--reason", "areaUnderROC below 0.75")
    assert code == ValidationFailed.exit_code
    assert "v2 was rejected and not promoted (@champion stays 1)" in capsys.readouterr().err
    assert client.get_model_version(settings.model_name, "2").tags["release_status"] == "rejected"
