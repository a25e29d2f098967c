"""Deploy-the-model mode: bring the version that is ``@champion`` in the source (staging) model
into this (prod) model, as ``@challenger``, so that this environment's own gate decides.

The copy is MLflow's ``MlflowClient.copy_model_version``, which Unity Catalog supports across
catalogs (docs: MLflow "Promote a model across environments" with Models in Unity Catalog). It
is pinned by version number, never by "latest", and is idempotent: a version of this model
tagged ``deployed_from=models:/<source>/<version>`` is that copy, so deploying the same source
version twice creates nothing new.

What this step can check, from the prod workspace (which cannot read staging's runs; see
docs/release-gate.md): the source version is the source model's ``@champion`` now, its tags
record a passed verdict reached under the source model's name that names its validation run and
was not revoked, and its files pass :mod:`spark_mlops.trust` (only the stages ``train`` builds,
signed by the training identity) before anything is copied. The staging verdict itself is not
evidence here: the copy carries no verdict (``copy_model_version`` copies every tag, measured on
MLflow 3.8.1, so the source's verdict, promotion and monitoring tags are cleared on the copy),
and only prod's own validate and promote, which re-reads prod's own validation run, can make it
prod's ``@champion``.

A rollback sticks: when the source version's copy here was rolled back and is not
``@champion``, nothing is copied or re-validated into place: ``@challenger`` is set to the
current ``@champion`` (so the job's validate checks the champion and promote has nothing to do)
and one line says so. A newer source champion deploys as usual; a person restores a rolled-back
copy with validate and ``promote --version N``.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from datetime import UTC, datetime

from mlflow.exceptions import MlflowException

from spark_mlops import alias_lock, logs, registry
from spark_mlops import registry_tags as rt
from spark_mlops.config import Settings
from spark_mlops.errors import ConfigError, PromotionRefused
from spark_mlops.identity import actor

CHAMPION, CHALLENGER = rt.CHAMPION_ALIAS, rt.CHALLENGER_ALIAS


def source_uri(model_name: str, version: str) -> str:
    return f"models:/{model_name}/{version}"


def check_deployable(tags: dict[str, str], source_model: str, version: str) -> None:
    """The source version's tags must record a passed verdict reached under the source model itself,
    naming the validation run that reached it."""
    status = tags.get(rt.VALIDATION_STATUS)
    if status == rt.REVOKED:
        raise PromotionRefused(f"{source_model} v{version}: its validation was revoked by a rollback "
                               f"({tags.get(rt.ROLLBACK_REASON, 'no reason recorded')}); nothing was copied")
    if status != rt.PASSED:
        raise PromotionRefused(f"{source_model} v{version} has no passed validation verdict (status "
                               f"{status or 'none'}); nothing was copied")
    if tags.get(rt.VALIDATION_MODEL_NAME) != source_model:
        raise PromotionRefused(f"{source_model} v{version}'s verdict was reached for "
                               f"{tags.get(rt.VALIDATION_MODEL_NAME) or 'another model'}, not {source_model}; "
                               "nothing was copied")
    if tags.get(rt.VALIDATION_RUN_ID, rt.UNSET) == rt.UNSET:
        raise PromotionRefused(f"{source_model} v{version}'s verdict names no validation run: it was not reached by "
                               "validate; nothing was copied")


def existing_copy(settings: Settings, deployed_from: str) -> str | None:
    """The version of this model that is already a copy of ``deployed_from``, if any."""
    for row in registry.versions(settings):
        if row.tags.get(rt.DEPLOYED_FROM) == deployed_from:
            return row.version
    return None


def deploy_model(settings: Settings, *, source_model_name: str, source_alias: str = CHAMPION) -> str:
    """Copy ``source_model_name@source_alias`` into ``settings.model_name``; set ``@challenger`` on it."""
    if source_model_name == settings.model_name:
        raise ConfigError(f"--source-model-name {source_model_name} is this model; deploy from another one "
                          "(e.g. the staging catalog's)")
    source = replace(settings, model_name=source_model_name)
    version = registry.require_alias(source, source_alias, f"promote a validated version in {source_model_name} first")
    source_tags = dict(registry.get_version(source, version).tags or {})
    check_deployable(source_tags, source_model_name, version)
    with tempfile.TemporaryDirectory(prefix="spark-mlops-deploy-") as tmp:
        registry.checked_files(source, version, tmp)  # refused here, before anything is copied (exit 9)

    deployed_from = source_uri(source_model_name, version)
    with alias_lock.held(settings, "deploy-model"):
        copy = existing_copy(settings, deployed_from)
        if copy is not None:
            tags = dict(registry.get_version(settings, copy).tags or {})
            champion = registry.alias_version(settings, CHAMPION)
            if rt.ROLLED_BACK_AT in tags and champion != copy:
                return _keep_rollback(settings, deployed_from, copy, tags, champion)
            print(f"deploy-model: {deployed_from} is already {settings.model_name} v{copy}; nothing copied")
        else:
            copy = _copy(settings, source_model_name, version, deployed_from, source_tags)
        registry.set_alias(settings, CHALLENGER, copy)
    print(f"deploy-model: {settings.model_name} @{CHALLENGER} -> v{copy}; validate it against this "
          f"environment's data and @{CHAMPION} next")
    return copy


def _keep_rollback(settings: Settings, deployed_from: str, copy: str, tags: dict[str, str],
                   champion: str | None) -> str:
    """The source's copy here was rolled back: deploy nothing, keep @champion where it is."""
    if champion is not None:
        registry.set_alias(settings, CHALLENGER, champion)
    print(f"deploy-model: {deployed_from} is {settings.model_name} v{copy}, rolled back at {tags[rt.ROLLED_BACK_AT]} "
          f"by {tags.get(rt.ROLLED_BACK_BY, '?')} ({tags.get(rt.ROLLBACK_REASON, rt.UNSET)}): not deployed again; "
          f"@{CHAMPION} stays v{champion}, @{CHALLENGER} -> v{champion} (restore v{copy} by hand: validate it, "
          f"then promote --version {copy})")
    return champion or copy


def _copy(settings: Settings, source_model_name: str, version: str, deployed_from: str,
          source_tags: dict[str, str]) -> str:
    try:
        with logs.library_prints():
            created = registry.client(settings).copy_model_version(deployed_from, settings.model_name)
    except MlflowException as exc:
        raise registry.failure(settings, f"copying {deployed_from} to {settings.model_name}", exc) from exc
    copy = str(created.version)
    registry.await_ready(settings, copy)
    registry.delete_tags(settings, copy, tuple(k for k in rt.SOURCE_ONLY if k in source_tags))
    registry.set_tags(settings, copy, {
        rt.DEPLOYED_FROM: deployed_from,
        rt.DEPLOYED_FROM_MODEL: source_model_name,
        rt.DEPLOYED_FROM_VERSION: version,
        rt.DEPLOYED_FROM_VALIDATION_RUN_ID: source_tags.get(rt.VALIDATION_RUN_ID, rt.UNSET),
        rt.DEPLOYED_BY_JOB_RUN_ID: settings.job_run_id or rt.UNSET,
        rt.DEPLOYED_BY: actor().name,
        rt.DEPLOYED_AT: datetime.now(UTC).isoformat(timespec="seconds"),
    })
    print(f"deploy-model: copied {deployed_from} to {settings.model_name} v{copy}")
    return copy
