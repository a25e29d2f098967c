"""Typed configuration, built from CLI flags and environment variables.

Every subcommand takes a :class:`Settings` (where things live: state folder, tracking store,
registry, catalog/schema, model name) plus its own small config. Defaults give the embedded
local mode, which models the real topology under a git-ignored ``.mlops/`` folder: each
workspace has a tracking store of its own (``workspaces/<name>/tracking.db`` with its runs'
artifacts beside it), and every workspace shares one registry, as workspaces share one Unity
Catalog metastore (``registry.db``, with version files in registry-owned storage beside it).
"""

from __future__ import annotations

import os
import posixpath
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

from spark_mlops import defaults as D
from spark_mlops.constants import CHALLENGER_ALIAS, CHAMPION_ALIAS  # noqa: F401 (re-exported)
from spark_mlops.errors import ConfigError

DEFAULT_STATE_DIR = ".mlops"
DEFAULT_MODEL_NAME = "diabetes_classifier"
DEFAULT_EXPERIMENT = "spark-mlops"
DEFAULT_SCHEMA = "mlops"

# Environment variables read when the matching flag is not given.
ENV = {
    "state_dir": "SPARK_MLOPS_STATE_DIR",
    "tracking_uri": "MLFLOW_TRACKING_URI",
    "registry_uri": "MLFLOW_REGISTRY_URI",
    "experiment": "SPARK_MLOPS_EXPERIMENT",
    "model_name": "SPARK_MLOPS_MODEL_NAME",
    "catalog": "SPARK_MLOPS_CATALOG",
    "schema": "SPARK_MLOPS_SCHEMA",
    "contract": "SPARK_MLOPS_CONTRACT",
    "target": "SPARK_MLOPS_TARGET",
    "job_run_id": "SPARK_MLOPS_JOB_RUN_ID",
    "git_commit": "SPARK_MLOPS_GIT_COMMIT",
    "dfs_tmpdir": "MLFLOW_DFS_TMP",
}


# The workspace each bundle target deploys to (databricks.yml: the targets' workspace.profile;
# test runs in the staging workspace). Locally each workspace is a tracking store of its own.
LOCAL_WORKSPACES = {"dev": "dev", "test": "staging", "staging": "staging", "prod": "prod"}
DEFAULT_LOCAL_WORKSPACE = "dev"  # no target: a developer's own workspace


def local_workspace(target: str | None) -> str:
    """The local workspace of a bundle target (an unknown target is a workspace of its own)."""
    if not target:
        return DEFAULT_LOCAL_WORKSPACE
    return LOCAL_WORKSPACES.get(target, check_identifier(target, "target"))


def local_tracking_uri(state: Path, target: str | None) -> str:
    return _sqlite_uri(state / "workspaces" / local_workspace(target) / "tracking.db")


def local_registry_uri(state: Path) -> str:
    return _sqlite_uri(state / "registry.db")


def on_databricks() -> bool:
    return "DATABRICKS_RUNTIME_VERSION" in os.environ


# A URI in a text: scheme:// (RFC 3986 scheme characters). Its user-info is everything from the
# :// to the LAST @ before the host, found by reading the URI, not by guessing which characters a
# password holds: SQLAlchemy takes any character but @ in a password (/, quotes, <, >, spaces),
# urllib3 any but / ? # (so an @ too: alice:p@ss@host). Redaction covers both readers.
_SCHEME = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*)://")
# Where user-info cannot be: in Azure storage URIs the part before @ is the container
# (abfss://<container>@<account>.dfs.core.windows.net/...).
_NO_USERINFO = frozenset({"abfs", "abfss", "wasb", "wasbs"})
# What may stand right before a URI that starts a new one (a space, a quote, "input=", "(").
# Anything else (alice:p://x@host) is a password that happens to hold "://".
_BEFORE_URI = frozenset(" \t'\"<>()[]{},;=|")


