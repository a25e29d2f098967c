"""A person approves each model version that reaches production: MLflow 3 deployment jobs.

Databricks runs a registered model's *deployment job* for every new version of it (docs:
mlflow/deployment-job, Beta): evaluation -> approval -> deployment, with the job-level
parameters ``model_name`` and ``model_version``. The approval task is recognised by a key that
starts with "approval"; it passes only when the version carries the Unity Catalog tag named after
the task with the value ``Approved``. Its first run fails there; the **Approve** button on the
version's page sets the tag and repairs the run, which resumes from the approval task (the
evaluation's result is kept, and so is the job run id that promote checks the verdict against).

This module is the lifecycle's side of it:

* :func:`check` is the ``Approval_Check`` task (``spark-mlops approval-check``): one clear line and
  exit 5 while the tag is missing, or approval given automatically where the target does not
  require a person (bundle variable ``approval_required``: false in dev, test and staging);
* :func:`approve` is what the Approve button does to the registry (the tag, plus who and when);
  a version whose evaluation rejected it is not approved (exit 5, nothing changed);
* :func:`require_approved` is promote's own re-check in the deployment task (``--require-approval``):
  no ``@champion`` change without the tag, whatever re-ran the task;
* :func:`deployment_state` is a version's place in that story, for ``spark-mlops status``;
* :func:`link` / :func:`linked_job`: the registered model's ``deployment_job_id`` (its own field on
  Unity Catalog, set by CD after ``bundle deploy``: a bundle cannot declare it); locally the
  registered-model tag ``deployment_job_id``, since MLflow's sqlite store drops the field.

The tag is set by whoever may set a tag on the model version (on Unity Catalog: APPLY TAG on the
registered model, with USE CATALOG and USE SCHEMA; docs/release-gate.md, "Two approvals").
"""

from __future__ import annotations

from datetime import UTC, datetime

from mlflow.exceptions import MlflowException

from spark_mlops import registry
from spark_mlops import registry_tags as rt
from spark_mlops.config import Settings
from spark_mlops.errors import ConfigError, PromotionRefused
from spark_mlops.identity import actor

APPROVAL_PREFIX = "approval"  # docs: mlflow/deployment-job, a task key starting with it (any case)


