"""The CI scripts in scripts/ci/, run for real. Only the Databricks CLI is replaced, by the TEST
DOUBLE in tests/azure/fake_databricks (a recorder), because no workspace is reachable here."""

from __future__ import annotations

import hashlib
import stat
import zipfile
from pathlib import Path

import pytest

from .helpers import FAKE_DATABRICKS_DIR, REPO_ROOT, FakeDatabricks, clean_env, run_script

SUFFIX = ["--var", "deployment_suffix=pr_42_7"]
PR_ENV = {"SYSTEM_PULLREQUEST_PULLREQUESTID": "42", "BUILD_BUILDID": "7"}
INTEGRATION_ARGS = ["run", "-t", "test", "--validate", "staging", "--validate", "prod",
                    "--job", "training", "--job", "release"]


@pytest.fixture
def fake(tmp_path: Path) -> FakeDatabricks:
    return FakeDatabricks(tmp_path)


# ---------------------------------------------------------------- bundle-integration.sh


# Every step runs, in this order, whether release passes or fails: destroy always comes last.
FULL_INTEGRATION_SEQUENCE = [
    ["bundle", "validate", "-t", "staging"],
    ["bundle", "validate", "-t", "prod"],
    ["bundle", "deploy", "-t", "test", *SUFFIX],
    ["bundle", "run", "training", "-t", "test", *SUFFIX],
    ["bundle", "run", "release", "-t", "test", *SUFFIX],
    ["bundle", "destroy", "-t", "test", *SUFFIX, "--auto-approve"],
]


def test_integration_passing_run_calls_the_cli_in_order(fake: FakeDatabricks) -> None:
    result = run_script("bundle-integration.sh", *INTEGRATION_ARGS, env=fake.env(**PR_ENV))
    assert result.returncode == 0, result.stdout + result.stderr
    assert fake.calls() == FULL_INTEGRATION_SEQUENCE
    assert "bundle integration passed" in result.stdout


def test_integration_failing_release_still_destroys_and_reports(fake: FakeDatabricks) -> None:
    result = run_script("bundle-integration.sh", *INTEGRATION_ARGS, env=fake.env("bundle run release", **PR_ENV))
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert fake.calls() == FULL_INTEGRATION_SEQUENCE
    assert "job 'release' (target test) failed with exit code 1" in out
    assert "Run URL: https://adb-1234567890123456.7.azuredatabricks.net/?o=1234567890123456#job/101/run/202" in out
    assert "Task reject failed" in out
    assert "bundle integration failed at: bundle run release -t test" in out


@pytest.mark.parametrize(
    ("fail", "expected_calls"),
    [
        ("bundle validate -t prod", 2),  # validate staging, validate prod, then straight to destroy
        ("bundle deploy", 3),
        ("bundle run training", 4),  # release is not run after training failed
    ],
)
def test_integration_failure_at_any_step_ends_with_destroy(fake: FakeDatabricks, fail: str, expected_calls: int) -> None:
    result = run_script("bundle-integration.sh", *INTEGRATION_ARGS, env=fake.env(fail, **PR_ENV))
    calls = fake.calls()
    assert result.returncode != 0
    assert len(calls) == expected_calls + 1
    assert calls[-1] == ["bundle", "destroy", "-t", "test", *SUFFIX, "--auto-approve"]
    assert ["bundle", "run", "release", "-t", "test", *SUFFIX] not in calls


def test_integration_failing_destroy_fails_the_step(fake: FakeDatabricks) -> None:
    result = run_script("bundle-integration.sh", *INTEGRATION_ARGS, env=fake.env("bundle destroy", **PR_ENV))
    assert result.returncode != 0
    assert "may be left in the workspace" in result.stdout + result.stderr


def test_safety_net_destroy_is_skipped_after_a_clean_run(fake: FakeDatabricks) -> None:
    env = fake.env(**PR_ENV)
    assert run_script("bundle-integration.sh", *INTEGRATION_ARGS, env=env).returncode == 0
    n = len(fake.calls())
    result = run_script("bundle-integration.sh", "destroy", "-t", "test", env=env)
    assert result.returncode == 0
    assert len(fake.calls()) == n
    assert "already destroyed" in result.stdout


