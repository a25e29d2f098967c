"""The model registry: registering versions, aliases, tags, loading versions and the status view.

Aliases and tags, not stages: ``@challenger`` is the candidate, ``@champion`` serves (names in
:mod:`spark_mlops.registry_tags`). The registry is a different store from the tracking store
whenever it is shared (Unity Catalog, a local ``registry.db`` shared by the local workspaces, an
``mlflow server``): then a version's files live in storage the registry owns, never in the
training workspace's artifact store, because another workspace cannot read that
(:func:`register`). Every load first checks the version's files (:mod:`spark_mlops.trust`).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from spark_mlops import logs, remote, signing, text, tracking, trust
from spark_mlops import registry_tags as rt
from spark_mlops.config import Settings, redact, sqlite_path
from spark_mlops.errors import RegistryError

MODEL_ARTIFACT_PATH = "model"


def client(settings: Settings) -> MlflowClient:
    tracking.keep_sqlite_artifacts_in_state_folder(settings)  # before MLflow opens the tracking store
    remote.bound_requests()  # a connect timeout and one deadline per request (an unreachable server)
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)


def is_unity_catalog(settings: Settings) -> bool:
    return settings.registry_uri.startswith("databricks-uc")


def is_missing(exc: MlflowException) -> bool:
    """True only for "does not exist". Anything else (permissions, network, a server error) is a
    registry failure, never read as "absent": a gate that mistook an outage for "no champion" would
    skip the champion comparison and fail open."""
    if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
        return True
    # The sqlite/SQL store reports a missing alias as INVALID_PARAMETER_VALUE
    # (mlflow/store/model_registry/sqlalchemy_store.py, get_model_version_by_alias).
    return exc.error_code == "INVALID_PARAMETER_VALUE" and "alias" in str(exc) and "not found" in str(exc)


def failure(settings: Settings, what: str, exc: Exception) -> RegistryError:
    """A registry call failed for a reason other than "does not exist": exit 4, credentials redacted."""
    return RegistryError(redact(f"{what} in {settings.registry_uri} failed: {exc}"))


def alias_version(settings: Settings, alias: str) -> str | None:
    """The version behind ``@alias``; None only when the model or the alias does not exist."""
    try:
        # str(): stores disagree on whether a version number is an int or a string.
        return str(client(settings).get_model_version_by_alias(settings.model_name, alias).version)
    except MlflowException as exc:
        if is_missing(exc):
            return None
        raise failure(settings, f"looking up {settings.model_name}@{alias}", exc) from exc


def require_alias(settings: Settings, alias: str, hint: str) -> str:
    version = alias_version(settings, alias)
    if version is None:
        raise RegistryError(redact(f"model {settings.model_name} has no @{alias} in {settings.registry_uri}; "
                                   f"{hint}{other_models_hint(settings)}"))
    return version


def other_models_hint(settings: Settings) -> str:
    """``"; this registry holds prod.s.m (-t prod), ..."`` when the registry has models of the same
    short name in other catalogs and schemas: after the demo, a command without ``-t`` names the
    local default model, which the demo never made."""
    from spark_mlops.constants import REQUIRED_TARGETS

    short = settings.model_name.split(".")[-1]
    try:
        found = client(settings).search_registered_models(filter_string=f"name LIKE '%.{short}'", max_results=20)
    except MlflowException:
        return ""  # only a hint: the error being reported is the one that matters
    others = sorted(m.name for m in found if m.name != settings.model_name and m.name.endswith(f".{short}"))
    if not others:
        return ""
    described = [f"{n} (-t {n.split('.')[0]})" if n.split(".")[0] in REQUIRED_TARGETS else n for n in others]
    return f"; this registry holds {', '.join(described)}: pass -t TARGET or --model-name NAME"


def get_version(settings: Settings, version: str) -> ModelVersion:
    try:
        return client(settings).get_model_version(settings.model_name, str(version))
    except MlflowException as exc:
        if is_missing(exc):
            raise RegistryError(f"model {settings.model_name} has no version {version}") from exc
        raise failure(settings, f"reading {settings.model_name} v{version}", exc) from exc


READY = "READY"
REGISTRATION_TIMEOUT_S = 600.0


def await_ready(settings: Settings, version: str, *, timeout_s: float = REGISTRATION_TIMEOUT_S) -> ModelVersion:
    """Wait until a new version is READY. Unity Catalog creates versions as PENDING_REGISTRATION
    while their files upload; setting an alias on one before then can point at a model that
    never finishes registering (docs: MLflow model registry, ModelVersionStatus)."""
    deadline = time.monotonic() + timeout_s
    delay = 0.2
    while True:
        mv = get_version(settings, version)
        status = str(mv.status or READY)
        if status == READY:
            return mv
        if status == "FAILED_REGISTRATION":
            raise RegistryError(f"{settings.model_name} v{version} failed to register: "
                                f"{mv.status_message or 'no message'}")
        if time.monotonic() > deadline:
            raise RegistryError(f"{settings.model_name} v{version} is still {status} after {timeout_s:.0f}s")
        time.sleep(delay)
        delay = min(delay * 2, 5.0)


def model_uri(settings: Settings, version: str) -> str:
    """Load by number, not alias, so what is loaded is exactly the version that gets recorded."""
    return f"models:/{settings.model_name}/{version}"


# Loaded models of this process: (registry URI, tracking URI, where the version's files are)
# -> (the SparkContext that loaded it, model, signature). See load_spark_model.
_LOADED: OrderedDict[tuple[str, str, str], tuple[object, object, object]] = OrderedDict()
_LOADED_MAX = 8  # a job run loads two or three versions; the bound only stops a leak in long processes


def load_spark_model(settings: Settings, version: str):
    """Load a registered version as a Spark ``PipelineModel``, with its signature.

    Each version's files are loaded at most once per process and Spark context. A version is
    immutable once registered (a new model is a new version), so the loaded model is keyed by
    where its files are: the registry's download URI. A ``copy_model_version`` copy on a
    workspace or sqlite registry resolves to its source's files (its source is
    ``models:/<name>/<version>``) and so reuses the source's load; a Unity Catalog copy has
    storage of its own and is loaded once itself. The Spark context is part of the key: a model
    loaded by a stopped context is never returned. On Databricks each wheel task is its own
    process, so this only helps the local runner (all of a job run's tasks in one process) and
    tests. The model is shared: callers transform with it and never change its params.

    The model folder is downloaded explicitly so that one download serves both the model and its
    MLmodel file, and so that a version on an MLflow server loads even when this process tracks
    to another store (``mlflow-artifacts:/`` URIs resolve only against an http tracking URI).
    """
    from pyspark import SparkContext

    location = client(settings).get_model_version_download_uri(settings.model_name, str(version))
    key = (settings.registry_uri, settings.tracking_uri, location)
    context = SparkContext._active_spark_context  # None until a session starts; replaced on restart
    for stale in [k for k, (loaded_by, _, _) in _LOADED.items() if loaded_by is not context]:
        del _LOADED[stale]  # its JVM objects died with their context
    if key in _LOADED:
        _LOADED.move_to_end(key)
        _, model, signature = _LOADED[key]
        return model, signature
    model, signature = _download_and_load(settings, version, location)
    _LOADED[key] = (SparkContext._active_spark_context, model, signature)
    while len(_LOADED) > _LOADED_MAX:
        _LOADED.popitem(last=False)
    return model, signature


def _download(settings: Settings, version: str, location: str, dst: str) -> str:
    """Download a version's files into ``dst``; the local folder. Nothing here reads MLflow's
    process-wide registry URI: a task in a process of its own has set none."""
    if settings.registry_uri.startswith(("http://", "https://")):
        # mlflow-artifacts:/ URIs resolve only against an http tracking URI (the server's).
        return mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=dst, tracking_uri=settings.registry_uri)
    if is_unity_catalog(settings):
        # UC hands out short-lived credentials for the version's storage: go through models:/.
        from mlflow.store.artifact.models_artifact_repo import ModelsArtifactRepository

        repo = ModelsArtifactRepository(model_uri(settings, version), tracking_uri=settings.tracking_uri,
                                        registry_uri=settings.registry_uri)
        return repo.download_artifacts("", dst_path=dst)
    # A local registry: the download URI is the registry's own storage (ModelsArtifactRepository
    # would resolve models:/ against the process-wide registry URI, not this one).
    return mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=dst)


def checked_files(settings: Settings, version: str, dst: str, *, location: str | None = None) -> Path:
    """Download ``version``'s files into ``dst`` and check them (trust.check_model_folder): the
    folder, or :class:`UntrustedModel` (exit 9) before anything of it is imported."""
    mv = get_version(settings, version)
    Path(dst).mkdir(parents=True, exist_ok=True)
    try:
        location = location or client(settings).get_model_version_download_uri(settings.model_name, str(version))
        local = _download(settings, version, location, dst)
    except MlflowException as exc:
        raise failure(settings, f"downloading {model_uri(settings, version)}", exc) from exc
    trust.check_model_folder(local, (mv.tags or {}).get(rt.MODEL_DIGEST), model_uri(settings, version),
                             signing.trusted_keys(settings.state_dir))
    return Path(local)


def read_version_file(settings: Settings, version: str, name: str) -> dict:
    """A JSON file of ``version``'s own (checked) files, e.g. its monitoring baseline."""
    with tempfile.TemporaryDirectory(prefix="spark-mlops-files-") as tmp:
        path = checked_files(settings, version, tmp) / name
        if not path.is_file():
            raise RegistryError(f"{model_uri(settings, version)} has no {name} in its files")
        return json.loads(path.read_text(encoding="utf-8"))


def _download_and_load(settings: Settings, version: str, location: str):
    from mlflow.models import Model

    with tempfile.TemporaryDirectory(prefix="spark-mlops-model-") as tmp:
        local = str(checked_files(settings, version, tmp, location=location))
        signature = Model.load(local).signature
        return load_checked_pipeline(settings, Path(local), model_uri(settings, version)), signature


def load_checked_pipeline(settings: Settings, local: Path, what: str):
    """The Spark ``PipelineModel`` of a checked version folder, loaded from exactly the files checked.

    Not ``mlflow.spark.load_model``: on Databricks it copies the folder to ``dfs_tmpdir`` (a UC
    volume) and Spark reads that copy, which nothing checked (anyone who can write that storage
    could change it between the copy and the load), and pyspark's own ``PipelineModel.load``
    imports every stage's Python class by the name its metadata gives (``DefaultParamsReader.
    loadParamsInstance``). Here the copy is made, checked against the signed manifest
    (:func:`spark_mlops.trust.check_copy`) and read by Spark's JVM reader, whose stages become
    Python objects only by the JVM classes Spark loaded; the loaded stages are then compared with
    the checked files (:func:`spark_mlops.trust.check_loaded`) before anything is transformed.
    Locally Spark reads the checked folder itself."""
    from pyspark.ml import PipelineModel
    from pyspark.ml.util import JavaMLReader

    from spark_mlops.config import on_databricks

    path = local / trust.SPARK_DATA
    if on_databricks():
        if not settings.dfs_tmpdir:
            raise RegistryError(f"loading {what}: no --dfs-tmpdir (a UC volume path) to stage the model's files in")
        copy = Path(settings.dfs_tmpdir) / uuid.uuid4().hex
        shutil.copytree(path, copy)
        trust.check_copy(local, copy, what)
        path = copy
    model = JavaMLReader(PipelineModel).load(str(path))
    trust.check_loaded(model, local, what)
    return model


def set_tags(settings: Settings, version: str, tags: dict[str, object]) -> None:
    c = client(settings)
    for key, value in tags.items():
        try:
            c.set_model_version_tag(settings.model_name, str(version), key, _tag_value(value))
        except MlflowException as exc:
            raise failure(settings, f"tagging {settings.model_name} v{version} ({key})", exc) from exc


def delete_tags(settings: Settings, version: str, keys: tuple[str, ...]) -> None:
    c = client(settings)
    for key in keys:
        try:
            c.delete_model_version_tag(settings.model_name, str(version), key)
        except MlflowException as exc:
            if not is_missing(exc):
                raise failure(settings, f"clearing tag {key} of {settings.model_name} v{version}", exc) from exc


def _tag_value(value: object) -> str:
    # Tags outlive the run and are readable by everyone who can read the model: no credentials.
    return redact(value if isinstance(value, str) else json.dumps(value, sort_keys=True))


def register(settings: Settings, run_id: str, model_uri_in_run: str, tags: dict[str, str]) -> ModelVersion:
    """Register the model logged by ``run_id`` and return exactly the version this call created."""
    lineage = {key: _tag_value(value) for key, value in {
        rt.TRAINING_RUN_ID: run_id,
        rt.TRAINING_TRACKING_URI: settings.tracking_uri,
        **settings.run_tags(),
        **tags,
    }.items()}
    if settings.separate_registry and settings.registry_uri.startswith(("http://", "https://")):
        created = _register_by_copy(settings, model_uri_in_run, lineage)
    elif settings.separate_registry and settings.registry_uri.startswith("sqlite:///"):
        created = _register_into_storage(settings, run_id, model_uri_in_run, lineage)
    else:
        with logs.library_prints():
            created = mlflow.register_model(model_uri_in_run, settings.model_name, tags=lineage, await_registration_for=0)
    return await_ready(settings, str(created.version))


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
        tags={**lineage, rt.REGISTRY_COPY_RUN_ID: run.info.run_id},
    )


