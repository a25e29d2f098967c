"""Load a Databricks Asset Bundle offline: databricks.yml + includes, one target, resolved.

What this does, following the Databricks CLI's rules:

* ``include`` globs are expanded relative to the bundle root (sorted); each included file is
  merged into the root configuration. The same resource key defined in two files is an error.
* A target's overrides are merged onto the top level: maps merge deeply, sequences are
  concatenated, scalars are replaced; ``run_as`` is replaced as a whole. Then job ``tasks``
  are merged by ``task_key``, ``job_clusters`` by ``job_cluster_key``, ``parameters`` by
  ``name`` and ``environments`` by ``environment_key`` (later definitions override earlier ones).
* Variable values come from, lowest to highest priority: the ``default``, the target's
  ``variables`` section, ``BUNDLE_VAR_<name>`` environment variables, and the ``variables``
  argument (like ``--var k=v``).
* ``${var.*}``, ``${bundle.*}``, ``${workspace.*}`` and ``${resources.<type>.<key>.<field>}``
  references are resolved recursively. A string that is exactly one reference takes the
  referenced value with its type (so complex variables work); references inside a longer
  string are formatted into it. Job-run templates such as ``{{job.run_id}}`` are left alone.

What it deliberately does not do: the deploy-time rewrites of ``mode: development`` (name
prefixes, pausing schedules, tags) and presets are *not* applied to ``config``; ``bundle.mode``
and ``presets`` are kept so callers can reason about them.

With ``local=False`` references that only a workspace can answer (the current user, ids and
URLs of deployed resources, ``artifacts.*``, ``bundle.git.*``) are left as written. With
``local=True`` the workspace is simulated: ``workspace.current_user.userName`` is
``local-user`` and ``workspace.root_path`` is ``/local/.bundle/<bundle name>/<target>``.
"""

from __future__ import annotations

import copy
import glob
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from spark_mlops.errors import ConfigError

BUNDLE_FILE_NAMES = ("databricks.yml", "databricks.yaml", "bundle.yml", "bundle.yaml")

LOCAL_USER = "local-user"
LOCAL_USER_SHORT = "local_user"

# ${a.b[0].c}: the reference syntax of the Databricks CLI (dyn/dynvar), slightly relaxed.
REFERENCE = re.compile(r"\$\{([A-Za-z][A-Za-z0-9_\-]*(?:\[[0-9]+\])*(?:\.[A-Za-z0-9_\-]+(?:\[[0-9]+\])*)*)\}")

# Sequences merged by a key after target overrides, per job (see the Databricks CLI mutators
# merge_job_tasks / merge_job_clusters / merge_job_parameters / merge_job_environments).
JOB_KEYED_LISTS = {
    "tasks": "task_key",
    "job_clusters": "job_cluster_key",
    "parameters": "name",
    "environments": "environment_key",
}

# Workspace fields known to the CLI; any other ${workspace.x} is a typo.
_WORKSPACE_FIELDS = {
    "host", "profile", "root_path", "file_path", "artifact_path", "state_path", "resource_path",
    "current_user", "account_id", "workspace_id", "client_id", "auth_type",
}
_WORKSPACE_DERIVED = {"file_path": "files", "artifact_path": "artifacts", "state_path": "state",
                      "resource_path": "resources"}


def format_path(path: tuple) -> str:
    """``("a", "b", 2, "c")`` -> ``a.b[2].c``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "<root>"


def origin_of(origins: dict, path: tuple, default: str = "databricks.yml") -> str:
    """The file a YAML path came from: the longest recorded prefix wins."""
    for n in range(len(path), -1, -1):
        hit = origins.get(tuple(path[:n]))
        if hit is not None:
            return hit
    return default


@dataclass
class Bundle:
    root: Path
    target: str
    config: dict
    variables: dict
    origins: dict

    @property
    def jobs(self) -> dict[str, dict]:
        return (self.config.get("resources") or {}).get("jobs") or {}

    @property
    def mode(self) -> str | None:
        return (self.config.get("bundle") or {}).get("mode")

    def where(self, path: tuple) -> str:
        """``file: yaml.path`` for messages about the resolved config."""
        return locate(self.origins, self.target, path)


def locate(origins: dict, target: str | None, path: tuple) -> str:
    """Name where a merged path was written: the target's override when it sets that path."""
    if target is not None:
        tpath = ("targets", target, *path)
        if _has_path(origins.get("__raw__"), tpath):
            return f"{origin_of(origins, tpath)}: {format_path(tpath)}"
    return f"{origin_of(origins, path)}: {format_path(path)}"