def test_safety_net_destroy_runs_when_the_run_did_not_finish(fake: FakeDatabricks) -> None:
    result = run_script("bundle-integration.sh", "destroy", "-t", "test", env=fake.env(**PR_ENV))
    assert result.returncode == 0
    assert fake.calls() == [["bundle", "destroy", "-t", "test", *SUFFIX, "--auto-approve"]]


@pytest.mark.parametrize("target", ["staging", "prod"])
def test_integration_refuses_protected_targets(fake: FakeDatabricks, target: str) -> None:
    result = run_script("bundle-integration.sh", "run", "-t", target, "--job", "training", env=fake.env())
    assert result.returncode != 0
    assert fake.calls() == []
    assert "must never target" in result.stdout + result.stderr


def test_integration_suffix_outside_a_pr(fake: FakeDatabricks) -> None:
    result = run_script("bundle-integration.sh", "run", "-t", "test", env=fake.env(BUILD_BUILDID="99"))
    assert result.returncode == 0
    assert fake.calls()[0] == ["bundle", "deploy", "-t", "test", "--var", "deployment_suffix=ci_99"]


# ---------------------------------------------------------------- authentication routes


def test_azure_cli_route_exports_the_federated_identity(fake: FakeDatabricks) -> None:
    env = fake.env(
        CI_DATABRICKS_AUTH="azure-cli",
        servicePrincipalId="11111111-2222-3333-4444-555555555555",
        tenantId="tenant-guid",
        idToken="header.payload.signature",
        DATABRICKS_HOST="https://adb-1.azuredatabricks.net",
        DATABRICKS_CLIENT_ID="$(DATABRICKS_CLIENT_ID)",  # an undefined macro, as the agent passes it
        **PR_ENV,
    )
    assert run_script("bundle-integration.sh", "run", "-t", "test", env=env).returncode == 0
    seen = fake.envs()[0]
    assert seen == {
        "DATABRICKS_AUTH_TYPE": "azure-cli",
        "DATABRICKS_HOST": "https://adb-1.azuredatabricks.net",
        "ARM_CLIENT_ID": "11111111-2222-3333-4444-555555555555",
        "ARM_TENANT_ID": "tenant-guid",
        "ARM_OIDC_TOKEN": "<set>",
        "BUNDLE_VAR_service_principal": "11111111-2222-3333-4444-555555555555",
    }


def test_azure_devops_oidc_route(fake: FakeDatabricks) -> None:
    env = fake.env(
        CI_DATABRICKS_AUTH="azure-devops-oidc",
        DATABRICKS_AUTH_TYPE="azure-devops-oidc",
        DATABRICKS_CLIENT_ID="app-id",
        SYSTEM_ACCESSTOKEN="pipeline-token",
        DATABRICKS_HOST="$(DATABRICKS_HOST)",
    )
    result = run_script("bundle-deploy-and-run.sh", "-t", "staging", env=env)
    assert result.returncode == 0, result.stderr
    assert fake.envs()[0] == {
        "DATABRICKS_AUTH_TYPE": "azure-devops-oidc",
        "DATABRICKS_CLIENT_ID": "app-id",
        "BUNDLE_VAR_service_principal": "app-id",
        "SYSTEM_ACCESSTOKEN": "<set>",
    }


def test_azure_devops_oidc_route_without_token_fails_clearly(fake: FakeDatabricks) -> None:
    env = fake.env(CI_DATABRICKS_AUTH="azure-devops-oidc", DATABRICKS_CLIENT_ID="app-id",
                   SYSTEM_ACCESSTOKEN="$(System.AccessToken)")
    result = run_script("bundle-deploy-and-run.sh", "-t", "staging", env=env)
    assert result.returncode != 0
    assert "SYSTEM_ACCESSTOKEN" in result.stderr
    assert fake.calls() == []


# ---------------------------------------------------------------- bundle-deploy-and-run.sh


