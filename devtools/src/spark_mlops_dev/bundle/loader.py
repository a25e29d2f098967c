"""Load a Databricks Asset Bundle offline: databricks.yml + includes, one target, resolved.

The Databricks CLI is the reference: where it is on PATH, ``spark-mlops run`` takes the CLI's
own resolved configuration (:mod:`spark_mlops_dev.bundle.databricks_cli`), and CI compares this
loader with ``databricks bundle validate -o json`` for every target
(scripts/ci/databricks-cli-checks.sh). This module is what machines without the CLI use.

What it does, following the CLI (databricks/cli ``bundle/config/mutator``):

* ``include`` globs are expanded relative to the bundle root (sorted); each included file is
  merged into the root configuration. The same resource key defined in two files is an error.
* A target's overrides are merged onto the top level: maps merge deeply, sequences are
  concatenated, scalars are replaced; ``run_as`` is replaced as a whole. Then job ``tasks``
  are merged by ``task_key``, ``job_clusters`` by ``job_cluster_key``, ``parameters`` by
  ``name`` and ``environments`` by ``environment_key`` (later definitions override earlier ones).
* Variable values come from, lowest to highest priority: the ``default``, the target's
  ``variables`` section, ``BUNDLE_VAR_<name>`` environment variables, and the ``variables``
  argument (like ``--var k=v``).
* ``${var.*}``, ``${bundle.*}`` and ``${workspace.*}`` references are resolved recursively. A
  string that is exactly one reference takes the referenced value with its type (so complex
  variables work); references inside a longer string are formatted into it. Job-run templates
  such as ``{{job.run_id}}`` are left alone.
* When the deploying identity is known (``local=True``, or ``user=``), what the CLI does before a
  deploy is done too (:func:`apply_deploy_rules`): development mode and ``presets`` (name
  prefixes, tags, paused triggers, concurrent runs), ``run_as`` on every job, the top-level
  ``permissions`` on every resource and the deploying identity's ownership, wheel paths relative
  to the bundle root. Only then are ``${resources.<type>.<key>.<field>}`` references resolved, so
  that they see the names the CLI deploys (``dev_<user>_spark_mlops``); ids and URLs of deployed
  resources stay as written.

With ``local=False`` and no ``user``, references that only a workspace can answer (the current
user, ids and URLs of deployed resources, ``artifacts.*``, ``bundle.git.*``) are left as written
and no deploy rule is applied. With ``local=True`` the deploying identity is ``local-user`` (short
name ``local_user``) and ``workspace.root_path`` is ``/local/.bundle/<bundle name>/<target>``.
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
                    if key != "targets" or not isinstance(value[name], dict):
                        continue
                    for rtype, items in (value[name].get("resources") or {}).items():
                        for rkey in items if isinstance(items, dict) else {}:
                            origins.setdefault(("targets", name, "resources", rtype, rkey), rel)
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
    def __init__(self, config: dict, values: dict, origins: dict, target: str, local: bool,
                 user: dict | None = None, keep_resources: bool = False):
        self.config = config
        self.values = values
        self.origins = origins
        self.target = target
        self.local = local
        self.user = user  # workspace.current_user, when the deploying identity is known
        self.keep_resources = keep_resources  # resolved after the deploy rules (apply_deploy_rules)
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
            if self.user is None:
                raise _Keep
            return self._descend(self.user, parts[2:], ref, path)
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
        if self.keep_resources:
            raise _Keep
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


def current_user(user_name: str, display_name: str = "") -> dict:
    """``workspace.current_user`` as the CLI fills it for ``user_name``: the short name is the part
    before ``@`` (a service principal's display name when it has one), normalized
    (databricks/cli libs/iamutil/user.go GetShortUserName)."""
    is_sp = _UUID.fullmatch(user_name) is not None
    name = display_name if is_sp and display_name else user_name
    short = normalize_string(name.split("@", 1)[0])
    return {"userName": user_name, "user_name": user_name, "short_name": short,
            "displayName": display_name or user_name, "domain_friendly_name": short.replace("_", "-")}


def normalize_string(name: str) -> str:
    """databricks/cli libs/textutil NormalizeString: lower case, every character that is not a
    letter or digit becomes ``_``, runs of ``_`` collapse, leading/trailing ``_`` go."""
    text = "".join(c if c.isalpha() or c.isdigit() else "_" for c in name.lower())
    return re.sub(r"_+", "_", text).strip("_")


_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def resolve(config: dict, values: dict, origins: dict, target: str, *, local: bool,
            user: dict | None = None, keep_resources: bool = False) -> tuple[dict, dict]:
    """Resolve every reference in ``config``; returns (config, resolved variable values)."""
    if local and user is None:
        user = current_user(LOCAL_USER)
    r = _Resolver(config, values, origins, target, local, user, keep_resources)
    resolved_vars = {name: r.variable(["var", name], f"var.{name}", ("variables", name)) for name in values}
    out = r.resolve_tree({k: v for k, v in config.items() if k != "variables"}, ())
    ws = dict(out.get("workspace") or {})
    if user is not None:
        ws["root_path"] = r.workspace_field(["workspace", "root_path"], "workspace.root_path", ())
        ws["current_user"] = dict(user)
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


# ---------------------------------------------------------------- what the CLI does before a deploy

# Bundle-level permission levels per resource type
# (databricks/cli bundle/config/mutator/resourcemutator/apply_bundle_permissions.go, levelsMap).
_PERMISSION_LEVELS = {
    "jobs": {"CAN_MANAGE": "CAN_MANAGE", "CAN_VIEW": "CAN_VIEW", "CAN_RUN": "CAN_MANAGE_RUN"},
    "pipelines": {"CAN_MANAGE": "CAN_MANAGE", "CAN_VIEW": "CAN_VIEW", "CAN_RUN": "CAN_RUN"},
    "experiments": {"CAN_MANAGE": "CAN_MANAGE", "CAN_VIEW": "CAN_READ"},
    "models": {"CAN_MANAGE": "CAN_MANAGE", "CAN_VIEW": "CAN_READ"},
    "model_serving_endpoints": {"CAN_MANAGE": "CAN_MANAGE", "CAN_VIEW": "CAN_VIEW", "CAN_RUN": "CAN_QUERY"},
    "dashboards": {"CAN_MANAGE": "CAN_MANAGE", "CAN_VIEW": "CAN_READ"},
    "apps": {"CAN_MANAGE": "CAN_MANAGE", "CAN_VIEW": "CAN_USE"},
    "clusters": {"CAN_MANAGE": "CAN_MANAGE", "CAN_VIEW": "CAN_ATTACH_TO", "CAN_RUN": "CAN_RESTART"},
}
# Resources whose owner is IS_OWNER, not CAN_MANAGE (resourcemutator/fix_permissions.go, hasIsOwner).
_HAS_IS_OWNER = ("jobs", "pipelines", "sql_warehouses")
# resources.PermissionOrder (bundle/config/resources/permission.go): higher is more.
_LEVEL_ORDER = {"CAN_VIEW": 2, "CAN_READ": 3, "CAN_VIEW_METADATA": 4, "CAN_RUN": 5, "CAN_QUERY": 6,
                "CAN_USE": 7, "CAN_EDIT": 8, "CAN_EDIT_METADATA": 9, "CAN_CREATE": 10, "CAN_ATTACH_TO": 11,
                "CAN_RESTART": 12, "CAN_MONITOR": 13, "CAN_MANAGE_RUN": 14,
                "CAN_MANAGE_STAGING_VERSIONS": 15, "CAN_MANAGE_PRODUCTION_VERSIONS": 16, "CAN_MANAGE": 17,
                "IS_OWNER": 18}
_PRINCIPALS = ("user_name", "service_principal_name", "group_name")


def normalize_prefix(prefix: str) -> str:
    """``[dev lennart] `` -> ``dev_lennart_``: the prefix of UC names (apply_presets.go normalizePrefix)."""
    text = prefix.replace("[", "").strip(" ")
    return normalize_string(text) + ("_" if text.endswith("]") else "")


def _principal(entry: dict) -> tuple[str, str] | None:
    for key in _PRINCIPALS:
        if entry.get(key):
            return key, entry[key]
    return None


def _presets(config: dict, user: dict) -> dict:
    """``presets`` with development mode's defaults (resourcemutator/apply_target_mode.go)."""
    presets = dict(config.get("presets") or {})
    if (config.get("bundle") or {}).get("mode") == "development":
        short = user["short_name"]
        presets.setdefault("name_prefix", f"[dev {short}] ")
        presets["name_prefix"] = presets["name_prefix"] or f"[dev {short}] "
        presets["tags"] = {**{"dev": short}, **(presets.get("tags") or {})}
        presets["jobs_max_concurrent_runs"] = presets.get("jobs_max_concurrent_runs") or 4
        presets["trigger_pause_status"] = presets.get("trigger_pause_status") or "PAUSED"
        if presets.get("pipelines_development") is not False:
            presets["pipelines_development"] = True
    return presets


def _apply_presets(resources: dict, presets: dict, skip_schema_prefix: bool) -> None:
    """resourcemutator/apply_presets.go, for the resource types this loader reads."""
    prefix = presets.get("name_prefix") or ""
    tags = sorted((presets.get("tags") or {}).items())
    pause = presets.get("trigger_pause_status") or ""
    for job in (resources.get("jobs") or {}).values():
        if not isinstance(job, dict):
            continue
        job["name"] = prefix + str(job.get("name") or "")
        if tags:
            job_tags = job.setdefault("tags", {})
            for key, value in tags:
                if not job_tags.get(key):
                    job_tags[key] = value
        if not job.get("max_concurrent_runs") and presets.get("jobs_max_concurrent_runs"):
            job["max_concurrent_runs"] = presets["jobs_max_concurrent_runs"]
        if pause:
            for section in ("schedule", "continuous", "trigger"):
                if isinstance(job.get(section), dict) and not job[section].get("pause_status"):
                    job[section]["pause_status"] = "UNPAUSED" if pause == "UNPAUSED" else "PAUSED"
    for experiment in (resources.get("experiments") or {}).values():
        if not isinstance(experiment, dict):
            continue
        name = str(experiment.get("name") or "")
        folder, _, base = name.rpartition("/")
        experiment["name"] = f"{folder}/{prefix}{base}" if "/" in name else prefix + base
        have = {t.get("key") for t in experiment.get("tags") or []}
        experiment_tags = [*(experiment.get("tags") or []),
                           *({"key": k, "value": v} for k, v in tags if k not in have)]
        if experiment_tags:
            experiment["tags"] = experiment_tags
    uc_prefix = normalize_prefix(prefix) if prefix else ""
    for rtype in ("registered_models", "model_serving_endpoints"):
        for item in (resources.get(rtype) or {}).values():
            if isinstance(item, dict):
                item["name"] = uc_prefix + str(item.get("name") or "")
    if not skip_schema_prefix:
        for schema in (resources.get("schemas") or {}).values():
            if isinstance(schema, dict):
                schema["name"] = uc_prefix + str(schema.get("name") or "")


def _apply_permissions(config: dict, resources: dict, user: dict) -> None:
    """Top-level ``permissions`` on every resource (apply_bundle_permissions.go: a principal the
    resource already names keeps its own entry), then the deploying identity's ownership and one
    level per principal, the highest (fix_permissions.go)."""
    bundle_permissions = config.get("permissions") or []
    me = user["userName"]
    me_key = "service_principal_name" if _UUID.fullmatch(me) else "user_name"
    for rtype, items in resources.items():
        if not isinstance(items, dict) or rtype == "secret_scopes":
            continue
        for item in items.values():
            if not isinstance(item, dict):
                continue
            permissions = list(item.get("permissions") or [])
            levels = _PERMISSION_LEVELS.get(rtype)
            if levels:
                named = {_principal(p) for p in permissions}
                permissions += [{"level": levels[p["level"]], **dict([_principal(p)])}
                                for p in bundle_permissions
                                if p.get("level") in levels and _principal(p) not in named]
            if not permissions:
                if "permissions" in item:
                    item.pop("permissions")
                continue
            owner_level = "IS_OWNER" if rtype in _HAS_IS_OWNER else "CAN_MANAGE"
            if owner_level == "IS_OWNER" and any(p.get("level") == "IS_OWNER" and _principal(p) != (me_key, me)
                                                 for p in permissions):
                owner_level = "CAN_MANAGE"  # someone else owns it
            mine = [p for p in permissions if _principal(p) in (("user_name", me), ("service_principal_name", me))]
            if owner_level == "IS_OWNER" and not any(p.get("level") == "IS_OWNER" for p in mine):
                manage = next((p for p in mine if p.get("level") == "CAN_MANAGE"), None)
                if manage is not None:
                    manage["level"] = "IS_OWNER"
                else:
                    permissions.append({"level": "IS_OWNER", me_key: me})
            elif owner_level == "CAN_MANAGE" and not any(p.get("level") in ("CAN_MANAGE", "IS_OWNER") for p in mine):
                permissions.append({"level": "CAN_MANAGE", me_key: me})
            best: dict[tuple[str, str], str] = {}
            for p in permissions:
                who = _principal(p)
                if who is None or not p.get("level"):
                    continue
                if who not in best or _level_rank(p["level"]) > _level_rank(best[who]):
                    best[who] = p["level"]
            item["permissions"] = [{"level": level, who[0]: who[1]} for who, level in best.items()]


def _level_rank(level: str) -> tuple[int, str]:
    """resources.CompareLevels: by PermissionOrder, ties by name."""
    return _LEVEL_ORDER.get(level, 0), level


def _relative_library_paths(resources: dict, origins: dict, root: Path) -> None:
    """A job's relative ``whl``/``jar`` paths are relative to the file that defines the job; the
    CLI rewrites them relative to the bundle root (mutator/translate_paths.go)."""
    for key, job in (resources.get("jobs") or {}).items():
        if not isinstance(job, dict):
            continue
        folder = (root / job_origin(origins, key)).parent
        for task in job.get("tasks") or []:
            for library in task.get("libraries") or [] if isinstance(task, dict) else []:
                for kind in ("whl", "jar"):
                    path = library.get(kind) if isinstance(library, dict) else None
                    if isinstance(path, str) and "://" not in path and not path.startswith(("/", "${")):
                        library[kind] = os.path.relpath(os.path.normpath(folder / path), root)


def job_origin(origins: dict, key: str) -> str:
    """The file that defines job ``key`` (in its top-level resources or in a target's)."""
    found = origins.get(("resources", "jobs", key))
    if found:
        return found
    for path, rel in origins.items():
        if (isinstance(path, tuple) and len(path) == 5 and path[0] == "targets" and path[2:4] == ("resources", "jobs")
                and path[4] == key):
            return rel
    return "databricks.yml"


def apply_deploy_rules(config: dict, user: dict, origins: dict, root: Path) -> dict:
    """What the CLI does to a resolved target before it deploys it, for ``user`` deploying."""
    config = copy.deepcopy(config)
    resources = config.setdefault("resources", {})
    presets = _presets(config, user)
    if presets:
        config["presets"] = presets
    skip = (config.get("experimental") or {}).get("skip_name_prefix_for_schema")
    _apply_presets(resources, presets, skip is True or str(skip).lower() == "true")
    run_as = config.get("run_as")
    if isinstance(run_as, dict) and run_as:
        for job in (resources.get("jobs") or {}).values():  # resourcemutator/run_as.go setRunAsForJobs
            if isinstance(job, dict) and not job.get("run_as"):
                job["run_as"] = dict(run_as)
    _apply_defaults(resources)
    _apply_permissions(config, resources, user)
    _relative_library_paths(resources, origins, root)
    return config


def _apply_defaults(resources: dict) -> None:
    """The CLI's defaults, set after the presets where the parent exists and the field does not
    (resourcemutator/resource_mutator.go applyInitializeMutators: jobs and volumes)."""
    for job in (resources.get("jobs") or {}).values():
        if not isinstance(job, dict):
            continue
        job.setdefault("name", "Untitled")
        job.setdefault("max_concurrent_runs", 1)
        for section in ("schedule", "trigger", "continuous"):
            if isinstance(job.get(section), dict):
                job[section].setdefault("pause_status", "UNPAUSED")
        job.setdefault("queue", {"enabled": True})
    for volume in (resources.get("volumes") or {}).values():
        if isinstance(volume, dict):
            volume.setdefault("volume_type", "MANAGED")


def load_bundle(
    root: str | Path,
    target: str | None = None,
    variables: dict[str, str] | None = None,
    *,
    local: bool = False,
    user: str | dict | None = None,
) -> Bundle:
    """One target of the bundle at ``root``, merged and resolved (see the module docstring).

    ``user``: the deploying identity (a user name, or ``workspace.current_user`` as the CLI reports
    it); ``local=True`` means ``local-user``. With either, the CLI's deploy rules are applied.
    """
    root = Path(root).resolve()
    raw, origins = load_raw(root)
    target = target or default_target(raw)
    merged = merge_target(raw, target)
    values = variable_values(raw, origins, target, variables)
    if isinstance(user, str):
        user = current_user(user)
    if user is None and not local:
        config, resolved_vars = resolve(merged, values, origins, target, local=False)
        return Bundle(root=root, target=target, config=config, variables=resolved_vars, origins=origins)
    user = user or current_user(LOCAL_USER)
    config, resolved_vars = resolve(merged, values, origins, target, local=local, user=user, keep_resources=True)
    config = apply_deploy_rules(config, user, origins, root)
    # Now ${resources.*} see the deployed names (variable values may hold such references too).
    final = _Resolver(config, {}, origins, target, local, user)
    specs = config.pop("variables", {})
    config = final.resolve_tree(config, ())
    final.config = config
    resolved_vars = {name: final.resolve_tree(value, ("variables", name)) for name, value in resolved_vars.items()}
    config["variables"] = {name: {**spec, "value": resolved_vars.get(name)} for name, spec in specs.items()}
    return Bundle(root=root, target=target, config=config, variables=resolved_vars, origins=origins)
