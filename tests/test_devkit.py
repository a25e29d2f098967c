"""The lifecycle finds the development kit through an entry-point group, never by importing it
(issue 26 item 5: the only import circle in the code ran through ``devkit.load()``)."""

from __future__ import annotations

import ast
import tomllib
from importlib import metadata

import pytest

from spark_mlops import devkit
from spark_mlops.errors import ConfigError
from tests.conftest import REPO_ROOT


def _imported_modules(path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_lifecycle_imports_nothing_from_the_kit():
    importers = sorted(str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / "src" / "spark_mlops").rglob("*.py")
                       if any(m == "spark_mlops_dev" or m.startswith("spark_mlops_dev.") for m in _imported_modules(p)))
    assert importers == []


def test_the_kit_declares_its_hooks_in_the_entry_point_group():
    project = tomllib.loads((REPO_ROOT / "devtools" / "pyproject.toml").read_text())["project"]
    assert project["entry-points"][devkit.GROUP] == {devkit.HOOKS: "spark_mlops_dev.hooks"}
    hooks = devkit.load()
    assert hooks is not None and hooks.__name__ == "spark_mlops_dev.hooks"
    assert all(callable(getattr(hooks, f)) for f in ("add_commands", "settings_for_target", "class_archive_options"))


def _points(*values: str) -> metadata.EntryPoints:
    return metadata.EntryPoints(metadata.EntryPoint(name=devkit.HOOKS, value=v, group=devkit.GROUP) for v in values)


def test_without_the_kit_the_lifecycle_runs_alone(monkeypatch):
    monkeypatch.setattr(devkit.metadata, "entry_points", lambda group: _points())
    devkit.load.cache_clear()
    try:
        assert devkit.load() is None
    finally:
        devkit.load.cache_clear()


def test_a_declared_but_broken_kit_is_an_error_not_silence(monkeypatch):
    monkeypatch.setattr(devkit.metadata, "entry_points", lambda group: _points("spark_mlops_dev.no_such_module"))
    devkit.load.cache_clear()
    try:
        with pytest.raises(ConfigError, match="installed but cannot be imported"):
            devkit.load()
    finally:
        devkit.load.cache_clear()