class ApprovalPending(PromotionRefused):
    """The version is not approved (yet): the approval task fails, nothing is deployed (exit 5)."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def is_approved(tags: dict[str, str], tag: str = rt.APPROVAL_CHECK) -> bool:
    # The workspace's approval notebook compares the value case-insensitively with "approved".
    return str(tags.get(tag, "")).strip().lower() == rt.APPROVED.lower()


def require_job_model(settings: Settings, job_model_name: str | None) -> None:
    """The deployment job deploys this target's model only: a run started for another model fails
    before it changes anything (the job's tasks take their model from the bundle, not from the run)."""
    if job_model_name and job_model_name.strip() != settings.model_name:
        raise ConfigError(f"this deployment job deploys {settings.model_name}; it was started for "
                          f"{job_model_name.strip()} (job parameter model_name): nothing was changed")


def _require_version(version: str | None) -> str:
    if not version or not str(version).strip():
        raise ConfigError("no model version: a deployment job run handles one version, named by its job "
                          "parameter model_version (the workspace passes it when a new version starts the job)")
    return str(version).strip()


def check(settings: Settings, *, version: str | None, job_model_name: str | None = None, required: bool = True,
          tag: str = rt.APPROVAL_CHECK) -> str:
    """The approval task: pass when ``version`` carries ``tag`` = Approved; otherwise approve it
    automatically when the target does not require a person, or fail with one clear line."""
    version = _require_version(version)
    require_job_model(settings, job_model_name)
    if not tag.lower().startswith(APPROVAL_PREFIX):
        raise ConfigError(f"approval tag {tag!r}: the workspace treats a task as the approval step only when its "
                          f"key starts with {APPROVAL_PREFIX!r}, and the tag is named after that task")
    tags = dict(registry.get_version(settings, version).tags or {})
    if settings.job_run_id:
        registry.set_tags(settings, version, {rt.DEPLOYMENT_JOB_RUN_ID: settings.job_run_id})
    if is_approved(tags, tag):
        print(f"approval-check: {settings.model_name} v{version} is approved ({tag}={tags[tag]}, by "
              f"{tags.get(rt.APPROVED_BY, 'the workspace')}); deploying")
        return version
    if not required:
        registry.set_tags(settings, version, {tag: rt.APPROVED, rt.APPROVED_BY: rt.AUTOMATIC, rt.APPROVED_AT: _now()})
        print(f"approval-check: {settings.model_name} v{version} approved automatically (target "
              f"{settings.target or 'local'} does not require a person: approval_required is false)")
        return version
    found = f"{tag}={tags[tag]}" if tag in tags else f"no {tag} tag"
    where = f" -t {settings.target}" if settings.target else ""
    raise ApprovalPending(
        f"{settings.model_name} v{version} is waiting for approval ({found}; expected {tag}={rt.APPROVED}): "
        f"approve it on the version's page, or `spark-mlops approve{where} --version {version}` locally; "
        "the repaired run resumes from this task"
    )


def approve(settings: Settings, version: str) -> str:
    """What the Approve button does to the registry: ``Approval_Check=Approved`` on the version,
    with who and when. Refused (exit 5, nothing changed) for a version its evaluation rejected or a
    rollback revoked: approving it would deploy nothing."""
    version = _require_version(version)
    tags = dict(registry.get_version(settings, version).tags or {})
    status = tags.get(rt.VALIDATION_STATUS)
    if status == rt.FAILED or tags.get(rt.RELEASE_STATUS) == rt.REJECTED:
        raise PromotionRefused(
            f"{settings.model_name} v{version} was rejected by its evaluation "
            f"({tags.get(rt.VALIDATION_FAILURES, tags.get(rt.REJECTION_REASON, 'no reason recorded'))}): "
            "approving it would deploy nothing; nothing was changed"
        )
    if status == rt.REVOKED:
        raise PromotionRefused(f"{settings.model_name} v{version} was rolled back at "
                               f"{tags.get(rt.ROLLED_BACK_AT, '?')}: its validation is revoked; a person restores it "
                               f"with validate and promote --version {version}; nothing was changed")
    if is_approved(tags):
        print(f"approve: {settings.model_name} v{version} was already approved by "
              f"{tags.get(rt.APPROVED_BY, 'the workspace')} at {tags.get(rt.APPROVED_AT, '?')}")
        return version
    who = actor()
    registry.set_tags(settings, version, {rt.APPROVAL_CHECK: rt.APPROVED, rt.APPROVED_BY: who.name,
                                          rt.APPROVED_AT: _now()})
    print(f"approve: {settings.model_name} v{version} {rt.APPROVAL_CHECK}={rt.APPROVED} (by {who.name})")
    return version


def require_approved(settings: Settings, version: str | None) -> None:
    """Promote's re-check in the deployment task: the approval task's tag, read again."""
    version = _require_version(version)
    tags = dict(registry.get_version(settings, version).tags or {})
    if not is_approved(tags):
        raise ApprovalPending(f"{settings.model_name} v{version} is not approved ({rt.APPROVAL_CHECK} is "
                              f"{tags.get(rt.APPROVAL_CHECK, 'not set')}): @{rt.CHAMPION_ALIAS} does not move "
                              "without it; nothing was changed")


def deployment_state(tags: dict[str, str], aliases: list[str] | tuple[str, ...]) -> str:
    """A version's place in the deployment story: rolled back, deployed, rejected, approved,
    pending approval, evaluating, or ``-`` (no deployment job has handled it)."""
    if rt.ROLLED_BACK_AT in tags and rt.CHAMPION_ALIAS not in aliases:
        return rt.STATE_ROLLED_BACK
    if rt.CHAMPION_ALIAS in aliases or rt.PROMOTED_AT in tags:
        return rt.STATE_DEPLOYED
    if tags.get(rt.VALIDATION_STATUS) == rt.FAILED or tags.get(rt.RELEASE_STATUS) == rt.REJECTED:
        return rt.STATE_REJECTED
    if rt.APPROVAL_CHECK in tags:
        return rt.STATE_APPROVED if is_approved(tags) else rt.STATE_REJECTED
    run = tags.get(rt.DEPLOYMENT_JOB_RUN_ID)
    if run:
        verdict_here = tags.get(rt.VALIDATION_JOB_RUN_ID) == run and tags.get(rt.VALIDATION_STATUS) == rt.PASSED
        return rt.STATE_PENDING_APPROVAL if verdict_here else rt.STATE_EVALUATING
    return rt.UNSET


# ---------------------------------------------------------------- the link: registered model -> job


def linked_job(settings: Settings) -> str | None:
    """The id of the deployment job linked to the registered model; None when none is (or the
    model does not exist)."""
    try:
        model = registry.client(settings).get_registered_model(settings.model_name)
    except MlflowException as exc:
        if registry.is_missing(exc):
            return None
        raise registry.failure(settings, f"reading {settings.model_name}", exc) from exc
    if registry.is_unity_catalog(settings):
        return str(model.deployment_job_id) if model.deployment_job_id else None
    return (model.tags or {}).get(rt.DEPLOYMENT_JOB_ID) or None


def link(settings: Settings, job_id: str) -> bool:
    """Link the registered model to deployment job ``job_id`` ("" unlinks); False when it already was."""
    if linked_job(settings) == (job_id or None):
        print(f"link: {settings.model_name} is already linked to deployment job {job_id or 'none'}; nothing changed")
        return False
    c = registry.client(settings)
    try:
        if registry.is_unity_catalog(settings):
            current = c.get_registered_model(settings.model_name)
            c.update_registered_model(settings.model_name, description=current.description, deployment_job_id=job_id)
        else:
            try:
                c.get_registered_model(settings.model_name)
            except MlflowException as exc:
                if not registry.is_missing(exc):
                    raise
                c.create_registered_model(settings.model_name)  # on Databricks the bundle creates it
            if job_id:
                c.set_registered_model_tag(settings.model_name, rt.DEPLOYMENT_JOB_ID, job_id)
            else:
                c.delete_registered_model_tag(settings.model_name, rt.DEPLOYMENT_JOB_ID)
    except MlflowException as exc:
        raise registry.failure(settings, f"linking {settings.model_name} to deployment job {job_id}", exc) from exc
    print(f"link: {settings.model_name} -> deployment job {job_id or 'none'}")
    return True