def _has_path(node: Any, path: tuple) -> bool:
    if node is None:
        return False
    for part in path:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return False
    return True


# ---------------------------------------------------------------- reading


def find_bundle_file(root: Path) -> Path:
    for name in BUNDLE_FILE_NAMES:
        if (root / name).is_file():
            return root / name
    raise ConfigError(f"{root}: no bundle file ({' / '.join(BUNDLE_FILE_NAMES)})")


# Parsed files by content: validation reads the same files once per target.
_PARSED: dict[str, Any] = {}
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: Path, root: Path) -> dict:
    rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
    text = path.read_text(encoding="utf-8")
    if text not in _PARSED:
        try:
            _PARSED[text] = yaml.load(text, Loader=_YAML_LOADER)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{rel}: not valid YAML: {exc}") from exc
        if len(_PARSED) > 256:
            _PARSED.pop(next(iter(_PARSED)))
    data = copy.deepcopy(_PARSED[text])
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{rel}: expected a mapping at the top level, found {type(data).__name__}")
    return data


def bundle_files(root: str | Path) -> list[tuple[str, dict]]:
    """``[(relative path, data as written), ...]``: the bundle file first, then the includes."""
    root = Path(root).resolve()
    main = find_bundle_file(root)
    data = read_yaml(main, root)
    out = [(main.name, data)]
    includes = data.get("include") or []
    if not isinstance(includes, list):
        raise ConfigError(f"{main.name}: include: expected a list of glob patterns")
    seen = {main.name}
    for i, pattern in enumerate(includes):
        if not isinstance(pattern, str):
            raise ConfigError(f"{main.name}: include[{i}]: expected a glob pattern, found {pattern!r}")
        for match in sorted(glob.glob(pattern, root_dir=root, recursive=True)):
            rel = Path(match).as_posix()
            if rel in seen or not (root / rel).is_file():
                continue
            seen.add(rel)
            out.append((rel, read_yaml(root / rel, root)))
    return out


def load_raw(root: str | Path) -> tuple[dict, dict]:
    """The merged, unresolved configuration (targets kept as written) and where things came from.

    ``origins`` maps YAML path tuples to the relative file that defined them: one entry per
    top-level key, resource, target and variable. ``origins["__raw__"]`` is the merged config
    itself (used by :func:`locate`). Look paths up with :func:`origin_of` (longest prefix).
    """
    merged: dict = {}
    origins: dict = {}
    for rel, data in bundle_files(root):
        for key, value in data.items():
            origins.setdefault((key,), rel)
            if key == "resources" and isinstance(value, dict):
                for rtype, items in value.items():
                    for rkey in (items or {}) if isinstance(items, dict) else {}:
                        here = ("resources", rtype, rkey)
                        if here in origins and origins[here] != rel:
                            raise ConfigError(
                                f"{rel}: resources.{rtype}.{rkey}: already defined in {origins[here]}"
                            )
                        origins[here] = rel
            elif key in ("targets", "variables", "artifacts") and isinstance(value, dict):
                for name in value:
                    origins.setdefault((key, name), rel)
        merged = _merge(merged, data)
    origins["__raw__"] = merged
    return merged, origins


# ---------------------------------------------------------------- merging


