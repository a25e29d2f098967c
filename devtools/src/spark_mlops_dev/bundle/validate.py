"""``spark-mlops bundle validate``: offline checks of databricks.yml + resources/.

The real Databricks CLI is the reference and the only resolver: every target is resolved by
``databricks bundle validate -o json --include-locations`` against the CLI's own fake workspace
(:mod:`.databricks_cli`), and CI also runs ``bundle validate --strict`` and deploys staging and prod
(scripts/ci/databricks-cli-checks.sh). This validator adds what the CLI does not check (each rule
says which doc or source makes it a breaker; tests/bundle/test_databricks_cli.py re-introduces
every breaker found so far and shows that the CLI or this validator refuses it):

1. **schema**: every bundle file, as written, against the CLI's own bundle JSON schema
   (``databricks bundle schema``; see :mod:`spark_mlops_dev.bundle.schema`);
2. **resolution**: the CLI's own errors for each target (undeclared variables, unknown references,
   cycles, duplicate resources, ...), one line each with the file:line the CLI names; its
   warnings are shown as warnings (``bundle validate --strict`` fails on them in CI);
3. **rules the CLI does not check**, on the CLI's resolved configuration: the task graph and what it runs (entry points of the wheel
   and their flags, task values a wheel task cannot set, job parameters), what the CLI accepts but
   a workspace refuses or mis-runs (runtime keys, principals of permissions vs grants, dfs-tmpdir
   of Spark-model tasks, per-developer schemas), this project's target rules (run_as, workspace
   profiles, paused triggers outside prod, service-principal roots), hard-coded hosts and secrets.

Every problem names the file (and line, where the CLI records one), the YAML path and what was
expected vs found.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from spark_mlops import commands
from spark_mlops.constants import (
    ENTRY_POINT_GROUP,
    NO_ACTIVE_TRIGGER_TARGETS,
    PACKAGE_NAME,
    PRODUCTION_TARGETS,
    REQUIRED_TARGETS,
)
from spark_mlops.errors import ConfigError
from spark_mlops_dev.bundle import databricks_cli, entry_points, graph, job_rules, timeouts
from spark_mlops_dev.bundle.files import bundle_files, format_path, origin_of, written_sections
from spark_mlops_dev.bundle.resolved import Bundle

# Dynamic value references a job may use ({{...}}); anything else is probably a typo.
_DYNAMIC = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_KNOWN_DYNAMIC = re.compile(
    r"^(job\.(id|name|run_id|repair_count|trigger\.(type|time\.[\w\[\]-]+|file_arrival\.location)"
    r"|start_time\.[\w\[\]-]+|parameters\.[\w.-]+)"
    r"|task\.(name|run_id|execution_count|notebook_path)"
    r"|tasks\.([\w-]+|`[^`]+`)\.(run_id|result_state|error_code|execution_count|notebook_path"
    r"|values\.([\w-]+|`[^`]+`))"
    r"|backfill\.[\w.\[\]-]+|workspace\.(id|url))$"
)
_TASK_VALUE_REF = re.compile(r"\{\{\s*tasks\.([\w-]+)\.values\.([\w-]+)\s*\}\}")
_JOB_PARAM_REF = re.compile(r"\{\{\s*job\.parameters\.([\w.-]+)\s*\}\}")

_HOST = re.compile(
    r"(?:https?://)?[A-Za-z0-9.-]*\b(?:azuredatabricks\.net|cloud\.databricks\.com|gcp\.databricks\.com)\b"
)
_SECRETS = (
    (re.compile(r"\bdapi[0-9a-fA-F]{32}(?:-\d+)?\b"), "a Databricks personal access token (dapi…)"),
    (re.compile(r"\bdose[0-9a-fA-F]{32}\b"), "a Databricks OAuth secret (dose…)"),
)
_PASSWORD_IN_TEXT = re.compile(r"\b(password|passwd)\s*[:=]\s*\S", re.I)
_SECRET_KEYS = re.compile(r"^(password|passwd|token|client_secret|secret|access_token)$", re.I)


@dataclass(frozen=True, order=True)
class Problem:
    file: str
    path: str
    message: str
    line: int | None = None  # where the CLI's locations say the path was written

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}"


@dataclass
class TargetResult:
    target: str
    bundle: Bundle | None
    summary: str


@dataclass
class Report:
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    targets: list[TargetResult] = field(default_factory=list)
    schema_source: str | None = None

    def add(self, file: str, path: tuple | str, message: str, line: int | None = None) -> None:
        p = Problem(file, path if isinstance(path, str) else format_path(path), message, line)
        if p not in self.problems:
            self.problems.append(p)

    @property
    def ok(self) -> bool:
        return not self.problems


# ---------------------------------------------------------------- helpers


def _walk(node: Any, path: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    """(path, value) for every scalar, keys included as (path + key, key) with marker."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, (*path, i))
    else:
        yield path, node


def _strings(node: Any, path: tuple = ()) -> Iterator[tuple[tuple, str]]:
    for p, v in _walk(node, path):
        if isinstance(v, str):
            yield p, v


def project_entry_points(root: Path) -> dict[str, str] | None:
    """The wheel's entry points by name (any group, as Databricks looks them up), or None
    when the bundle has no pyproject.toml."""
    if not (root / "pyproject.toml").is_file():
        return None
    return entry_points.project_entry_points(root)[1]


# ---------------------------------------------------------------- 1. schema


def check_schema(files: list[tuple[str, dict]], root: Path, report: Report, schema_path: Path | None) -> None:
    from spark_mlops_dev.bundle import schema as bschema

    try:
        source = (bschema.SchemaSource(str(schema_path), Path(schema_path)) if schema_path
                  else bschema.find_schema(root))
    except bschema.SchemaUnavailable as exc:
        report.warnings.append(f"schema check skipped: {exc}")
        return
    report.schema_source = source.description
    validator = bschema.load_validator(source)
    for rel, data in files:
        for error in validator.iter_errors(data):
            for path, message in bschema.describe(error):
                report.add(rel, path, f"schema: {message}")


# ---------------------------------------------------------------- 2 + 3. per file, as written


