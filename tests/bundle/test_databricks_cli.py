"""The real Databricks CLI against the CLI's own fake workspace (scripts/ci/fake-workspace).

* every target passes ``bundle validate --strict``;
* every kind of deploy-breaker found in earlier rounds is refused by the real CLI
  (``bundle validate --strict``) or by our validator (``spark-mlops bundle validate``);
* ``spark-mlops run`` resolves with the CLI, against the dev kit's local fake workspace, and with no
  fallback: a CLI that fails is an error;
* the bundle schema the tests use is the CLI's own (``databricks bundle schema``).

Needs ``databricks`` and ``fake-workspace`` from scripts/ci/build-databricks-cli.sh (found through
$SPARK_MLOPS_DATABRICKS_CLI_BIN or PATH); without them these tests skip, except with CI=true,
where they fail. scripts/ci/databricks-cli-checks.sh runs them.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from spark_mlops.errors import ConfigError
from spark_mlops_dev.bundle import databricks_cli, validate
from spark_mlops_dev.bundle import schema as bschema
from tests.conftest import DATABRICKS_CLI_BIN, REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "scripts" / "ci"))
from fake_workspace import FakeWorkspace, copy_bundle, find_bin  # noqa: E402

pytestmark = [pytest.mark.databricks_cli, pytest.mark.slow]

TARGETS = ("dev", "test", "staging", "prod")


def _ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


@pytest.fixture(scope="session")
def cli_bin() -> Path:
    if DATABRICKS_CLI_BIN:
        os.environ["SPARK_MLOPS_DATABRICKS_CLI_BIN"] = DATABRICKS_CLI_BIN
    found = find_bin()
    if found is None:
        message = ("the Databricks CLI and fake-workspace are not built: run "
                   "bin=\"$(bash scripts/ci/build-databricks-cli.sh | tail -n 1)\" and set "
                   "SPARK_MLOPS_DATABRICKS_CLI_BIN=$bin")
        if _ci():
            pytest.fail(f"CI=true: {message}")
        pytest.skip(message)
    return found


@pytest.fixture(scope="session")
def workspace(cli_bin, tmp_path_factory):
    with FakeWorkspace(cli_bin, tmp_path_factory.mktemp("fake-workspace")) as ws:
        yield ws


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return copy_bundle(REPO_ROOT, tmp_path_factory.mktemp("copy") / "bundle")


# ---------------------------------------------------------------- the CLI as the one resolver


@pytest.mark.parametrize("target", TARGETS)
def test_every_target_passes_strict_validation(workspace, bundle, target):
    r = workspace.cli("bundle", "validate", "--strict", "-t", target, cwd=bundle, check=False)
    assert r.returncode == 0, r.stderr[-3000:]


def test_run_resolves_with_the_cli_against_the_local_fake_workspace(bundle, monkeypatch, tmp_path):
    monkeypatch.setenv("SPARK_MLOPS_STATE_DIR", str(tmp_path / "state"))  # nothing cached: the CLI runs
    monkeypatch.setenv("DATABRICKS_HOST", "https://adb-1.2.azuredatabricks.net")  # never reached
    b = databricks_cli.resolve_bundle(bundle, "dev")
    # the fake workspace's user deploys dev: development mode names things after that user
    assert b.jobs["training"]["name"] == "[dev tester] spark-mlops train model (dev)"
    named = b.jobs["training"]["tasks"][0]["python_wheel_task"]["named_parameters"]
    assert named["schema"] == "dev_tester_spark_mlops"
    assert named["model-name"] == "dev.dev_tester_spark_mlops.dev_tester_diabetes_classifier"
    assert b.variables["schema"] == "dev_tester_spark_mlops"
    retrain = next(t for t in b.jobs["batch_inference"]["tasks"] if t["task_key"] == "retrain")
    assert retrain["run_job_task"]["job_id"] == "${resources.jobs.retraining.id}"  # known after deploy
    assert b.config["workspace"]["current_user"]["userName"] == "tester@databricks.com"  # the fake answered


def test_a_failing_cli_is_an_error_not_a_fallback(bundle, monkeypatch, tmp_path, cli_bin):
    broken = tmp_path / "bin"
    broken.mkdir()
    (broken / "databricks").write_text("#!/bin/sh\necho 'Error: cannot resolve bundle auth configuration' >&2\nexit 1\n")
    (broken / "databricks").chmod(0o755)
    (broken / "fake-workspace").symlink_to(cli_bin / "fake-workspace")
    monkeypatch.setenv("SPARK_MLOPS_DATABRICKS_CLI_BIN", str(broken))
    monkeypatch.setenv("SPARK_MLOPS_STATE_DIR", str(tmp_path / "state"))  # nothing cached
    monkeypatch.setattr(databricks_cli, "_local", None)  # a workspace of this CLI
    with pytest.raises(ConfigError, match="databricks bundle validate -t dev: cannot resolve bundle auth configuration"):
        databricks_cli.resolve_bundle(bundle, "dev")


# ---------------------------------------------------------------- breakers of earlier rounds

# (id, file, old text, new text, target): each re-introduces a deploy-breaker found in an earlier
# round. Each must be refused by the real CLI (validate --strict) or by our validator.
BREAKERS = [
    ("shared-root-in-production", "databricks.yml",
     "root_path: /Workspace/Users/${workspace.current_user.userName}/.bundle/${bundle.name}/${bundle.target}\n    run_as:",
     "root_path: /Workspace/Shared/.bundle/${bundle.name}/${bundle.target}\n    run_as:", "staging"),
    ("beta-runtime-key", "databricks.yml", "default: 18.x-cpu-ml-scala2.13", "default: 18.0.x-cpu-ml-scala2.13",
     "prod"),
    ("no-run-as-in-production", "databricks.yml",
     "    run_as:\n      service_principal_name: ${var.service_principal}\n    permissions:",
     "    permissions:", "prod"),
    ("unknown-field", "resources/training.job.yml", "max_concurrent_runs:", "max_concurrent_run:", "prod"),
    ("wrong-entry-point", "resources/training.job.yml", "entry_point: train", "entry_point: trian", "prod"),
    ("depends-on-unknown-task", "resources/release.job.yml", "- task_key: validate\n", "- task_key: validat\n",
     "prod"),
    ("undeclared-variable", "resources/training.job.yml", "${var.catalog}", "${var.catlog}", "prod"),
    ("task-value-from-a-wheel-task", "resources/release.job.yml", "\"{{job.run_id}}\"",
     "\"{{tasks.validate.values.verdict}}\"", "prod"),
    ("prod-on-the-staging-profile", "databricks.yml", "profile: spark-mlops-prod", "profile: spark-mlops-staging",
     "prod"),
    ("account-group-in-workspace-permissions", "databricks.yml", "group_name: ${var.workspace_readers_group}",
     "group_name: account users", "staging"),
    ("spark-model-task-without-dfs-tmpdir", "resources/batch_inference.job.yml",
     "              dfs-tmpdir: ${var.dfs_tmpdir}\n", "", "prod"),
    ("shared-schema-in-development-mode", "databricks.yml", "schema: ${resources.schemas.deployment_schema.name}",
     "schema: ${var.base_schema}", "dev"),
    ("missing-prebuilt-wheel", None, None, None, "prod"),
]


@pytest.mark.parametrize("name,rel,old,new,target", BREAKERS, ids=[b[0] for b in BREAKERS])
def test_each_breaker_is_refused(workspace, schema_source, tmp_path, name, rel, old, new, target):
    root = copy_bundle(REPO_ROOT, tmp_path / "bundle")
    if rel is None:  # the prebuilt wheel is missing from dist/
        shutil.rmtree(root / "dist")
    else:
        text = (root / rel).read_text()
        assert old in text, f"{name}: {old!r} not in {rel}"
        (root / rel).write_text(text.replace(old, new, 1))
    cli = workspace.cli("bundle", "validate", "--strict", "-t", target, cwd=root, check=False)
    report = validate.check(root, [target], schema_path=schema_source.path if schema_source else None)
    ours = [str(p) for p in report.problems]
    refused_by = (["the CLI"] if cli.returncode != 0 else []) + (["our validator"] if ours else [])
    assert refused_by, f"{name}: neither the CLI nor our validator refuses it"


# ---------------------------------------------------------------- the official schema


def test_the_schema_is_the_clis_own(cli_bin, monkeypatch):
    monkeypatch.setenv("PATH", f"{cli_bin}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv(bschema.ENV_VAR, raising=False)
    source = bschema.find_schema(REPO_ROOT)
    assert source.path is None and "bundle schema" in source.description
    bschema.load_validator(source)  # the CLI's schema compiles with our pattern keyword
