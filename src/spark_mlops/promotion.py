"""Promotion, rejection and rollback of ``@champion``, with an audit trail.

A verdict is the validation run, not the tags: promotion goes ahead only when the validation run
the version's ``validation_run_id`` names exists in this workspace's tracking store, in this
project's experiment, finished, made by the validate step with a passed verdict for this
registered model and version, in this job run (when run by a job), with metrics that meet the
fixed minimums (``not (value >= minimum)`` refuses a missing or NaN value), against the champion
that is ``@champion`` now. Tags anyone with write access to the model can set are only where the
run is found.

Every alias move holds the model's alias lock (:mod:`spark_mlops.alias_lock`), so moves by these
commands never interleave. Inside it ``@champion`` is read again just before it is set (a move
before the set is refused) and read back right after (a move after the set is reported). A move
made by hand outside these commands between that read and the set is the one thing that is not
detected. The audit tags are written before the alias moves; every move is also an MLflow run in
the experiment, the searchable audit log.

The legacy workspace registry's stages can be mirrored (``--stages``): Production for the
champion, with the previous Production archived. Unity Catalog has no stages, so ``--stages``
against it is refused before anything moves.
"""

from __future__ import annotations

import math
import warnings
from datetime import UTC, datetime

import mlflow
from mlflow.exceptions import MlflowException

from spark_mlops import alias_lock, registry, tracking
from spark_mlops import registry_tags as rt
from spark_mlops.config import PromoteConfig, Settings, parse_version, redact, same_version
from spark_mlops.errors import ConfigError, MlopsError, PromotionRefused, RegistryError
from spark_mlops.identity import actor

CHAMPION, CHALLENGER, NO_CHAMPION = rt.CHAMPION_ALIAS, rt.CHALLENGER_ALIAS, rt.NO_CHAMPION


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# ---------------------------------------------------------------- the verdict is a run


def check_status_tags(tags: dict[str, str], version: str) -> None:
    """The quick refusals the version's tags already give (never enough to promote on)."""
    status = tags.get(rt.VALIDATION_STATUS)
    if status is None:
        raise PromotionRefused(f"version {version} was never validated; run validate on it first")
    if status != rt.PASSED:
        detail = tags.get(rt.VALIDATION_FAILURES, "")
        raise PromotionRefused(f"version {version} did not pass validation (status {status}): {detail}")


def validation_run(settings: Settings, version: str, run_id: str | None):
    """The validation run ``run_id`` from this workspace's tracking store, in this experiment."""
    if not run_id or run_id == rt.UNSET:
        raise PromotionRefused(f"version {version}'s verdict names no validation run ({rt.VALIDATION_RUN_ID}); "
                               "a verdict is the run that reached it: run validate on it")
    client = mlflow.MlflowClient(tracking_uri=settings.tracking_uri)
    try:
        run = client.get_run(run_id)
        experiment = client.get_experiment_by_name(settings.experiment)
    except MlflowException as exc:
        if registry.is_missing(exc):
            raise PromotionRefused(
                f"version {version}'s validation run {run_id} does not exist in this workspace's tracking store "
                f"({redact(settings.tracking_uri)}): a verdict without its run does not count; run validate on it"
            ) from exc
        raise RegistryError(redact(f"reading validation run {run_id} in {settings.tracking_uri} failed: {exc}")) from exc
    if experiment is None or run.info.experiment_id != experiment.experiment_id:
        raise PromotionRefused(f"version {version}'s validation run {run_id} is not in experiment {settings.experiment}; "
                               "only validate's runs in this project's experiment count")
    return run