def check_written(files: list[tuple[str, dict]], report: Report) -> None:
    # (An undeclared ${var.x} the CLI refuses itself: the resolution stage reports its error.)
    for rel, data in files:
        # Task keys must be unique within each definition: the CLI merges tasks of one job by
        # task_key (resourcemutator/merge_job_tasks.go), so a repeated key silently becomes one task.
        # A repeated key in a target override is an override, so each place is checked on its own.
        places = [(("resources",), data.get("resources"))]
        for tname, tdef in (data.get("targets") or {}).items():
            if isinstance(tdef, dict):
                places.append((("targets", tname, "resources"), tdef.get("resources")))
        for prefix, resources in places:
            for jkey, job in ((resources or {}).get("jobs") or {}).items():
                seen: dict[str, int] = {}
                for i, task in enumerate((job or {}).get("tasks") or []):
                    key = task.get("task_key") if isinstance(task, dict) else None
                    if key in seen:
                        report.add(rel, (*prefix, "jobs", jkey, "tasks", i, "task_key"),
                                   f"duplicate task_key {key!r} (also tasks[{seen[key]}]); expected unique keys")
                    elif key is not None:
                        seen[key] = i
    check_literals(files, report)


def check_literals(files: list[tuple[str, dict]], report: Report) -> None:
    """No hard-coded workspace host or secret-looking value, in values or comments."""
    for rel, data in files:
        for path, value in _walk(data):
            if path and isinstance(path[-1], str) and _SECRET_KEYS.match(path[-1]) and value not in (None, ""):
                if not (isinstance(value, str) and value.startswith(("${", "{{secrets/"))):
                    report.add(rel, path, "a secret-looking key with a literal value; expected a secret "
                               "reference ({{secrets/<scope>/<key>}}) or nothing")
            if not isinstance(value, str):
                continue
            m = _HOST.search(value)
            if m:
                report.add(rel, path, f"hard-coded workspace host {m.group(0)!r}; expected none (the host "
                           "comes from the CLI profile or DATABRICKS_HOST)")
            for rx, what in _SECRETS:
                if rx.search(value):
                    report.add(rel, path, f"looks like {what}; expected no credentials in bundle files")
        hosts = [(("workspace", "host"), (data.get("workspace") or {}).get("host"))]
        for tname, tdef in (data.get("targets") or {}).items():
            if isinstance(tdef, dict):
                hosts.append((("targets", tname, "workspace", "host"), (tdef.get("workspace") or {}).get("host")))
        for path, host in hosts:  # any literal host, also on other domains (the regex above covers the clouds)
            if isinstance(host, str) and not host.startswith("${") and not _HOST.search(host):
                report.add(rel, path, f"hard-coded workspace host {host!r}; expected none (the host comes "
                           "from the CLI profile or DATABRICKS_HOST)")


def check_comments(root: Path, files: list[tuple[str, dict]], report: Report) -> None:
    """Hosts and tokens in comments (not part of the parsed data) are found line by line."""
    for rel, _ in files:
        for lineno, line in enumerate((root / rel).read_text(encoding="utf-8").splitlines(), 1):
            hash_at = line.find("#")
            if hash_at < 0 or line[:hash_at].count('"') % 2 or line[:hash_at].count("'") % 2:
                continue
            comment = line[hash_at:]
            m = _HOST.search(comment)
            if m:
                report.add(rel, f"line {lineno} (comment)", f"hard-coded workspace host {m.group(0)!r}; "
                           "expected none")
            for rx, what in _SECRETS:
                if rx.search(comment):
                    report.add(rel, f"line {lineno} (comment)", f"looks like {what}; expected no credentials")
            if _PASSWORD_IN_TEXT.search(comment):
                report.add(rel, f"line {lineno} (comment)", "a password in a comment; expected no credentials")


# ---------------------------------------------------------------- per target


def check_targets_written(raw: dict, origins: dict, report: Report) -> None:
    targets = raw.get("targets") or {}
    file = origin_of(origins, ("targets",))
    for name in REQUIRED_TARGETS:
        if name not in targets:
            report.add(file, ("targets", name), f"missing target; expected targets {', '.join(REQUIRED_TARGETS)}")
    for name in PRODUCTION_TARGETS:
        tdef = targets.get(name)
        if not isinstance(tdef, dict):
            continue
        where = origin_of(origins, ("targets", name))
        if tdef.get("mode") != "production":
            report.add(where, ("targets", name, "mode"),
                       f"expected 'production', found {tdef.get('mode')!r}")
        run_as = tdef.get("run_as") if "run_as" in tdef else raw.get("run_as")
        if not isinstance(run_as, dict) or not (run_as.get("service_principal_name") or run_as.get("user_name")):
            report.add(where, ("targets", name, "run_as"),
                       f"expected run_as with service_principal_name, found {run_as!r}")
        root_path = (tdef.get("workspace") or {}).get("root_path")
        if not root_path:
            report.add(where, ("targets", name, "workspace", "root_path"),
                       f"expected an explicit workspace.root_path under the deploying service principal's home "
                       f"({SP_HOME_ROOT}/...), found none")


def _effective_pause(bundle: Bundle, job: dict, section: str) -> str:
    explicit = (job.get(section) or {}).get("pause_status")
    if explicit:
        return str(explicit)
    preset = (bundle.config.get("presets") or {}).get("trigger_pause_status")
    if preset:
        return str(preset)
    return "PAUSED" if bundle.mode == "development" else "UNPAUSED"


def check_bundle_target(bundle: Bundle, root: Path, report: Report, wheel_entry_points: dict[str, str] | None,
                        subcommands: dict[str, argparse.ArgumentParser]) -> None:
    target = bundle.target
    run_as = bundle.config.get("run_as") or {}
    if target in PRODUCTION_TARGETS and not (run_as.get("service_principal_name") or run_as.get("user_name")):
        _add_at(report, bundle, ("run_as",),
                   f"[target {target}] run_as resolves to {run_as!r}; expected a service principal")

    for jkey, job in bundle.jobs.items():
        jpath = ("resources", "jobs", jkey)
        # active triggers in dev/test
        if target in NO_ACTIVE_TRIGGER_TARGETS:
            for section in ("schedule", "trigger", "continuous"):
                if section in job and _effective_pause(bundle, job, section) == "UNPAUSED":
                    ppath = (*jpath, section, "pause_status")
                    written = _written(bundle, ppath)
                    how = f" (written as {written!r})" if written not in (None, "UNPAUSED") else ""
                    _add_at(report, bundle, ppath,
                               f"[target {target}] expected PAUSED (no active {section} outside prod), "
                               f"found UNPAUSED{how}")

        _check_tasks(bundle, job, jpath, report, wheel_entry_points, subcommands)


