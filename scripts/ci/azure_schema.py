"""Validate Azure Pipelines YAML files against the offline Azure Pipelines JSON schema.

The schema is Microsoft's ``service-schema.json`` (azure-pipelines-vscode, draft-07). It is not
vendored here: it is looked up in ``$SPARK_MLOPS_AZURE_SCHEMA`` or in a ``shared/`` folder found by
walking up from the repository root (``shared/azure-pipelines-schema/service-schema.json``).

Four adjustments make the schema usable from Python, all applied in memory:

1. files are loaded with ``yaml.BaseLoader`` (every scalar stays a string, as Azure Pipelines
   treats them), and the per-task ``boolean``/``integer``/``number`` input types are widened to also
   accept strings;
2. ``${{ if }}``/``${{ elseif }}``/``${{ else }}``/``${{ each }}`` blocks are spliced into their
   parent mapping or list before validating (the schema does not understand them);
3. tasks newer than the schema snapshot (``PublishCodeCoverageResults@2``, ``AzureCLI@3``, see ``EXTRA_TASKS``) are
   added, so that using the current major version is not reported as an error;
4. a ``task`` step may have a ``target`` (as the YAML reference says; the snapshot allows it on
   every other kind of step only).

Template files (under ``templates/``) are validated against the definition that matches their
top-level key: ``stepsTemplate``, ``jobsTemplate``, ``stagesTemplate`` or ``variablesTemplate``.

Run as a script: ``python scripts/ci/azure_schema.py [FILE...]`` (default: every file under
``.azure/pipelines``); exit 0 when all are valid, 1 otherwise, 2 when the schema is not found.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
PIPELINES_DIR = REPO_ROOT / ".azure" / "pipelines"
SCHEMA_ENV = "SPARK_MLOPS_AZURE_SCHEMA"
SCHEMA_RELPATH = Path("shared") / "azure-pipelines-schema" / "service-schema.json"

TEMPLATE_KINDS = {
    "steps": "stepsTemplate",
    "jobs": "jobsTemplate",
    "stages": "stagesTemplate",
    "variables": "variablesTemplate",
}

# Tasks that exist in Azure DevOps but are newer than the schema snapshot (v1.261.1).
# Inputs as documented on learn.microsoft.com (task reference pages), or as declared in the task's
# task.json in microsoft/azure-pipelines-tasks (names and aliases).
_BOOL = {"type": ["boolean", "string"]}
EXTRA_TASKS: dict[str, dict[str, Any]] = {
    # Tasks/AzureCLIV3/task.json (3.279.0): AzureCLI@2 plus connectionType and allowNoSubscriptions
    # (skip `az account set` after login: azureclitask.ts loginAzureRM).
    "AzureCLI@3": {
        "properties": {
            **{name: {"type": "string"} for name in (
                "connectedServiceNameARM", "azureSubscription", "azureDevOpsServiceConnection", "scriptPath",
                "inlineScript", "scriptArguments", "arguments", "cwd", "workingDirectory")},
            "connectionType": {"enum": ["azureRM", "azureDevOps"]},
            "scriptType": {"enum": ["ps", "pscore", "batch", "bash"]},
            "scriptLocation": {"enum": ["inlineScript", "scriptPath"]},
            "powerShellErrorActionPreference": {"enum": ["stop", "continue", "silentlyContinue"]},
            **{name: _BOOL for name in (
                "addSpnToEnvironment", "useGlobalConfig", "failOnStandardError", "powerShellIgnoreLASTEXITCODE",
                "visibleAzLogin", "allowNoSubscriptions", "keepAzSessionActive")},
        },
        "required": ["scriptType", "scriptLocation"],
    },
    "PublishCodeCoverageResults@2": {
        "properties": {
            "summaryFileLocation": {"type": "string"},
            "pathToSources": {"type": "string"},
            "failIfCoverageEmpty": {"type": ["boolean", "string"]},
        },
        "required": ["summaryFileLocation"],
    },
}

_EXPR_KEY = re.compile(r"^\$\{\{\s*(if|elseif|else|each)\b.*\}\}$", re.DOTALL)


class SchemaNotFound(RuntimeError):
    """The offline Azure Pipelines schema is not available on this machine."""


def find_schema(start: Path | None = None) -> Path:
    """``$SPARK_MLOPS_AZURE_SCHEMA``, else ``shared/azure-pipelines-schema/service-schema.json``
    in the nearest ancestor of the repository root that has it."""
    env = os.environ.get(SCHEMA_ENV)
    if env:
        path = Path(env)
        if not path.is_file():
            raise SchemaNotFound(f"${SCHEMA_ENV} points to {path}, which is not a file")
        return path
    here = (start or REPO_ROOT).resolve()
    for folder in (here, *here.parents):
        candidate = folder / SCHEMA_RELPATH
        if candidate.is_file():
            return candidate
    raise SchemaNotFound(
        f"Azure Pipelines schema not found: set ${SCHEMA_ENV} or place {SCHEMA_RELPATH} "
        f"in {here} or one of its parent folders"
    )


def _widen(node: Any) -> None:
    if isinstance(node, dict):
        kind = node.get("type")
        if kind in ("boolean", "integer", "number"):
            node["type"] = [kind, "string"]
        for value in node.values():
            _widen(value)
    elif isinstance(node, list):
        for value in node:
            _widen(value)


def _add_extra_tasks(schema: dict[str, Any]) -> None:
    task = schema["definitions"]["task"]
    known = {b["properties"]["task"].get("pattern") for b in task["anyOf"]}
    names = task["properties"]["task"]["anyOf"]  # the task names a step may use
    for name in EXTRA_TASKS:
        if not any(name in (n.get("enum") or ()) for n in names):
            names.append({"ignoreCase": "value", "enum": [name]})
    for name, inputs in EXTRA_TASKS.items():
        pattern = f"^{re.escape(name)}$"
        if pattern in known or f"^{name}$" in known:
            continue
        task["anyOf"].append(
            {
                "properties": {
                    "task": {"pattern": pattern},
                    "inputs": {**copy.deepcopy(inputs), "additionalProperties": False},
                },
                "required": ["task", "inputs"] if inputs.get("required") else ["task"],
            }
        )


def _task_step_target(schema: dict[str, Any]) -> None:
    """``target`` on a ``task`` step: the YAML reference lists steps.task among the steps that take a
    ``target`` (docs: pipelines/yaml-schema/target), and the snapshot has it in ``taskBase`` but not
    in ``task``."""
    task = schema["definitions"]["task"]
    task.setdefault("properties", {}).setdefault("target", copy.deepcopy(
        schema["definitions"]["taskBase"]["properties"]["target"]))


@functools.lru_cache(maxsize=4)
def load_schema(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        schema = json.load(f)
    _widen(schema)
    _add_extra_tasks(schema)
    _task_step_target(schema)
    return schema


@functools.lru_cache(maxsize=16)
def _validator(path: str, definition: str | None) -> jsonschema.Draft7Validator:
    schema = load_schema(path)
    if definition is not None:
        schema = {
            "$schema": schema["$schema"],
            "$ref": f"#/definitions/{definition}",
            "definitions": schema["definitions"],
        }
    return jsonschema.Draft7Validator(schema)


# ---------------------------------------------------------------- template expressions


def is_expression_key(key: Any) -> bool:
    return isinstance(key, str) and bool(_EXPR_KEY.match(key.strip()))


def splice_expressions(node: Any) -> Any:
    """Replace ``${{ if/elseif/else/each }}`` blocks by their content, in place of the block.

    In a mapping, ``${{ if c }}: {k: v}`` contributes ``k: v`` to the parent mapping; in a list,
    ``- ${{ if c }}: [a, b]`` contributes the items ``a, b`` (``else`` branches too, so that both
    branches get validated).
    """
    if isinstance(node, list):
        out: list[Any] = []
        for item in node:
            if isinstance(item, dict) and item and all(is_expression_key(k) for k in item):
                for value in item.values():
                    value = splice_expressions(value)
                    if isinstance(value, list):
                        out.extend(value)
                    elif value not in (None, ""):
                        out.append(value)
            else:
                out.append(splice_expressions(item))
        return out
    if isinstance(node, dict):
        result: dict[Any, Any] = {}
        for key, value in node.items():
            value = splice_expressions(value)
            if is_expression_key(key):
                if isinstance(value, dict):
                    for k, v in value.items():
                        result.setdefault(k, v)
                continue
            result[key] = value
        return result
    return node


def load_yaml(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=yaml.BaseLoader)  # noqa: S506 - BaseLoader builds plain strings


# ---------------------------------------------------------------- validation


@dataclass(frozen=True)
class Problem:
    file: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.where or '<root>'}: {self.message}"


def template_kind(doc: Any) -> str | None:
    """The schema definition for a template file, from its top-level keys."""
    if not isinstance(doc, dict):
        return None
    for key, definition in TEMPLATE_KINDS.items():
        if key in doc:
            return definition
    return None


def _where(path: Any) -> str:
    return "/".join(str(p) for p in path)


def _leaves(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    """The deepest errors under an anyOf/oneOf error (the useful part of its message)."""
    if not error.context:
        return [error]
    leaves = [leaf for sub in error.context for leaf in _leaves(sub)]
    deepest = max(len(leaf.absolute_path) for leaf in leaves)
    chosen = [leaf for leaf in leaves if len(leaf.absolute_path) == deepest]
    specific = [leaf for leaf in chosen if leaf.validator in ("additionalProperties", "required", "enum")]
    return specific or chosen


def _task_problems(schema_path: str, doc: Any, file: str) -> list[Problem]:
    """Validate every ``task:`` step against the single task branch that matches its name."""
    schema = load_schema(schema_path)
    task_def = schema["definitions"]["task"]
    problems: list[Problem] = []

    def visit(node: Any, path: tuple[Any, ...]) -> None:
        if isinstance(node, dict):
            name = node.get("task")
            if isinstance(name, str) and path and isinstance(path[-1], int):  # a step in a list
                branches = [
                    b for b in task_def["anyOf"] if re.match(b["properties"]["task"].get("pattern", "^$"), name)
                ]
                if not branches:
                    problems.append(Problem(file, _where(path), f"unknown task {name!r}"))
                else:
                    single = {"definitions": schema["definitions"], **task_def, "anyOf": branches[:1]}
                    for err in jsonschema.Draft7Validator(single).iter_errors(node):
                        for leaf in _leaves(err):
                            problems.append(Problem(file, _where(path + tuple(leaf.absolute_path)), leaf.message))
            for key, value in node.items():
                visit(value, path + (key,))
        elif isinstance(node, list):
            for i, value in enumerate(node):
                visit(value, path + (i,))

    visit(doc, ())
    return problems


def validate_document(doc: Any, *, schema_path: Path, file: str = "<doc>", template: bool = False) -> list[Problem]:
    """Schema problems of one (already loaded) pipeline or template document."""
    doc = splice_expressions(doc)
    definition = template_kind(doc) if template else None
    if template and definition is None:
        return [Problem(file, "", f"not a template: expected one of {sorted(TEMPLATE_KINDS)} at the top")]
    validator = _validator(str(schema_path), definition)
    errors = list(validator.iter_errors(doc))
    if not errors:
        return []
    problems = _task_problems(str(schema_path), doc, file)
    if problems:
        return problems
    for err in errors:
        for leaf in _leaves(err):
            problems.append(Problem(file, _where(leaf.absolute_path), leaf.message))
    return _simplify(problems)


def _simplify(problems: list[Problem]) -> list[Problem]:
    """One message per location: of the anyOf branches' "Additional properties" errors, the one
    with the fewest unexpected keys is the branch that was meant."""
    best: dict[tuple[str, str], Problem] = {}
    others: list[Problem] = []
    for p in problems:
        if p.message.startswith("Additional properties"):
            key = (p.file, p.where)
            if key not in best or len(p.message) < len(best[key].message):
                best[key] = p
        else:
            others.append(p)
    return list(dict.fromkeys([*best.values(), *others]))


def is_template_file(path: Path) -> bool:
    return "templates" in path.parts


def validate_file(path: Path, *, schema_path: Path | None = None, root: Path = REPO_ROOT) -> list[Problem]:
    schema_path = schema_path or find_schema(root)
    try:
        rel = str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        rel = str(path)
    try:
        doc = load_yaml(path)
    except yaml.YAMLError as exc:
        return [Problem(rel, "", f"YAML error: {exc}")]
    return validate_document(doc, schema_path=schema_path, file=rel, template=is_template_file(path))


def pipeline_files(pipelines_dir: Path = PIPELINES_DIR) -> list[Path]:
    return sorted(p for p in pipelines_dir.rglob("*") if p.suffix in (".yml", ".yaml"))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        schema_path = find_schema()
    except SchemaNotFound as exc:
        print(f"azure_schema: skipped: {exc}", file=sys.stderr)
        return 2
    files = [Path(a) for a in args] or pipeline_files()
    problems = [p for f in files for p in validate_file(f, schema_path=schema_path)]
    for p in problems:
        print(p, file=sys.stderr)
    print(f"azure_schema: {len(files)} file(s) checked against {schema_path}: "
          f"{'OK' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
