"""The model registry: registering versions, aliases, tags and the status view.

Aliases and tags, not stages: ``@challenger`` is the candidate, ``@champion`` serves. The
registry may be a different store from the tracking store (a central registry): then
registration goes through :func:`register` which copies the model into the registry side
when MLflow cannot reference the training store from there.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from spark_mlops.config import CHALLENGER_ALIAS, CHAMPION_ALIAS, Settings
from spark_mlops.errors import RegistryError

MODEL_ARTIFACT_PATH = "model"


def client(settings: Settings) -> MlflowClient:
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)


def _is_missing(exc: MlflowException) -> bool:
    return exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE")


def alias_version(settings: Settings, alias: str) -> str | None:
    """The version behind ``@alias``, or None when the model or the alias does not exist."""
    try:
        # str(): stores disagree on whether a version number is an int or a string.
        return str(client(settings).get_model_version_by_alias(settings.model_name, alias).version)
    except MlflowException as exc:
        if _is_missing(exc):
            return None
        raise


def require_alias(settings: Settings, alias: str, hint: str) -> str:
    version = alias_version(settings, alias)
    if version is None:
        raise RegistryError(f"model {settings.model_name} has no @{alias} in {settings.registry_uri}; {hint}")
    return version


def get_version(settings: Settings, version: str) -> ModelVersion:
    try:
        return client(settings).get_model_version(settings.model_name, str(version))
    except MlflowException as exc:
        if _is_missing(exc):
            raise RegistryError(f"model {settings.model_name} has no version {version}") from exc
        raise


def model_uri(settings: Settings, version: str) -> str:
    """Load by number, not alias, so what is loaded is exactly the version that gets recorded."""
    return f"models:/{settings.model_name}/{version}"


def load_spark_model(settings: Settings, version: str):
    """Load a registered version as a Spark ``PipelineModel``, with its signature.

    The model folder is downloaded explicitly so that one download serves both the model and its
    MLmodel file, and so that a version on an MLflow server loads even when this process tracks
    to another store (``mlflow-artifacts:/`` URIs resolve only against an http tracking URI).
    """
    import mlflow.spark
    from mlflow.models import Model

    with tempfile.TemporaryDirectory(prefix="spark-mlops-model-") as tmp:
        if settings.registry_uri.startswith(("http://", "https://")):
            source = client(settings).get_model_version_download_uri(settings.model_name, str(version))
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=source, dst_path=tmp, tracking_uri=settings.registry_uri
            )
        else:
            local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri(settings, version), dst_path=tmp)
        signature = Model.load(local).signature
        return mlflow.spark.load_model(local, dfs_tmpdir=settings.dfs_tmpdir), signature


def set_tags(settings: Settings, version: str, tags: dict[str, object]) -> None:
    c = client(settings)
    for key, value in tags.items():
        c.set_model_version_tag(settings.model_name, str(version), key, _tag_value(value))


def _tag_value(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def register(settings: Settings, run_id: str, model_uri_in_run: str, tags: dict[str, str]) -> ModelVersion:
    """Register the model logged by ``run_id`` and return exactly the version this call created."""
    lineage = {
        "training_run_id": run_id,
        "training_tracking_uri": settings.tracking_uri,
        **settings.run_tags(),
        **tags,
    }
    if settings.separate_registry and settings.registry_uri.startswith(("http://", "https://")):
        return _register_by_copy(settings, model_uri_in_run, lineage)
    return mlflow.register_model(model_uri_in_run, settings.model_name, tags=lineage, await_registration_for=0)


def _register_by_copy(settings: Settings, model_uri_in_run: str, lineage: dict[str, str]) -> ModelVersion:
    """An MLflow server refuses a source in another store: copy the model into a run on the server.

    The copy run records the training run in its tags, so the version still points back to it.
    """
    server = MlflowClient(tracking_uri=settings.registry_uri, registry_uri=settings.registry_uri)
    with tempfile.TemporaryDirectory(prefix="spark-mlops-copy-") as tmp:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=model_uri_in_run, dst_path=tmp, tracking_uri=settings.tracking_uri
        )
        experiment = server.get_experiment_by_name(settings.experiment)
        experiment_id = experiment.experiment_id if experiment else server.create_experiment(settings.experiment)
        run = server.create_run(
            experiment_id,
            run_name=f"registry-copy-of-{lineage['training_run_id']}",
            tags={f"lineage.{k}": v for k, v in lineage.items()},
        )
        server.log_artifacts(run.info.run_id, local, MODEL_ARTIFACT_PATH)
        server.set_terminated(run.info.run_id)
    try:
        server.create_registered_model(settings.model_name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    return server.create_model_version(
        settings.model_name,
        source=f"{run.info.artifact_uri}/{MODEL_ARTIFACT_PATH}",
        run_id=run.info.run_id,
        tags={**lineage, "registry_copy_run_id": run.info.run_id},
    )


def set_alias(settings: Settings, alias: str, version: str) -> None:
    client(settings).set_registered_model_alias(settings.model_name, alias, str(version))


@dataclass(frozen=True)
class VersionRow:
    version: str
    aliases: list[str]
    tags: dict[str, str]
    run_id: str | None
    created: int


def versions(settings: Settings) -> list[VersionRow]:
    c = client(settings)
    try:
        model = c.get_registered_model(settings.model_name)
    except MlflowException as exc:
        if _is_missing(exc):
            return []
        raise
    # search_model_versions leaves aliases empty; the registered model carries them.
    by_version: dict[str, list[str]] = {}
    for alias, version in (model.aliases or {}).items():
        by_version.setdefault(str(version), []).append(alias)
    rows = [
        VersionRow(str(mv.version), sorted(by_version.get(str(mv.version), [])), dict(mv.tags or {}), mv.run_id,
                   mv.creation_timestamp)
        for mv in c.search_model_versions(f"name='{settings.model_name}'")
    ]
    return sorted(rows, key=lambda r: int(r.version))


def status_table(settings: Settings) -> str:
    rows = versions(settings)
    if not rows:
        return f"model {settings.model_name}: no versions in {settings.registry_uri}"
    header = ("version", "aliases", "validation", "metrics", "vs champion", "promoted", "training run")
    lines = [header]
    for r in rows:
        t = r.tags
        metrics = json.loads(t.get("validation_metrics", "{}"))
        lines.append((
            r.version,
            ",".join(f"@{a}" for a in r.aliases) or "-",
            t.get("validation_status", "-"),
            " ".join(f"{k}={v:.3f}" for k, v in sorted(metrics.items()) if k in ("areaUnderROC", "accuracy")) or "-",
            t.get("validation_champion_version", "-"),
            t.get("promoted_at", "-"),
            t.get("training_run_id", r.run_id or "-"),
        ))
    widths = [max(len(str(row[i])) for row in lines) for i in range(len(header))]
    out = [f"model {settings.model_name} ({settings.registry_uri})"]
    for i, row in enumerate(lines):
        out.append("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


__all__ = ["CHALLENGER_ALIAS", "CHAMPION_ALIAS", "register", "set_alias", "alias_version", "status_table"]
