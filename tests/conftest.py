"""Shared fixtures: one local SparkSession for the whole run, and isolated state folders.

Every test that touches tables or MLflow gets its own state folder (tables, sqlite tracking
store and registry), so tests never see each other's models. The Spark session is shared:
``get_spark`` returns the active session wherever it runs.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = REPO_ROOT / "fixtures"

# Tests must not inherit a developer's or CI's MLflow/Databricks settings.
for _var in list(os.environ):
    if _var.startswith(("SPARK_MLOPS_", "MLFLOW_TRACKING", "MLFLOW_REGISTRY", "DATABRICKS_", "BUNDLE_VAR_")):
        del os.environ[_var]
os.environ["SPARK_MLOPS_GIT_COMMIT"] = "test-commit"


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    from spark_mlops.config import build_settings
    from spark_mlops.spark import get_spark

    session = get_spark(build_settings(state_dir=str(tmp_path_factory.mktemp("spark-session"))))
    yield session
    session.stop()


@pytest.fixture
def state_dir(tmp_path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def settings(state_dir, spark):
    """Settings for the embedded default, in this test's own state folder."""
    from spark_mlops.config import build_settings

    return build_settings(state_dir=str(state_dir))


@pytest.fixture
def fixture_copy(tmp_path):
    """Copy a file from fixtures/ into the test's folder and return its path."""

    def copy(name: str) -> str:
        destination = tmp_path / name
        shutil.copyfile(FIXTURES / name, destination)
        return str(destination)

    return copy


def run_cli(*argv: str) -> int:
    """The console script, in this process (and so in the shared Spark session)."""
    from spark_mlops.cli import main

    return main(list(argv))