def _merge(base: Any, override: Any) -> Any:
    """Databricks merge: maps deep-merge, sequences concatenate, anything else is replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            out[key] = _merge(base[key], value) if key in base else copy.deepcopy(value)
        return out
    if isinstance(base, list) and isinstance(override, list):
        return [*base, *copy.deepcopy(override)]
    return copy.deepcopy(override)


def _merge_by_key(items: list, key: str) -> list:
    out: list = []
    index: dict = {}
    for item in items:
        k = item.get(key) if isinstance(item, dict) else None
        if k is None or k not in index:
            if k is not None:
                index[k] = len(out)
            out.append(item)
        else:
            out[index[k]] = _merge(out[index[k]], item)
    return out


def merge_target(raw: dict, target: str) -> dict:
    """Top level + the target's overrides, before variable resolution (no ``targets`` key)."""
    targets = raw.get("targets") or {}
    if target not in targets:
        raise ConfigError(
            f"databricks.yml: targets.{target}: no such target (defined: {', '.join(targets) or 'none'})"
        )
    over = targets[target] or {}
    config = {k: copy.deepcopy(v) for k, v in raw.items() if k not in ("targets", "environments")}
    for key, value in over.items():
        if key in ("default", "mode", "variables", "compute_id", "cluster_id", "git"):
            continue
        if key == "run_as":  # replaced, not merged
            config["run_as"] = copy.deepcopy(value)
        else:
            config[key] = _merge(config[key], value) if key in config else copy.deepcopy(value)
    bundle = config.setdefault("bundle", {})
    bundle["target"] = target
    if "mode" in over:
        bundle["mode"] = over["mode"]
    if "git" in over:
        bundle["git"] = _merge(bundle.get("git") or {}, over["git"])
    for field in ("cluster_id", "compute_id"):
        if field in over:
            bundle[field] = over[field]
    for job in ((config.get("resources") or {}).get("jobs") or {}).values():
        if not isinstance(job, dict):
            continue
        for list_key, item_key in JOB_KEYED_LISTS.items():
            if isinstance(job.get(list_key), list):
                job[list_key] = _merge_by_key(job[list_key], item_key)
    return config


def default_target(raw: dict) -> str:
    targets = raw.get("targets") or {}
    defaults = [name for name, t in targets.items() if isinstance(t, dict) and t.get("default") is True]
    if len(defaults) > 1:
        raise ConfigError(f"databricks.yml: targets: more than one default target ({', '.join(defaults)})")
    if defaults:
        return defaults[0]
    if len(targets) == 1:
        return next(iter(targets))
    raise ConfigError("databricks.yml: targets: no target has `default: true`; pass a target")


# ---------------------------------------------------------------- variables


def variable_values(raw: dict, origins: dict, target: str, overrides: dict[str, str] | None) -> dict:
    """Unresolved value per declared variable (may still contain references)."""
    declared = raw.get("variables") or {}
    values: dict = {}
    for name, spec in declared.items():
        spec = spec if isinstance(spec, dict) else {"default": spec}
        if "default" in spec:
            values[name] = copy.deepcopy(spec["default"])
    tvars = ((raw.get("targets") or {}).get(target) or {}).get("variables") or {}
    for name, value in tvars.items():
        if name not in declared:
            raise ConfigError(
                f"{origin_of(origins, ('targets', target))}: targets.{target}.variables.{name}: "
                f"variable {name!r} is not declared in the top-level `variables`"
            )
        if isinstance(value, dict) and value and set(value) <= {"default", "lookup", "description", "type"}:
            if "default" in value:
                values[name] = copy.deepcopy(value["default"])
            elif "lookup" in value:
                values[name] = "${lookup." + name + "}"  # resolved by the CLI against a workspace
        else:
            values[name] = copy.deepcopy(value)
    for name in declared:
        env = os.environ.get(f"BUNDLE_VAR_{name}")
        if env is not None:
            values[name] = _parse_override(declared[name], env)
    for name, value in (overrides or {}).items():
        if name not in declared:
            raise ConfigError(f"--var {name}=…: variable {name!r} is not declared in databricks.yml")
        values[name] = _parse_override(declared[name], value) if isinstance(value, str) else value
    return values


def _is_complex(spec: Any) -> bool:
    return isinstance(spec, dict) and spec.get("type") == "complex"


def _parse_override(spec: Any, text: str) -> Any:
    if _is_complex(spec):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"complex variable override {text!r} is not JSON: {exc}") from exc
    return text


# ---------------------------------------------------------------- resolution


class _Keep(Exception):
    """A reference only a workspace can answer: leave it as written."""


