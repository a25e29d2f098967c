"""The approval of a model version (spark_mlops.approval): the Approval_Check task, the Approve
button's tag, promote's re-check, each version's deployment state, and the registered model's link
to its deployment job. On a real sqlite registry; no Spark (the versions' files are never loaded)."""

from __future__ import annotations

import uuid

import pytest
from mlflow.tracking import MlflowClient

from spark_mlops import approval
from spark_mlops import registry_tags as rt
from spark_mlops.config import build_settings
from spark_mlops.constants import EXIT_CONFIG, EXIT_PROMOTION_REFUSED
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def registry_state(tmp_path_factory):
    """One sqlite registry for the module (creating one costs seconds); each test has a model of its own."""
    return tmp_path_factory.mktemp("approval") / "state"


@pytest.fixture
def view(registry_state, tmp_path):
    """A registered model with two versions (sources never loaded here)."""
    name = f"prod.spark_mlops.m_{uuid.uuid4().hex[:8]}"
    settings = build_settings(state_dir=str(registry_state), model_name=name, target="prod")
    c = client(settings)
    c.create_registered_model(name)
    for _ in range(2):
        c.create_model_version(name, source=(tmp_path / "model").as_uri())
    return settings


def client(view) -> MlflowClient:
    return MlflowClient(tracking_uri=view.tracking_uri, registry_uri=view.registry_uri)


def tags(view, version: str = "1") -> dict:
    return dict(client(view).get_model_version(view.model_name, version).tags)


def args(view) -> tuple[str, ...]:
    return ("--state-dir", str(view.state_dir), "--model-name", view.model_name)


def test_the_approval_task_fails_with_one_line_and_exit_5_until_the_tag_is_set(view, capsys):
    code = run_cli("approval-check", *args(view), "--version", "1", "--job-run-id", "77")
    err = capsys.readouterr().err.strip()
    assert code == EXIT_PROMOTION_REFUSED
    assert err.count("\n") == 0 and "Traceback" not in err
    assert f"{view.model_name} v1 is waiting for approval (no Approval_Check tag; expected Approval_Check=Approved)" in err
    # The run that handles the version is recorded on it; the approval is not.
    assert tags(view)[rt.DEPLOYMENT_JOB_RUN_ID] == "77" and rt.APPROVAL_CHECK not in tags(view)


@pytest.mark.parametrize("value", ["Approved", "approved", " APPROVED "])
def test_the_approval_task_passes_on_the_tag_whatever_its_case(view, value):
    client(view).set_model_version_tag(view.model_name, "1", rt.APPROVAL_CHECK, value)
    assert run_cli("approval-check", *args(view), "--version", "1") == 0


@pytest.mark.parametrize("value", ["Rejected", "yes", ""])
def test_any_other_value_is_not_an_approval(view, value):
    client(view).set_model_version_tag(view.model_name, "1", rt.APPROVAL_CHECK, value)
    assert run_cli("approval-check", *args(view), "--version", "1") == EXIT_PROMOTION_REFUSED


def test_where_no_person_is_required_the_task_approves_and_says_so(view, capsys):
    assert run_cli("approval-check", *args(view), "--version", "2", "--approval-required", "false") == 0
    assert "approved automatically" in capsys.readouterr().out
    assert tags(view, "2")[rt.APPROVAL_CHECK] == rt.APPROVED and tags(view, "2")[rt.APPROVED_BY] == rt.AUTOMATIC


def test_a_run_for_another_model_or_no_version_changes_nothing(view, capsys):
    assert run_cli("approval-check", *args(view), "--version", "1", "--job-model-name", "staging.s.m",
                   "--approval-required", "false") == EXIT_CONFIG
    assert f"this deployment job deploys {view.model_name}; it was started for staging.s.m" in capsys.readouterr().err
    assert run_cli("approval-check", *args(view), "--version", "", "--approval-required", "false") == EXIT_CONFIG
    assert "no model version" in capsys.readouterr().err
    assert rt.APPROVAL_CHECK not in tags(view)


def test_the_tag_must_be_named_after_an_approval_task(view, capsys):
    assert run_cli("approval-check", *args(view), "--version", "1", "--approval-tag", "Check") == EXIT_CONFIG
    assert "key starts with 'approval'" in capsys.readouterr().err


def test_approve_sets_the_tag_with_who_and_when(view, capsys):
    assert approval.approve(view, "1") == "1"
    t = tags(view)
    assert t[rt.APPROVAL_CHECK] == rt.APPROVED and t[rt.APPROVED_BY] and t[rt.APPROVED_AT]
    approval.approve(view, "1")  # idempotent: says so, changes nothing
    assert "was already approved" in capsys.readouterr().out and tags(view)[rt.APPROVED_AT] == t[rt.APPROVED_AT]


