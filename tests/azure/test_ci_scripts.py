"""The CI scripts in scripts/ci/, run for real. Only the Databricks CLI is replaced, by the TEST
DOUBLE in tests/azure/fake_databricks (a recorder), for what needs an agent or a real workspace's
authentication (profiles, auth routes, logging commands). How CD reads a job run (a rejection, a
crash) is tested with the real CLI against the fake workspace that runs jobs:
tests/azure/test_fake_workspace_jobs.py."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import zipfile
from pathlib import Path

import pytest
import yaml

from .helpers import (
    FAKE_DATABRICKS_DIR,
    REPO_ROOT,
    FakeDatabricks,
    clean_env,
    copy_bundle,
    run_script,
    strip_exec_bits,
    target_profiles,
)

SUFFIX = ["--var", "deployment_suffix=pr_42_7"]
PR_ENV = {"SYSTEM_PULLREQUEST_PULLREQUESTID": "42", "BUILD_BUILDID": "7"}
INTEGRATION_ARGS = ["run", "-t", "test", "--validate", "staging", "--job", "training", "--job", "release"]
COMMIT = "5a0279e01f08c0ffee5a0279e01f08c0ffee5a02"
WHEEL = "spark_mlops-0.1.0+g5a0279e01f08-py3-none-any.whl"
REJECTION = "validate=FAILED,promote=UPSTREAM_FAILED,record_rejection=SUCCESS"
CRASH = "validate=FAILED,promote=UPSTREAM_FAILED,record_rejection=FAILED"


@pytest.fixture
def fake(tmp_path: Path) -> FakeDatabricks:
    return FakeDatabricks(tmp_path)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of the repository's bundle and scripts: what the scripts build and write stays there."""
    return copy_bundle(tmp_path / "checkout")


@pytest.fixture
def artifact(tmp_path: Path, checkout: Path, fake: FakeDatabricks) -> Path:
    """The CD build stage's pipeline artifact, as a deployment job downloads it: staged by
    stage-bundle.sh, then stripped of every executable bit."""
    out = tmp_path / "pipeline" / "bundle"
    result = run_script("stage-bundle.sh", str(out), env=fake.env(BUILD_SOURCEVERSION=COMMIT), root=checkout)
    assert result.returncode == 0, result.stdout + result.stderr
    strip_exec_bits(out)
    return out


# What a stage's step gets: the workspace whose variable group it has (CI_WORKSPACE, set by
# templates/steps/databricks-bundle.yml) and that group's DATABRICKS_HOST.
HOSTS = {"staging": "https://adb-1111111111111111.11.azuredatabricks.net",
         "prod": "https://adb-2222222222222222.22.azuredatabricks.net"}


def _stage_env(workspace: str) -> dict[str, str]:
    return {"CI_WORKSPACE": workspace, "DATABRICKS_HOST": HOSTS[workspace],
            "NOTIFICATION_EMAIL": f"mlops-{workspace}@corp.example",
            "MODEL_SIGNING_PUBLIC_KEYS": f"ed25519:{workspace}-key"}


def _deploy(fake: FakeDatabricks, artifact: Path, *args: str, fail: str = "", **extra: str):
    target = args[args.index("-t") + 1] if "-t" in args else "staging"
    stage = _stage_env("prod" if target == "prod" else "staging")
    env = fake.env(fail, BUNDLE_ROOT=str(artifact), **{**stage, **extra})
    return run_script("bundle-deploy-and-run.sh", *args, env=env, root=artifact)


# ---------------------------------------------------------------- bundle-integration.sh


# Every step runs, in this order, whether release passes or fails: destroy always comes last,
# and forces the lock of this run's own deployment.
DESTROY = ["bundle", "destroy", "-t", "test", *SUFFIX, "--auto-approve", "--force-lock"]
FULL_INTEGRATION_SEQUENCE = [
    ["bundle", "validate", "-t", "staging"],
    ["bundle", "deploy", "-t", "test", *SUFFIX],
    ["bundle", "run", "training", "-t", "test", *SUFFIX],
    ["bundle", "run", "release", "-t", "test", *SUFFIX],
    DESTROY,
]


def _integrate(fake: FakeDatabricks, checkout: Path, fail: str = "", **extra: str):
    env = fake.env(fail, **{**PR_ENV, **_stage_env("staging"), **extra})
    return run_script("bundle-integration.sh", *INTEGRATION_ARGS, env=env, root=checkout)