def check_promotable(settings: Settings, tags: dict[str, str], version: str, current_champion: str | None, *,
                     job_run_id: str | None, min_thresholds: dict[str, float]) -> str:
    """Raise PromotionRefused unless ``version`` may become the champion now; the validation run id."""
    check_status_tags(tags, version)
    run = validation_run(settings, version, tags.get(rt.VALIDATION_RUN_ID))
    run_tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    run_id = run.info.run_id
    if run_tags.get(rt.RUN_STEP) != rt.STEP_VALIDATE or run.info.status != "FINISHED":
        raise PromotionRefused(f"run {run_id} named by version {version} is not a finished validate run "
                               f"(step {run_tags.get(rt.RUN_STEP, 'none')}, status {run.info.status})")
    validated_as = params.get(rt.RUN_MODEL_NAME)
    if validated_as != settings.model_name:
        # e.g. a version copied from another registered model arrives with that model's verdict.
        raise PromotionRefused(f"version {version}'s verdict was reached for model {validated_as or 'unknown'}, "
                               f"not {settings.model_name}; validate it under {settings.model_name} first")
    if not same_version(params.get(rt.RUN_MODEL_VERSION), version):
        raise PromotionRefused(f"validation run {run_id} validated version {params.get(rt.RUN_MODEL_VERSION, '?')}, "
                               f"not version {version}; validate version {version} itself")
    if run_tags.get(rt.RUN_VERDICT) != rt.PASSED:
        raise PromotionRefused(f"validation run {run_id} of version {version} reached verdict "
                               f"{run_tags.get(rt.RUN_VERDICT, 'none')}, not {rt.PASSED}")
    if job_run_id and run_tags.get(rt.JOB_RUN_ID) != job_run_id:
        raise PromotionRefused(f"version {version} was validated in job run {run_tags.get(rt.JOB_RUN_ID, rt.UNSET)}, "
                               f"not in this job run {job_run_id}; only the version validated in this run is promoted")
    short = {k: metrics.get(f"{rt.RUN_METRIC_PREFIX}{k}") for k, floor in min_thresholds.items()
             if not _meets(metrics.get(f"{rt.RUN_METRIC_PREFIX}{k}"), floor)}
    if short:
        detail = ", ".join(f"{k}={'missing' if v is None else v} (minimum {min_thresholds[k]})" for k, v in short.items())
        raise PromotionRefused(f"version {version}'s validated metrics do not meet the fixed minimums: {detail}")
    validated_against = params.get(rt.RUN_CHAMPION_VERSION, NO_CHAMPION)
    now = current_champion or NO_CHAMPION
    if not same_version(validated_against, now):
        raise PromotionRefused(
            f"version {version} was validated against @{CHAMPION} {validated_against}, but "
            f"@{CHAMPION} is now {now}; validate it again against the current champion"
        )
    return run_id


def _meets(value: float | None, minimum: float) -> bool:
    return isinstance(value, int | float) and not math.isnan(value) and value >= minimum


# ---------------------------------------------------------------- moving @champion


def _refuse_stages_on_unity_catalog(settings: Settings, stages: bool) -> None:
    if stages and registry.is_unity_catalog(settings):
        raise ConfigError(f"--stages: {settings.registry_uri} is Unity Catalog, which has no stages "
                          "(aliases only); nothing was changed")


def _move_champion(settings: Settings, version: str, expected_current: str | None) -> None:
    """Inside the alias lock: ``@champion`` from ``expected_current`` to ``version``, then read back."""
    if not same_version(registry.alias_version(settings, CHAMPION), expected_current):
        raise PromotionRefused(f"@{CHAMPION} moved while this command ran (expected "
                               f"{expected_current or NO_CHAMPION}); nothing was changed, run it again")
    registry.set_alias(settings, CHAMPION, version)
    after = registry.alias_version(settings, CHAMPION)
    if not same_version(after, version):
        raise PromotionRefused(f"@{CHAMPION} is v{after} right after it was set to v{version}: it was moved by hand "
                               "outside spark-mlops at the same moment; check `spark-mlops status`")


def promote(settings: Settings, conf: PromoteConfig) -> str:
    _refuse_stages_on_unity_catalog(settings, conf.stages)
    version = parse_version(conf.version) or registry.require_alias(settings, CHALLENGER, "run train first")
    who = actor()
    with alias_lock.held(settings, "promote"):
        tags = dict(registry.get_version(settings, version).tags or {})
        current = registry.alias_version(settings, CHAMPION)
        if same_version(current, version):
            print(f"promote: {settings.model_name} v{version} is already @{CHAMPION}; nothing to do")
            return version
        if rt.ROLLED_BACK_AT in tags and not conf.version:
            raise PromotionRefused(f"v{version} was rolled back at {tags[rt.ROLLED_BACK_AT]} "
                                   f"({tags.get(rt.ROLLBACK_REASON, rt.UNSET)}); only a person restores it: "
                                   f"validate it, then promote --version {version}")
        run_id = check_promotable(settings, tags, version, current,
                                  job_run_id=settings.job_run_id, min_thresholds=conf.min_thresholds)
        # Written before the alias moves: a crash after the move still leaves rollback its way back.
        intent = {rt.PREVIOUS_CHAMPION_VERSION: current or NO_CHAMPION, rt.PROMOTED_BY: who.name,
                  rt.PROMOTED_BY_SOURCE: who.source, rt.PROMOTION_REASON: conf.reason or "validation passed"}
        registry.set_tags(settings, version, intent)
        _move_champion(settings, version, current)
        promoted_at = _now()
        registry.set_tags(settings, version, {rt.PROMOTED_AT: promoted_at})
    if conf.stages:
        _mirror_stage(settings, version, "Production")
    _audit_run(settings, "promote", version, {**intent, rt.PROMOTED_AT: promoted_at, rt.VALIDATION_RUN_ID: run_id})
    print(f"promote: {settings.model_name} @{CHAMPION} -> v{version} (was {current or NO_CHAMPION}; "
          f"validation run {run_id})")
    return version