class _Resolver:
    def __init__(self, config: dict, values: dict, origins: dict, target: str, local: bool):
        self.config = config
        self.values = values
        self.origins = origins
        self.target = target
        self.local = local
        self.var_cache: dict[str, Any] = {}
        self.stack: list[str] = []

    # -- walking
    def resolve_tree(self, node: Any, path: tuple) -> Any:
        if isinstance(node, dict):
            return {k: self.resolve_tree(v, (*path, k)) for k, v in node.items()}
        if isinstance(node, list):
            return [self.resolve_tree(v, (*path, i)) for i, v in enumerate(node)]
        if isinstance(node, str) and "${" in node:
            return self.resolve_string(node, path)
        return node

    def resolve_string(self, text: str, path: tuple) -> Any:
        whole = REFERENCE.fullmatch(text)
        if whole:
            try:
                return self.lookup(whole.group(1), path)
            except _Keep:
                return text

        def repl(m: re.Match) -> str:
            try:
                value = self.lookup(m.group(1), path)
            except _Keep:
                return m.group(0)
            if isinstance(value, (dict, list)):
                raise self.error(path, m.group(0), "a complex value cannot be embedded in a string")
            if isinstance(value, bool):
                return "true" if value else "false"
            return str(value)

        return REFERENCE.sub(repl, text)

    def error(self, path: tuple, ref: str, why: str) -> ConfigError:
        if path and path[0] == "variables":
            where = f"{origin_of(self.origins, path)}: {format_path(path)}"
            tpath = ("targets", self.target, "variables", path[1])
            if _has_path(self.origins.get("__raw__"), tpath):
                where = f"{origin_of(self.origins, tpath)}: {format_path(tpath)}"
        else:
            where = locate(self.origins, self.target, path)
        return ConfigError(f"{where}: cannot resolve {ref}: {why}")

    # -- references
    def lookup(self, ref: str, path: tuple) -> Any:
        parts = _split_ref(ref)
        head = parts[0]
        if head == "var":
            return self.variable(parts, ref, path)
        if head == "bundle":
            return self.bundle_field(parts, ref, path)
        if head == "workspace":
            return self.workspace_field(parts, ref, path)
        if head == "resources":
            return self.resource_field(parts, ref, path)
        if head in ("artifacts", "lookup"):
            raise _Keep
        raise self.error(path, "${" + ref + "}", f"unknown reference namespace {head!r} "
                         "(expected var, bundle, workspace, resources or artifacts)")

    def _guard(self, key: str, path: tuple, ref: str) -> None:
        if key in self.stack:
            cycle = " -> ".join([*self.stack[self.stack.index(key):], key])
            raise self.error(path, "${" + ref + "}", f"circular reference: {cycle}")

    def variable(self, parts: list, ref: str, path: tuple) -> Any:
        if len(parts) < 2 or not isinstance(parts[1], str):
            raise self.error(path, "${" + ref + "}", "expected ${var.<name>}")
        name = parts[1]
        declared = self.config.get("variables") or {}
        if name not in declared:
            raise self.error(path, "${" + ref + "}", f"variable {name!r} is not declared "
                             f"(declared: {', '.join(sorted(declared)) or 'none'})")
        if name not in self.var_cache:
            if name not in self.values:
                raise self.error(path, "${" + ref + "}", f"variable {name!r} has no value for target "
                                 f"{self.target!r} (give it a default, a target value or --var)")
            self._guard("var." + name, path, ref)
            self.stack.append("var." + name)
            try:
                self.var_cache[name] = self.resolve_tree(self.values[name], ("variables", name))
            finally:
                self.stack.pop()
        # A copy per use: the same complex value must not be shared between resources.
        return copy.deepcopy(self._descend(self.var_cache[name], parts[2:], ref, path))

    def _descend(self, value: Any, parts: list, ref: str, path: tuple) -> Any:
        for part in parts:
            if isinstance(value, dict) and part in value:
                value = value[part]
            elif isinstance(value, list) and isinstance(part, int) and part < len(value):
                value = value[part]
            else:
                raise self.error(path, "${" + ref + "}", f"no field {part!r}")
        return value

    def _config_node(self, parts: list, ref: str, path: tuple) -> Any:
        """Resolve the config node at ``parts`` (itself resolved); raise _Keep when absent."""
        node: Any = self.config
        for part in parts:
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                node = node[part]
            else:
                raise _Keep
        key = "cfg." + ".".join(map(str, parts))
        self._guard(key, path, ref)
        self.stack.append(key)
        try:
            return self.resolve_tree(node, tuple(parts))
        finally:
            self.stack.pop()

    def bundle_field(self, parts: list, ref: str, path: tuple) -> Any:
        if len(parts) >= 2 and parts[1] == "environment":  # deprecated alias of target
            return self.target
        try:
            return self._config_node(parts, ref, path)
        except _Keep:
            if len(parts) >= 2 and parts[1] in ("git", "uuid"):
                raise  # known only at deploy time
            raise self.error(path, "${" + ref + "}", "no such bundle field") from None

    def workspace_field(self, parts: list, ref: str, path: tuple) -> Any:
        field = parts[1] if len(parts) > 1 else None
        if field not in _WORKSPACE_FIELDS:
            raise self.error(path, "${" + ref + "}", f"unknown workspace field {field!r}")
        if field == "current_user":
            if not self.local:
                raise _Keep
            user = {"userName": LOCAL_USER, "short_name": LOCAL_USER_SHORT, "displayName": LOCAL_USER,
                    "user_name": LOCAL_USER, "domain_friendly_name": LOCAL_USER}
            return self._descend(user, parts[2:], ref, path)
        if field == "root_path" and self.local:
            return f"/local/.bundle/{self.config['bundle'].get('name', 'bundle')}/{self.target}"
        if field in _WORKSPACE_DERIVED:
            configured = (self.config.get("workspace") or {}).get(field)
            if configured is None or self.local:
                root = self.workspace_field(["workspace", "root_path"], ref, path)
                return f"{root}/{_WORKSPACE_DERIVED[field]}"
        if field == "root_path" and (self.config.get("workspace") or {}).get("root_path") is None:
            name = self.config["bundle"].get("name", "bundle")
            root = f"/Workspace/Users/${{workspace.current_user.userName}}/.bundle/{name}/{self.target}"
            return self.resolve_string(root, path)
        return self._config_node(parts, ref, path)

    def resource_field(self, parts: list, ref: str, path: tuple) -> Any:
        if len(parts) < 4:
            raise self.error(path, "${" + ref + "}", "expected ${resources.<type>.<key>.<field>}")
        resources = self.config.get("resources") or {}
        if parts[2] not in (resources.get(parts[1]) or {}):
            raise self.error(path, "${" + ref + "}", f"no resource {parts[1]}.{parts[2]} in this bundle")
        return self._config_node(parts, ref, path)  # absent fields (id, url, …) are kept


