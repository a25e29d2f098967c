"""Shared fixtures: one local SparkSession for the whole run, and isolated state folders.

Every test that touches tables or MLflow gets its own state folder (tables, sqlite tracking
store and registry), so tests never see each other's models. The Spark session is shared:
``get_spark`` returns the active session wherever it runs.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = REPO_ROOT / "fixtures"

# The real Databricks CLI and its fake workspace, when CI built them (scripts/ci/build-databricks-cli.sh):
# read before the environment is cleaned below; the `databricks_cli` tests use them explicitly.
DATABRICKS_CLI_BIN = os.environ.get("SPARK_MLOPS_DATABRICKS_CLI_BIN")

# Tests must not inherit a developer's or CI's MLflow/Databricks settings.
for _var in list(os.environ):
    if _var.startswith(("SPARK_MLOPS_", "MLFLOW_TRACKING", "MLFLOW_REGISTRY", "DATABRICKS_", "BUNDLE_VAR_")):
        del os.environ[_var]
os.environ["SPARK_MLOPS_GIT_COMMIT"] = "test-commit"
# Every test that resolves the bundle does it with the real Databricks CLI against its fake
# workspace (spark_mlops_dev.bundle.databricks_cli): scripts/test.sh sets both up through
# scripts/bootstrap.sh (without them, resolving fails with the line that says what to run).
if DATABRICKS_CLI_BIN:
    os.environ["SPARK_MLOPS_DATABRICKS_CLI_BIN"] = DATABRICKS_CLI_BIN
# The bundle's retries wait 60-120 s (min_retry_interval_millis), which the runner now waits in
# full: a test whose job retries a failing task (score without a champion) waits 3 s instead, and
# the run's output says so. 3 s > the 2.5 s of the test that checks a full wait.
os.environ["SPARK_MLOPS_MAX_RETRY_WAIT_S"] = "3"
# Whole jobs run their tasks in processes of their own attached to the test process's Spark, which
# serves every run as an all-purpose cluster would (runner.RunOptions.shared_cluster): a run costs
# its tasks, not a cold JVM. tests/bundle/test_runner_cluster.py checks job clusters, one per run.
os.environ["SPARK_MLOPS_SHARED_CLUSTER"] = "1"


# ---------------------------------------------------------------- which worker runs what

# The test files that use the session's ``trained`` registry (below): it prepares two tables and
# trains two models, most of a minute, which every pytest worker running one of these files pays.
# With ``--dist loadfile`` (scripts/test.sh) they run as one unit, on one worker.
TRAINED_FILES = frozenset({
    "tests/test_alias_lock.py", "tests/test_benchmarks_smoke.py", "tests/test_crashes.py",
    "tests/test_deployment.py", "tests/test_gates.py", "tests/test_scoring.py", "tests/test_trust.py",
    "tests/test_trust_attacks.py", "tests/test_typed_versions.py", "tests/test_unity_catalog_registry.py",
    "tests/bundle/test_runner_run_job.py",
})


def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile``, except that the files of :data:`TRAINED_FILES` are one unit. (The
    scheduler sees test ids only, hence the list; ``--dist loadgroup``'s marks are not read by
    pytest-xdist 3.8 under pytest 9, whose node ids it can no longer rewrite.)"""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class TrainedOnOneWorker(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            file = nodeid.split("::", 1)[0]
            return "the trained registry's files" if file in TRAINED_FILES else file

    return TrainedOnOneWorker(config, log)


def pytest_collection_modifyitems(items):
    """A file that uses ``trained`` and is missing from :data:`TRAINED_FILES` fails collection."""
    missing = sorted({item.nodeid.split("::", 1)[0] for item in items if "trained" in getattr(item, "fixturenames", ())}
                     - TRAINED_FILES)
    if missing:
        raise pytest.UsageError(f"tests/conftest.py: {', '.join(missing)} use the trained registry: add them to "
                                "TRAINED_FILES (one pytest worker builds it for all of them)")


@pytest.fixture(scope="session", autouse=True)
def _local_fake_workspace_stopped():
    """The fake workspace that resolving the bundle started (one per test process) ends with the session."""
    yield
    from spark_mlops_dev.bundle import databricks_cli

    databricks_cli.stop_local_workspace()


@pytest.fixture(autouse=True)
def _environment_restored():
    """Commands run in-process change the environment (mlflow.set_tracking_uri exports
    MLFLOW_TRACKING_URI, -v exports SPARK_MLOPS_VERBOSE): a test that leaked either would change
    every later test. Each test ends with the environment it started with."""
    before = dict(os.environ)
    yield
    for var in set(os.environ) - set(before):
        del os.environ[var]
    for var, value in before.items():
        if os.environ.get(var) != value:
            os.environ[var] = value


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


def assert_nothing_written(state_dir: Path) -> None:
    """A refused command left no table behind: no file anywhere under the state folder's warehouse."""
    written = sorted(str(p.relative_to(state_dir)) for p in (state_dir / "warehouse").rglob("*") if p.is_file())
    assert written == []


def run_cli(*argv: str) -> int:
    """The console script, in this process (and so in the shared Spark session)."""
    from spark_mlops.cli import main

    return main(list(argv))


# ---------------------------------------------------------------- a trained registry, shared

TRAINED_MODEL = "trained"  # v1: a good model; v2: trained on shuffled labels


@dataclass
class TrainedRegistry:
    settings: object
    client: object
    common: tuple

    def fresh(self, *versions: str, name: str | None = None) -> tuple[object, tuple]:
        """A new registered model holding copies of ``versions`` of the trained model as v1, v2, ...,
        without the source's verdicts: a clean registry state for one test."""
        from spark_mlops import registry, registry_tags

        name = name or f"m_{uuid.uuid4().hex[:8]}"
        view = replace(self.settings, model_name=name)
        for v in versions:
            copy = self.client.copy_model_version(f"models:/{TRAINED_MODEL}/{v}", name)
            registry.delete_tags(view, str(copy.version), registry_tags.SOURCE_ONLY)
        return view, (*self.common, "--model-name", name)

    def champion(self, view) -> str | None:
        from spark_mlops import registry

        return registry.alias_version(view, "champion")

    def tags(self, view, version: str) -> dict:
        return dict(self.client.get_model_version(view.model_name, version).tags)


@pytest.fixture(scope="session")
def trained(spark, tmp_path_factory) -> TrainedRegistry:
    """Two versions trained once per session; tests copy them into registered models of their own."""
    import pandas as pd
    from mlflow.tracking import MlflowClient

    from spark_mlops.config import build_settings

    folder = tmp_path_factory.mktemp("trained")
    settings = build_settings(state_dir=str(folder / "state"), model_name=TRAINED_MODEL)
    common = ("--state-dir", str(settings.state_dir))
    shuffled = pd.read_csv(FIXTURES / "diabetes_train.csv")
    shuffled["Outcome"] = shuffled["Outcome"].sample(frac=1.0, random_state=1).to_numpy()
    shuffled.to_csv(folder / "shuffled.csv", index=False)
    assert run_cli("prepare", *common, "--input", str(folder / "shuffled.csv"), "--clean-table", "clean_shuffled",
                   "--quarantine-table", "quarantine_shuffled") == 0
    assert run_cli("prepare", *common, "--input", str(FIXTURES / "diabetes_train.csv")) == 0
    assert run_cli("train", *common, "--model-name", TRAINED_MODEL) == 0  # v1
    assert run_cli("train", *common, "--model-name", TRAINED_MODEL, "--clean-table", "clean_shuffled") == 0  # v2
    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)
    return TrainedRegistry(settings, client, common)


def released(trained: TrainedRegistry, *versions: str, name: str | None = None) -> tuple[object, tuple]:
    """A fresh model whose v1 is validated and promoted to @champion; other versions unvalidated."""
    view, args = trained.fresh(*versions, name=name)
    assert run_cli("validate", *args, "--version", "1") == 0
    assert run_cli("promote", *args, "--version", "1") == 0
    return view, args