def _hide_userinfo(text: str) -> str:
    """Each ``scheme://user:password@host`` in ``text`` as ``scheme://***@host``.

    A URI reaches to the end of its line or to the next URI, and its user-info to the last @
    within that reach. A password may hold any character but a line break, so an @ later on the
    same line (``... mail ops@example.com``) is taken as the end of the user-info: over-redacting
    is the safe side. ``scheme:///path`` (sqlite:////tmp/x, file:///a@b) has no user-info."""
    found = list(_SCHEME.finditer(text))
    next_uris = [m.start() for m in found if m.start() == 0 or text[m.start() - 1] in _BEFORE_URI]
    out, done = [], 0
    for m in found:
        authority = m.end()
        if m.start() < done or m.group(1).lower() in _NO_USERINFO or text.startswith("/", authority):
            continue
        next_uri = next((k for k in next_uris if k > authority), len(text))
        line_end = [k for k in (text.find("\n", authority), text.find("\r", authority)) if k >= 0]
        reach = min([next_uri, *line_end])
        at = text.rfind("@", authority, reach)
        if at < 0:
            continue
        out += [text[done:authority], "***"]
        done = at
    return "".join([*out, text[done:]])


# Query, fragment or matrix parameters whose name says it is a secret: api_key=, client_secret=,
# private_token=, X-Amz-Signature=, X-Amz-Credential=, sig= (Azure SAS), #access_token=, ...
_SECRET_PARAM = re.compile(
    r"(?P<key>[?&#;][^=&#;\s'\"<>]*?(?:token|key|secret|password|passwd|pwd|signature|credential|sig)"
    r"[^=&#;\s'\"<>]*=)[^&#;\s'\"<>]+",
    re.I,
)
# An HTTP Authorization value quoted in an error.
_AUTH_HEADER = re.compile(r"(?P<key>\b(?:Bearer|Basic)\s+)[A-Za-z0-9._~+/=-]{8,}")


def redact(text: object) -> str:
    """``text`` with credentials replaced by ``***``: safe to print, log, or store as a param or tag.

    The one redaction of the project: the CLI's error lines and tracebacks, the local runner's
    output, MLflow params and tags (:func:`spark_mlops.tracking.safe`) and registry tags go
    through it."""
    text = _hide_userinfo(str(text))
    text = _SECRET_PARAM.sub(r"\g<key>***", text)
    return _AUTH_HEADER.sub(r"\g<key>***", text)


@dataclass(frozen=True)
class Settings:
    """Where the lifecycle reads and writes. Shared by every subcommand."""

    state_dir: Path
    tracking_uri: str
    registry_uri: str
    experiment: str
    model_name: str
    catalog: str | None
    schema: str
    contract: str | None = None  # path to an ODCS contract file; None = the packaged example contract
    target: str | None = None  # bundle target, recorded as a tag
    job_run_id: str | None = None
    git_commit: str | None = None
    dfs_tmpdir: str | None = None  # UC volume path for mlflow.spark on serverless/shared clusters

    @property
    def separate_registry(self) -> bool:
        return self.registry_uri != self.tracking_uri

    def table_name(self, name: str) -> str:
        """Qualify a table name: ``t`` -> ``catalog.schema.t``; names with dots pass through.

        Every part is checked against Unity Catalog's naming rules, so a name can never be a
        path (no ``/``, no ``..``) by the time it reaches storage.
        """
        check_table_name(name)
        if "." in name:
            return name
        parts = [p for p in (self.catalog, self.schema) if p]
        return ".".join([*parts, name])

    def run_tags(self) -> dict[str, str]:
        """Provenance tags for runs and model versions, where known."""
        from spark_mlops import registry_tags as rt

        tags = {
            rt.GIT_COMMIT: self.git_commit,
            rt.BUNDLE_TARGET: self.target,
            rt.JOB_RUN_ID: self.job_run_id,
        }
        return {k: v for k, v in tags.items() if v}


