"""The real Databricks CLI as the reference resolver of this bundle.

``databricks bundle validate -o json -t T`` prints a target as the CLI deploys it: targets merged,
variables resolved, development mode and presets applied, ``run_as`` and permissions set, paths
rewritten. References to other resources (``${resources.<type>.<key>.<field>}``) are left for
deploy time; :func:`resolve_resource_refs` fills those that name a field of the configuration
(ids of deployed resources stay as written).

* :func:`resolve_bundle` is what ``spark-mlops run`` loads: the CLI's configuration when a
  ``databricks`` CLI is on PATH, the offline loader (:mod:`.loader`) otherwise. Choose with
  ``SPARK_MLOPS_BUNDLE_RESOLVER``: ``auto`` (default), ``cli`` (fail without a working CLI) or
  ``offline``.
* :func:`run_view` is what a job run and a deployment depend on, per resource; :func:`differences`
  compares the offline loader with the CLI for one target (CI runs it for every target against a
  fake workspace: scripts/ci/databricks-cli-checks.sh, tests/bundle/test_databricks_cli.py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from spark_mlops.errors import ConfigError
from spark_mlops_dev.bundle import loader
from spark_mlops_dev.bundle.loader import Bundle

RESOLVER_ENV = "SPARK_MLOPS_BUNDLE_RESOLVER"
CLI_ENV = "SPARK_MLOPS_DATABRICKS_CLI"  # a databricks binary to use instead of the one on PATH
RESOLVERS = ("auto", "cli", "offline")
VALIDATE_TIMEOUT_S = 120

_RESOURCE_REF = re.compile(r"\$\{resources\.([\w-]+)\.([\w-]+)\.([\w.\[\]-]+)\}")

# What a job run and a deployment depend on (compared field by field; anything else the CLI adds,
# such as deployment metadata, edit_mode or format, is the CLI's own business).
JOB_FIELDS = ("name", "description", "parameters", "schedule", "trigger", "continuous", "run_as", "permissions",
              "max_concurrent_runs", "queue", "job_clusters", "environments", "tags", "email_notifications",
              "webhook_notifications", "notification_settings", "timeout_seconds", "health")
UC_NAME_FIELDS = {
    "schemas": ("catalog_name", "name"),
    "volumes": ("catalog_name", "schema_name", "name"),
    "registered_models": ("catalog_name", "schema_name", "name"),
}


def find_cli() -> str | None:
    """``$SPARK_MLOPS_DATABRICKS_CLI``, else ``databricks`` on PATH."""
    named = os.environ.get(CLI_ENV)
    if named:
        return named if Path(named).is_file() else None
    return shutil.which("databricks")


def validate_json(root: str | os.PathLike, target: str, variables: Mapping[str, str] | None = None, *,
                  cli: str | None = None, env: Mapping[str, str] | None = None) -> dict:
    """``databricks bundle validate -o json -t target`` (``--var`` per variable), parsed."""
    cli = cli or find_cli()
    if not cli:
        raise ConfigError("the Databricks CLI is not on PATH (databricks)")
    cmd = [cli, "bundle", "validate", "-o", "json", "-t", target,
           *(f"--var={k}={v}" for k, v in (variables or {}).items())]
    try:
        proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=VALIDATE_TIMEOUT_S,
                              env=dict(env) if env is not None else None, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"databricks bundle validate -t {target}: {exc}") from exc
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        first = next((line for line in lines if line.startswith("Error:")), lines[-1] if lines else "no output")
        raise ConfigError(f"databricks bundle validate -t {target} exited {proc.returncode}: {first}")
    try:
        return json.loads(proc.stdout)
    except ValueError as exc:
        raise ConfigError(f"databricks bundle validate -o json -t {target}: not JSON: {exc}") from exc


def resolve_resource_refs(config: dict) -> dict:
    """``config`` with every ``${resources.<type>.<key>.<field>}`` that names a string field of
    ``config`` replaced by it (recursively); the rest (ids, URLs) stays as written."""
    resources = config.get("resources") or {}

    def field(m: re.Match) -> str:
        node: Any = (resources.get(m.group(1)) or {}).get(m.group(2))
        for part in m.group(3).split("."):
            if not isinstance(node, dict) or part not in node:
                return m.group(0)
            node = node[part]
        return node if isinstance(node, str) else m.group(0)

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        if isinstance(node, str):
            for _ in range(8):  # a field may itself hold a reference
                new = _RESOURCE_REF.sub(field, node)
                if new == node:
                    break
                node = new
        return node

    return walk(config)


def bundle_from_cli(root: str | os.PathLike, target: str, config: dict) -> Bundle:
    """A :class:`loader.Bundle` over the CLI's configuration of ``target``."""
    root = Path(root).resolve()
    _, origins = loader.load_raw(root)
    config = resolve_resource_refs(config)
    values = {name: spec.get("value") for name, spec in (config.get("variables") or {}).items()
              if isinstance(spec, dict)}
    return Bundle(root=root, target=target, config=config, variables=values, origins=origins)