def _written(bundle: Bundle, path: tuple) -> Any:
    """The value at ``path`` as written in the bundle's files (the target override's if one sets
    it), or None: for messages that show what was written behind a resolved value."""
    try:
        files = bundle_files(bundle.root)
    except ConfigError:
        return None
    for candidate in (("targets", bundle.target, *path), path):
        for _, data in files:
            node: Any = data
            for part in candidate:
                if isinstance(node, dict) and part in node:
                    node = node[part]
                else:
                    node = None
                    break
            if node is not None:
                return node
    return None


def _add_at(report: Report, bundle: Bundle, path: tuple, message: str) -> None:
    """A problem at ``path`` of the resolved configuration, with the file and line the CLI names."""
    file, line = bundle.where(path)
    report.add(file, path, message, line)


# Each rule below says where it breaks: `bundle validate --strict` (databricks/cli v1.12.1) refuses only those
# marked "also refused by databricks/cli"; the rest pass the CLI and break at deploy or run, or are ours.
def _check_tasks(bundle: Bundle, job: dict, jpath: tuple, report: Report,
                 wheel_entry_points: dict[str, str] | None,
                 subcommands: dict[str, argparse.ArgumentParser]) -> None:
    tasks = [t for t in job.get("tasks") or [] if isinstance(t, dict)]
    keys = [t.get("task_key") for t in tasks]
    by_key = {t.get("task_key"): t for t in tasks}
    clusters = {c.get("job_cluster_key") for c in job.get("job_clusters") or [] if isinstance(c, dict)}
    params = {p.get("name") for p in job.get("parameters") or [] if isinstance(p, dict)}

    # depends_on
    task_graph: dict[str, list[str]] = {}
    for i, task in enumerate(tasks):
        tpath = (*jpath, "tasks", i)
        task_graph[task.get("task_key")] = []
        for j, dep in enumerate(task.get("depends_on") or []):
            dkey = dep.get("task_key") if isinstance(dep, dict) else None
            # not checked by databricks/cli v1.12.1; the Jobs API answers "Invalid dependency graph" at deploy
            if dkey not in by_key:
                _add_at(report, bundle, (*tpath, "depends_on", j, "task_key"),
                           f"depends on {dkey!r}, which is not a task of this job; expected one of: "
                           f"{', '.join(k for k in keys if k != task.get('task_key'))}")
                continue
            task_graph[task.get("task_key")].append(dkey)
            # the Jobs API: outcome "can only be specified on condition task dependencies": docs: api/jobs
            if "outcome" in dep and "condition_task" not in by_key[dkey]:
                _add_at(report, bundle, (*tpath, "depends_on", j, "outcome"),
                           f"outcome set, but {dkey!r} is not a condition_task")
        jck = task.get("job_cluster_key")
        # also refused by databricks/cli bundle/config/validate/job_cluster_key_defined.go (warning; --strict)
        if jck is not None and jck not in clusters:
            _add_at(report, bundle, (*tpath, "job_cluster_key"),
                       f"{jck!r} is not a job_clusters entry; expected one of: {', '.join(sorted(clusters))}")

    # not checked by databricks/cli v1.12.1; the Jobs API answers "Invalid dependency graph" at deploy
    cycle = graph.find_cycle(task_graph)
    if cycle:
        first = keys.index(cycle[0])
        _add_at(report, bundle, (*jpath, "tasks", first, "depends_on"),
                   f"the task graph has a cycle: {' -> '.join(cycle)} (each depends on the next); "
                   "expected an acyclic graph")
        upstream = {k: set() for k in task_graph}
    else:
        upstream = {k: graph.ancestors(task_graph, k) for k in task_graph}

    for i, task in enumerate(tasks):
        tpath = (*jpath, "tasks", i)
        key = task.get("task_key")
        # python_wheel_task: entry point + flags
        pwt = task.get("python_wheel_task")
        if isinstance(pwt, dict):
            _check_wheel_task(pwt, (*tpath, "python_wheel_task"), bundle, report, wheel_entry_points, subcommands)
            # runs, then fails (the package is not installed): docs: jobs/python-wheel
            if not task.get("libraries") and not task.get("environment_key"):
                _add_at(report, bundle, tpath, "python_wheel_task without the wheel; expected libraries: "
                           "[{whl: ../dist/*.whl}] or an environment_key")
        # dynamic references in every string of the task
        for spath, text in _strings(task, tpath):
            # a bad one is an error or passed on as text: docs: jobs/dynamic-value-references
            for ref in _DYNAMIC.findall(text):
                if not _KNOWN_DYNAMIC.match(ref):
                    _add_at(report, bundle, spath, f"unknown dynamic value reference {{{{{ref}}}}}")
            # resolves only to a defined job parameter: docs: jobs/job-parameters
            for pname in _JOB_PARAM_REF.findall(text):
                if pname not in params:
                    _add_at(report, bundle, spath, f"{{{{job.parameters.{pname}}}}} is not a job parameter; "
                               f"expected one of: {', '.join(sorted(p for p in params if p)) or 'none'}")
            for src, value in _TASK_VALUE_REF.findall(text):
                where = f"{{{{tasks.{src}.values.{value}}}}}"
                if src not in by_key:  # docs: jobs/dynamic-value-references
                    _add_at(report, bundle, spath, f"{where}: no task {src!r} in this job")
                    continue
                # a task value is read by subsequent tasks only: docs: jobs/task-values
                if src not in upstream.get(key, set()):
                    _add_at(report, bundle, spath, f"{where}: task {src!r} is not upstream of {key!r}; expected "
                               f"{key!r} to depend on it (directly or transitively)")
                # runs, then never resolves: only Python notebooks set task values: docs: jobs/task-values
                if "notebook_task" not in by_key[src]:
                    kind = next((k for k in by_key[src] if k.endswith("_task")), "task")
                    _add_at(report, bundle, spath, f"{where}: task {src!r} is a {kind}; only Python notebook tasks "
                               "can set task values (dbutils.jobs.taskValues, docs: jobs/task-values), so this "
                               "never resolves; expected a gate on exit codes, run_if, or a condition on a literal")