def test_approving_a_version_its_evaluation_rejected_does_nothing(view):
    client(view).set_model_version_tag(view.model_name, "2", rt.VALIDATION_STATUS, rt.FAILED)
    client(view).set_model_version_tag(view.model_name, "2", rt.VALIDATION_FAILURES, "areaUnderROC >= 0.99: found 0.87")
    with pytest.raises(approval.PromotionRefused, match="v2 was rejected by its evaluation .*areaUnderROC >= 0.99.*"
                       "nothing was changed") as refused:
        approval.approve(view, "2")
    assert refused.value.exit_code == EXIT_PROMOTION_REFUSED
    assert rt.APPROVAL_CHECK not in tags(view, "2")


def test_promote_in_the_deployment_task_refuses_without_the_tag(view, capsys):
    # The re-check comes before anything else promote does: not even the verdict is read.
    assert run_cli("promote", *args(view), "--version", "1", "--require-approval") == EXIT_PROMOTION_REFUSED
    assert "v1 is not approved (Approval_Check is not set): @champion does not move" in capsys.readouterr().err
    assert client(view).get_registered_model(view.model_name).aliases == {}


@pytest.mark.parametrize(("version_tags", "aliases", "state"), [
    ({}, [], rt.UNSET),
    ({rt.DEPLOYMENT_JOB_RUN_ID: "9"}, [], rt.STATE_EVALUATING),
    ({rt.DEPLOYMENT_JOB_RUN_ID: "9", rt.VALIDATION_STATUS: rt.PASSED, rt.VALIDATION_JOB_RUN_ID: "9"}, [],
     rt.STATE_PENDING_APPROVAL),
    ({rt.DEPLOYMENT_JOB_RUN_ID: "9", rt.VALIDATION_STATUS: rt.PASSED, rt.APPROVAL_CHECK: "Approved"}, [],
     rt.STATE_APPROVED),
    ({rt.APPROVAL_CHECK: "Rejected"}, [], rt.STATE_REJECTED),
    ({rt.DEPLOYMENT_JOB_RUN_ID: "9", rt.VALIDATION_STATUS: rt.FAILED, rt.VALIDATION_JOB_RUN_ID: "9"}, [],
     rt.STATE_REJECTED),
    ({rt.APPROVAL_CHECK: "Approved", rt.PROMOTED_AT: "t"}, ["champion"], rt.STATE_DEPLOYED),
    ({rt.APPROVAL_CHECK: "Approved", rt.PROMOTED_AT: "t", rt.ROLLED_BACK_AT: "u"}, [], rt.STATE_ROLLED_BACK),
])
def test_each_version_has_a_deployment_state(version_tags, aliases, state):
    assert approval.deployment_state(version_tags, aliases) == state


def test_status_shows_the_deployment_state(view, capsys):
    client(view).set_model_version_tag(view.model_name, "2", rt.DEPLOYMENT_JOB_RUN_ID, "9")
    client(view).set_model_version_tag(view.model_name, "2", rt.VALIDATION_STATUS, rt.PASSED)
    client(view).set_model_version_tag(view.model_name, "2", rt.VALIDATION_JOB_RUN_ID, "9")
    assert run_cli("status", *args(view)) == 0
    table = capsys.readouterr().out.splitlines()
    header = table[1].split("  ")
    assert "deployment" in [h.strip() for h in header]
    assert any(line.startswith("2 ") and "pending approval" in line for line in table)


def test_the_link_is_a_registered_model_tag_locally_and_idempotent(view, capsys):
    assert approval.linked_job(view) is None
    assert approval.link(view, "deployment_job") is True
    assert approval.linked_job(view) == "deployment_job"
    assert client(view).get_registered_model(view.model_name).tags[rt.DEPLOYMENT_JOB_ID] == "deployment_job"
    assert approval.link(view, "deployment_job") is False
    assert "already linked" in capsys.readouterr().out
    assert approval.link(view, "") is True and approval.linked_job(view) is None


def test_the_local_store_drops_deployment_job_id_which_is_why_the_link_is_a_tag(view):
    # MLflow 3.8.1's sqlite store accepts the field and keeps nothing (sqlalchemy_store.py), and its
    # update_registered_model rewrites the description: locally the link cannot be the field.
    c = client(view)
    c.update_registered_model(view.model_name, description="kept?", deployment_job_id="123")
    assert c.get_registered_model(view.model_name).deployment_job_id is None
