"""The release gates: validation, promotion, rejection and rollback, on real sqlite MLflow stores.

Each test gets its own registered model holding fresh copies of the session's two trained
versions (the ``trained`` fixture in conftest.py), so every test starts from a clean registry
state and runs on its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import TEMPORARILY_UNAVAILABLE
from mlflow.tracking import MlflowClient

from spark_mlops import alias_lock, identity, registry
from spark_mlops import registry_tags as rt
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
    # Naming the version does not drop the job-run check.
    assert run_cli("promote", *args, "--version", "1", "--job-run-id", "102") == EXIT_PROMOTION_REFUSED
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


# ---------------------------------------------------------------- a verdict is a run, not a tag


def hand_written_verdict(trained, view, version: str, **extra: str) -> None:
    """What anyone with write access to the model can set on a never-validated version."""
    registry.set_tags(view, version, {rt.VALIDATION_STATUS: rt.PASSED, rt.VALIDATION_MODEL_NAME: view.model_name,
                                      rt.VALIDATION_METRICS: {"areaUnderROC": 0.99, "accuracy": 0.99},
                                      rt.VALIDATION_CHAMPION_VERSION: trained.champion(view) or rt.NO_CHAMPION,
                                      **extra})


def test_a_hand_written_verdict_is_refused_whatever_run_it_names(trained, capsys):
    view, args = released(trained, "1", "1")  # v1 champion, v2 never validated
    hand_written_verdict(trained, view, "2")
    assert run_cli("promote", *args, "--version", "2") == EXIT_PROMOTION_REFUSED
    assert "names no validation run" in capsys.readouterr().err
    hand_written_verdict(trained, view, "2", **{rt.VALIDATION_RUN_ID: "0123456789abcdef0123456789abcdef"})
    assert run_cli("promote", *args, "--version", "2") == EXIT_PROMOTION_REFUSED
    assert "does not exist in this workspace's tracking store" in capsys.readouterr().err
    training_run = trained.tags(view, "2")[rt.TRAINING_RUN_ID]  # a run that exists, but not a verdict
    hand_written_verdict(trained, view, "2", **{rt.VALIDATION_RUN_ID: training_run})
    assert run_cli("promote", *args, "--version", "2") == EXIT_PROMOTION_REFUSED
    assert "is not a finished validate run (step train" in capsys.readouterr().err
    v1_verdict = trained.tags(view, "1")[rt.VALIDATION_RUN_ID]  # a real verdict, of another version
    hand_written_verdict(trained, view, "2", **{rt.VALIDATION_RUN_ID: v1_verdict})
    assert run_cli("promote", *args, "--version", "2") == EXIT_PROMOTION_REFUSED
    assert f"validation run {v1_verdict} validated version 1, not version 2" in capsys.readouterr().err
    assert trained.champion(view) == "1"
    assert rt.PROMOTED_AT not in trained.tags(view, "2")


def test_a_nan_metric_in_the_validation_run_is_refused(trained, capsys):
    view, args = trained.fresh("1")
    assert run_cli("validate", *args, "--version", "1") == 0
    run_id = trained.tags(view, "1")[rt.VALIDATION_RUN_ID]
    # The run's latest value of a metric is what counts; NaN is not >= any minimum.
    MlflowClient(tracking_uri=view.tracking_uri).log_metric(run_id, f"{rt.RUN_METRIC_PREFIX}areaUnderROC",
                                                             float("nan"), step=1)
    assert run_cli("promote", *args, "--version", "1") == EXIT_PROMOTION_REFUSED
    assert "do not meet the fixed minimums: areaUnderROC=nan (minimum 0.75)" in capsys.readouterr().err
    assert trained.champion(view) is None


def test_promote_records_who_and_how_that_is_known(trained, monkeypatch):
    view, args = trained.fresh("1")
    monkeypatch.setenv("BUILD_REQUESTEDFOREMAIL", "alice@example.com")
    assert run_cli("validate", *args, "--version", "1") == 0
    assert run_cli("promote", *args, "--version", "1") == 0
    tags = trained.tags(view, "1")
    assert tags[rt.PROMOTED_BY] == "alice@example.com"
    assert tags[rt.PROMOTED_BY_SOURCE].startswith("Azure Pipelines BUILD_REQUESTEDFOREMAIL")
    monkeypatch.delenv("BUILD_REQUESTEDFOREMAIL")
    assert identity.actor().source == "operating-system user"


# ---------------------------------------------------------------- one alias move at a time


def move_by_hand(trained, view, version: str):
    """Someone moves @champion outside spark-mlops (e.g. in Catalog Explorer)."""
    trained.client.set_registered_model_alias(view.model_name, "champion", version)


def test_a_move_before_the_set_is_refused_and_nothing_is_overwritten(trained, monkeypatch, capsys):
    view, args = released(trained, "1", "1", "1")
    assert run_cli("validate", *args, "--version", "2") == 0
    real_set_tags = registry.set_tags

    def then_moved(settings, version, tags):  # promote's audit intent: the last step before the set
        real_set_tags(settings, version, tags)
        if rt.PREVIOUS_CHAMPION_VERSION in tags:
            move_by_hand(trained, view, "3")

    monkeypatch.setattr(registry, "set_tags", then_moved)
    assert run_cli("promote", *args, "--version", "2") == EXIT_PROMOTION_REFUSED
    assert "@champion moved while this command ran (expected 1); nothing was changed" in capsys.readouterr().err
    assert trained.champion(view) == "3"  # the other move stands
    assert rt.PROMOTED_AT not in trained.tags(view, "2")
    assert registry.client(view).search_registered_models(f"name='{alias_lock.lock_name(view)}'") == []


def test_a_move_right_after_the_set_is_reported(trained, monkeypatch, capsys):
    view, args = released(trained, "1", "1", "1")
    assert run_cli("validate", *args, "--version", "2") == 0
    real_set_alias = registry.set_alias

    def then_moved(settings, alias, version):
        real_set_alias(settings, alias, version)
        move_by_hand(trained, view, "3")

    monkeypatch.setattr(registry, "set_alias", then_moved)
    assert run_cli("promote", *args, "--version", "2") == EXIT_PROMOTION_REFUSED
    assert "@champion is v3 right after it was set to v2: it was moved by hand" in capsys.readouterr().err
    assert trained.champion(view) == "3"


def test_a_held_lock_stops_promote_with_the_holder_named(trained, monkeypatch, capsys):
    view, args = released(trained, "1", "1")
    assert run_cli("validate", *args, "--version", "2") == 0
    holder = {"token": "t", "action": "rollback", "by": "bob", "job_run_id": "555",
              "since": datetime.now(UTC).isoformat(timespec="seconds")}
    trained.client.create_registered_model(alias_lock.lock_name(view), description=json.dumps(holder))
    monkeypatch.setattr(alias_lock, "LOCK_TIMEOUT_S", 0.0)
    capsys.readouterr()
    assert run_cli("promote", *args, "--version", "2") == EXIT_PROMOTION_REFUSED
    err = capsys.readouterr().err
    assert "another command is moving its aliases (rollback by bob, job run 555, since" in err
    assert err.strip().count("\n") == 0
    assert trained.champion(view) == "1"
    assert trained.client.get_registered_model(alias_lock.lock_name(view))  # someone else's: left alone
    trained.client.delete_registered_model(alias_lock.lock_name(view))  # the holder finished
    assert run_cli("promote", *args, "--version", "2") == 0
    assert trained.champion(view) == "2"


def test_waiting_for_the_lock_ends_when_it_is_released_and_a_dead_holders_lock_is_removed(trained):
    view, _ = trained.fresh("1")
    name = alias_lock.lock_name(view)
    trained.client.create_registered_model(name, description=json.dumps({"action": "promote", "by": "carol",
                                                                          "since": datetime.now(UTC).isoformat()}))
    clock, polls = [0.0], []

    def sleep(seconds):  # a fake clock: the holder releases on the second poll
        polls.append(seconds)
        clock[0] += seconds
        if len(polls) == 2:
            trained.client.delete_registered_model(name)

    with alias_lock.held(view, "test", timeout_s=60, clock=lambda: clock[0], sleep=sleep):
        assert json.loads(trained.client.get_registered_model(name).description)["action"] == "test"
    assert len(polls) == 2
    # A dead holder's lock: never renewed, whatever "since" its description claims (test_alias_lock.py).
    old = (datetime.now(UTC) - timedelta(seconds=alias_lock.LEASE_S + 60)).isoformat()
    trained.client.create_registered_model(name, description=json.dumps({"action": "promote", "since": old}))
    clock[0] = 0.0
    with alias_lock.held(view, "test", timeout_s=60, lease_s=5, clock=lambda: clock[0], sleep=sleep):
        pass
    assert clock[0] >= 5
    assert registry.client(view).search_registered_models(f"name='{name}'") == []