def _check_wheel_task(pwt: dict, path: tuple, bundle: Bundle, report: Report,
                      wheel_entry_points: dict[str, str] | None,
                      subcommands: dict[str, argparse.ArgumentParser]) -> None:
    pkg = pwt.get("package_name")
    # missing: also refused by databricks/cli bundle/config/validate/required.go; wrong: docs: jobs/python-wheel
    if pkg != PACKAGE_NAME:
        _add_at(report, bundle, (*path, "package_name"), f"expected {PACKAGE_NAME!r}, found {pkg!r}")
    ep = pwt.get("entry_point")
    # missing: also refused by databricks/cli bundle/config/validate/required.go; unknown: docs: jobs/python-wheel
    if wheel_entry_points is not None and ep not in wheel_entry_points:
        _add_at(report, bundle, (*path, "entry_point"),
                   f"{ep!r} is not an entry point in [project.entry-points.\"{ENTRY_POINT_GROUP}\"] of "
                   f"pyproject.toml; expected one of: {', '.join(sorted(wheel_entry_points))}")
        return
    sub = subcommands.get(ep)
    if sub is None:  # ours: every entry point of the wheel is a spark-mlops subcommand
        _add_at(report, bundle, (*path, "entry_point"), f"{ep!r} is not a spark-mlops subcommand; expected one of: "
                   f"{', '.join(sorted(subcommands))}")
        return
    options, required = commands.long_options(sub)
    named = pwt.get("named_parameters") or {}
    # ours: job parameters are pushed down only into keyword-argument wheel tasks (docs: jobs/task-parameters)
    if pwt.get("parameters"):
        _add_at(report, bundle, (*path, "parameters"), "positional parameters; expected named_parameters (--key=value)")
    for name in named:  # ours: the wheel's CLI would exit 2 (EXIT_CONFIG, argparse) at run time
        if f"--{name}" not in options:
            _add_at(report, bundle, (*path, "named_parameters", name),
                       f"`spark-mlops {ep}` has no option --{name}; expected one of: "
                       f"{', '.join(sorted(o[2:] for o in options if o != '--help'))}")
    for opt in sorted(required):  # ours: the wheel's CLI would exit 2 (argparse) at run time
        if opt[2:] not in named:
            _add_at(report, bundle, (*path, "named_parameters"), f"`spark-mlops {ep}` requires {opt}; not passed")
    if "report-only" in named and str(named["report-only"]).strip().lower() not in ("false", "0", "no", "off", ""):
        # ours: the gate is validate's exit code (promote depends on it): report-only exits 0 on a rejection.
        _add_at(report, bundle, (*path, "named_parameters", "report-only"),
                   "report-only makes validate exit 0 when it rejects, so promote would run on a rejected "
                   "model; expected no report-only in a job")


def _summary(bundle: Bundle) -> str:
    res = bundle.config.get("resources") or {}
    jobs = ", ".join(f"{k} ({len(v.get('tasks') or [])} tasks)" for k, v in bundle.jobs.items())
    others = ", ".join(f"{len(v)} {k}" for k, v in res.items() if k != "jobs" and v)
    active = [k for k, j in bundle.jobs.items()
              if any(s in j and _effective_pause(bundle, j, s) == "UNPAUSED" for s in ("schedule", "trigger", "continuous"))]
    run_as = bundle.config.get("run_as") or {}
    who = run_as.get("service_principal_name") or run_as.get("user_name") or "deploying user"
    return (f"mode {bundle.mode or 'default'}, run as {who}, root {bundle.config['workspace'].get('root_path')}; "
            f"jobs: {jobs}; {others}; active schedules: {', '.join(active) or 'none'}")


# ---------------------------------------------------------------- the deployed view (schema prefixes)


@dataclass
class BundleSchemas:
    """The UC schemas a target's bundle creates: deployed name and name as written, per resource key."""

    prefix: str  # what the CLI puts in front of bundle-created schema names ("" = nothing)
    deployed: dict[str, str] = field(default_factory=dict)
    written: dict[str, str] = field(default_factory=dict)


def _normalize_prefix(prefix: str) -> str:
    """databricks/cli ``normalizePrefix`` (apply_presets.go): '[dev lennart] ' -> 'dev_lennart_'."""
    text = prefix.replace("[", "").strip(" ")
    suffix = "_" if text.endswith("]") else ""
    return re.sub(r"_+", "_", re.sub(r"[^\w]|_", "_", text.lower())).strip("_") + suffix


def schema_prefix(config: dict) -> str:
    """The prefix the CLI gave schemas the bundle creates in this resolved target:
    ``presets.name_prefix`` (development mode sets it to ``[dev <short name>] ``:
    apply_target_mode.go), normalized; none with ``experimental.skip_name_prefix_for_schema``
    (apply_presets.go)."""
    skip = (config.get("experimental") or {}).get("skip_name_prefix_for_schema")
    if skip is True or str(skip).lower() == "true":
        return ""
    prefix = (config.get("presets") or {}).get("name_prefix") or ""
    return _normalize_prefix(str(prefix)) if prefix else ""


def bundle_schemas(bundle: Bundle) -> BundleSchemas:
    """The schemas the target creates, as the CLI deploys them (prefixed) and as written."""
    info = BundleSchemas(schema_prefix(bundle.config))
    for key, schema in ((bundle.config.get("resources") or {}).get("schemas") or {}).items():
        if isinstance(schema, dict) and isinstance(schema.get("name"), str):
            info.deployed[key] = schema["name"]
            info.written[key] = schema["name"].removeprefix(info.prefix)
    return info


# ---------------------------------------------------------------- deployment rules (issue 9, issue 8)