def test_deploy_and_run_passing(fake: FakeDatabricks) -> None:
    result = run_script("bundle-deploy-and-run.sh", "-t", "staging", "--run", "training", "--run", "release",
                        env=fake.env())
    assert result.returncode == 0, result.stderr
    assert fake.calls() == [
        ["bundle", "deploy", "-t", "staging"],
        ["bundle", "run", "training", "-t", "staging"],
        ["bundle", "run", "release", "-t", "staging"],
    ]
    assert "job 'release' (target staging) succeeded. Run URL: https://" in result.stdout


def test_deploy_and_run_stops_at_the_failing_job_with_url_and_error(fake: FakeDatabricks) -> None:
    env = fake.env("bundle run training", TF_BUILD="True")
    result = run_script("bundle-deploy-and-run.sh", "-t", "staging", "--run", "training", "--run", "release", env=env)
    assert result.returncode != 0
    assert fake.calls() == [
        ["bundle", "deploy", "-t", "staging"],
        ["bundle", "run", "training", "-t", "staging"],
    ]
    errors = [line for line in result.stdout.splitlines() if line.startswith("##vso[task.logissue type=error]")]
    assert any("job 'training' (target staging) failed" in e and "#job/101/run/202" in e and "INTERNAL_ERROR" in e
               for e in errors), result.stdout


def test_deploy_failure_runs_no_job(fake: FakeDatabricks) -> None:
    result = run_script("bundle-deploy-and-run.sh", "-t", "prod", "--run", "batch_inference",
                        env=fake.env("bundle deploy"))
    assert result.returncode != 0
    assert fake.calls() == [["bundle", "deploy", "-t", "prod"]]


def test_run_without_deploy(fake: FakeDatabricks) -> None:
    result = run_script("bundle-deploy-and-run.sh", "-t", "prod", "--no-deploy", "--run", "batch_inference",
                        env=fake.env())
    assert result.returncode == 0
    assert fake.calls() == [["bundle", "run", "batch_inference", "-t", "prod"]]


def test_deploy_and_run_uses_bundle_root(fake: FakeDatabricks, tmp_path: Path) -> None:
    result = run_script("bundle-deploy-and-run.sh", "-t", "prod", env=fake.env(BUNDLE_ROOT=str(tmp_path)))
    assert result.returncode != 0
    assert "no databricks.yml" in result.stderr


# ---------------------------------------------------------------- check-workspace-config.sh


def _config(**env: str):
    return run_script("check-workspace-config.sh", env=clean_env(TF_BUILD="True", **env))


def test_workspace_config_present() -> None:
    result = _config(DATABRICKS_HOST="https://adb-1.azuredatabricks.net")
    assert result.returncode == 0
    assert "##vso[task.setvariable variable=configured;isOutput=true]true" in result.stdout


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"SYSTEM_PULLREQUEST_ISFORK": "True", "DATABRICKS_HOST": "https://x"}, "comes from a fork"),
        ({}, "missing in variable group 'spark-mlops-staging': DATABRICKS_HOST"),
        ({"DATABRICKS_HOST": "$(DATABRICKS_HOST)"}, "DATABRICKS_HOST"),
        ({"DATABRICKS_HOST": "https://x", "CI_DATABRICKS_AUTH": "azure-devops-oidc",
          "SYSTEM_ACCESSTOKEN": "t"}, "DATABRICKS_CLIENT_ID"),
    ],
)
def test_workspace_config_absent_skips_with_a_visible_warning(env: dict[str, str], reason: str) -> None:
    result = _config(**env)
    assert result.returncode == 0  # never an obscure failure
    assert "##vso[task.setvariable variable=configured;isOutput=true]false" in result.stdout
    warning = [line for line in result.stdout.splitlines() if line.startswith("##vso[task.logissue type=warning]")]
    assert warning and reason in warning[0] and "Skipping the Databricks workspace stage" in warning[0]


# ---------------------------------------------------------------- install-databricks-cli.sh


