"""Promotion, rejection and rollback of ``@champion``, with an audit trail.

Promotion is a compare-and-set: it goes ahead only when the version passed validation under
this registered model name (in this job run, when run by a job), its recorded metrics still meet
the fixed minimum thresholds, and ``@champion`` is still the version that validation compared
against. The audit tags are written before the alias moves, and the alias is read back after it
moved: a concurrent move is reported, never silently overwritten. Every move is also an MLflow
run in the experiment, the searchable audit log.

The legacy workspace registry's stages can be mirrored (``--stages``): Production for the
champion, with the previous Production archived. Unity Catalog has no stages, so ``--stages``
against it is refused before anything moves.
"""

from __future__ import annotations

import getpass
import json
import os
import warnings
from datetime import UTC, datetime

import mlflow

from spark_mlops import registry, tracking
from spark_mlops.config import CHALLENGER_ALIAS, CHAMPION_ALIAS, PromoteConfig, Settings
from spark_mlops.errors import ConfigError, MlopsError, PromotionRefused, RegistryError
from spark_mlops.validation import FAILED, PASSED

NO_CHAMPION = "none"
REVOKED = "revoked"  # a rolled-back version must be validated again before it can return


def actor() -> str:
    for var in ("SPARK_MLOPS_ACTOR", "BUILD_REQUESTEDFOREMAIL", "BUILD_REQUESTEDFOR", "DATABRICKS_USER"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def check_promotable(tags: dict[str, str], version: str, current_champion: str | None, *, model_name: str,
                     job_run_id: str | None, min_thresholds: dict[str, float]) -> None:
    """Raise PromotionRefused unless ``version``'s verdict allows it to become the champion now."""
    status = tags.get("validation_status")
    if status is None:
        raise PromotionRefused(f"version {version} was never validated; run validate on it first")
    if status != PASSED:
        detail = tags.get("validation_failures", "")
        raise PromotionRefused(f"version {version} did not pass validation (status {status}): {detail}")
    validated_as = tags.get("validation_model_name")
    if validated_as != model_name:
        # e.g. a version copied from another registered model arrives with that model's verdict.
        raise PromotionRefused(f"version {version}'s verdict was reached for model {validated_as or 'unknown'}, "
                               f"not {model_name}; validate it under {model_name} first")
    if job_run_id and tags.get("validation_job_run_id") != job_run_id:
        raise PromotionRefused(f"version {version} was validated in job run {tags.get('validation_job_run_id', '-')}, "
                               f"not in this job run {job_run_id}; only the version validated in this run is promoted")
    try:
        metrics = json.loads(tags.get("validation_metrics", "{}"))
    except ValueError:
        metrics = {}
    short = {k: (metrics.get(k), floor) for k, floor in min_thresholds.items()
             if not isinstance(metrics.get(k), int | float) or metrics[k] < floor}
    if short:
        detail = ", ".join(f"{k}={v if v is not None else 'missing'} < {floor}" for k, (v, floor) in short.items())
        raise PromotionRefused(f"version {version}'s validated metrics do not meet the fixed minimums: {detail}")
    validated_against = tags.get("validation_champion_version", NO_CHAMPION)
    now = current_champion or NO_CHAMPION
    if validated_against != now:
        raise PromotionRefused(
            f"version {version} was validated against @{CHAMPION_ALIAS} {validated_against}, but "
            f"@{CHAMPION_ALIAS} is now {now}; validate it again against the current champion"
        )


def _refuse_stages_on_unity_catalog(settings: Settings, stages: bool) -> None:
    if stages and registry.is_unity_catalog(settings):
        raise ConfigError(f"--stages: {settings.registry_uri} is Unity Catalog, which has no stages "
                          "(aliases only); nothing was changed")


def _move_champion(settings: Settings, version: str, expected_current: str | None) -> None:
    """Compare-and-set of ``@champion``: from ``expected_current`` to ``version``, then read back."""
    if registry.alias_version(settings, CHAMPION_ALIAS) != expected_current:
        raise PromotionRefused(f"@{CHAMPION_ALIAS} moved while this command ran (expected "
                               f"{expected_current or NO_CHAMPION}); nothing was changed, run it again")
    registry.set_alias(settings, CHAMPION_ALIAS, version)
    after = registry.alias_version(settings, CHAMPION_ALIAS)
    if after != str(version):
        raise PromotionRefused(f"@{CHAMPION_ALIAS} is v{after} right after it was set to v{version}: another "
                               "promotion or rollback ran at the same time; check `spark-mlops status`")


def promote(settings: Settings, conf: PromoteConfig) -> str:
    _refuse_stages_on_unity_catalog(settings, conf.stages)
    version = conf.version or registry.require_alias(settings, CHALLENGER_ALIAS, "run train first")
    mv = registry.get_version(settings, version)
    current = registry.alias_version(settings, CHAMPION_ALIAS)
    if current == str(version):
        print(f"promote: {settings.model_name} v{version} is already @{CHAMPION_ALIAS}; nothing to do")
        return str(version)
    check_promotable(dict(mv.tags or {}), str(version), current, model_name=settings.model_name,
                     job_run_id=None if conf.version else settings.job_run_id, min_thresholds=conf.min_thresholds)

    # Written before the alias moves: a crash after the move still leaves rollback its way back.
    intent = {"previous_champion_version": current or NO_CHAMPION, "promoted_by": actor(),
              "promotion_reason": conf.reason or "validation passed"}
    registry.set_tags(settings, version, intent)
    _move_champion(settings, str(version), current)
    audit = {**intent, "promoted_at": _now()}
    registry.set_tags(settings, version, {"promoted_at": audit["promoted_at"]})
    if conf.stages:
        _mirror_stage(settings, version, "Production")
    _audit_run(settings, "promote", version, audit)
    print(f"promote: {settings.model_name} @{CHAMPION_ALIAS} -> v{version} (was {current or NO_CHAMPION})")
    return str(version)


def rollback(settings: Settings, *, reason: str = "", version: str | None = None, stages: bool = False) -> str:
    """Move ``@champion`` back to ``version``, or to the champion recorded before the current one."""
    _refuse_stages_on_unity_catalog(settings, stages)
    if settings.job_run_id and not reason.strip():
        raise ConfigError("rollback from a job needs a reason (job parameter `reason`): it goes into the audit trail")
    current = registry.require_alias(settings, CHAMPION_ALIAS, "there is nothing to roll back")
    if version is None:
        target = registry.get_version(settings, current).tags.get("previous_champion_version", NO_CHAMPION)
        if target == NO_CHAMPION:
            raise RegistryError(
                f"{settings.model_name} v{current} is @{CHAMPION_ALIAS} but no previous champion is recorded; "
                "promote a validated version instead"
            )
    else:
        target = str(version)
        if target == current:
            raise PromotionRefused(f"v{target} is already @{CHAMPION_ALIAS}; nothing to roll back")
    tags = dict(registry.get_version(settings, target).tags or {})
    if "promoted_at" not in tags and "restored_at" not in tags:
        raise PromotionRefused(f"v{target} has never been @{CHAMPION_ALIAS}; rollback only restores an earlier "
                               "champion (promote a validated version instead)")
    if tags.get("validation_status") == REVOKED:
        raise PromotionRefused(f"v{target} was itself rolled back (validation revoked); validate it again first")

    when, who = _now(), actor()
    # Revoke first: even if the move below is interrupted, the bad version cannot be re-promoted unvalidated.
    registry.set_tags(settings, current, {
        "rolled_back_at": when, "rolled_back_by": who, "rolled_back_to": target,
        "rollback_reason": reason or "-", "validation_status": REVOKED,
    })
    _move_champion(settings, target, current)
    registry.set_tags(settings, target, {"restored_at": when, "restored_by": who, "restored_from": current})
    if stages:
        _mirror_stage(settings, target, "Production")
    _audit_run(settings, "rollback", target, {"rolled_back_from": current, "reason": reason or "-", "by": who})
    print(f"rollback: {settings.model_name} @{CHAMPION_ALIAS} -> v{target} (was v{current})")
    return target


def record_rejection(settings: Settings, *, version: str | None = None) -> str:
    """After validate failed: tell a rejection from a crash.

    A failed verdict reached in this job run (or, outside a job, the version's latest verdict) is
    recorded as a rejected release, and this returns normally: the run still fails, because
    ``promote`` did not run. No such verdict means validate crashed before deciding: that is an
    error of its own (exit 1), so the two cases show as different task states.
    """
    version = version or registry.require_alias(settings, CHALLENGER_ALIAS, "run train first")
    tags = dict(registry.get_version(settings, version).tags or {})
    status, run_of_verdict = tags.get("validation_status"), tags.get("validation_job_run_id")
    if settings.job_run_id and run_of_verdict != settings.job_run_id:
        raise MlopsError(f"validate reached no verdict on {settings.model_name} v{version} in job run "
                         f"{settings.job_run_id} (latest verdict: {status or 'none'} from job run "
                         f"{run_of_verdict or '-'}): it crashed; see the validate task's output")
    if status != FAILED:
        raise MlopsError(f"{settings.model_name} v{version} has verdict {status or 'none'}, not {FAILED}: "
                         "nothing to record as a rejection")
    reason = tags.get("validation_failures", "-")
    audit = {"release_status": "rejected", "rejected_at": _now(), "rejection_reason": reason}
    registry.set_tags(settings, version, audit)
    _audit_run(settings, "reject", version, audit)
    champion = registry.alias_version(settings, CHAMPION_ALIAS)
    print(f"record-rejection: {settings.model_name} v{version} was rejected and not promoted "
          f"(@{CHAMPION_ALIAS} stays {champion or NO_CHAMPION}): {reason}")
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
                          tags=tracking.safe({**settings.run_tags(), "step": action,
                                              "model_name": settings.model_name, "model_version": str(version),
                                              **{f"audit.{k}": v for k, v in details.items()}})):
        pass