# Entry points that log or load a Spark model and so need a UC volume as dfs_tmpdir on Databricks
# (mlflow/spark/__init__.py `_check_databricks_uc_volume_tmpdir_availability`; DBFS root may be disabled).
# `monitor` is not one: it reads the version's baseline JSON and the predictions, never the model.
SPARK_MODEL_ENTRY_POINTS = ("train", "validate", "score", "deploy-model")
SP_HOME_ROOT = "/Workspace/Users/${workspace.current_user.userName}"
_SHARED_PATH = re.compile(r"^(/Workspace)?/Shared(/|$)")
# A Beta or preview runtime: the first release of a major (18.0.x) or a snapshot/beta key.
_BETA_RUNTIME = re.compile(r"^\d+\.0\.x-|snapshot|beta", re.I)
_RESOURCE_ID_REF = re.compile(r"^\$\{resources\.jobs\.([\w-]+)\.id\}$")
# Workspace fields that configure authentication: the CLI does not interpolate them
# (databricks/cli bundle/config/validate/interpolation_in_auth_config.go; acceptance test variables/host).
_AUTH_FIELDS = ("host", "profile", "auth_type", "client_id", "azure_client_id", "azure_tenant_id",
                "azure_resource_id", "account_id", "workspace_id")
# Targets that deploy to a shared workspace and must name it (dev uses the developer's own profile).
PINNED_TARGETS = ("test", "staging", "prod")
RETRAINING_JOB = "retraining"
MODEL_SOURCES = ("train", "staging")
DEPLOYMENT_JOB = "model_deployment"
SCHEDULED_TARGET = "prod"


def check_workspace_pinning(raw: dict, origins: dict, report: Report) -> None:
    """Each shared target names its workspace's CLI profile, literally; prod's differs from staging's."""
    places = [(("workspace",), raw.get("workspace") or {})]
    for tname, tdef in (raw.get("targets") or {}).items():
        if isinstance(tdef, dict):
            places.append((("targets", tname, "workspace"), tdef.get("workspace") or {}))
    for path, ws in places:
        for fname in _AUTH_FIELDS:
            value = ws.get(fname) if isinstance(ws, dict) else None
            if isinstance(value, str) and "${" in value:
                report.add(origin_of(origins, path), (*path, fname),
                           f"{value!r}: the CLI does not interpolate workspace.{fname} (a field that configures "
                           "authentication); expected a literal profile name per target")
    targets = raw.get("targets") or {}
    profiles: dict[str, str] = {}
    for name in PINNED_TARGETS:
        tdef = targets.get(name)
        if not isinstance(tdef, dict):
            continue
        ws = tdef.get("workspace") or {}
        profile = ws.get("profile") or (raw.get("workspace") or {}).get("profile")
        if not profile:
            report.add(origin_of(origins, ("targets", name)), ("targets", name, "workspace", "profile"),
                       f"expected the CLI profile of the {name} target's workspace (e.g. spark-mlops-"
                       f"{'staging' if name == 'test' else name}), found none: without it `-t {name}` deploys "
                       "to whatever workspace the environment points at")
        else:
            profiles[name] = str(profile)
    if "prod" in profiles and profiles["prod"] in (profiles.get("staging"), profiles.get("test")):
        report.add(origin_of(origins, ("targets", "prod")), ("targets", "prod", "workspace", "profile"),
                   f"prod uses the same profile as staging ({profiles['prod']!r}); expected the prod "
                   "workspace's own profile")


def _top_level_groups(bundle: Bundle) -> set[str]:
    """Groups of the top-level ``permissions``: the CLI copies them onto every resource
    (apply_bundle_permissions.go), so a rule about them is said once, at the top level."""
    return {str(p.get("group_name")) for p in bundle.config.get("permissions") or []
            if isinstance(p, dict) and p.get("group_name")}


def _current_user(bundle: Bundle) -> dict:
    return (bundle.config.get("workspace") or {}).get("current_user") or {}


def _per_user(schema: str, bundle: Bundle) -> bool:
    """Whether a resolved schema name is the deploying user's own (it carries their short name)."""
    short = str(_current_user(bundle).get("short_name") or "")
    return bool(short) and (short in schema or _normalize_prefix(short) in schema)