# Unity Catalog object names: at most 255 characters, none of: period, space, forward slash,
# ASCII control characters (00-1F), DELETE (7F)
# (docs: https://docs.databricks.com/sql/language-manual/sql-ref-names.html).
# Also refused here: backslash (a path separator on Windows), backtick and quotes (they would
# have to be escaped in SQL), and an empty part.
_FORBIDDEN_IN_NAME = re.compile(r"[.\s/\\`'\"\x00-\x1f\x7f]")


def volume_local_path(state_dir: Path, path: str) -> str:
    """``/Volumes/c/s/v/x`` -> ``<state>/volumes/c/s/v/x``; a path that ``..`` takes out of
    /Volumes/ is refused, so a volume path can never name a folder outside the state folder."""
    relative = posixpath.normpath(path[len("/Volumes/"):])
    if relative in (".", "..") or relative.startswith(("../", "/")):
        raise ConfigError(f"volume path {path!r} leaves /Volumes/ (it contains '..')")
    return str(state_dir / "volumes" / relative)


def check_identifier(part: str, what: str) -> str:
    """One part of a catalog.schema.table name, held to Unity Catalog's rules."""
    if not part or len(part) > 255 or _FORBIDDEN_IN_NAME.search(part):
        raise ConfigError(
            f"{what} {part!r} is not a valid name: use 1-255 characters with no period, space, "
            "slash, backslash, quote, backtick or control character (Unity Catalog naming rules)"
        )
    return part


def check_table_name(name: str, what: str = "table name") -> str:
    """``table``, ``schema.table`` or ``catalog.schema.table``, each part a valid identifier."""
    parts = name.split(".")
    for part in parts:
        if not part or _FORBIDDEN_IN_NAME.search(part) or len(part) > 255:
            raise ConfigError(
                f"{what} {name!r} is not a valid name: each dot-separated part needs 1-255 characters "
                "with no space, slash, backslash, quote, backtick or control character "
                "(Unity Catalog naming rules)"
            )
    if len(parts) > 3:
        raise ConfigError(f"{what} {name!r} is not a valid name: {len(parts)} dot-separated parts, "
                          "expected at most 3 (catalog.schema.table)")
    return name


def _detect_git_commit() -> str | None:
    for var in ("SPARK_MLOPS_GIT_COMMIT", "BUILD_SOURCEVERSION", "GITHUB_SHA"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _sqlite_uri(path: Path) -> str:
    return f"sqlite:///{path.resolve()}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///…`` URI (what follows the third slash, as SQLAlchemy
    reads it), else None."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(unquote(uri[len("sqlite:///"):].split("?", 1)[0])).resolve()


