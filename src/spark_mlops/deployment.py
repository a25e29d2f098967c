"""Deploy-the-model mode: bring the version that is ``@champion`` in the source (staging) model
into this (prod) model, as ``@challenger``, so that this environment's own gate decides.

The copy is MLflow's ``MlflowClient.copy_model_version``, which Unity Catalog supports across
catalogs (docs: MLflow "Promote a model across environments" with Models in Unity Catalog). It
is pinned by version number, never by "latest", and is idempotent: a version of this model
tagged ``deployed_from=models:/<source>/<version>`` is that copy, so deploying the same source
version twice creates nothing new.

A copy carries every tag of its source (``copy_model_version`` copies tags; measured on MLflow
3.8.1), including the source's verdict. The verdict belongs to the model it was reached under,
so the copied verdict and promotion tags are cleared on the copy, and promotion also checks
``validation_model_name`` (see :mod:`spark_mlops.promotion`).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from mlflow.exceptions import MlflowException

from spark_mlops import logs, registry
from spark_mlops.config import CHALLENGER_ALIAS, CHAMPION_ALIAS, Settings
from spark_mlops.errors import ConfigError, PromotionRefused
from spark_mlops.promotion import REVOKED, actor
from spark_mlops.validation import PASSED, VERDICT_TAGS

DEPLOYED_FROM = "deployed_from"
# Tags of the source version that describe its life in the source model, not in this one.
SOURCE_ONLY_TAGS = (*VERDICT_TAGS, "release_status", "rejected_at", "rejection_reason", "promoted_at",
                    "promoted_by", "promotion_reason", "previous_champion_version", "rolled_back_at",
                    "rolled_back_by", "rolled_back_to", "rollback_reason", "restored_at", "restored_by",
                    "restored_from", "monitoring_last_batch", "monitoring_last_verdict", "monitoring_last_at")


def source_uri(model_name: str, version: str) -> str:
    return f"models:/{model_name}/{version}"


def check_deployable(tags: dict[str, str], source_model: str, version: str) -> None:
    """The source version must hold a passed verdict reached under the source model itself."""
    status = tags.get("validation_status")
    if status == REVOKED:
        raise PromotionRefused(f"{source_model} v{version}: its validation was revoked by a rollback "
                               f"({tags.get('rollback_reason', 'no reason recorded')}); nothing was copied")
    if status != PASSED:
        raise PromotionRefused(f"{source_model} v{version} has no passed validation verdict (status "
                               f"{status or 'none'}); nothing was copied")
    if tags.get("validation_model_name") != source_model:
        raise PromotionRefused(f"{source_model} v{version}'s verdict was reached for "
                               f"{tags.get('validation_model_name') or 'another model'}, not {source_model}; "
                               "nothing was copied")


def existing_copy(settings: Settings, deployed_from: str) -> str | None:
    """The version of this model that is already a copy of ``deployed_from``, if any."""
    for row in registry.versions(settings):
        if row.tags.get(DEPLOYED_FROM) == deployed_from:
            return row.version
    return None


def deploy_model(settings: Settings, *, source_model_name: str, source_alias: str = CHAMPION_ALIAS) -> str:
    """Copy ``source_model_name@source_alias`` into ``settings.model_name``; set ``@challenger`` on it."""
    if source_model_name == settings.model_name:
        raise ConfigError(f"--source-model-name {source_model_name} is this model; deploy from another one "
                          "(e.g. the staging catalog's)")
    source = replace(settings, model_name=source_model_name)
    version = registry.require_alias(source, source_alias, f"promote a validated version in {source_model_name} first")
    source_tags = dict(registry.get_version(source, version).tags or {})
    check_deployable(source_tags, source_model_name, version)

    deployed_from = source_uri(source_model_name, version)
    copy = existing_copy(settings, deployed_from)
    if copy is not None:
        print(f"deploy-model: {deployed_from} is already {settings.model_name} v{copy}; nothing copied")
    else:
        try:
            with logs.library_prints():
                created = registry.client(settings).copy_model_version(deployed_from, settings.model_name)
        except MlflowException as exc:
            raise registry.failure(settings, f"copying {deployed_from} to {settings.model_name}", exc) from exc
        copy = str(created.version)
        registry.await_ready(settings, copy)
        registry.delete_tags(settings, copy, tuple(k for k in SOURCE_ONLY_TAGS if k in source_tags))
        registry.set_tags(settings, copy, {
            DEPLOYED_FROM: deployed_from,
            "deployed_from_model": source_model_name,
            "deployed_from_version": version,
            "deployed_from_validation_run_id": source_tags.get("validation_run_id", "-"),
            "deployed_by_job_run_id": settings.job_run_id or "-",
            "deployed_by": actor(),
            "deployed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        })
        print(f"deploy-model: copied {deployed_from} to {settings.model_name} v{copy}")
    registry.set_alias(settings, CHALLENGER_ALIAS, copy)
    print(f"deploy-model: {settings.model_name} @{CHALLENGER_ALIAS} -> v{copy}; validate it against this "
          f"environment's data and @{CHAMPION_ALIAS} next")
    return copy