def check_deployment_rules(bundle: Bundle, schemas: BundleSchemas, report: Report) -> None:
    target = bundle.target
    tag = f"[target {target}]"
    production = bundle.mode == "production" or target in PRODUCTION_TARGETS

    def add(path: tuple, message: str) -> None:
        _add_at(report, bundle, path, f"{tag} {message}")

    # -- root path and experiments: never where every workspace user can write (production mode)
    if production:
        # (A root under /Workspace/Shared, writable by every user, the CLI itself refuses with
        # --strict: databricks/cli bundle/permissions/validate.go; tests/bundle/test_databricks_cli.py.)
        root_path = str((bundle.config.get("workspace") or {}).get("root_path") or "")
        home = f"/Workspace/Users/{_current_user(bundle).get('userName', '')}/"
        if root_path and not root_path.startswith(home):
            add(("workspace", "root_path"),
                f"{root_path!r}; expected a root path under the deploying service principal's home, "
                f"{SP_HOME_ROOT}/... (databricks/cli validate_target_mode.go)")
        for key, exp in ((bundle.config.get("resources") or {}).get("experiments") or {}).items():
            name = str((exp or {}).get("name") or "")
            if _SHARED_PATH.match(name):
                add(("resources", "experiments", key, "name"),
                    f"{name!r} is writable by every workspace user; expected the service principal's home "
                    "(/Users/${workspace.current_user.userName}/...)")

    # -- the runtime: an LTS key in staging/prod
    resources = bundle.config.get("resources") or {}
    for jkey, job in bundle.jobs.items():
        clusters = [(("resources", "jobs", jkey, "job_clusters", i, "new_cluster"), c.get("new_cluster"))
                    for i, c in enumerate(job.get("job_clusters") or []) if isinstance(c, dict)]
        clusters += [(("resources", "jobs", jkey, "tasks", i, "new_cluster"), t.get("new_cluster"))
                     for i, t in enumerate(job.get("tasks") or []) if isinstance(t, dict)]
        for cpath, cluster in clusters:
            version = (cluster or {}).get("spark_version") if isinstance(cluster, dict) else None
            if production and isinstance(version, str) and _BETA_RUNTIME.search(version):
                source = " (var.spark_version)" if bundle.variables.get("spark_version") == version else ""
                add((*cpath, "spark_version"),
                    f"spark_version {version!r}{source} is a Beta/preview runtime ('.0.x' is the first, Beta "
                    "release of a major, e.g. 18.0 ended support 2026-06-09); expected an LTS key such as "
                    "18.x-cpu-ml-scala2.13 (list them with `databricks clusters spark-versions`)")

    # -- schemas: the one the target creates, and per developer in development mode
    unprefixed = {name: schemas.deployed[key] for key, name in schemas.written.items()
                  if schemas.prefix and name not in schemas.deployed.values()}
    keys = {name: key for key, name in schemas.written.items()}
    for path, schema in _schema_uses(bundle):
        if schema in unprefixed:
            add(path, f"names schema {schema!r}, but the target's name prefix makes the CLI create it as "
                      f"{unprefixed[schema]!r} (presets.name_prefix and development mode prefix UC schemas: "
                      "databricks/cli bundle/config/mutator/resourcemutator/apply_presets.go); expected "
                      f"${{resources.schemas.{keys[schema]}.name}}")
        elif bundle.mode == "development" and not _per_user(schema, bundle):
            add(path, f"writes to schema {schema!r}, which every developer shares (development mode prefixes "
                      "jobs, experiments, models and bundle-created schemas, but not volumes or tables); "
                      "expected a schema per developer: a resources.schemas entry referenced as "
                      "${resources.schemas.<key>.name}, or a name with ${workspace.current_user.short_name}")

    # -- principals: workspace groups for permissions, account principals for grants
    top_groups = _top_level_groups(bundle)
    for path, node in _walk_dicts(resources, ("resources",)):
        for i, perm in enumerate(node.get("permissions") or [] if isinstance(node.get("permissions"), list) else []):
            if (isinstance(perm, dict) and str(perm.get("group_name", "")).lower() == "account users"
                    and perm.get("group_name") not in top_groups):
                add((*path, "permissions", i, "group_name"),
                    "'account users' is an account-level group for Unity Catalog grants; workspace permissions "
                    "take a workspace group (e.g. 'users'): expected ${var.workspace_readers_group}")
        for i, grant in enumerate(node.get("grants") or [] if isinstance(node.get("grants"), list) else []):
            if isinstance(grant, dict) and str(grant.get("principal", "")).lower() == "users":
                add((*path, "grants", i, "principal"),
                    "'users' is a workspace-local group, which Unity Catalog cannot grant to (docs: "
                    "sql/language-manual/sql-ref-principal); expected an account principal such as 'account "
                    "users': ${var.uc_model_readers}")
    for i, perm in enumerate(bundle.config.get("permissions") or []):
        if isinstance(perm, dict) and str(perm.get("group_name", "")).lower() == "account users":
            add(("permissions", i, "group_name"),
                "'account users' is an account-level group for Unity Catalog grants; workspace permissions take "
                "a workspace group (e.g. 'users'): expected ${var.workspace_readers_group}")

    # -- dfs_tmpdir: every task that logs or loads a Spark model gets a UC volume of the bundle
    volumes = {f"/Volumes/{v.get('catalog_name')}/{v.get('schema_name')}/{v.get('name')}"
               for v in (resources.get("volumes") or {}).values() if isinstance(v, dict)}
    for jkey, job in bundle.jobs.items():
        for i, task in enumerate(job.get("tasks") or []):
            pwt = task.get("python_wheel_task") if isinstance(task, dict) else None
            if not isinstance(pwt, dict) or pwt.get("entry_point") not in SPARK_MODEL_ENTRY_POINTS:
                continue
            named = pwt.get("named_parameters") or {}
            ppath = ("resources", "jobs", jkey, "tasks", i, "python_wheel_task", "named_parameters")
            tmp = named.get("dfs-tmpdir")
            if not tmp:
                add(ppath, f"task {task.get('task_key')!r} (spark-mlops {pwt['entry_point']}) logs or loads a Spark "
                           "model but passes no dfs-tmpdir; expected dfs-tmpdir: ${var.dfs_tmpdir} (mlflow.spark "
                           "stages model files in DFS, and DBFS root may be disabled)")
            elif str(tmp).rstrip("/") not in volumes:
                add((*ppath, "dfs-tmpdir"), f"{tmp!r} is not a UC volume of this bundle; expected one of: "
                    f"{', '.join(sorted(volumes)) or 'none (declare resources.volumes)'}")

    # -- run_job_task: a job of this bundle, by reference
    for jkey, job in bundle.jobs.items():
        for i, task in enumerate(job.get("tasks") or []):
            rjt = task.get("run_job_task") if isinstance(task, dict) else None
            if not isinstance(rjt, dict):
                continue
            m = _RESOURCE_ID_REF.match(str(rjt.get("job_id", "")))
            if not m or m.group(1) not in bundle.jobs or m.group(1) == jkey:
                add(("resources", "jobs", jkey, "tasks", i, "run_job_task", "job_id"),
                    f"{rjt.get('job_id')}; expected ${{resources.jobs.<key>.id}} of another job of this bundle "
                    f"({', '.join(k for k in bundle.jobs if k != jkey)})")

    # -- where models come from (issue 8)
    source = str(bundle.variables.get("model_source", "train"))
    if source not in MODEL_SOURCES:
        add(("variables", "model_source"), f"expected one of {', '.join(MODEL_SOURCES)}, found {source!r}")
    elif source == "staging" and DEPLOYMENT_JOB not in bundle.jobs:
        add(("variables", "model_source"), f"model_source is 'staging' but this target has no {DEPLOYMENT_JOB} "
            "job to copy the staging model (it is defined for prod only); expected 'train'")
    elif source == "staging" and bundle.variables.get("source_catalog") == bundle.variables.get("catalog"):
        add(("variables", "source_catalog"),
            f"model_source is 'staging' but source_catalog is this target's own catalog "
            f"({bundle.variables.get('catalog')!r}); expected the staging catalog")

    # -- the retraining schedule (issue 8): active in prod when prod trains, paused everywhere else
    job = bundle.jobs.get(RETRAINING_JOB)
    if isinstance(job, dict):
        jpath = ("resources", "jobs", RETRAINING_JOB)
        if "schedule" not in job:
            add(jpath, "expected a weekly schedule (paused outside prod)")
        else:
            pause = _effective_pause(bundle, job, "schedule")
            written = _written(bundle, (*jpath, "schedule", "pause_status"))
            how = f" (written as {written!r})" if written not in (None, pause) else ""
            trains = str(bundle.variables.get("model_source")) == "train"
            if target != SCHEDULED_TARGET and pause != "PAUSED":
                add((*jpath, "schedule", "pause_status"),
                    f"expected PAUSED (retraining runs on its schedule only in {SCHEDULED_TARGET}), found {pause}{how}")
            elif target == SCHEDULED_TARGET and trains and pause != "UNPAUSED":
                add((*jpath, "schedule", "pause_status"),
                    f"model_source is 'train', so {SCHEDULED_TARGET} retrains on this schedule: expected UNPAUSED, "
                    f"found {pause}{how}")
        if job.get("max_concurrent_runs") != 1:
            add((*jpath, "max_concurrent_runs"), f"expected 1 (one retraining at a time), found "
                f"{job.get('max_concurrent_runs')!r}")
        if (job.get("queue") or {}).get("enabled") is not False:
            add((*jpath, "queue"), "expected queue: {enabled: false} (a second trigger while retraining runs must "
                "be skipped, not queued)")