def build_settings(
    *,
    state_dir: str | None = None,
    tracking_uri: str | None = None,
    registry_uri: str | None = None,
    experiment: str | None = None,
    model_name: str | None = None,
    catalog: str | None = None,
    schema: str | None = None,
    contract: str | None = None,
    target: str | None = None,
    job_run_id: str | None = None,
    git_commit: str | None = None,
    dfs_tmpdir: str | None = None,
) -> Settings:
    """Flags win over environment variables, which win over the local defaults."""

    def pick(name: str, flag: str | None) -> str | None:
        if flag not in (None, ""):
            return flag
        return os.environ.get(ENV[name]) or None

    state = Path(pick("state_dir", state_dir) or DEFAULT_STATE_DIR).resolve()
    target_name = pick("target", target)
    tracking = pick("tracking_uri", tracking_uri)
    registry = pick("registry_uri", registry_uri)
    if tracking is None:
        tracking = "databricks" if on_databricks() else local_tracking_uri(state, target_name)
    if registry is None:
        if on_databricks():
            registry = "databricks-uc"
        elif tracking == local_tracking_uri(state, target_name):
            registry = local_registry_uri(state)  # shared by every local workspace
        else:
            registry = tracking
    _check_uri("tracking URI", tracking)
    _check_uri("registry URI", registry)

    dfs_tmp = pick("dfs_tmpdir", dfs_tmpdir)
    if dfs_tmp and dfs_tmp.startswith("/Volumes/") and not on_databricks():
        # The bundle passes a UC volume as --dfs-tmpdir; locally it lives in the state folder,
        # like every other /Volumes path (tables.local_path).
        dfs_tmp = volume_local_path(state, dfs_tmp)

    contract_path = pick("contract", contract)
    if contract_path and contract_path.startswith("/Volumes/") and not on_databricks():
        contract_path = volume_local_path(state, contract_path)  # as every other /Volumes path locally
    name = pick("model_name", model_name) or _contract_model_name(contract_path)
    if registry.startswith("databricks-uc") and name.count(".") != 2:
        raise ConfigError(
            f"model name {name!r}: a Unity Catalog registry ({registry}) needs a three-part name "
            "catalog.schema.model"
        )
    catalog_name = pick("catalog", catalog)
    if catalog_name is not None:
        check_identifier(catalog_name, "catalog")
    schema_name = check_identifier(pick("schema", schema) or DEFAULT_SCHEMA, "schema")
    return Settings(
        state_dir=state,
        tracking_uri=tracking,
        registry_uri=registry,
        experiment=pick("experiment", experiment) or DEFAULT_EXPERIMENT,
        model_name=name,
        catalog=catalog_name,
        schema=schema_name,
        contract=contract_path,
        target=target_name,
        job_run_id=pick("job_run_id", job_run_id),
        git_commit=pick("git_commit", git_commit) or _detect_git_commit(),
        dfs_tmpdir=dfs_tmp,
    )


def _contract_model_name(path: str | None) -> str:
    """The model a contract trains when no name is given: its modelName (the packaged contract's is
    DEFAULT_MODEL_NAME, so the default needs no file read)."""
    if path is None:
        return DEFAULT_MODEL_NAME
    from spark_mlops.contract_file import load_contract

    return load_contract(path).model_name


_URI_PREFIXES = ("sqlite:", "http://", "https://", "databricks", "file:", "postgresql", "mysql")


def _check_uri(what: str, uri: str) -> None:
    if not uri.startswith(_URI_PREFIXES) and not Path(uri).is_absolute():
        raise ConfigError(
            f"{what} {uri!r} is not supported: expected sqlite:///…, http(s)://…, databricks, "
            "databricks-uc or databricks://<scope>:<prefix>"
        )


def parse_key_values(text: str | None, what: str) -> dict[str, str]:
    """``"a=1,b=2"`` -> ``{"a": "1", "b": "2"}``; the bundle passes maps as one string."""
    if not text:
        return {}
    pairs: dict[str, str] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{what}: {item!r} is not key=value (expected e.g. 'numTrees=50,maxDepth=5')")
        pairs[key.strip()] = value.strip()
    return pairs


def parse_number(value: str, what: str) -> float | int:
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError as exc:
        raise ConfigError(f"{what}: {value!r} is not a number") from exc


_VERSION_NUMBER = re.compile(r"[0-9]+")


def parse_version(value: str | None, what: str = "--version") -> str | None:
    """A model version a person typed (``--version``, a job parameter): its number in the registry's
    own spelling (``"01"`` -> ``"1"``), or None when empty. Registries number versions 1, 2, ...;
    anything else is refused here, before a lock is taken or an alias read, so that no later step
    compares ``"01"`` with ``"1"`` as text."""
    text = "" if value is None else str(value).strip()
    if not text:
        return None
    if not _VERSION_NUMBER.fullmatch(text) or int(text) < 1:
        raise ConfigError(f"{what} {value!r}: a model version is a positive whole number (1, 2, ...)")
    return str(int(text))