def _split_ref(ref: str) -> list:
    parts: list = []
    for chunk in ref.split("."):
        m = re.fullmatch(r"([^\[]+)((?:\[[0-9]+\])*)", chunk)
        if not m:
            parts.append(chunk)
            continue
        parts.append(m.group(1))
        parts.extend(int(i) for i in re.findall(r"\[([0-9]+)\]", m.group(2)))
    return parts


def resolve(config: dict, values: dict, origins: dict, target: str, *, local: bool) -> tuple[dict, dict]:
    """Resolve every reference in ``config``; returns (config, resolved variable values)."""
    r = _Resolver(config, values, origins, target, local)
    resolved_vars = {name: r.variable(["var", name], f"var.{name}", ("variables", name)) for name in values}
    out = r.resolve_tree({k: v for k, v in config.items() if k != "variables"}, ())
    ws = dict(out.get("workspace") or {})
    if local:
        ws["root_path"] = r.workspace_field(["workspace", "root_path"], "workspace.root_path", ())
        ws["current_user"] = {"userName": LOCAL_USER, "short_name": LOCAL_USER_SHORT}
    for field in _WORKSPACE_DERIVED:
        ws[field] = r.workspace_field(["workspace", field], f"workspace.{field}", ("workspace", field))
    if "root_path" not in ws:
        ws["root_path"] = r.workspace_field(["workspace", "root_path"], "workspace.root_path", ())
    out["workspace"] = ws
    out["variables"] = {
        name: {**(spec if isinstance(spec, dict) else {}), "value": resolved_vars.get(name)}
        for name, spec in (config.get("variables") or {}).items()
        if name in resolved_vars
    }
    return out, resolved_vars


def load_bundle(
    root: str | Path,
    target: str | None = None,
    variables: dict[str, str] | None = None,
    *,
    local: bool = False,
) -> Bundle:
    """One target of the bundle at ``root``, merged and resolved (see the module docstring)."""
    root = Path(root).resolve()
    raw, origins = load_raw(root)
    target = target or default_target(raw)
    merged = merge_target(raw, target)
    values = variable_values(raw, origins, target, variables)
    config, resolved_vars = resolve(merged, values, origins, target, local=local)
    return Bundle(root=root, target=target, config=config, variables=resolved_vars, origins=origins)