# ---------------------------------------------------------------- operations (issues 19 and 22)

GATE_ENTRY_POINTS = ("drift-check",)  # a failure here is a signal, and the run still "succeeds with failures"
OPERATIONS_JOBS = ("rollback", "status")  # run by people on call in staging and prod
EVERYONE = {"permissions": ("users",), "grants": ("account users",)}


def check_operations(bundle: Bundle, report: Report) -> None:
    """Timeouts, alerts, who may run operations, who may read, where a quality monitor may exist."""
    target = bundle.target
    production = bundle.mode == "production" or target in PRODUCTION_TARGETS

    def add(path: tuple, message: str) -> None:
        _add_at(report, bundle, path, f"[target {target}] {message}")

    for jkey, job in bundle.jobs.items():
        jpath = ("resources", "jobs", jkey)
        for problem in timeouts.problems(jkey, job, bundle.jobs):
            add((*jpath, *problem.path), problem.message)
        if not production:
            continue
        # docs: jobs/notifications: a run "succeeded with failures" counts as a success, so job-level
        # on_failure never fires for a gate task whose failure leaves every leaf successful.
        for i, task in enumerate(job.get("tasks") or []):
            pwt = task.get("python_wheel_task") if isinstance(task, dict) else None
            if not isinstance(pwt, dict) or pwt.get("entry_point") not in GATE_ENTRY_POINTS:
                continue
            notified = ((task.get("email_notifications") or {}).get("on_failure")
                        or (task.get("webhook_notifications") or {}).get("on_failure"))
            if not notified:
                add((*jpath, "tasks", i, "email_notifications", "on_failure"),
                    f"task {task.get('task_key')!r} signals by failing (spark-mlops {pwt['entry_point']}), which "
                    "leaves the run 'succeeded with failures', and job-level on_failure does not fire for that "
                    "(docs: jobs/notifications); expected task-level email_notifications.on_failure")
    if production:
        for jkey in OPERATIONS_JOBS:
            job = bundle.jobs.get(jkey)
            if not isinstance(job, dict):
                continue
            runners = [p for p in job.get("permissions") or [] if isinstance(p, dict)
                       and p.get("level") in ("CAN_MANAGE_RUN", "CAN_MANAGE") and p.get("group_name")]
            if not runners:
                add(("resources", "jobs", jkey, "permissions"),
                    f"nobody but the service principal can run {jkey!r}; expected CAN_MANAGE_RUN for "
                    "${var.oncall_group} (a person cannot `bundle run` a target deployed from the service "
                    "principal's home: databricks/cli cmd/bundle/run.go)")
        # -- readers are a named group, not everyone
        everyone = [(path, node) for path, node in _walk_dicts(bundle.config.get("resources") or {}, ("resources",))]
        everyone.append((("permissions",), {"permissions": bundle.config.get("permissions")}))
        top_groups = _top_level_groups(bundle)
        for path, node in everyone:
            for section, field_name in (("permissions", "group_name"), ("grants", "principal")):
                entries = node.get(section)
                for i, entry in enumerate(entries if isinstance(entries, list) else []):
                    who = str((entry or {}).get(field_name, "")) if isinstance(entry, dict) else ""
                    if section == "permissions" and path != ("permissions",) and who in top_groups:
                        continue  # the CLI's copy of a top-level permission: said at the top level
                    if who.lower() in EVERYONE[section]:
                        where = path if path == ("permissions",) else (*path, section)
                        add((*where, i, field_name),
                            f"{who!r} is everyone in the {'workspace' if section == 'permissions' else 'account'}; "
                            "expected a named group (var.workspace_readers_group / var.uc_model_readers)")
    # -- Lakehouse Monitoring needs its table when the monitor is created; only targets that score have one
    for key in ((bundle.config.get("resources") or {}).get("quality_monitors") or {}):
        if target not in PRODUCTION_TARGETS:
            add(("resources", "quality_monitors", key),
                f"a quality monitor in target {target!r}, which never scores, so its table does not exist and "
                f"`bundle deploy` fails; expected quality monitors in {', '.join(PRODUCTION_TARGETS)} only "
                "(resources/optional/quality_monitor.yml)")


