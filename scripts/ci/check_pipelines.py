"""Semantic checks of the Azure Pipelines files, beyond what the JSON schema can see.

Checked, for every file under ``.azure/pipelines`` (``${{ if/else/each }}`` blocks spliced in):

* every ``template:`` path exists (relative to the file that uses it);
* every ``scripts/...`` file a step calls exists, and every shell script a step (or a script in
  ``scripts/ci``) starts is started as ``bash <path>``: pipeline artifacts lose the executable bit
  (microsoft/azure-pipelines-tasks#21170), and AzureCLI@2's ``scriptPath`` executes the file;
* no step, script or bundle build command calls a bare ``python`` (an agent may have none);
* in the PR pipeline, a stage that needs a service connection or a variable group sits under a
  compile-time ``${{ if }}``: Azure DevOps resolves both when the pipeline compiles, so otherwise a
  repository without them fails before the offline stage runs;
* ``--force-lock`` appears only on the per-run ``test`` deployment's destroy
  (``bundle destroy`` in ``scripts/ci/bundle-integration.sh``), never for staging/prod;
* every job named by ``bundle run <job>``, ``--run <job>``, ``--job <job>`` or
  ``spark-mlops run <job>`` (in the YAML and in ``scripts/ci/*.sh``) is a job of the bundle
  (``resources.jobs.<key>`` in ``databricks.yml`` and its includes);
* every ``-t/--target/--validate <target>`` is a target of ``databricks.yml``;
* the PR pipeline never deploys, runs or destroys anything on ``staging``/``prod``, uses neither
  their environments nor the staging or prod service connections and variable groups: its
  workspace stage signs in as the PR service principal only (``spark-mlops-pr``; a
  ``serviceConnection`` parameter must offer no other value);
* every ``AzureCLI`` task is ``AzureCLI@3`` or later with ``allowNoSubscriptions: true``: the
  Databricks service principals have no Azure role, and AzureCLI@2 always runs ``az account
  set`` after login (microsoft/azure-pipelines-tasks Tasks/AzureCLIV2 vs Tasks/AzureCLIV3);
* every step of ``templates/steps/databricks-bundle.yml`` (the ones that copy job output into the
  log) runs with ``target: {commands: restricted, settableVariables: none}``;
* a step that writes to ``staging``/``prod`` (deploy/run) runs only inside a ``deployment`` job
  bound to the environment ``databricks-<target>``;
* every call of ``templates/steps/databricks-bundle.yml`` says which workspace its stage's
  variable group reaches (parameter ``workspace``, matching the stage's group:
  ``spark-mlops-staging`` and ``spark-mlops-pr`` reach staging, ``spark-mlops-prod`` prod), and every
  ``-t/--validate`` target in its arguments deploys to that workspace (scripts/ci/lib.sh
  ``ci_databricks_profile`` writes that workspace's CLI profile; a target of the other one would
  need the other workspace's credentials);
* a ``bundle destroy`` step runs under ``always()``  (or ``succeededOrFailed()``), is the last
  step of its job, follows every step that deploys a temporary target, and a template that
  receives the condition forwards it to its steps; its job sets ``cancelTimeoutInMinutes`` at least
  as long as the destroy step's timeout (a cancelled job gives always() steps only that long).

With ``CI=true`` a missing Azure Pipelines schema is a failure, not a skip.

Run: ``python scripts/ci/check_pipelines.py`` (also runs the schema validation when the schema
is found); ``--list-targets`` / ``--list-jobs`` print the bundle's targets / jobs.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import azure_schema  # noqa: E402

REPO_ROOT = azure_schema.REPO_ROOT
PR_PIPELINE = "pr-validation.yml"
PROTECTED_TARGETS = ("staging", "prod")
ALWAYS_CONDITIONS = ("always()", "succeededorfailed()")

_SCRIPT_RE = re.compile(r"(?<![\w.-])(scripts/[\w./-]+?\.(?:sh|py))\b")
_JOB_RES = (
    re.compile(r"\bbundle\s+run\s+([a-z_][a-z0-9_]*)\b"),
    re.compile(r"(?:^|\s)--(?:run|run-release|run-gate|job)[ =]([a-z_][a-z0-9_]*)\b"),
    re.compile(r"\bspark-mlops\s+run\s+([a-z_][a-z0-9_]*)\b"),
)
_TARGET_RE = re.compile(r"(?:^|\s)(?:-t|--target|--validate)[ =]([a-z_][\w-]*)\b")
_WRITE_TARGET_RE = re.compile(r"(?:^|\s)(?:-t|--target)[ =]([a-z_][\w-]*)\b")
_WORKSPACE_WRITE_RE = re.compile(
    r"\bbundle\s+(?:deploy|run|destroy)\b|bundle-deploy-and-run\.sh|bundle-integration\.sh"
)
_DESTROY_RE = re.compile(r"\bbundle\s+destroy\b|bundle-integration\.sh\s+destroy\b")
_TEMP_DEPLOY_RE = re.compile(r"bundle-integration\.sh\s+run\b|\bbundle\s+deploy\b")
# The workspace each shared target deploys to (its workspace.profile is spark-mlops-<workspace>;
# the same map as scripts/ci/lib.sh ci_target_workspace, both tested against databricks.yml).
TARGET_WORKSPACES = {"test": "staging", "staging": "staging", "prod": "prod"}
# The workspace each variable group's DATABRICKS_HOST is. spark-mlops-pr: the PR service
# principal, in the staging workspace, with rights on the per-run test_* schemas only.
GROUP_WORKSPACES = {"spark-mlops-staging": "staging", "spark-mlops-prod": "prod", "spark-mlops-pr": "staging"}
PR_IDENTITY = "spark-mlops-pr"  # the PR pipeline's service connection and variable group
PR_FORBIDDEN = ("spark-mlops-staging", "spark-mlops-prod", "databricks-prod", "databricks-staging")
BUNDLE_STEP_TEMPLATE = "databricks-bundle.yml"
MIN_AZURE_CLI_TASK = 3  # the first major version with allowNoSubscriptions
FORCE_LOCK_SCRIPT = "bundle-integration.sh"  # the only place allowed to force the deploy lock

# Step keys whose value is a shell command line, and inputs that name a file the task executes.
_COMMAND_KEYS = ("bash", "script", "inlineScript")
_EXECUTED_FILE_INPUTS = ("scriptPath", "filePath")
_SEGMENT_SPLIT = re.compile(r"\n|;|&&|\|\||\||\$\(|`")
_PREFIX_WORDS = {"then", "do", "else", "elif", "if", "while", "until", "exec", "!", "time", "{", "(",
                 "env", "command", "nohup", "sudo"}
_COMPILE_TIME_KEYS = ("azureSubscription", "connectedServiceNameARM", "connectedServiceName", "group")


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def command_words(text: str) -> list[str]:
    """The first word of every simple command in a shell command line (comments dropped).

    ``${{ parameters.script }}`` stands for a script path (``SCRIPT.sh``); other template
    expressions become ``X``, so that ``"${{ parameters.root }}/${{ parameters.script }}"`` reads
    as the path of a shell script.
    """
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    text = re.sub(r"\$\{\{\s*parameters\.script\s*\}\}", "SCRIPT.sh", text)
    text = re.sub(r"\$\{\{.*?\}\}", "X", text)
    firsts: list[str] = []
    for segment in _SEGMENT_SPLIT.split(text):
        words = segment.split()
        while words and (words[0] in _PREFIX_WORDS or re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0])):
            words.pop(0)
        if words:
            firsts.append(words[0].strip("\"'"))
    return firsts


def direct_script_calls(text: str) -> list[str]:
    """Shell scripts a command line executes directly (``x.sh`` instead of ``bash x.sh``)."""
    return [w for w in command_words(text) if w.endswith(".sh")]


def bare_python_calls(text: str) -> list[str]:
    return [w for w in command_words(text) if w == "python"]


# ---------------------------------------------------------------- the bundle


def _load(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def bundle_targets(root: Path = REPO_ROOT) -> list[str]:
    path = root / "databricks.yml"
    if not path.is_file():
        return []
    return list((_load(path).get("targets") or {}).keys())


def bundle_jobs(root: Path = REPO_ROOT) -> list[str]:
    path = root / "databricks.yml"
    if not path.is_file():
        return []
    main = _load(path)
    docs = [main]
    for pattern in main.get("include") or []:
        for inc in sorted(glob.glob(str(root / pattern))):
            docs.append(_load(Path(inc)))
    # Jobs may be defined for one target only, in databricks.yml or in an included file.
    docs += [t for doc in list(docs) for t in (doc.get("targets") or {}).values() if isinstance(t, dict)]
    jobs: list[str] = []
    for doc in docs:
        for key in ((doc.get("resources") or {}).get("jobs") or {}):
            if key not in jobs:
                jobs.append(key)
    return jobs


# ---------------------------------------------------------------- walking the YAML


@dataclass
class Step:
    """A step (or a step-template call) with where it sits."""

    file: Path
    path: tuple[Any, ...]
    node: dict[str, Any]
    ancestors: list[dict[str, Any]]
    siblings: list[Any]
    index: int
    text: str = field(init=False)

    def __post_init__(self) -> None:
        self.text = " ".join(_strings(self.node))

    def where(self, root: Path) -> str:
        return f"{_rel(self.file, root)}: {'/'.join(str(p) for p in self.path)}"

    def condition(self) -> str:
        cond = self.node.get("condition")
        if cond is None and isinstance(self.node.get("parameters"), dict):
            cond = self.node["parameters"].get("condition")
        return str(cond or "").strip()

    def job(self) -> dict[str, Any] | None:
        for anc in reversed(self.ancestors):
            if "job" in anc or "deployment" in anc:
                return anc
        return None


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for v in node.values():
            yield from _strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v)


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def _steps(file: Path, doc: Any) -> Iterator[Step]:
    def visit(node: Any, path: tuple[Any, ...], ancestors: list[dict[str, Any]]) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "steps" and isinstance(value, list):
                    for i, item in enumerate(value):
                        if isinstance(item, dict):
                            yield_list.append(Step(file, path + (key, i), item, [*ancestors, node], value, i))
                visit(value, path + (key,), [*ancestors, node])
        elif isinstance(node, list):
            for i, item in enumerate(node):
                visit(item, path + (i,), ancestors)

    yield_list: list[Step] = []
    visit(doc, (), [])
    yield from yield_list


def load_pipeline(path: Path) -> Any:
    return azure_schema.splice_expressions(azure_schema.load_yaml(path))


def _template_refs(doc: Any) -> Iterator[str]:
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key == "template" and isinstance(value, str):
                yield value
            else:
                yield from _template_refs(value)
    elif isinstance(doc, list):
        for v in doc:
            yield from _template_refs(v)


def _resolve_template(ref: str, including: Path) -> Path:
    ref = ref.split("@", 1)[0]
    return (including.parent / ref).resolve()


def closure(path: Path) -> list[Path]:
    """The file and every template it uses, transitively (existing ones)."""
    seen: list[Path] = []
    todo = [path.resolve()]
    while todo:
        p = todo.pop()
        if p in seen or not p.is_file():
            continue
        seen.append(p)
        todo += [_resolve_template(r, p) for r in _template_refs(load_pipeline(p))]
    return seen


def _script_text(path: Path) -> str:
    """A shell script without its comment lines."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return "\n".join(line for line in lines if not line.lstrip().startswith("#"))


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _command_texts(node: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(key, command line) of a step: ``bash``/``script`` and a task's inline script / script file."""
    for key in _COMMAND_KEYS:
        if isinstance(node.get(key), str):
            yield key, node[key]
    inputs = node.get("inputs")
    if isinstance(inputs, dict):
        for key in (*_COMMAND_KEYS, *_EXECUTED_FILE_INPUTS):
            if isinstance(inputs.get(key), str):
                yield key, inputs[key]


def _compile_time_resources(node: Any, file: Path, seen: frozenset[Path] = frozenset()) -> list[str]:
    """Service connections and variable groups that ``node`` (and the templates it calls) uses."""
    found: list[str] = []

    def visit(n: Any) -> None:
        if isinstance(n, dict):
            for key, value in n.items():
                if key in _COMPILE_TIME_KEYS and isinstance(value, str) and value.strip():
                    found.append(f"{'variable group' if key == 'group' else 'service connection'} ({key}: {value})")
                if key == "template" and isinstance(value, str):
                    tpl = _resolve_template(value, file)
                    if tpl.is_file() and tpl not in seen:
                        found.extend(_compile_time_resources(load_pipeline(tpl), tpl, seen | {tpl}))
                visit(value)
        elif isinstance(n, list):
            for v in n:
                visit(v)

    visit(node)
    return list(dict.fromkeys(found))


def bundle_build_commands(root: Path) -> list[tuple[str, str]]:
    """``artifacts.<name>.build`` of databricks.yml, top level and per target."""
    path = root / "databricks.yml"
    if not path.is_file():
        return []
    main = _load(path)
    out: list[tuple[str, str]] = []
    scopes = [("artifacts", main.get("artifacts"))]
    scopes += [(f"targets.{t}.artifacts", (v or {}).get("artifacts"))
               for t, v in (main.get("targets") or {}).items() if isinstance(v, dict)]
    for where, artifacts in scopes:
        for name, artifact in (artifacts or {}).items():
            if isinstance(artifact, dict) and isinstance(artifact.get("build"), str):
                out.append((f"{where}.{name}.build", artifact["build"]))
    return out


# ---------------------------------------------------------------- the checks


def check(root: Path = REPO_ROOT) -> list[str]:
    root = root.resolve()
    pipelines_dir = root / ".azure" / "pipelines"
    files = azure_schema.pipeline_files(pipelines_dir)
    problems: list[str] = []
    if not files:
        return [f"no pipeline files under {_rel(pipelines_dir, root)}"]
    targets = bundle_targets(root)
    jobs = bundle_jobs(root)
    if not targets:
        problems.append("databricks.yml: no targets found (is databricks.yml there?)")
    if not jobs:
        problems.append("databricks.yml: no jobs found in resources")

    docs = {f: load_pipeline(f) for f in files}
    scripts = sorted((root / "scripts" / "ci").glob("*.sh"))

    # template paths
    for f, doc in docs.items():
        for ref in _template_refs(doc):
            if not _resolve_template(ref, f).is_file():
                problems.append(f"{_rel(f, root)}: template not found: {ref}")

    # scripts called by steps
    for f, doc in docs.items():
        for text in _strings(doc):
            for script in _SCRIPT_RE.findall(text):
                target = root / script
                if not target.is_file():
                    problems.append(f"{_rel(f, root)}: script not found: {script}")

    # shell scripts run as `bash <path>`; no bare `python`
    for f, doc in docs.items():
        for step in _steps(f, doc):
            for key, text in _command_texts(step.node):
                if key in _EXECUTED_FILE_INPUTS and any(w.endswith(".sh") for w in command_words(text)):
                    problems.append(
                        f"{step.where(root)}: {key} executes {text.strip()} directly; the artifact's copy has "
                        f"no executable bit: use an inline `bash <path>` (AzureCLI@2: scriptLocation: inlineScript)"
                    )
                    continue
                for call in direct_script_calls(text):
                    problems.append(
                        f"{step.where(root)}: runs {call} directly; pipeline artifacts lose the executable bit: "
                        f"call it as `bash {call}`"
                    )
                for _ in bare_python_calls(text):
                    problems.append(f"{step.where(root)}: calls a bare `python`; use the interpreter the "
                                    f"pipeline set up (python3 from UsePythonVersion, or scripts/ci/lib.sh ci_python)")
    for s_path in scripts:
        text = _script_text(s_path)
        for call in direct_script_calls(text):
            problems.append(f"{_rel(s_path, root)}: runs {call} directly; call it as `bash {call}` "
                            f"(scripts in a pipeline artifact have no executable bit)")
        for _ in bare_python_calls(text):
            problems.append(f"{_rel(s_path, root)}: calls a bare `python`; use \"$(ci_python)\" (scripts/ci/lib.sh)")
    for where, command in bundle_build_commands(root):
        if bare_python_calls(command):
            problems.append(f"databricks.yml: {where}: build command calls a bare `python`: {command}")

    # --force-lock only on the per-run test deployment's destroy
    for f, text in [(f, " ".join(_strings(doc))) for f, doc in docs.items()]:
        if "--force-lock" in text:
            problems.append(f"{_rel(f, root)}: --force-lock in a pipeline file; only {FORCE_LOCK_SCRIPT}'s "
                            f"destroy of the per-run test deployment may force the deploy lock")
    for s_path in scripts:
        for line in _script_text(s_path).splitlines():
            if "--force-lock" not in line:
                continue
            if s_path.name != FORCE_LOCK_SCRIPT or not re.search(r"\bbundle\s+destroy\b", line):
                problems.append(f"{_rel(s_path, root)}: --force-lock outside the per-run test deployment's "
                                f"destroy: {line.strip()}")

    # bundle jobs and targets, in the YAML and in the CI scripts
    sources = [(f, " ".join(_strings(doc))) for f, doc in docs.items()]
    sources += [(s, _script_text(s)) for s in scripts]
    for f, text in sources:
        for regex in _JOB_RES:
            for job in regex.findall(text):
                if jobs and job not in jobs:
                    problems.append(f"{_rel(f, root)}: unknown bundle job '{job}' (jobs: {', '.join(jobs)})")
        for target in _TARGET_RE.findall(text):
            if targets and target not in targets:
                problems.append(
                    f"{_rel(f, root)}: unknown bundle target '{target}' (targets: {', '.join(targets)})"
                )

    steps = [s for f, doc in docs.items() for s in _steps(f, doc)]

    # the PR pipeline (and the templates it uses) never writes to staging/prod
    pr = pipelines_dir / PR_PIPELINE
    if not pr.is_file():
        problems.append(f"{_rel(pr, root)}: missing")
    else:
        pr_files = set(closure(pr))
        for step in steps:
            if step.file.resolve() not in pr_files or not _WORKSPACE_WRITE_RE.search(step.text):
                continue
            for target in _WRITE_TARGET_RE.findall(step.text):
                if target in PROTECTED_TARGETS:
                    problems.append(f"{step.where(root)}: the PR pipeline must not deploy/run/destroy on '{target}'")
        for f in pr_files:
            text = " ".join(_strings(docs.get(f) or load_pipeline(f)))
            for forbidden in PR_FORBIDDEN:
                if forbidden in text:
                    problems.append(f"{_rel(f, root)}: the PR pipeline must not use '{forbidden}' (pull-request "
                                    f"code signs in as the PR service principal only: {PR_IDENTITY})")
        problems += _pr_identity_problems(pr, root)

    # PR pipeline: stages needing a service connection / variable group are compile-time conditional
    if pr.is_file():
        raw = azure_schema.load_yaml(pr)
        for i, stage in enumerate((raw or {}).get("stages") or []):
            if not isinstance(stage, dict) or all(azure_schema.is_expression_key(k) for k in stage):
                continue
            needs = _compile_time_resources(stage, pr)
            if needs:
                problems.append(
                    f"{_rel(pr, root)}: stages/{i} ({stage.get('stage', '?')}) uses {', '.join(needs)}, which Azure "
                    f"DevOps resolves when the pipeline compiles: put the stage under a compile-time "
                    f"${{{{ if }}}} on a parameter, so that a repository without them still runs the offline stage"
                )

    # writes to staging/prod only inside a deployment job bound to databricks-<target>
    for step in steps:
        if not _WORKSPACE_WRITE_RE.search(step.text):
            continue
        for target in set(_WRITE_TARGET_RE.findall(step.text)) & set(PROTECTED_TARGETS):
            job = step.job()
            if job is None or "deployment" not in job:
                problems.append(f"{step.where(root)}: writes to '{target}' outside a deployment job")
                continue
            env = job.get("environment")
            name = env.get("name") if isinstance(env, dict) else env
            if name != f"databricks-{target}":
                problems.append(
                    f"{step.where(root)}: writes to '{target}' in a deployment job bound to "
                    f"environment {name!r}, expected 'databricks-{target}'"
                )

    # databricks-bundle.yml steps: the workspace of the stage's variable group, and its targets only
    for step in steps:
        if not str(step.node.get("template", "")).endswith(BUNDLE_STEP_TEMPLATE):
            continue
        params = step.node.get("parameters") or {}
        workspace = str(params.get("workspace", "")).strip()
        stage = next((a for a in reversed(step.ancestors) if "stage" in a), None)
        groups = [v.get("group") for v in ((stage or {}).get("variables") or [])
                  if isinstance(v, dict) and isinstance(v.get("group"), str)]
        known = [g for g in groups if g in GROUP_WORKSPACES]
        if len(known) != 1:
            problems.append(f"{step.where(root)}: its stage must use exactly one variable group of "
                            f"{', '.join(GROUP_WORKSPACES)} (found: {', '.join(groups) or 'none'})")
        elif workspace != GROUP_WORKSPACES[known[0]]:
            problems.append(f"{step.where(root)}: parameter workspace is {workspace or 'unset'!r}, but the stage's "
                            f"variable group {known[0]} is the {GROUP_WORKSPACES[known[0]]} workspace's")
        for target in _TARGET_RE.findall(str(params.get("arguments", ""))):
            target_ws = TARGET_WORKSPACES.get(target)
            if target_ws and workspace and target_ws != workspace:
                problems.append(f"{step.where(root)}: target '{target}' deploys to the {target_ws} workspace, "
                                f"but this step has the {workspace} workspace's variable group")

    # AzureCLI: a version with allowNoSubscriptions, and the input set
    for step in steps:
        name = str(step.node.get("task", ""))
        if not name.lower().startswith("azurecli@"):
            continue
        major = _int(name.split("@", 1)[1])
        inputs = step.node.get("inputs") or {}
        if major is None or major < MIN_AZURE_CLI_TASK:
            problems.append(f"{step.where(root)}: {name} always sets the service connection's subscription after "
                            f"login, which fails for a service principal without an Azure role; use "
                            f"AzureCLI@{MIN_AZURE_CLI_TASK} with allowNoSubscriptions: true")
        elif str(inputs.get("allowNoSubscriptions", "")).strip().lower() != "true":
            problems.append(f"{step.where(root)}: {name} without allowNoSubscriptions: true sets a subscription "
                            "context after login, which fails for a service principal without an Azure role")

    # steps that copy `databricks` output into the log: restricted logging commands
    for f, doc in docs.items():
        if f.name != BUNDLE_STEP_TEMPLATE:
            continue
        for step in _steps(f, doc):
            target = step.node.get("target")
            commands = target.get("commands") if isinstance(target, dict) else None
            settable = target.get("settableVariables") if isinstance(target, dict) else None
            if str(commands).strip() != "restricted" or str(settable).strip() != "none":
                problems.append(f"{step.where(root)}: copies job output into the log; expected target: "
                                "{commands: restricted, settableVariables: none} (a `##vso[` line in a task "
                                "error must not become a pipeline command)")

    # destroy: always(), last, after every temporary deploy
    for step in steps:
        if not _DESTROY_RE.search(step.text):
            continue
        cond = step.condition().replace(" ", "").lower()
        if not any(c in cond for c in ALWAYS_CONDITIONS):
            problems.append(
                f"{step.where(root)}: the destroy step must run under always() "
                f"(condition: {step.condition() or 'none, i.e. succeeded()'})"
            )
        if step.index != len(step.siblings) - 1:
            problems.append(f"{step.where(root)}: the destroy step must be the last step of its job")
        job = step.job()
        timeout = _int(step.node.get("timeoutInMinutes") or (step.node.get("parameters") or {}).get("timeoutInMinutes"))
        cancel = _int((job or {}).get("cancelTimeoutInMinutes"))
        if cancel is None or cancel < (timeout or 1):
            problems.append(
                f"{step.where(root)}: its job must set cancelTimeoutInMinutes >= the destroy step's timeout "
                f"({timeout or 'unset'}): on cancel, always() steps get only that long "
                f"(cancelTimeoutInMinutes: {cancel if cancel is not None else 'unset'})"
            )
        if "template" in step.node and "condition" in (step.node.get("parameters") or {}):
            tpl = _resolve_template(step.node["template"], step.file)
            if tpl.is_file():
                for inner in _steps(tpl, load_pipeline(tpl)):
                    if "parameters.condition" not in str(inner.node.get("condition", "")):
                        problems.append(
                            f"{inner.where(root)}: does not forward ${{{{ parameters.condition }}}} "
                            f"(used by the destroy step {step.where(root)})"
                        )
    for step in steps:
        if _TEMP_DEPLOY_RE.search(step.text) and not _DESTROY_RE.search(step.text):
            if not set(_WRITE_TARGET_RE.findall(step.text)) - set(PROTECTED_TARGETS):
                continue
            later = step.siblings[step.index + 1 :]
            if not any(isinstance(s, dict) and _DESTROY_RE.search(" ".join(_strings(s))) for s in later):
                problems.append(f"{step.where(root)}: deploys a temporary target but no destroy step follows")

    return list(dict.fromkeys(problems))


def _pr_identity_problems(pr: Path, root: Path) -> list[str]:
    """The PR pipeline's workspace stage uses the PR service principal's connection and group only:
    every variable group, every service connection input, and every ``serviceConnection`` passed to
    a template is ``spark-mlops-pr``, or a parameter whose default and only value it is."""
    raw = azure_schema.load_yaml(pr) or {}
    params = {str(p.get("name")): p for p in raw.get("parameters") or [] if isinstance(p, dict)}
    problems: list[str] = []

    def judge(key: str, value: str) -> None:
        ref = re.fullmatch(r"\$\{\{\s*parameters\.(\w+)\s*\}\}", value.strip())
        if not ref:
            if value.strip() != PR_IDENTITY:
                problems.append(f"{_rel(pr, root)}: {key}: {value}; the PR pipeline may use only {PR_IDENTITY!r}")
            return
        param = params.get(ref.group(1)) or {}
        values = [str(v) for v in param.get("values") or []]
        if str(param.get("default", "")) != PR_IDENTITY or values != [PR_IDENTITY]:
            problems.append(f"{_rel(pr, root)}: {key}: parameter {ref.group(1)} must have {PR_IDENTITY!r} as its "
                            f"default and only value (found default {param.get('default')!r}, values {values})")

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in _COMPILE_TIME_KEYS and isinstance(value, str):
                    judge(key, value)
                if key == "template" and isinstance(node.get("parameters"), dict):
                    conn = node["parameters"].get("serviceConnection")
                    if isinstance(conn, str):
                        judge("serviceConnection", conn)
                visit(value)
        elif isinstance(node, list):
            for item in node:
                visit(item)

    visit(load_pipeline(pr))
    return list(dict.fromkeys(problems))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=str(REPO_ROOT), help="repository root")
    parser.add_argument("--list-targets", action="store_true", help="print the bundle's targets and exit")
    parser.add_argument("--list-jobs", action="store_true", help="print the bundle's jobs and exit")
    parser.add_argument("--no-schema", action="store_true", help="skip the JSON schema validation")
    args = parser.parse_args(argv)
    root = Path(args.root)
    if args.list_targets:
        print(" ".join(bundle_targets(root)))
        return 0
    if args.list_jobs:
        print(" ".join(bundle_jobs(root)))
        return 0

    problems = check(root)
    for p in problems:
        print(f"check_pipelines: {p}", file=sys.stderr)
    print(f"check_pipelines: semantic checks: {'OK' if not problems else f'{len(problems)} problem(s)'}")
    rc = 1 if problems else 0
    if not args.no_schema:
        schema_rc = azure_schema.main([str(f) for f in azure_schema.pipeline_files(root / ".azure" / "pipelines")])
        if schema_rc == 1:
            rc = 1
        elif schema_rc == 2 and _ci():
            print("check_pipelines: CI=true and the Azure Pipelines schema is missing: the schema check must not "
                  "be skipped in CI (bash scripts/ci/fetch-schemas.sh sets SPARK_MLOPS_AZURE_SCHEMA)", file=sys.stderr)
            rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
