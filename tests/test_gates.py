"""The release gates: validation, promotion, rejection and rollback, on real sqlite MLflow stores.

Each test gets its own registered model holding fresh copies of the session's two trained
versions (the ``trained`` fixture in conftest.py), so every test starts from a clean registry
state and runs on its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import TEMPORARILY_UNAVAILABLE
from mlflow.tracking import MlflowClient

from spark_mlops import registry
from spark_mlops.constants import (
    EXIT_CONFIG,
    EXIT_PROMOTION_REFUSED,
    EXIT_REGISTRY,
    EXIT_REJECTED,
    EXIT_UNEXPECTED,
)
from tests.conftest import REPO_ROOT, released, run_cli

# ---------------------------------------------------------------- validate


def test_a_model_trained_on_shuffled_labels_is_rejected_with_exit_6_and_not_promoted(trained, capsys):
    view, args = released(trained, "1", "2")
    trained.client.set_registered_model_alias(view.model_name, "challenger", "2")
    assert run_cli("validate", *args) == EXIT_REJECTED
    out = capsys.readouterr().out
    assert "REJECTED" in out and "areaUnderROC >= 0.75" in out and "FAIL" in out
    tags = trained.tags(view, "2")
    assert tags["validation_status"] == "failed"
    assert tags["validation_model_name"] == view.model_name
    assert "areaUnderROC vs @champion" in tags["validation_failures"]
    assert run_cli("promote", *args) == EXIT_PROMOTION_REFUSED
    assert "did not pass validation" in capsys.readouterr().err
    assert trained.champion(view) == "1"


def test_report_only_records_the_verdict_but_exits_zero(trained):
    view, args = trained.fresh("2")
    assert run_cli("validate", *args, "--version", "1", "--report-only") == 0
    assert trained.tags(view, "1")["validation_status"] == "failed"


def test_run_time_thresholds_can_only_tighten_the_fixed_minimums(trained, capsys):
    view, args = trained.fresh("1")
    assert run_cli("validate", *args, "--version", "1", "--thresholds", "areaUnderROC=0.5") == EXIT_CONFIG
    assert "may only raise the fixed minimums: areaUnderROC=0.5 < minimum 0.75" in capsys.readouterr().err
    assert "validation_status" not in trained.tags(view, "1")  # stopped before any verdict
    assert run_cli("validate", *args, "--version", "1", "--min-thresholds", "") == EXIT_CONFIG
    assert "--min-thresholds is empty" in capsys.readouterr().err
    assert run_cli("validate", *args, "--version", "1", "--tolerance", "0.5") == EXIT_CONFIG
    assert "must be between 0 and the fixed maximum 0.01" in capsys.readouterr().err
    # Stricter than the minimum is allowed, and it is what the verdict records.
    assert run_cli("validate", *args, "--version", "1", "--thresholds", "areaUnderROC=0.99") == EXIT_REJECTED
    assert '"areaUnderROC": 0.99' in trained.tags(view, "1")["validation_thresholds"]


def test_a_registry_error_is_not_read_as_no_champion(trained, monkeypatch, capsys):
    view, args = released(trained, "1", "1")  # v1 champion, v2 a candidate
    real = MlflowClient.get_model_version_by_alias

    def flaky(self, name, alias):
        if alias == "champion":
            raise MlflowException("the registry is unavailable", error_code=TEMPORARILY_UNAVAILABLE)
        return real(self, name, alias)

    monkeypatch.setattr(MlflowClient, "get_model_version_by_alias", flaky)
    # Failing open would validate v2 with no champion comparison; failing closed stops with exit 4.
    assert run_cli("validate", *args, "--version", "2") == EXIT_REGISTRY
    err = capsys.readouterr().err
    assert f"looking up {view.model_name}@champion" in err and "the registry is unavailable" in err
    assert "validation_status" not in trained.tags(view, "2")


# ---------------------------------------------------------------- promote


def test_promotion_refuses_a_version_that_was_never_validated(trained, capsys):
    view, args = released(trained, "1", "1")
    assert run_cli("promote", *args, "--version", "2") == EXIT_PROMOTION_REFUSED
    assert "version 2 was never validated" in capsys.readouterr().err
    assert trained.champion(view) == "1"


def test_compare_and_set_refuses_when_the_champion_moved_after_validation(trained, capsys):
    view, args = released(trained, "1", "1", "1")
    assert run_cli("validate", *args, "--version", "2") == 0  # against champion v1
    trained.client.set_registered_model_alias(view.model_name, "champion", "3")  # someone moved it
    assert run_cli("promote", *args, "--version", "2") == EXIT_PROMOTION_REFUSED
    assert "validated against @champion 1, but @champion is now 3" in capsys.readouterr().err
    assert trained.champion(view) == "3"


def test_promote_in_a_job_moves_only_the_version_validated_in_that_run(trained, capsys):
    view, args = trained.fresh("1")
    trained.client.set_registered_model_alias(view.model_name, "challenger", "1")
    assert run_cli("validate", *args, "--job-run-id", "101") == 0
    assert run_cli("promote", *args, "--job-run-id", "102") == EXIT_PROMOTION_REFUSED
    assert "validated in job run 101, not in this job run 102" in capsys.readouterr().err
    assert run_cli("promote", *args, "--job-run-id", "101") == 0
    assert trained.champion(view) == "1"


def test_promote_rechecks_the_verdict_against_the_fixed_minimums(trained, capsys):
    view, args = trained.fresh("1")
    assert run_cli("validate", *args, "--version", "1") == 0
    # A verdict reached when the minimums were lower (or a tampered tag) does not pass today's floor.
    assert run_cli("promote", *args, "--version", "1", "--min-thresholds", "areaUnderROC=0.999") == \
        EXIT_PROMOTION_REFUSED
    assert "do not meet the fixed minimums: areaUnderROC=" in capsys.readouterr().err
    assert trained.champion(view) is None


def test_a_verdict_copied_from_another_model_does_not_count(trained, capsys):
    view, args = trained.fresh("1")
    assert run_cli("validate", *args, "--version", "1") == 0
    other = trained.client.copy_model_version(f"models:/{view.model_name}/1", f"{view.model_name}_copy")
    assert trained.tags(replace(view, model_name=f"{view.model_name}_copy"), str(other.version))[
        "validation_status"] == "passed"  # copy_model_version copies every tag
    other_args = (*trained.common, "--model-name", f"{view.model_name}_copy")
    assert run_cli("promote", *other_args, "--version", str(other.version)) == EXIT_PROMOTION_REFUSED
    assert f"verdict was reached for model {view.model_name}, not {view.model_name}_copy" in capsys.readouterr().err


def test_audit_tags_are_written_before_the_alias_moves(trained, monkeypatch):
    view, args = released(trained, "1", "1")
    assert run_cli("validate", *args, "--version", "2") == 0

    def crash(*_args, **_kwargs):
        raise KeyboardInterrupt("killed between the tags and the alias")

    monkeypatch.setattr(registry, "set_alias", crash)
    with pytest.raises(KeyboardInterrupt):
        run_cli("promote", *args, "--version", "2")
    monkeypatch.undo()
    tags = trained.tags(view, "2")
    assert tags["previous_champion_version"] == "1"  # rollback has its way back
    assert "promoted_at" not in tags  # the promotion itself is not claimed
    assert trained.champion(view) == "1"


def test_stages_then_rollback_restores_the_previous_champion_and_revokes(trained, capsys):
    view, args = released(trained, "1", "1")
    assert run_cli("validate", *args, "--version", "2") == 0
    assert run_cli("promote", *args, "--version", "2", "--stages", "--reason", "better model") == 0
    assert trained.champion(view) == "2"
    assert trained.client.get_model_version(view.model_name, "2").current_stage == "Production"
    assert run_cli("rollback", *args, "--reason", "bad batch results") == 0
    assert trained.champion(view) == "1"
    v2 = trained.tags(view, "2")
    assert v2["rolled_back_to"] == "1" and v2["rollback_reason"] == "bad batch results"
    assert v2["validation_status"] == "revoked"
    assert run_cli("promote", *args, "--version", "2") == EXIT_PROMOTION_REFUSED  # needs a new validation
    assert run_cli("rollback", *args) == EXIT_REGISTRY  # v1 was never promoted over anything
    assert "no previous champion is recorded" in capsys.readouterr().err


def test_rollback_to_a_named_earlier_champion(trained, capsys):
    view, args = released(trained, "1", "1", "1")
    for v in ("2", "3"):
        assert run_cli("validate", *args, "--version", v) == 0
        assert run_cli("promote", *args, "--version", v) == 0
    assert run_cli("rollback", *args, "--version", "4") == EXIT_REGISTRY  # no such version
    assert run_cli("rollback", *args, "--version", "1", "--reason", "back to the first") == 0
    assert trained.champion(view) == "1"
    assert trained.tags(view, "3")["validation_status"] == "revoked"
    assert run_cli("rollback", *args, "--version", "3") == EXIT_PROMOTION_REFUSED
    assert "was itself rolled back" in capsys.readouterr().err


@pytest.mark.slow
def test_promote_and_rollback_racing_in_two_processes_never_lose_the_audit_trail(trained, tmp_path):
    view, args = released(trained, "1", "1")
    assert run_cli("validate", *args, "--version", "2") == 0
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    cmd = [sys.executable, "-m", "spark_mlops"]
    procs = [subprocess.Popen([*cmd, "promote", *args, "--version", "2"], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
             subprocess.Popen([*cmd, "rollback", *args, "--version", "1", "--reason", "race"], env=env,
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    results = [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in procs]
    for code, _out, err in results:
        # Each either did its move, or refused it with a clear reason: never a traceback.
        assert code in (0, EXIT_PROMOTION_REFUSED, EXIT_REGISTRY), err
        assert "Traceback" not in err
    final = trained.champion(view)
    assert final in ("1", "2")
    if final == "2":  # the promotion won: its audit trail leads back to v1
        assert trained.tags(view, "2")["previous_champion_version"] == "1"


# ---------------------------------------------------------------- record-rejection


def test_record_rejection_tells_a_rejection_from_a_crash(trained, capsys):
    view, args = trained.fresh("2")
    trained.client.set_registered_model_alias(view.model_name, "challenger", "1")
    # No verdict in job run 7: validate crashed before deciding.
    assert run_cli("record-rejection", *args, "--job-run-id", "7") == EXIT_UNEXPECTED
    assert "validate reached no verdict" in capsys.readouterr().err
    assert run_cli("validate", *args, "--job-run-id", "7") == EXIT_REJECTED
    capsys.readouterr()
    assert run_cli("record-rejection", *args, "--job-run-id", "7") == 0
    assert "was rejected and not promoted (@champion stays none)" in capsys.readouterr().out
    tags = trained.tags(view, "1")
    assert tags["release_status"] == "rejected" and "areaUnderROC" in tags["rejection_reason"]


# ---------------------------------------------------------------- credentials


def test_credentials_in_uris_never_reach_tags_or_messages(trained, capsys, monkeypatch):
    view, args = trained.fresh("1")
    registry.set_tags(view, "1", {"training_tracking_uri": "http://alice:s3cret@mlflow.example:5000/"})
    assert trained.tags(view, "1")["training_tracking_uri"] == "http://***@mlflow.example:5000/"
    assert run_cli("status", *args) == 0
    assert "s3cret" not in capsys.readouterr().out
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    code = run_cli("status", "--state-dir", str(trained.settings.state_dir), "--model-name", "x",
                   "--registry-uri", "http://alice:s3cret@127.0.0.1:9/")
    err = capsys.readouterr().err
    assert code == EXIT_REGISTRY, err
    assert "s3cret" not in err and "cannot reach the MLflow server http://***@127.0.0.1:9:" in err