def _walk_dicts(node: Any, path: tuple) -> Iterator[tuple[tuple, dict]]:
    if isinstance(node, dict):
        yield path, node
        for k, v in node.items():
            yield from _walk_dicts(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk_dicts(v, (*path, i))


def _schema_uses(bundle: Bundle) -> Iterator[tuple[tuple, str]]:
    """(path, schema name) of every place the target writes to a UC schema: the tasks' ``schema``,
    the schema part of ``model-name`` and ``dfs-tmpdir``, and the UC resources' ``schema_name``."""
    resources = bundle.config.get("resources") or {}
    for rtype in ("registered_models", "volumes"):
        for key, res in (resources.get(rtype) or {}).items():
            if isinstance(res, dict) and isinstance(res.get("schema_name"), str):
                yield ("resources", rtype, key, "schema_name"), res["schema_name"]
    for jkey, job in bundle.jobs.items():
        for i, task in enumerate(job.get("tasks") or []):
            pwt = task.get("python_wheel_task") if isinstance(task, dict) else None
            named = (pwt or {}).get("named_parameters") or {}
            path = ("resources", "jobs", jkey, "tasks", i, "python_wheel_task", "named_parameters")
            if isinstance(named.get("schema"), str):
                yield (*path, "schema"), named["schema"]
            parts = str(named.get("model-name", "")).split(".")
            if len(parts) == 3:
                yield (*path, "model-name"), parts[1]
            tmp = str(named.get("dfs-tmpdir", "")).split("/")
            if len(tmp) >= 4 and tmp[1] == "Volumes":
                yield (*path, "dfs-tmpdir"), tmp[3]


# ---------------------------------------------------------------- paths outside the repository

# Local filesystem paths (one machine's layout, not the workspace's): an absolute path under a
# top-level folder such as home, tmp or work, or on a Windows drive. (A tilde path is anyone's home.)
_LOCAL_PATH = re.compile(
    r"(?<![\w$}/.~-])(/(?:work|home|root|tmp|mnt|opt|srv|var|private|etc)/[^\s\"'`,;)]*"
    r"|\b[A-Za-z]:\\[^\s\"'`,;)]*)"
)
_RELATIVE_PATH = re.compile(r"(?<![\w/.])((?:\.\./)+[^\s\"'`,;)]*)")


def local_paths(text: str, file_dir: Path, root: Path) -> list[str]:
    """Paths in ``text`` that point outside the repository: a machine's absolute paths, and
    relative paths (from ``file_dir``) that climb out of ``root``."""
    found = [m.group(1) for m in _LOCAL_PATH.finditer(text)]
    for m in _RELATIVE_PATH.finditer(text):
        target = (file_dir / m.group(1).split("*")[0]).resolve()
        if not target.is_relative_to(root):
            found.append(m.group(1))
    return found


def check_local_paths(root: Path, files: list[tuple[str, dict]], report: Report) -> None:
    """No file of the bundle (values or comments) points outside the repository."""
    for rel, _ in files:
        path = root / rel
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for found in local_paths(line, path.parent, root):
                report.add(rel, f"line {lineno}", f"{found!r} points outside the repository (a path on one "
                           "machine); expected a path inside the repository, a workspace path, or a pointer to "
                           "public docs or source")


# ---------------------------------------------------------------- driver


def check(root: str | Path = ".", targets: Iterable[str] | None = None, *,
          schema_path: str | Path | None = None) -> Report:
    """Run every check; never raises for a problem in the bundle, returns them in the report."""
    root = Path(root).resolve()
    report = Report()
    try:
        files = bundle_files(root)
        raw, origins = written_sections(files)
    except ConfigError as exc:
        report.add(*_split_config_error(exc))
        return report

    check_schema(files, root, report, Path(schema_path) if schema_path else None)
    check_written(files, report)
    check_comments(root, files, report)
    check_local_paths(root, files, report)
    check_targets_written(raw, origins, report)
    check_workspace_pinning(raw, origins, report)

    wheel_entry_points = project_entry_points(root)
    if wheel_entry_points is None:
        report.add("pyproject.toml", "<file>", "missing; expected the project's pyproject.toml next to databricks.yml")
    subcommands = commands.subcommands()

    names = list(targets) if targets else list((raw.get("targets") or {}).keys())
    placeholder = ((raw.get("variables") or {}).get("service_principal") or {})
    placeholder = placeholder.get("default") if isinstance(placeholder, dict) else None
    for name in names:
        result = databricks_cli.validate(root, name)
        for diagnostic in result.diagnostics:  # the CLI's own verdicts, each with where it was written
            if diagnostic.severity == "Error":
                report.add(diagnostic.file or "databricks.yml", diagnostic.path or "<bundle>",
                           f"[target {name}] the Databricks CLI refuses it: {diagnostic.text}", diagnostic.line)
            elif diagnostic.severity == "Warning":
                report.warnings.append(f"target {name}: databricks bundle validate: {diagnostic}")
        if result.errors or result.config is None:
            report.targets.append(TargetResult(name, None, "refused by the Databricks CLI"))
            continue
        bundle = databricks_cli.bundle_of(root, result)
        check_bundle_target(bundle, root, report, wheel_entry_points, subcommands)
        check_deployment_rules(bundle, bundle_schemas(bundle), report)
        check_operations(bundle, report)
        for finding in job_rules.check(bundle.config):  # rules on the resolved jobs (job_rules.py)
            if finding.severity == job_rules.WARNING:
                report.warnings.append(finding.message)
            else:
                _add_at(report, bundle, tuple(finding.path), f"[target {name}] {finding.message}")
        if isinstance(placeholder, str) and placeholder and set(placeholder) <= set("0-"):
            report.warnings.append(f"target {name}: the service principal defaults to the placeholder "
                                   f"{placeholder}; set BUNDLE_VAR_service_principal (or --var) before deploying")
        report.targets.append(TargetResult(name, bundle, _summary(bundle)))
    return report


def _split_config_error(exc: ConfigError) -> tuple[str, str, str]:
    parts = str(exc).split(": ", 2)
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    return "databricks.yml", "<bundle>", str(exc)


def main(root: str | Path = ".", targets: list[str] | None = None, show: bool = False, *,
         schema_path: str | Path | None = None) -> int:
    report = check(root, targets, schema_path=schema_path)
    out = sys.stdout
    if report.schema_source:
        print(f"schema: {report.schema_source}", file=out)
    for warning in report.warnings:
        print(f"warning: {warning}", file=out)
    for result in report.targets:
        failed = any(f"[target {result.target}]" in p.message for p in report.problems)
        status = "FAILED" if failed or result.bundle is None else "ok"
        print(f"{result.target}: {status}: {result.summary}", file=out)
        if show and result.bundle is not None:
            print(f"--- # resolved view of target {result.target}", file=out)
            print(yaml.safe_dump(result.bundle.config, sort_keys=False, width=120), file=out)
    if report.problems:
        print(f"{len(report.problems)} problem(s):", file=out)
        for problem in report.problems:
            print(f"  {problem}", file=out)
        return 1
    print("bundle ok", file=out)
    return 0
