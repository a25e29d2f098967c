"""Fixtures for the bundle tests: the real bundle, a disposable copy of it, the schema."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from spark_mlops_dev.bundle import schema as bschema

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def schema_source() -> bschema.SchemaSource | None:
    """The bundle schema, with its validator built once per session; None when there is none."""
    try:
        source = bschema.find_schema(REPO_ROOT)
    except bschema.SchemaUnavailable:
        return None
    bschema.load_validator(source)  # cached for the session
    return source


@pytest.fixture
def require_schema(schema_source):
    if schema_source is None:
        try:
            bschema.find_schema(REPO_ROOT)
        except bschema.SchemaUnavailable as exc:
            if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
                pytest.fail(f"CI=true: no bundle schema: {exc}")  # CI takes it from the built CLI
            pytest.skip(str(exc))
    return schema_source


class BundleCopy:
    """databricks.yml, resources/ and pyproject.toml copied to a temporary folder, to break."""

    def __init__(self, root: Path):
        self.root = root

    def path(self, rel: str) -> Path:
        return self.root / rel

    def replace(self, rel: str, old: str, new: str, count: int = 1) -> None:
        text = self.path(rel).read_text(encoding="utf-8")
        assert text.count(old) >= count, f"{old!r} not found {count} time(s) in {rel}"
        self.path(rel).write_text(text.replace(old, new, count), encoding="utf-8")

    def load(self, rel: str) -> dict:
        return yaml.safe_load(self.path(rel).read_text(encoding="utf-8"))

    def dump(self, rel: str, data: dict) -> None:
        self.path(rel).write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


@pytest.fixture
def bundle_copy(tmp_path: Path) -> BundleCopy:
    root = tmp_path / "bundle"
    root.mkdir()
    shutil.copy2(REPO_ROOT / "databricks.yml", root / "databricks.yml")
    shutil.copy2(REPO_ROOT / "pyproject.toml", root / "pyproject.toml")
    shutil.copytree(REPO_ROOT / "resources", root / "resources")
    return BundleCopy(root)