@pytest.fixture
def release(tmp_path: Path) -> tuple[Path, str, str]:
    """A fake GitHub release folder holding a zip whose `databricks` is the test double."""
    import platform

    version = "9.9.9"
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}[platform.machine().lower()]
    os_name = {"Linux": "linux", "Darwin": "darwin"}[platform.system()]
    folder = tmp_path / "releases" / f"v{version}"
    folder.mkdir(parents=True)
    zip_name = f"databricks_cli_{version}_{os_name}_{arch}.zip"
    with zipfile.ZipFile(folder / zip_name, "w") as z:
        info = zipfile.ZipInfo("databricks")
        info.external_attr = (stat.S_IFREG | 0o755) << 16
        z.writestr(info, (FAKE_DATABRICKS_DIR / "databricks").read_text())
        z.writestr("README.md", "test double")
    digest = hashlib.sha256((folder / zip_name).read_bytes()).hexdigest()
    (folder / f"databricks_cli_{version}_SHA256SUMS").write_text(f"{'0' * 64}  other.zip\n{digest}  {zip_name}\n")
    return tmp_path / "releases", version, digest


def _install(release: tuple[Path, str, str], tmp_path: Path, sha: str, **extra: str):
    base, version, _ = release
    env = clean_env(
        DATABRICKS_CLI_VERSION=version,
        DATABRICKS_CLI_SHA256=sha,
        DATABRICKS_CLI_BASE_URL=f"file://{base}",
        DATABRICKS_CLI_INSTALL_DIR=str(tmp_path / "bin"),
        **extra,
    )
    return run_script("install-databricks-cli.sh", env=env)


def test_install_cli_with_pinned_sha256(release, tmp_path: Path) -> None:
    result = _install(release, tmp_path, release[2], TF_BUILD="True")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "bin" / "databricks").stat().st_mode & 0o111
    assert f"##vso[task.prependpath]{tmp_path / 'bin'}" in result.stdout
    assert "sha256 OK" in result.stdout
    assert "v0.0.0-test-double" in result.stdout  # `databricks version` of the installed binary
    # idempotent: a second run keeps the binary without downloading
    again = _install(release, tmp_path, release[2], FAKE_DATABRICKS_VERSION=release[1])
    assert again.returncode == 0
    assert "already installed" in again.stdout and "downloading" not in again.stdout


def test_install_cli_rejects_a_wrong_sha256(release, tmp_path: Path) -> None:
    result = _install(release, tmp_path, "f" * 64)
    assert result.returncode != 0
    assert "sha256 mismatch" in result.stderr
    assert not (tmp_path / "bin" / "databricks").exists()


def test_install_cli_unpinned_sha_uses_release_sums_with_a_warning(release, tmp_path: Path) -> None:
    result = _install(release, tmp_path, "", TF_BUILD="True")
    assert result.returncode == 0, result.stderr
    assert "##vso[task.logissue type=warning]DATABRICKS_CLI_SHA256 is not pinned" in result.stdout


def test_install_cli_needs_a_version(tmp_path: Path) -> None:
    result = run_script("install-databricks-cli.sh", env=clean_env(DATABRICKS_CLI_INSTALL_DIR=str(tmp_path)))
    assert result.returncode != 0
    assert "DATABRICKS_CLI_VERSION is not set" in result.stderr


def test_pinned_cli_version_is_a_single_variable() -> None:
    import yaml

    doc = yaml.safe_load((REPO_ROOT / ".azure/pipelines/templates/variables.yml").read_text())
    names = [v["name"] for v in doc["variables"]]
    assert names.count("DATABRICKS_CLI_VERSION") == 1
    version = next(v["value"] for v in doc["variables"] if v["name"] == "DATABRICKS_CLI_VERSION")
    assert version.count(".") == 2
    # nothing else pins a CLI version
    for path in (REPO_ROOT / ".azure/pipelines").rglob("*.yml"):
        if path.name != "variables.yml":
            assert version not in path.read_text(), path


# ---------------------------------------------------------------- pr-checks.sh


def test_pr_checks_pipelines_step_runs_locally() -> None:
    if not (REPO_ROOT / ".venv/bin/python").exists():
        pytest.skip(".venv is missing")
    result = run_script("pr-checks.sh", "pipelines", env=clean_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "semantic checks: OK" in result.stdout


def test_pr_checks_rejects_an_unknown_check() -> None:
    result = run_script("pr-checks.sh", "deploy-prod", env=clean_env())
    assert result.returncode != 0
    assert "unknown check" in result.stderr
