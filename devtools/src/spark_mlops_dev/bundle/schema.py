"""The official Databricks bundle JSON schema, found, loaded once and turned into a validator.

Where the schema comes from, first match wins:

1. ``$SPARK_MLOPS_BUNDLE_SCHEMA``: a path to a ``jsonschema.json`` (explicit choice);
2. ``databricks bundle schema``, when the ``databricks`` CLI is on PATH (matches the CLI that
   will deploy);
3. ``shared/databricks-bundle-schema/jsonschema.json`` in the bundle root or one of its
   parents (a copy kept next to a checkout, for machines without the CLI).

In CI, take the schema from the installed CLI (2.), so that it matches the CLI that deploys.

The schema's ``pattern`` keywords use ``\\p{L}``/``\\p{N}``, which Python's ``re`` cannot
compile, so the ``pattern`` keyword is overridden with one that uses the ``regex`` package.
The file itself is never modified.
"""

from __future__ import annotations

import difflib
import functools
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_VAR = "SPARK_MLOPS_BUNDLE_SCHEMA"
SHARED_RELATIVE = Path("shared") / "databricks-bundle-schema" / "jsonschema.json"


@dataclass(frozen=True)
class SchemaSource:
    description: str  # for messages: "$SPARK_MLOPS_BUNDLE_SCHEMA=/x.json", "databricks bundle schema", a path
    path: Path | None  # None when the text came from the CLI
    text: str | None = None


class SchemaUnavailable(Exception):
    """No schema could be found; the message says where it looked."""


def find_schema(root: str | Path) -> SchemaSource:
    looked: list[str] = []
    env = os.environ.get(ENV_VAR)
    if env:
        path = Path(env).expanduser()
        if path.is_file():
            return SchemaSource(f"${ENV_VAR}={path}", path.resolve())
        looked.append(f"${ENV_VAR}={env} (no such file)")
    else:
        looked.append(f"${ENV_VAR} (not set)")

    cli = shutil.which("databricks")
    if cli:
        text = _cli_schema(cli)
        if text is not None:
            return SchemaSource(f"`{cli} bundle schema`", None, text)
        looked.append(f"`{cli} bundle schema` (failed)")
    else:
        looked.append("`databricks bundle schema` (no databricks CLI on PATH)")

    start = Path(root).resolve()
    for folder in (start, *start.parents):
        candidate = folder / SHARED_RELATIVE
        if candidate.is_file():
            return SchemaSource(str(candidate), candidate)
    looked.append(f"{SHARED_RELATIVE} in {start} or any parent folder")
    raise SchemaUnavailable("no Databricks bundle schema found; looked at: " + "; ".join(looked))


@functools.lru_cache(maxsize=2)
def _cli_schema(cli: str) -> str | None:
    try:
        out = subprocess.run([cli, "bundle", "schema"], capture_output=True, text=True, timeout=120,
                             check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 and out.stdout.strip().startswith("{") else None


@functools.lru_cache(maxsize=4)
def _validator_for(key: str, text: str | None) -> Any:
    import jsonschema
    import regex
    from jsonschema import validators
    from jsonschema.exceptions import ValidationError

    schema = json.loads(text if text is not None else Path(key).read_text(encoding="utf-8"))
    compiled: dict[str, Any] = {}

    def pattern(validator, patrn, instance, schema):  # noqa: ARG001 - jsonschema keyword signature
        if not validator.is_type(instance, "string"):
            return
        rx = compiled.get(patrn)
        if rx is None:
            rx = compiled[patrn] = regex.compile(patrn)
        if not rx.search(instance):
            yield ValidationError(f"{instance!r} does not match {patrn!r}")

    base = validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    cls = validators.extend(base, validators={"pattern": pattern})
    return cls(schema)


def load_validator(source: SchemaSource) -> Any:
    """A jsonschema validator for the bundle schema; cached per schema file for the process."""
    key = str(source.path) if source.path is not None else source.description
    return _validator_for(key, source.text if source.path is None else None)


# ---------------------------------------------------------------- error reporting


def _leaves(error: Any) -> list[Any]:
    """The specific errors behind ``error``, looking through oneOf/anyOf wrappers.

    Every object in the schema is ``oneOf[<object>, "${var.x}" string]``: of the alternatives,
    keep the one whose errors go deepest into the instance (a ``type`` mismatch against the
    ``${var…}`` string alternative is the least useful), and report all of its leaves.
    """
    if not error.context:
        return [error]
    branches: dict[Any, list[Any]] = {}
    for sub in error.context:
        branches.setdefault(sub.schema_path[0] if sub.schema_path else None, []).append(sub)

    def score(errors: list[Any]) -> tuple[int, int]:
        leaves = [leaf for e in errors for leaf in _leaves(e)]
        return (max(len(e.absolute_path) for e in leaves),
                sum(e.validator not in ("type", "pattern") for e in leaves))

    best = max(branches.values(), key=score)
    return [leaf for e in best for leaf in _leaves(e)]


def deepest(error: Any) -> Any:
    """The single most specific error inside oneOf/anyOf wrappers."""
    return max(_leaves(error), key=lambda e: len(e.absolute_path))


def describe(error: Any) -> list[tuple[tuple, str]]:
    """``[(instance path, message), ...]`` for one schema error, 'expected vs found' where possible."""
    return [_describe_leaf(leaf) for leaf in _leaves(error)]


def _describe_leaf(leaf: Any) -> tuple[tuple, str]:
    path = tuple(leaf.absolute_path)
    if leaf.validator == "additionalProperties" and isinstance(leaf.instance, dict):
        allowed = sorted((leaf.schema.get("properties") or {}).keys())
        unexpected = [k for k in leaf.instance if k not in allowed]
        if len(unexpected) == 1:
            key = unexpected[0]
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            return (*path, key), f"unknown field {key!r}{hint}; expected one of: {', '.join(allowed)}"
        return path, f"unknown fields {', '.join(map(repr, unexpected))}; expected one of: {', '.join(allowed)}"
    if leaf.validator == "enum":
        return path, f"expected one of {', '.join(map(repr, leaf.validator_value))}, found {leaf.instance!r}"
    if leaf.validator == "type":
        return path, f"expected {leaf.validator_value}, found {type(leaf.instance).__name__} {leaf.instance!r}"
    if leaf.validator == "required":
        return path, f"missing required field: {leaf.message}"
    return path, leaf.message