def same_version(a: object, b: object) -> bool:
    """Two version numbers compared as numbers (stores disagree on int or string, a tag or param may
    hold "01"); anything that is not a number only equals itself."""
    def number(v: object) -> object:
        text = str(v).strip() if v is not None else None
        return int(text) if text and _VERSION_NUMBER.fullmatch(text) else text
    return number(a) == number(b)

def gate_thresholds(minimums: str | None, stricter: str | None) -> dict[str, float]:
    """The thresholds a candidate must meet: the fixed minimums, raised (never lowered) per run.

    ``minimums`` come from a bundle variable (fixed per target); ``stricter`` from a job
    parameter that anyone allowed to "run now with different parameters" can change, so it may
    only tighten the gate. An empty set of minimums is a configuration error, not "no gate".
    """
    floor = {k: float(parse_number(v, f"--min-thresholds {k}")) for k, v in parse_key_values(minimums, "--min-thresholds").items()}
    if not floor:
        raise ConfigError("--min-thresholds is empty: the release gate needs at least one minimum "
                          "(e.g. 'areaUnderROC=0.75'); an empty gate would pass every model")
    wanted = {k: float(parse_number(v, f"--thresholds {k}")) for k, v in parse_key_values(stricter, "--thresholds").items()}
    lower = {k: (v, floor[k]) for k, v in wanted.items() if k in floor and v < floor[k]}
    if lower:
        detail = ", ".join(f"{k}={v} < minimum {m}" for k, (v, m) in lower.items())
        raise ConfigError(f"--thresholds may only raise the fixed minimums: {detail}")
    return {**floor, **wanted}


def gate_tolerance(maximum: float, wanted: str | float | None) -> float:
    """How much worse than the champion a candidate may be: a run may only lower the maximum."""
    if maximum < 0:
        raise ConfigError(f"--max-tolerance must be >= 0, found {maximum}")
    if wanted in (None, ""):
        return float(maximum)
    value = float(parse_number(str(wanted), "--tolerance"))
    if value < 0 or value > maximum:
        raise ConfigError(f"--tolerance {value}: must be between 0 and the fixed maximum {maximum}")
    return value


@dataclass(frozen=True)
class PrepareConfig:
    input: str
    clean_table: str = D.CLEAN_TABLE
    quarantine_table: str = D.QUARANTINE_TABLE
    holdout_fraction: float = D.HOLDOUT_FRACTION
    split_seed: int = D.SPLIT_SEED
    min_rows: int = D.MIN_CLEAN_ROWS


@dataclass(frozen=True)
class TrainConfig:
    clean_table: str = D.CLEAN_TABLE
    classifier: str = D.CLASSIFIER
    params: dict[str, float | int | str] = field(default_factory=dict)
    cv_folds: int = 0
    grid: dict[str, list[float | int]] = field(default_factory=dict)
    seed: int = D.TRAINING_SEED


@dataclass(frozen=True)
class ValidateConfig:
    clean_table: str = D.CLEAN_TABLE
    thresholds: dict[str, float] = field(default_factory=lambda: dict(D.MIN_THRESHOLDS))
    primary_metric: str = D.PRIMARY_METRIC
    tolerance: float = D.MAX_TOLERANCE
    report_only: bool = False
    version: str | None = None  # None = the version behind @challenger


@dataclass(frozen=True)
class PromoteConfig:
    version: str | None = None  # None = the version behind @challenger
    reason: str = ""
    stages: bool = False  # also mirror the legacy workspace-registry stages
    # The verdict's recorded metrics must meet these again at promotion time.
    min_thresholds: dict[str, float] = field(default_factory=lambda: dict(D.MIN_THRESHOLDS))


@dataclass(frozen=True)
class ScoreConfig:
    input: str
    output_table: str = D.PREDICTIONS_TABLE
    rejected_table: str = D.SCORING_REJECTED_TABLE
    batch_id: str | None = None