def resolve_bundle(root: str | os.PathLike, target: str | None, variables: Mapping[str, str] | None = None) -> Bundle:
    """The bundle ``spark-mlops run`` runs: the CLI's resolution where the CLI is on PATH (see the
    module docstring), else the offline loader with the local identity."""
    choice = (os.environ.get(RESOLVER_ENV) or "auto").strip().lower()
    if choice not in RESOLVERS:
        raise ConfigError(f"{RESOLVER_ENV}={choice!r}: expected one of {', '.join(RESOLVERS)}")
    cli = find_cli() if choice != "offline" else None
    if cli is None:
        if choice == "cli":
            raise ConfigError(f"{RESOLVER_ENV}=cli but the Databricks CLI is not on PATH (databricks)")
        return loader.load_bundle(root, target, dict(variables or {}), local=True)
    if target is None:
        raw, _ = loader.load_raw(Path(root).resolve())
        target = loader.default_target(raw)
    try:
        config = validate_json(root, target, variables, cli=cli)
    except ConfigError as exc:
        if choice == "cli":
            raise
        print(f"spark-mlops: {exc}; resolving the bundle offline instead "
              f"({RESOLVER_ENV}=offline skips the CLI)", file=sys.stderr)
        return loader.load_bundle(root, target, dict(variables or {}), local=True)
    return bundle_from_cli(root, target, config)


# ---------------------------------------------------------------- comparing with the loader


def _sorted_acl(entries: Any) -> Any:
    if not isinstance(entries, list):
        return entries
    return sorted(entries, key=lambda e: json.dumps(e, sort_keys=True))


def _task(task: dict) -> dict:
    out = dict(task)
    if isinstance(out.get("depends_on"), list):
        out["depends_on"] = sorted(out["depends_on"], key=lambda d: json.dumps(d, sort_keys=True))
    return out


def run_view(config: dict) -> dict:
    """Per resource, what a run and a deployment depend on: jobs (name with its prefix, tasks with
    their dependencies, entry points and parameters, libraries, clusters, schedules, run_as,
    permissions), experiments, and the full names and grants of the UC objects."""
    res = config.get("resources") or {}
    view: dict[str, Any] = {}
    for key, job in (res.get("jobs") or {}).items():
        entry = {f: job.get(f) for f in JOB_FIELDS if job.get(f) is not None}
        if "permissions" in entry:
            entry["permissions"] = _sorted_acl(entry["permissions"])
        entry["tasks"] = {t.get("task_key"): _task(t) for t in job.get("tasks") or []}
        view[f"jobs.{key}"] = entry
    for key, exp in (res.get("experiments") or {}).items():
        view[f"experiments.{key}"] = {"name": exp.get("name"), "permissions": _sorted_acl(exp.get("permissions"))}
    for kind, fields in UC_NAME_FIELDS.items():
        for key, obj in (res.get(kind) or {}).items():
            view[f"{kind}.{key}"] = {
                "full_name": ".".join(str(obj.get(f)) for f in fields),
                "grants": _sorted_acl(obj.get("grants")),
                **({"volume_type": obj.get("volume_type")} if kind == "volumes" else {}),
            }
    return view


def _diff(ours: Any, cli: Any, path: str, out: list[str]) -> None:
    if isinstance(ours, dict) and isinstance(cli, dict):
        for key in sorted(set(ours) | set(cli), key=str):
            if key not in cli:
                out.append(f"{path}.{key}: ours {json.dumps(ours[key], sort_keys=True)}, the CLI has none")
            elif key not in ours:
                out.append(f"{path}.{key}: the CLI has {json.dumps(cli[key], sort_keys=True)}, ours none")
            else:
                _diff(ours[key], cli[key], f"{path}.{key}", out)
    elif isinstance(ours, list) and isinstance(cli, list) and len(ours) == len(cli):
        for i, (a, b) in enumerate(zip(ours, cli, strict=True)):
            _diff(a, b, f"{path}[{i}]", out)
    elif ours != cli:
        out.append(f"{path}: ours {json.dumps(ours, sort_keys=True)}, the CLI {json.dumps(cli, sort_keys=True)}")


def differences(root: str | os.PathLike, target: str, cli_config: dict,
                variables: Mapping[str, str] | None = None) -> list[str]:
    """Every difference between the offline loader's view of ``target`` (deployed by the identity the
    CLI reports) and the CLI's ``validate -o json``, one line each: ``target: path: ours X, the CLI Y``."""
    user = (cli_config.get("workspace") or {}).get("current_user") or {}
    ours = loader.load_bundle(root, target, dict(variables or {}),
                              user=loader.current_user(user.get("userName", ""), user.get("displayName", "")))
    out: list[str] = []
    _diff(run_view(ours.config), run_view(resolve_resource_refs(cli_config)), target, out)
    return out