def test_integration_passing_run_builds_the_wheel_then_calls_the_cli_in_order(fake, checkout) -> None:
    result = _integrate(fake, checkout, BUILD_SOURCEVERSION=COMMIT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert fake.calls() == FULL_INTEGRATION_SEQUENCE
    assert len(fake.wheel_builds()) == 1  # built once, before validate (the targets deploy it prebuilt)
    assert sorted(p.name for p in (checkout / "dist").iterdir()) == sorted(["SHA256SUMS", WHEEL])
    assert "bundle integration passed" in result.stdout


def test_integration_failing_release_still_destroys_and_reports(fake, checkout) -> None:
    result = _integrate(fake, checkout, "bundle run release")
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert fake.calls() == FULL_INTEGRATION_SEQUENCE
    assert "job 'release' (target test) failed with exit code 1" in out
    assert "Run URL: https://adb-1234567890123456.7.azuredatabricks.net/jobs/101/runs/202" in out
    assert "Task validate FAILED: spark_mlops: validation failed" in out  # the task-failure block
    assert "bundle integration failed at: bundle run release -t test" in out


def test_logging_commands_in_a_task_error_reach_the_log_inert(fake, checkout) -> None:
    """A task error that quotes data (here a CSV header) must not become a pipeline command: every
    `##vso[` and `##[` copied from `databricks` is neutralised, in the echoed output and in the
    pipeline error that quotes it (issue 22)."""
    evil = ("bad header in scoring.csv: ##vso[task.setvariable variable=DATABRICKS_HOST]https://evil.example "
            "##vso[task.complete result=Succeeded;]done ##[error]not ours")
    result = _integrate(fake, checkout, "bundle run release", TF_BUILD="True", FAKE_DATABRICKS_TASK_ERROR=evil)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    for line in out.splitlines():
        assert "##vso[task.setvariable" not in line and "##vso[task.complete" not in line, line
        assert "##[error]not ours" not in line, line
    assert "bad header in scoring.csv: # #vso[task.setvariable variable=DATABRICKS_HOST]https://evil.example" in out
    errors = [line for line in result.stdout.splitlines() if line.startswith("##vso[task.logissue type=error]")]
    assert any("Task validate FAILED: bad header in scoring.csv: # #vso[task.setvariable" in e for e in errors), errors


@pytest.mark.parametrize("how", ["start", "quiet"])
def test_integration_run_without_a_run_url_is_reported_not_aborted(fake, checkout, how: str) -> None:
    """No `Run URL:` line (the run never started, or the CLI printed none) must not abort the
    parsing under errexit/pipefail: the step reports the failure, and destroy still runs."""
    result = _integrate(fake, checkout, "bundle run training", FAKE_DATABRICKS_RUN_FAILURE=how)
    out = result.stdout + result.stderr
    assert result.returncode == 1
    assert "job 'training' (target test) failed with exit code 1. Run URL: <none printed" in out
    assert "bundle integration failed at: bundle run training -t test" in out
    assert fake.calls()[-1] == DESTROY


def test_integration_successful_run_without_a_run_url(fake, checkout) -> None:
    result = _integrate(fake, checkout, FAKE_DATABRICKS_RUN_URL="none")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "job 'release' (target test) succeeded. Run URL: <none printed>" in result.stdout


@pytest.mark.parametrize(
    ("fail", "expected_calls"),
    [
        ("bundle validate -t staging", 1),  # validate staging, then straight to destroy
        ("bundle deploy", 2),
        ("bundle run training", 3),  # release is not run after training failed
    ],
)
def test_integration_failure_at_any_step_ends_with_destroy(fake, checkout, fail: str, expected_calls: int) -> None:
    result = _integrate(fake, checkout, fail)
    calls = fake.calls()
    assert result.returncode != 0
    assert len(calls) == expected_calls + 1
    assert calls[-1] == DESTROY
    assert ["bundle", "run", "release", "-t", "test", *SUFFIX] not in calls


def test_integration_failing_destroy_fails_the_step(fake, checkout) -> None:
    result = _integrate(fake, checkout, "bundle destroy")
    assert result.returncode != 0
    assert "may be left in the workspace" in result.stdout + result.stderr


def test_safety_net_destroy_is_skipped_after_a_clean_run(fake, checkout) -> None:
    env = fake.env(**PR_ENV)
    assert _integrate(fake, checkout).returncode == 0
    n = len(fake.calls())
    result = run_script("bundle-integration.sh", "destroy", "-t", "test", env=env, root=checkout)
    assert result.returncode == 0
    assert len(fake.calls()) == n
    assert "already destroyed" in result.stdout


def test_safety_net_destroy_forces_the_lock_when_the_run_did_not_finish(fake, checkout) -> None:
    """A cancelled run's trap dies holding the deploy lock: the safety net forces it."""
    result = run_script("bundle-integration.sh", "destroy", "-t", "test", env=fake.env(**PR_ENV), root=checkout)
    assert result.returncode == 0
    assert fake.calls() == [DESTROY]


@pytest.mark.parametrize("target", ["staging", "prod"])
def test_integration_refuses_protected_targets(fake, checkout, target: str) -> None:
    result = run_script("bundle-integration.sh", "run", "-t", target, "--job", "training", env=fake.env(),
                        root=checkout)
    assert result.returncode != 0
    assert fake.calls() == []
    assert "must never target" in result.stdout + result.stderr


def test_integration_suffix_outside_a_pr(fake, checkout) -> None:
    result = run_script("bundle-integration.sh", "run", "-t", "test", env=fake.env(BUILD_BUILDID="99"), root=checkout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert fake.calls()[0] == ["bundle", "deploy", "-t", "test", "--var", "deployment_suffix=ci_99"]


# ---------------------------------------------------------------- authentication routes


def test_azure_cli_route_exports_no_arm_variables(fake, checkout) -> None:
    """On the azure-cli route the CLI uses the az session: nothing reads ARM_*, so none are set."""
    env = fake.env(
        CI_DATABRICKS_AUTH="azure-cli",
        servicePrincipalId="11111111-2222-3333-4444-555555555555",
        tenantId="tenant-guid",
        idToken="header.payload.signature",
        DATABRICKS_HOST="https://adb-1.azuredatabricks.net",
        DATABRICKS_CLIENT_ID="$(DATABRICKS_CLIENT_ID)",  # an undefined macro, as the agent passes it
        CI_WORKSPACE="staging",
        **PR_ENV,
    )
    assert run_script("bundle-integration.sh", "run", "-t", "test", env=env, root=checkout).returncode == 0
    assert fake.envs()[0] == {
        "DATABRICKS_AUTH_TYPE": "azure-cli",
        "DATABRICKS_HOST": "https://adb-1.azuredatabricks.net",
        "BUNDLE_VAR_service_principal": "11111111-2222-3333-4444-555555555555",
        # the target's profile, written by the script: auth_type must be in it (the CLI ignores
        # DATABRICKS_AUTH_TYPE for an explicitly selected profile)
        "profile": "spark-mlops-staging",
        "profile_host": "https://adb-1.azuredatabricks.net",
        "profile_auth_type": "azure-cli",
    }


def test_azure_devops_oidc_route(fake, artifact) -> None:
    result = _deploy(fake, artifact, "-t", "staging",
                     CI_DATABRICKS_AUTH="azure-devops-oidc", DATABRICKS_AUTH_TYPE="azure-devops-oidc",
                     DATABRICKS_CLIENT_ID="app-id", SYSTEM_ACCESSTOKEN="pipeline-token",
                     DATABRICKS_HOST="https://adb-2.azuredatabricks.net", CI_WORKSPACE="staging",
                     AGENT_TEMPDIRECTORY=str(fake.tmp / "agent-temp"))
    assert result.returncode == 0, result.stderr
    assert fake.envs()[0] == {
        "DATABRICKS_AUTH_TYPE": "azure-devops-oidc",
        "DATABRICKS_HOST": "https://adb-2.azuredatabricks.net",
        "DATABRICKS_CLIENT_ID": "app-id",
        "BUNDLE_VAR_service_principal": "app-id",
        "BUNDLE_VAR_notification_email": "mlops-staging@corp.example",
        "BUNDLE_VAR_model_signing_public_keys": "ed25519:staging-key",
        "SYSTEM_ACCESSTOKEN": "<set>",
        "profile": "spark-mlops-staging",
        "profile_host": "https://adb-2.azuredatabricks.net",
        "profile_auth_type": "azure-devops-oidc",
    }
    cfg = fake.tmp / "agent-temp" / "spark-mlops-databricks" / "databrickscfg"
    text = cfg.read_text()
    assert "[spark-mlops-staging]" in text and "client_id = app-id" in text
    assert "pipeline-token" not in text  # the token stays in the environment
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600


def test_azure_devops_oidc_route_without_token_fails_clearly(fake, artifact) -> None:
    result = _deploy(fake, artifact, "-t", "staging", CI_DATABRICKS_AUTH="azure-devops-oidc",
                     DATABRICKS_CLIENT_ID="app-id", SYSTEM_ACCESSTOKEN="$(System.AccessToken)")
    assert result.returncode != 0
    assert "SYSTEM_ACCESSTOKEN" in result.stderr
    assert fake.calls() == []


# ---------------------------------------------------------------- the target's CLI profile


def _lib(command: str, **extra: str) -> subprocess.CompletedProcess:
    env = clean_env(**extra)
    return subprocess.run(["bash", "-c", f'source "{REPO_ROOT}/scripts/ci/lib.sh"; {command}'], env=env,
                          capture_output=True, text=True, timeout=60)


def test_profile_convention_matches_databricks_yml() -> None:
    """The scripts cannot parse YAML on a deploy agent: their target -> profile map must be what
    databricks.yml declares (targets.<t>.workspace.profile), for every target."""
    declared = target_profiles()
    targets = list(yaml.safe_load((REPO_ROOT / "databricks.yml").read_text())["targets"])
    assert set(declared) == {"test", "staging", "prod"}  # dev uses each developer's own profile
    for target in targets:
        result = _lib(f"ci_target_profile {target}")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == declared.get(target, ""), target
    assert _lib("ci_target_profile nightly").returncode == 1  # unknown targets are not guessed


@pytest.mark.parametrize(("stage", "target"), [("staging", "prod"), ("prod", "staging"), ("prod", "test")])
def test_deploy_refuses_a_target_of_the_other_workspace(fake, artifact, stage: str, target: str) -> None:
    result = _deploy(fake, artifact, "-t", target, "--run", "training", **_stage_env(stage))
    assert result.returncode == 2
    assert fake.calls() == []
    assert (f"target '{target}' deploys to the {'prod' if target == 'prod' else 'staging'} workspace") in result.stderr
    assert f"this step has the {stage} workspace's variable group: refusing" in result.stderr


def test_integration_refuses_to_validate_prod_with_the_staging_group(fake, checkout) -> None:
    env = fake.env(**PR_ENV, **_stage_env("staging"))
    result = run_script("bundle-integration.sh", "run", "-t", "test", "--validate", "prod", env=env, root=checkout)
    assert result.returncode == 2
    assert fake.calls() == []  # nothing deployed, so nothing to destroy
    assert "target 'prod' deploys to the prod workspace" in result.stderr


def test_on_an_agent_the_step_must_name_its_workspace(fake, artifact) -> None:
    result = _deploy(fake, artifact, "-t", "staging", TF_BUILD="True", CI_WORKSPACE="")
    assert result.returncode == 2
    assert fake.calls() == []
    assert "CI_WORKSPACE is not set" in result.stdout  # a ##vso error line on the agent


@pytest.mark.parametrize("host", ["", "$(DATABRICKS_HOST)", "http://adb-1.azuredatabricks.net",
                                  "https://adb-1.azuredatabricks.net\n[spark-mlops-prod]"])
def test_profile_needs_the_stage_host(fake, artifact, host: str) -> None:
    result = _deploy(fake, artifact, "-t", "staging", DATABRICKS_HOST=host)
    assert result.returncode == 2
    assert fake.calls() == []
    assert "DATABRICKS_HOST of the staging workspace is missing or not an https:// URL" in result.stderr


def test_profile_resolves_prod_even_with_a_stale_config_profile(fake, artifact) -> None:
    """DATABRICKS_CONFIG_PROFILE would replace the target's profile (cmd/root/bundle.go): it is unset,
    and the prod stage's calls resolve spark-mlops-prod with the prod group's host."""
    result = _deploy(fake, artifact, "-t", "prod", "--run-gate", "model_deployment",
                     DATABRICKS_CONFIG_PROFILE="spark-mlops-staging", CI_DATABRICKS_AUTH="azure-cli")
    assert result.returncode == 0, result.stdout + result.stderr
    assert {(e["profile"], e["profile_host"], e["profile_auth_type"]) for e in fake.envs()} == {
        ("spark-mlops-prod", HOSTS["prod"], "azure-cli")}
    assert f"databricks profile: [spark-mlops-prod] host {HOSTS['prod']}" in result.stdout


def _without_profile_step(script: Path) -> None:
    """The script as it was before it wrote the profile (the ci_databricks_profile call removed)."""
    text = script.read_text()
    lines = [line for line in text.splitlines(keepends=True) if not line.startswith("ci_databricks_profile ")]
    assert len(lines) == len(text.splitlines()) - 1, script
    script.write_text("".join(lines))


@pytest.mark.parametrize("script", ["bundle-deploy-and-run.sh", "bundle-integration.sh"])
def test_without_the_written_profile_the_cli_stops_at_authentication(fake, checkout, tmp_path: Path,
                                                                     script: str) -> None:
    """The failure the profile step prevents: the agent's CLI config has no profile of the target
    (here a ~/.databrickscfg with another one), so every bundle command stops at
    `has no <profile> profile configured` (databricks-sdk-go config/config_file.go). The same run
    with the real script passes."""
    (fake.home / ".databrickscfg").write_text("[DEFAULT]\nhost = https://adb-9.azuredatabricks.net\n")
    args = ["-t", "staging"] if script == "bundle-deploy-and-run.sh" else ["run", "-t", "test"]
    (checkout / "dist").mkdir(exist_ok=True)
    if script == "bundle-deploy-and-run.sh":
        assert run_script("build-wheel.sh", "dist", env=fake.env(), root=checkout).returncode == 0
    env = fake.env(**PR_ENV, **_stage_env("staging"), CI_DATABRICKS_AUTH="azure-cli")

    passing = run_script(script, *args, env=env, root=checkout)
    assert passing.returncode == 0, passing.stdout + passing.stderr

    _without_profile_step(checkout / "scripts" / "ci" / script)
    failing = run_script(script, *args, env=env, root=checkout)
    assert failing.returncode != 0
    profile = "spark-mlops-staging"
    assert f"Error: resolve: {fake.home / '.databrickscfg'} has no {profile} profile configured" in (
        failing.stdout + failing.stderr)


# ---------------------------------------------------------------- the wheel: built once, deployed as is


def test_stage_bundle_builds_one_wheel_named_after_the_commit(fake, artifact, checkout) -> None:
    assert len(fake.wheel_builds()) == 1
    assert sorted(p.name for p in (artifact / "dist").iterdir()) == sorted(["SHA256SUMS", WHEEL])
    digest = hashlib.sha256((artifact / "dist" / WHEEL).read_bytes()).hexdigest()
    assert (artifact / "dist" / "SHA256SUMS").read_text() == f"{digest}  {WHEEL}\n"
    # pyproject.toml itself is not rewritten: the version is stamped on a temporary copy
    assert (checkout / "pyproject.toml").read_text() == (REPO_ROOT / "pyproject.toml").read_text()
    for rel in ("databricks.yml", "resources", "src", "scripts/ci/bundle-deploy-and-run.sh"):
        assert (artifact / rel).exists(), rel


def test_wheel_version_outside_git_is_local(fake, checkout) -> None:
    result = run_script("build-wheel.sh", "--print-version", env=fake.env(GIT_DIR=str(checkout / "no-git")),
                        root=checkout)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0.1.0+local"


def test_deploy_prints_the_wheel_it_deploys(fake, artifact) -> None:
    result = _deploy(fake, artifact, "-t", "staging", TF_BUILD="True")
    assert result.returncode == 0, result.stdout + result.stderr
    digest = hashlib.sha256((artifact / "dist" / WHEEL).read_bytes()).hexdigest()
    assert f"wheel: {WHEEL} sha256 {digest}" in result.stdout
    assert f"deployed wheel to target staging: {WHEEL} sha256 {digest}" in result.stdout
    assert fake.wheel_builds() == [fake.wheel_builds()[0]]  # the deploy built nothing


@pytest.mark.parametrize("breakage", ["none", "two", "tampered"])
def test_deploy_refuses_a_missing_extra_or_changed_wheel(fake, artifact, breakage: str) -> None:
    dist = artifact / "dist"
    if breakage == "none":
        (dist / WHEEL).unlink()
    elif breakage == "two":
        shutil.copy(dist / WHEEL, dist / "spark_mlops-0.0.9-py3-none-any.whl")
    else:
        (dist / WHEEL).write_bytes(b"not the tested wheel")
    result = _deploy(fake, artifact, "-t", "prod")
    assert result.returncode != 0
    assert fake.calls() == []
    expected = {"none": "found 0", "two": "found 2", "tampered": "does not match"}[breakage]
    assert expected in result.stderr


# ---------------------------------------------------------------- bundle-deploy-and-run.sh (CD)


@pytest.mark.parametrize("stage", ["staging", "prod"])
def test_cd_deploy_sends_failure_emails_to_the_variable_groups_recipient(fake, artifact, stage: str) -> None:
    result = _deploy(fake, artifact, "-t", stage, TF_BUILD="True")
    assert result.returncode == 0, result.stdout + result.stderr
    deploy = [e for e, c in zip(fake.envs(), fake.calls(), strict=True) if c[:2] == ["bundle", "deploy"]]
    assert [e.get("BUNDLE_VAR_notification_email") for e in deploy] == [f"mlops-{stage}@corp.example"]


@pytest.mark.parametrize("missing", ["", "$(NOTIFICATION_EMAIL)"])  # unset, or a macro the group lacks
def test_cd_deploy_on_an_agent_without_a_recipient_is_refused(fake, artifact, missing: str) -> None:
    result = _deploy(fake, artifact, "-t", "prod", "--run-gate", "model_deployment", TF_BUILD="True",
                     NOTIFICATION_EMAIL=missing)
    assert result.returncode == 2
    assert fake.calls() == []
    assert "NOTIFICATION_EMAIL is not set" in result.stdout


@pytest.mark.parametrize("stage", ["staging", "prod"])
def test_cd_deploy_trusts_the_variable_groups_signing_key(fake, artifact, stage: str) -> None:
    """Azure DevOps exports MODEL_SIGNING_PUBLIC_KEYS upper-cased; the CLI reads only
    BUNDLE_VAR_model_signing_public_keys (case-sensitive), so the script must map it."""
    result = _deploy(fake, artifact, "-t", stage, TF_BUILD="True")
    assert result.returncode == 0, result.stdout + result.stderr
    deploy = [e for e, c in zip(fake.envs(), fake.calls(), strict=True) if c[:2] == ["bundle", "deploy"]]
    assert [e.get("BUNDLE_VAR_model_signing_public_keys") for e in deploy] == [f"ed25519:{stage}-key"]


def test_cd_deploy_on_an_agent_without_a_trusted_key_is_refused(fake, artifact) -> None:
    result = _deploy(fake, artifact, "-t", "prod", TF_BUILD="True", MODEL_SIGNING_PUBLIC_KEYS="")
    assert result.returncode == 2
    assert fake.calls() == []
    assert "MODEL_SIGNING_PUBLIC_KEYS is not set" in result.stdout


def test_notification_recipient_is_a_simple_variable_the_jobs_use() -> None:
    """BUNDLE_VAR_* cannot carry a complex value (CLI bundle/config/mutator/set_variables.go):
    the variable CD sets must be simple, and the jobs' recipients' list must be built from it."""
    variables = yaml.safe_load((REPO_ROOT / "databricks.yml").read_text())["variables"]
    assert variables["notification_email"].get("type") is None
    assert variables["notification_emails"]["default"] == ["${var.notification_email}"]


def test_cd_staging_passing(fake, artifact) -> None:
    result = _deploy(fake, artifact, "-t", "staging", "--run", "training", "--run-release", "release")
    assert result.returncode == 0, result.stderr
    assert fake.calls() == [
        ["bundle", "deploy", "-t", "staging"],
        ["bundle", "run", "training", "-t", "staging"],
        ["bundle", "run", "release", "-t", "staging"],
    ]
    assert "job 'release' (target staging) succeeded. Run URL: https://" in result.stdout


@pytest.mark.parametrize("url", ["modern", "legacy"])
def test_cd_release_rejection_is_a_warning_and_the_pipeline_goes_on(fake, artifact, url: str) -> None:
    result = _deploy(fake, artifact, "-t", "staging", "--run", "training", "--run-release", "release",
                     fail="bundle run release", FAKE_DATABRICKS_TASK_STATES=REJECTION,
                     FAKE_DATABRICKS_RUN_URL=url, TF_BUILD="True")
    assert result.returncode == 0, result.stdout + result.stderr
    assert fake.calls()[-1] == ["jobs", "get-run", "202", "-o", "json"]
    assert "task record_rejection: SUCCESS" in result.stdout
    warnings = [x for x in result.stdout.splitlines() if x.startswith("##vso[task.logissue type=warning]")]
    assert any("REJECTED the model" in w and "@champion is unchanged" in w for w in warnings), result.stdout
    assert "##vso[task.complete result=SucceededWithIssues;]" in result.stdout
    assert "##vso[task.logissue type=error]" not in result.stdout  # a rejection is no pipeline error
    assert "job 'release' (target staging) failed with exit code 1" in result.stdout  # still in the log


@pytest.mark.parametrize(
    ("how", "get_run_called"),
    [("start", False), ("quiet", False)],  # no run URL: no run id to ask about
)
def test_cd_release_without_a_run_id_is_a_crash(fake, artifact, how: str, get_run_called: bool) -> None:
    result = _deploy(fake, artifact, "-t", "staging", "--run-release", "release", fail="bundle run release",
                     FAKE_DATABRICKS_RUN_FAILURE=how, FAKE_DATABRICKS_TASK_STATES=REJECTION)
    assert result.returncode == 1
    assert any(c[:2] == ["jobs", "get-run"] for c in fake.calls()) is get_run_called
    assert "the run may never have started" in result.stdout
    assert "CRASHED" in result.stderr


def test_cd_release_whose_states_cannot_be_read_is_a_crash(fake, artifact) -> None:
    result = _deploy(fake, artifact, "-t", "staging", "--run-release", "release",
                     fail="bundle run release;jobs get-run")
    assert result.returncode == 1
    assert "could not read the task states of run 202" in result.stdout


def test_cd_plain_job_failure_stops_with_url_and_error(fake, artifact) -> None:
    result = _deploy(fake, artifact, "-t", "staging", "--run", "training", "--run-release", "release",
                     fail="bundle run training", TF_BUILD="True")
    assert result.returncode != 0
    assert fake.calls() == [["bundle", "deploy", "-t", "staging"], ["bundle", "run", "training", "-t", "staging"]]
    errors = [x for x in result.stdout.splitlines() if x.startswith("##vso[task.logissue type=error]")]
    assert any("job 'training' (target staging) failed" in e and "/jobs/101/runs/202" in e
               and "Task validate FAILED" in e for e in errors), result.stdout


def test_deploy_failure_runs_no_job(fake, artifact) -> None:
    result = _deploy(fake, artifact, "-t", "prod", "--run-gate", "model_deployment", fail="bundle deploy")
    assert result.returncode != 0
    assert fake.calls() == [["bundle", "deploy", "-t", "prod"]]


def test_run_without_deploy(fake, artifact) -> None:
    result = _deploy(fake, artifact, "-t", "prod", "--no-deploy", "--run", "batch_inference")
    assert result.returncode == 0
    assert fake.calls() == [["bundle", "run", "batch_inference", "-t", "prod"]]


def test_deploy_and_run_uses_bundle_root(fake, tmp_path: Path) -> None:
    result = run_script("bundle-deploy-and-run.sh", "-t", "prod", env=fake.env(BUNDLE_ROOT=str(tmp_path)))
    assert result.returncode != 0
    assert "no databricks.yml" in result.stderr


# ---------------------------------------------------------------- the CD steps, run from the artifact


def _rendered_cd_commands(stage: str, root: Path) -> list[tuple[str, dict[str, str]]]:
    """The command line and env of each databricks-bundle.yml step of a cd.yml stage, rendered the
    way Azure DevOps expands the template (azure-cli route: AzureCLI@2's inline script)."""
    import yaml

    def load(rel: str):
        return yaml.load((REPO_ROOT / ".azure/pipelines" / rel).read_text(), Loader=yaml.BaseLoader)

    template = load("templates/steps/databricks-bundle.yml")
    defaults = {p["name"]: p.get("default", "") for p in template["parameters"]}
    azure_cli = next(iter(template["steps"][0].values()))[0]
    cd = load("cd.yml")
    steps = next(s for s in cd["stages"] if s["stage"] == stage)["jobs"][0]["strategy"]["runOnce"]["deploy"]["steps"]
    rendered = []
    for step in steps:
        if not str(step.get("template", "")).endswith("databricks-bundle.yml"):
            continue
        params = {**defaults, **step["parameters"]}

        def sub(text: str, params: dict = params) -> str:
            for name, value in params.items():
                text = text.replace(f"${{{{ parameters.{name} }}}}", str(value))
            return text.replace("$(Pipeline.Workspace)", str(root.parent))

        rendered.append((sub(azure_cli["inputs"]["inlineScript"]), {k: sub(v) for k, v in azure_cli["env"].items()}))
    return rendered


@pytest.mark.parametrize("stage", ["staging", "prod"])
def test_cd_steps_run_from_an_artifact_without_executable_bits(fake, artifact, stage: str) -> None:
    assert not any(p.stat().st_mode & 0o111 for p in artifact.rglob("*") if p.is_file())
    commands = _rendered_cd_commands(stage, artifact)
    assert commands, f"no databricks-bundle.yml step in stage {stage}"
    group = {"$(DATABRICKS_HOST)": HOSTS[stage]}  # the stage's variable group
    for command, step_env in commands:
        step_env = {k: group.get(v, v) for k, v in step_env.items()}
        env = fake.env(**{k: v for k, v in step_env.items() if not v.startswith("$(")},
                       servicePrincipalId="sp-app-id")
        result = subprocess.run(["bash", "-c", command], env=env, cwd=artifact, capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, f"{command}\n{result.stdout}{result.stderr}"
        assert "Permission denied" not in result.stderr
    deployed = [c for c in fake.calls() if c[:2] == ["bundle", "deploy"]]
    assert deployed == [["bundle", "deploy", "-t", stage]]
    # every CLI call resolved the target's profile, written from this stage's variable group
    assert {(e["profile"], e["profile_host"], e["profile_auth_type"]) for e in fake.envs() if "profile" in e} == {
        (f"spark-mlops-{stage}", HOSTS[stage], "azure-cli")}


# ---------------------------------------------------------------- run_result.py


def _run_json(states: str) -> dict:
    return {"run_id": 202, "tasks": [
        {"task_key": k, "state": {"life_cycle_state": "TERMINATED", "result_state": v}}
        for k, v in (pair.split("=") for pair in states.split(","))]}


@pytest.mark.parametrize(
    ("states", "code"),
    [
        (REJECTION, 0),
        (CRASH, 1),
        ("validate=FAILED,promote=UPSTREAM_FAILED", 1),  # no record_rejection task at all
        ("validate=FAILED,record_rejection=UPSTREAM_FAILED", 1),
    ],
)
def test_run_result_tells_rejection_from_crash(states: str, code: int) -> None:
    import run_result  # scripts/ci, on sys.path through tests/azure/helpers

    assert run_result.classify(_run_json(states), "record_rejection")[0] == code


def test_run_result_command_line(tmp_path: Path, capsys) -> None:
    import run_result

    path = tmp_path / "run.json"
    path.write_text(json.dumps(_run_json(REJECTION)))
    assert run_result.main(["--rejection-task", "record_rejection", str(path)]) == 0
    assert "task promote: UPSTREAM_FAILED" in capsys.readouterr().out
    path.write_text("Error: not json")
    assert run_result.main(["--rejection-task", "record_rejection", str(path)]) == 2


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
        ({}, "missing in variable group 'spark-mlops-pr': DATABRICKS_HOST"),
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


def test_install_cli_unpinned_sha_uses_release_sums_with_a_warning_off_ci(release, tmp_path: Path) -> None:
    result = _install(release, tmp_path, "", TF_BUILD="True", CI="")
    assert result.returncode == 0, result.stderr
    assert "##vso[task.logissue type=warning]DATABRICKS_CLI_SHA256 is not pinned" in result.stdout


def test_install_cli_refuses_an_unpinned_sha_in_ci(release, tmp_path: Path) -> None:
    result = _install(release, tmp_path, "", CI="true")
    assert result.returncode == 1
    assert ("error: DATABRICKS_CLI_SHA256 is not pinned for Databricks CLI 9.9.9 (CI=true refuses an unverified "
            "download): set it in .azure/pipelines/templates/variables.yml") in result.stderr
    assert "downloading" not in result.stdout
    assert not (tmp_path / "bin" / "databricks").exists()


def test_install_cli_refuses_a_sha_that_is_not_one(release, tmp_path: Path) -> None:
    result = _install(release, tmp_path, "sha256:abc", CI="")
    assert result.returncode == 1
    assert "DATABRICKS_CLI_SHA256 is not a sha256 (64 lowercase hex digits): 'sha256:abc'" in result.stderr


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
    assert (REPO_ROOT / ".venv/bin/python").exists(), "run the tests through scripts/test.sh, which makes .venv"
    result = run_script("pr-checks.sh", "pipelines", env=clean_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "semantic checks: OK" in result.stdout


def test_pr_checks_rejects_an_unknown_check() -> None:
    result = run_script("pr-checks.sh", "deploy-prod", env=clean_env())
    assert result.returncode != 0
    assert "unknown check" in result.stderr


# ---------------------------------------------------------------- fetch-schemas.sh (CI=true: never skip)


def test_fetch_schemas_verifies_the_azure_schema_and_asks_the_cli_for_the_bundle_schema(fake, tmp_path: Path) -> None:
    import azure_schema

    try:
        source = azure_schema.find_schema(REPO_ROOT)
    except azure_schema.SchemaNotFound as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and the Azure Pipelines schema is missing: {exc}")
        pytest.skip(f"offline Azure Pipelines schema not available: {exc}")
    out = tmp_path / "schemas"
    result = run_script("fetch-schemas.sh", str(out), env=fake.env(
        AZURE_PIPELINES_SCHEMA_URL=f"file://{source}", TF_BUILD="True"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert ["bundle", "schema"] in fake.calls()
    assert f"##vso[task.setvariable variable=SPARK_MLOPS_AZURE_SCHEMA]{out}/azure-pipelines-service-schema.json" \
        in result.stdout
    assert f"##vso[task.setvariable variable=SPARK_MLOPS_BUNDLE_SCHEMA]{out}/databricks-bundle-schema.json" \
        in result.stdout
    assert json.loads((out / "databricks-bundle-schema.json").read_text())["type"] == "object"


def test_fetch_schemas_rejects_a_changed_azure_schema(fake, tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    other.write_text("{}")
    result = run_script("fetch-schemas.sh", str(tmp_path / "schemas"),
                        env=fake.env(AZURE_PIPELINES_SCHEMA_URL=f"file://{other}"))
    assert result.returncode != 0
    assert "sha256 mismatch for the Azure Pipelines schema" in result.stderr


def test_bundle_validation_without_a_schema_fails_in_ci(tmp_path: Path) -> None:
    env = clean_env(CI="true", PATH="/usr/bin:/bin", SPARK_MLOPS_BUNDLE_SCHEMA=str(tmp_path / "missing.json"))
    result = run_script("pr-checks.sh", "bundle-validate", env=env)
    assert result.returncode != 0
    assert "no bundle schema: with CI=true" in result.stderr