def storage_root(settings: Settings) -> Path:
    """The local registry's own storage for version files: ``registry-storage/`` beside its database
    (Unity Catalog keeps version files in the metastore's storage, not in a workspace's)."""
    database = sqlite_path(settings.registry_uri)
    if database is None:
        raise RegistryError(f"{settings.registry_uri}: only a sqlite registry keeps version files in local storage")
    return database.parent / "registry-storage"


def _register_into_storage(settings: Settings, run_id: str, model_uri_in_run: str,
                           lineage: dict[str, str]) -> ModelVersion:
    """A shared local registry: copy the model folder into the registry's own storage and register
    that copy, as Unity Catalog does on registration, so that a workspace that cannot read the
    training workspace's artifacts (prod) can still load the version and its copies."""
    folder = storage_root(settings) / _safe_folder_name(settings.model_name) / uuid.uuid4().hex
    staging = folder.with_name(folder.name + ".partial")
    staging.parent.mkdir(parents=True, exist_ok=True)
    local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri_in_run, dst_path=str(staging),
                                                tracking_uri=settings.tracking_uri)
    # The copy is what train wrote and signed.
    trust.check_model_folder(local, lineage.get(rt.MODEL_DIGEST), model_uri_in_run,
                             signing.trusted_keys(settings.state_dir))
    Path(local).rename(folder)
    shutil.rmtree(staging, ignore_errors=True)
    c = client(settings)
    try:
        c.create_registered_model(settings.model_name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    return c.create_model_version(settings.model_name, source=folder.as_uri(), run_id=run_id, tags=lineage)


def _safe_folder_name(model_name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in model_name)


def set_alias(settings: Settings, alias: str, version: str) -> None:
    try:
        client(settings).set_registered_model_alias(settings.model_name, alias, str(version))
    except MlflowException as exc:
        raise failure(settings, f"setting {settings.model_name}@{alias} -> v{version}", exc) from exc


@dataclass(frozen=True)
class VersionRow:
    version: str
    aliases: list[str]
    tags: dict[str, str]
    run_id: str | None
    created: int
    status: str


def _version_numbers(c: MlflowClient, name: str) -> list[str]:
    """Every version of ``name``, all pages. On Unity Catalog the search results carry no tags
    (``ModelVersionSearch.tags`` raises, mlflow/entities/model_registry/model_version_search.py),
    so only the numbers are taken from them."""
    numbers: list[str] = []
    token = None
    while True:
        page = c.search_model_versions(f"name='{name}'", page_token=token)
        numbers.extend(str(mv.version) for mv in page)
        token = getattr(page, "token", None)
        if not token:
            return numbers


def versions(settings: Settings) -> list[VersionRow]:
    c = client(settings)
    try:
        model = c.get_registered_model(settings.model_name)
        # The registered model carries the aliases (search results leave them empty).
        by_version: dict[str, list[str]] = {}
        for alias, version in (model.aliases or {}).items():
            by_version.setdefault(str(version), []).append(alias)
        rows = []
        for number in _version_numbers(c, settings.model_name):
            mv = c.get_model_version(settings.model_name, number)  # with its tags, on every store
            rows.append(VersionRow(number, sorted(by_version.get(number, [])), dict(mv.tags or {}), mv.run_id,
                                   mv.creation_timestamp, str(mv.status or READY)))
    except MlflowException as exc:
        if is_missing(exc):
            return []
        raise failure(settings, f"listing versions of {settings.model_name}", exc) from exc
    return sorted(rows, key=lambda r: int(r.version))


def _pick(tags: dict[str, str], keys: tuple[str, ...]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key in keys:
        if key in tags:
            value = tags[key]
            try:
                out[key] = json.loads(value) if value[:1] in "{[" else value
            except ValueError:
                out[key] = value
    return out


def status_view(settings: Settings) -> dict:
    """The registry as data: the model, its aliases, every version with verdict, promotion and lineage."""
    from spark_mlops.approval import deployment_state

    rows = versions(settings)
    aliases = {a: r.version for r in rows for a in r.aliases}
    return {
        "model_name": settings.model_name,
        "registry": redact(settings.registry_uri),
        "aliases": dict(sorted(aliases.items())),
        "versions": [
            {
                "version": r.version,
                "aliases": r.aliases,
                "status": r.status,
                "created_ms": r.created,
                "run_id": r.run_id,
                "verdict": _pick(r.tags, (*rt.VERDICT, *rt.RELEASE)),
                "promotion": _pick(r.tags, rt.PROMOTION),
                "lineage": _pick(r.tags, rt.LINEAGE),
                "monitoring": _pick(r.tags, rt.MONITORING),
                "deployment": {"state": deployment_state(r.tags, r.aliases), **_pick(r.tags, rt.APPROVAL)},
            }
            for r in rows
        ],
    }


def status_json(settings: Settings) -> str:
    return json.dumps(status_view(settings), indent=2, sort_keys=False)


def status_table(settings: Settings) -> str:
    from spark_mlops.approval import deployment_state

    rows = versions(settings)
    where = redact(settings.registry_uri)
    if not rows:
        return f"model {settings.model_name}: no versions in {where}{other_models_hint(settings)}"
    table_rows = []
    for r in rows:
        t = r.tags
        try:
            metrics = json.loads(t.get(rt.VALIDATION_METRICS, "{}"))
        except ValueError:
            metrics = {}
        monitored = (f"{t[rt.MONITORING_LAST_BATCH]}: {t.get(rt.MONITORING_LAST_VERDICT, '?')}"
                     if rt.MONITORING_LAST_BATCH in t else rt.UNSET)
        table_rows.append((
            r.version,
            ",".join(f"@{a}" for a in r.aliases) or rt.UNSET,
            t.get(rt.VALIDATION_STATUS, rt.UNSET),
            " ".join(f"{k}={v:.3f}" for k, v in sorted(metrics.items())
                     if k in ("areaUnderROC", "accuracy") and isinstance(v, int | float)) or rt.UNSET,
            t.get(rt.VALIDATION_CHAMPION_VERSION, rt.UNSET),
            deployment_state(t, r.aliases),
            t.get(rt.PROMOTED_AT, rt.UNSET),
            t.get(rt.DEPLOYED_FROM, rt.UNSET),
            monitored,
            t.get(rt.TRAINING_RUN_ID, r.run_id or rt.UNSET),
        ))
    header = ("version", "aliases", "validation", "metrics", "vs champion", "deployment", "promoted", "deployed from",
              "last monitored", "training run")
    return "\n".join([f"model {settings.model_name} ({where})", *text.table(header, table_rows)])


__all__ = ["register", "set_alias", "alias_version", "status_table", "checked_files", "load_spark_model"]