def rollback(settings: Settings, *, reason: str = "", version: str | None = None, stages: bool = False) -> str:
    """Move ``@champion`` back to ``version``, or to the champion recorded before the current one."""
    _refuse_stages_on_unity_catalog(settings, stages)
    if settings.job_run_id and not reason.strip():
        raise ConfigError("rollback from a job needs a reason (job parameter `reason`): it goes into the audit trail")
    who = actor()
    with alias_lock.held(settings, "rollback"):
        current = registry.require_alias(settings, CHAMPION, "there is nothing to roll back")
        if version is None:
            target = registry.get_version(settings, current).tags.get(rt.PREVIOUS_CHAMPION_VERSION, NO_CHAMPION)
            if target == NO_CHAMPION:
                raise RegistryError(
                    f"{settings.model_name} v{current} is @{CHAMPION} but no previous champion is recorded; "
                    "promote a validated version instead"
                )
        else:
            target = parse_version(version)
            if same_version(target, current):
                raise PromotionRefused(f"v{target} is already @{CHAMPION}; nothing to roll back")
        tags = dict(registry.get_version(settings, target).tags or {})
        if rt.PROMOTED_AT not in tags and rt.RESTORED_AT not in tags:
            raise PromotionRefused(f"v{target} has never been @{CHAMPION}; rollback only restores an earlier "
                                   "champion (promote a validated version instead)")
        if tags.get(rt.VALIDATION_STATUS) == rt.REVOKED:
            raise PromotionRefused(f"v{target} was itself rolled back (validation revoked); validate it again first")

        when = _now()
        # Revoke first: even if the move below is interrupted, the bad version cannot be re-promoted unvalidated.
        registry.set_tags(settings, current, {
            rt.ROLLED_BACK_AT: when, rt.ROLLED_BACK_BY: who.name, rt.ROLLED_BACK_TO: target,
            rt.ROLLBACK_REASON: reason or rt.UNSET, rt.VALIDATION_STATUS: rt.REVOKED,
        })
        _move_champion(settings, target, current)
        registry.set_tags(settings, target, {rt.RESTORED_AT: when, rt.RESTORED_BY: who.name, rt.RESTORED_FROM: current})
    if stages:
        _mirror_stage(settings, target, "Production")
    _audit_run(settings, "rollback", target, {"rolled_back_from": current, "reason": reason or rt.UNSET,
                                              "by": who.name, "by_source": who.source})
    print(f"rollback: {settings.model_name} @{CHAMPION} -> v{target} (was v{current})")
    return target


def record_rejection(settings: Settings, *, version: str | None = None) -> str:
    """After validate failed: tell a rejection from a crash.

    A failed verdict reached in this job run (or, outside a job, the version's latest verdict) is
    recorded as a rejected release, and this returns normally: the run still fails, because
    ``promote`` did not run. No such verdict means validate crashed before deciding: that is an
    error of its own (exit 1), so the two cases show as different task states.
    """
    version = parse_version(version) or registry.require_alias(settings, CHALLENGER, "run train first")
    tags = dict(registry.get_version(settings, version).tags or {})
    status, run_of_verdict = tags.get(rt.VALIDATION_STATUS), tags.get(rt.VALIDATION_JOB_RUN_ID)
    if settings.job_run_id and run_of_verdict != settings.job_run_id:
        raise MlopsError(f"validate reached no verdict on {settings.model_name} v{version} in job run "
                         f"{settings.job_run_id} (latest verdict: {status or 'none'} from job run "
                         f"{run_of_verdict or rt.UNSET}): it crashed; see the validate task's output")
    if status != rt.FAILED:
        raise MlopsError(f"{settings.model_name} v{version} has verdict {status or 'none'}, not {rt.FAILED}: "
                         "nothing to record as a rejection")
    reason = tags.get(rt.VALIDATION_FAILURES, rt.UNSET)
    audit = {rt.RELEASE_STATUS: rt.REJECTED, rt.REJECTED_AT: _now(), rt.REJECTION_REASON: reason}
    registry.set_tags(settings, version, audit)
    _audit_run(settings, "reject", version, audit)
    champion = registry.alias_version(settings, CHAMPION)
    print(f"record-rejection: {settings.model_name} v{version} was rejected and not promoted "
          f"(@{CHAMPION} stays {champion or NO_CHAMPION}): {reason}")
    return version


def _mirror_stage(settings: Settings, version: str, stage: str) -> None:
    with warnings.catch_warnings():  # stages are deprecated; this mode exists for old registries
        warnings.simplefilter("ignore", FutureWarning)
        registry.client(settings).transition_model_version_stage(
            settings.model_name, str(version), stage, archive_existing_versions=True
        )


def _audit_run(settings: Settings, action: str, version: str, details: dict[str, str]) -> None:
    experiment_id = tracking.configure(settings)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{action}-v{version}",
                          tags=tracking.safe({**settings.run_tags(), rt.RUN_STEP: action,
                                              rt.RUN_MODEL_NAME: settings.model_name,
                                              rt.RUN_MODEL_VERSION: str(version),
                                              **{f"audit.{k}": v for k, v in details.items()}})):
        pass
