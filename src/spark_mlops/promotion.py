"""Promotion, rejection and rollback of ``@champion``, with an audit trail.

Promotion is a compare-and-set: it goes ahead only when the version passed validation and
``@champion`` is still the version that validation compared against. Every move is recorded
in tags on the versions involved (who, when, why, the previous champion) and as an MLflow run
in the experiment, which is the searchable audit log.

The legacy workspace registry's stages can be mirrored (``--stages``): Production for the
champion, with the previous Production archived. Unity Catalog has no stages.
"""

from __future__ import annotations

import getpass
import os
import warnings
from datetime import UTC, datetime

import mlflow

from spark_mlops import registry, tracking
from spark_mlops.config import CHALLENGER_ALIAS, CHAMPION_ALIAS, PromoteConfig, Settings
from spark_mlops.errors import PromotionRefused, RegistryError, ValidationFailed
from spark_mlops.validation import PASSED

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


def check_promotable(tags: dict[str, str], version: str, current_champion: str | None) -> None:
    """Raise PromotionRefused unless ``version`` passed validation against the current champion."""
    status = tags.get("validation_status")
    if status is None:
        raise PromotionRefused(f"version {version} was never validated; run validate on it first")
    if status != PASSED:
        detail = tags.get("validation_failures", "")
        raise PromotionRefused(f"version {version} did not pass validation (status {status}): {detail}")
    validated_against = tags.get("validation_champion_version", NO_CHAMPION)
    now = current_champion or NO_CHAMPION
    if validated_against != now:
        raise PromotionRefused(
            f"version {version} was validated against @{CHAMPION_ALIAS} {validated_against}, but "
            f"@{CHAMPION_ALIAS} is now {now}; validate it again against the current champion"
        )


def promote(settings: Settings, conf: PromoteConfig) -> str:
    version = conf.version or registry.require_alias(settings, CHALLENGER_ALIAS, "run train first")
    mv = registry.get_version(settings, version)
    current = registry.alias_version(settings, CHAMPION_ALIAS)
    if current == str(version):
        print(f"promote: {settings.model_name} v{version} is already @{CHAMPION_ALIAS}; nothing to do")
        return str(version)
    check_promotable(dict(mv.tags or {}), str(version), current)

    registry.set_alias(settings, CHAMPION_ALIAS, version)
    audit = {
        "promoted_at": _now(),
        "promoted_by": actor(),
        "promotion_reason": conf.reason or "validation passed",
        "previous_champion_version": current or NO_CHAMPION,
    }
    registry.set_tags(settings, version, audit)
    if conf.stages:
        _mirror_stage(settings, version, "Production")
    _audit_run(settings, "promote", version, audit)
    print(f"promote: {settings.model_name} @{CHAMPION_ALIAS} -> v{version} (was {current or NO_CHAMPION})")
    return str(version)


def rollback(settings: Settings, *, reason: str = "", stages: bool = False) -> str:
    current = registry.require_alias(settings, CHAMPION_ALIAS, "there is nothing to roll back")
    previous = registry.get_version(settings, current).tags.get("previous_champion_version", NO_CHAMPION)
    if previous == NO_CHAMPION:
        raise RegistryError(
            f"{settings.model_name} v{current} is @{CHAMPION_ALIAS} but no previous champion is recorded; "
            "promote a validated version instead"
        )
    registry.get_version(settings, previous)
    registry.set_alias(settings, CHAMPION_ALIAS, previous)
    when, who = _now(), actor()
    registry.set_tags(settings, current, {
        "rolled_back_at": when, "rolled_back_by": who, "rolled_back_to": previous,
        "rollback_reason": reason or "-", "validation_status": REVOKED,
    })
    registry.set_tags(settings, previous, {"restored_at": when, "restored_by": who, "restored_from": current})
    if stages:
        _mirror_stage(settings, previous, "Production")
    _audit_run(settings, "rollback", previous, {"rolled_back_from": current, "reason": reason or "-", "by": who})
    print(f"rollback: {settings.model_name} @{CHAMPION_ALIAS} -> v{previous} (was v{current})")
    return previous


def reject(settings: Settings, *, version: str | None = None, reason: str = "") -> None:
    """Record a rejected release on the version, then fail: a rejection never looks like success."""
    version = version or registry.require_alias(settings, CHALLENGER_ALIAS, "run train first")
    registry.get_version(settings, version)
    audit = {"release_status": "rejected", "rejected_at": _now(), "rejection_reason": reason or "-"}
    registry.set_tags(settings, version, audit)
    _audit_run(settings, "reject", version, audit)
    champion = registry.alias_version(settings, CHAMPION_ALIAS)
    raise ValidationFailed(
        f"{settings.model_name} v{version} was rejected and not promoted "
        f"(@{CHAMPION_ALIAS} stays {champion or NO_CHAMPION}): {reason or 'validation failed'}"
    )


def _mirror_stage(settings: Settings, version: str, stage: str) -> None:
    with warnings.catch_warnings():  # stages are deprecated; this mode exists for old registries
        warnings.simplefilter("ignore", FutureWarning)
        registry.client(settings).transition_model_version_stage(
            settings.model_name, str(version), stage, archive_existing_versions=True
        )


def _audit_run(settings: Settings, action: str, version: str, details: dict[str, str]) -> None:
    experiment_id = tracking.configure(settings)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{action}-v{version}",
                          tags={**settings.run_tags(), "step": action, "model_name": settings.model_name,
                                "model_version": str(version), **{f"audit.{k}": v for k, v in details.items()}}):
        pass
