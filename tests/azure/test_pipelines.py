"""The Azure Pipelines files: JSON-schema validation (offline copy of Microsoft's schema) and the
semantic checks of scripts/ci/check_pipelines.py, each with mutation tests showing that the
check catches the mistake it is for."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from .helpers import PIPELINES_DIR, REPO_ROOT, azure_schema, check_pipelines, copy_repo_subset

PIPELINE_FILES = azure_schema.pipeline_files(PIPELINES_DIR)


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


@pytest.fixture(scope="module")
def schema_path() -> Path:
    return find_schema_or_skip()


def find_schema_or_skip() -> Path:
    try:
        return azure_schema.find_schema(REPO_ROOT)
    except azure_schema.SchemaNotFound as exc:
        if _in_ci():  # on an agent the schema gates must never pass by skipping
            pytest.fail(f"CI=true and the Azure Pipelines schema is missing: {exc}")
        pytest.skip(f"offline Azure Pipelines schema not available: {exc}")


def _doc(rel: str):
    return azure_schema.load_yaml(PIPELINES_DIR / rel)


def _problems(schema_path: Path, text: str, *, template: bool = False) -> list[str]:
    doc = yaml.load(text, Loader=yaml.BaseLoader)
    return [str(p) for p in azure_schema.validate_document(doc, schema_path=schema_path, template=template)]


# ---------------------------------------------------------------- schema


def test_the_pipeline_files_are_there() -> None:
    rels = {str(p.relative_to(PIPELINES_DIR)) for p in PIPELINE_FILES}
    assert {"pr-validation.yml", "cd.yml"} <= rels
    assert any(r.startswith("templates/") for r in rels)


@pytest.mark.parametrize("path", PIPELINE_FILES, ids=lambda p: str(p.relative_to(PIPELINES_DIR)))
def test_every_pipeline_file_validates_against_the_schema(schema_path: Path, path: Path) -> None:
    assert azure_schema.validate_file(path, schema_path=schema_path, root=REPO_ROOT) == []


@pytest.mark.parametrize("path", [p for p in PIPELINE_FILES if "templates" in p.parts],
                         ids=lambda p: p.name)
def test_templates_are_validated_as_templates(path: Path) -> None:
    kind = azure_schema.template_kind(azure_schema.splice_expressions(azure_schema.load_yaml(path)))
    assert kind in ("stepsTemplate", "variablesTemplate", "jobsTemplate", "stagesTemplate")


def test_schema_location_honours_the_environment_variable(schema_path: Path, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv(azure_schema.SCHEMA_ENV, str(schema_path))
    assert azure_schema.find_schema(tmp_path) == schema_path
    monkeypatch.setenv(azure_schema.SCHEMA_ENV, str(tmp_path / "missing.json"))
    with pytest.raises(azure_schema.SchemaNotFound, match="not a file"):
        azure_schema.find_schema(tmp_path)


def test_schema_not_found_says_where_it_looked(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv(azure_schema.SCHEMA_ENV, raising=False)
    with pytest.raises(azure_schema.SchemaNotFound, match="shared/azure-pipelines-schema"):
        azure_schema.find_schema(tmp_path)


def test_schema_found_in_a_shared_folder_above_the_clone(schema_path: Path, monkeypatch, tmp_path) -> None:
    monkeypatch.delenv(azure_schema.SCHEMA_ENV, raising=False)
    target = tmp_path / "shared" / "azure-pipelines-schema" / "service-schema.json"
    target.parent.mkdir(parents=True)
    target.symlink_to(schema_path)
    clone = tmp_path / "work" / "repo"
    clone.mkdir(parents=True)
    assert azure_schema.find_schema(clone) == target


# mutation tests: each breaks one line of a real file


def _mutate(rel: str, old: str, new: str, count: int = 1) -> str:
    text = (PIPELINES_DIR / rel).read_text()
    assert old in text, f"{old!r} not in {rel}"
    return text.replace(old, new, count)


def test_typo_stpes_in_a_job_is_caught(schema_path: Path) -> None:
    text = _mutate("pr-validation.yml", "        steps:\n", "        stpes:\n")
    problems = _problems(schema_path, text)
    assert any("'stpes' was unexpected" in p for p in problems), problems


def test_typo_stpes_in_a_deployment_job_is_caught(schema_path: Path) -> None:
    text = _mutate("cd.yml", "            deploy:\n              steps:", "            deploy:\n              stpes:")
    problems = _problems(schema_path, text)
    assert any("'stpes' was unexpected" in p for p in problems), problems


def test_misspelled_task_input_is_caught(schema_path: Path) -> None:
    text = _mutate("templates/steps/setup-python.yml", "versionSpec:", "versionSpek:")
    problems = _problems(schema_path, text, template=True)
    assert any("'versionSpek' was unexpected" in p for p in problems), problems


def test_bad_enum_task_input_is_caught(schema_path: Path) -> None:
    text = _mutate("templates/steps/databricks-bundle.yml", "scriptType: bash", "scriptType: zsh")
    problems = _problems(schema_path, text, template=True)
    assert any("zsh" in p for p in problems), problems


def test_missing_required_input_of_the_coverage_task_is_caught(schema_path: Path) -> None:
    text = _mutate("templates/steps/offline-checks.yml", "      summaryFileLocation: test-results/coverage.xml\n", "")
    problems = _problems(schema_path, text, template=True)
    assert any("summaryFileLocation" in p for p in problems), problems


def test_unknown_task_is_caught(schema_path: Path) -> None:
    text = _mutate("templates/steps/offline-checks.yml", "PublishTestResults@2", "PublishTestResult@2")
    problems = _problems(schema_path, text, template=True)
    assert any("PublishTestResult@2" in p for p in problems), problems


def test_bad_lock_behavior_is_caught(schema_path: Path) -> None:
    text = _mutate("cd.yml", "lockBehavior: sequential", "lockBehavior: sequentially")
    assert _problems(schema_path, text)


def test_misspelled_key_inside_a_template_expression_branch_is_caught(schema_path: Path) -> None:
    text = _mutate("templates/steps/databricks-bundle.yml", "        workingDirectory: ${{ parameters.root }}\n",
                   "        workingDir: ${{ parameters.root }}\n")
    problems = _problems(schema_path, text, template=True)
    assert any("'workingDir' was unexpected" in p for p in problems), problems


def test_splice_template_expressions() -> None:
    doc = yaml.load(
        "steps:\n"
        "  - bash: a\n"
        "  - ${{ if eq(parameters.x, true) }}:\n"
        "      - bash: b\n"
        "  - ${{ else }}:\n"
        "      - bash: c\n"
        "env:\n"
        "  ${{ if true }}:\n"
        "    K: v\n"
        "  J: w\n",
        Loader=yaml.BaseLoader,
    )
    assert azure_schema.splice_expressions(doc) == {
        "steps": [{"bash": "a"}, {"bash": "b"}, {"bash": "c"}],
        "env": {"K": "v", "J": "w"},
    }


# ---------------------------------------------------------------- what the pipelines say


def test_pr_pipeline_triggers() -> None:
    doc = _doc("pr-validation.yml")
    assert doc["trigger"] == "none"
    assert doc["pr"]["branches"]["include"] == ["main"]


def test_pr_offline_stage_has_no_databricks_credentials() -> None:
    doc = azure_schema.splice_expressions(_doc("pr-validation.yml"))
    offline = doc["stages"][0]
    text = str(offline)
    assert "variables" not in offline
    for forbidden in ("AzureCLI@2", "System.AccessToken", "DATABRICKS_HOST", "databricks-bundle.yml"):
        assert forbidden not in text


def _workspace_stage() -> dict:
    """The PR pipeline's workspace stage, inside its compile-time ${{ if }}."""
    (key, body), = _doc("pr-validation.yml")["stages"][1].items()
    assert key == "${{ if eq(parameters.workspaceStage, true) }}"
    return body[0]


def test_pr_workspace_stage_exists_only_when_enabled_at_compile_time() -> None:
    doc = _doc("pr-validation.yml")
    param = next(p for p in doc["parameters"] if p["name"] == "workspaceStage")
    assert (param["type"], param["default"]) == ("boolean", "false")  # a fresh repository: offline only
    assert _workspace_stage()["stage"] == "workspace"
    assert [s["stage"] for s in doc["stages"] if "stage" in s] == ["offline"]


def test_pr_workspace_stage_is_skipped_visibly_when_not_configured() -> None:
    stage = _workspace_stage()
    config, integration = stage["jobs"]
    check = config["steps"][1]
    assert check["name"] == "check" and "check-workspace-config.sh" in check["bash"]
    assert "dependencies.config.outputs['check.configured']" in integration["condition"]
    assert integration["dependsOn"] == "config"


def test_pr_config_step_maps_the_token_only_for_the_oidc_route() -> None:
    env = _workspace_stage()["jobs"][0]["steps"][1]["env"]
    assert "SYSTEM_ACCESSTOKEN" not in env
    assert env["${{ if eq(parameters.authRoute, 'azure-devops-oidc') }}"] == {
        "SYSTEM_ACCESSTOKEN": "$(System.AccessToken)"}


def test_azure_cli_route_runs_the_script_through_bash_without_tokens() -> None:
    steps = _doc("templates/steps/databricks-bundle.yml")["steps"]
    azure_cli = steps[0]["${{ if eq(parameters.authRoute, 'azure-cli') }}"][0]
    assert azure_cli["inputs"]["scriptLocation"] == "inlineScript"
    assert azure_cli["inputs"]["inlineScript"].startswith('bash "${{ parameters.root }}/')
    assert "scriptPath" not in azure_cli["inputs"]
    assert not {"SYSTEM_ACCESSTOKEN", "ARM_OIDC_TOKEN", "ARM_CLIENT_ID"} & set(azure_cli["env"])


def test_pr_integration_runs_in_the_required_order_and_destroys_last() -> None:
    integration = _workspace_stage()["jobs"][1]
    assert int(integration["cancelTimeoutInMinutes"]) >= 30
    calls = [s for s in integration["steps"] if s.get("template", "").endswith("databricks-bundle.yml")]
    assert calls[0]["parameters"]["arguments"] == (
        "run -t test --validate staging --job training --job release"
    )
    assert calls[1]["parameters"]["arguments"] == "destroy -t test"
    assert calls[1]["parameters"]["condition"] == "always()"
    assert integration["steps"][-1] is calls[1]


def test_cd_pipeline_shape() -> None:
    doc = _doc("cd.yml")
    assert doc["lockBehavior"] == "sequential"
    param = next(p for p in doc["parameters"] if p["name"] == "runBatchInference")
    assert (param["type"], param["default"]) == ("boolean", "false")
    stages = {s["stage"]: s for s in doc["stages"]}
    assert list(stages) == ["build", "staging", "prod"]
    assert stages["staging"]["variables"] == [{"group": "spark-mlops-staging"}]
    assert stages["prod"]["variables"] == [{"group": "spark-mlops-prod"}]
    assert stages["staging"]["jobs"][0]["environment"] == "databricks-staging"
    assert stages["prod"]["jobs"][0]["environment"] == "databricks-prod"
    build_text = str(stages["build"])
    assert "PublishPipelineArtifact@1" in build_text and "bash scripts/ci/stage-bundle.sh" in build_text


def _deploy_args(stage: int) -> list[str]:
    steps = _doc("cd.yml")["stages"][stage]["jobs"][0]["strategy"]["runOnce"]["deploy"]["steps"]
    return [s["parameters"]["arguments"] for s in steps if str(s.get("template", "")).endswith("databricks-bundle.yml")]


def test_cd_staging_tolerates_a_rejected_release_and_prod_deploys_the_model() -> None:
    assert _deploy_args(1) == ["-t staging --run training --run-release release"]
    assert _deploy_args(2) == ["-t prod --run model_deployment --link-deployment-job"]


def test_cd_deploy_stages_build_nothing() -> None:
    """The deploy stages deploy the build stage's wheel: no pip install, no wheel build."""
    for stage in (1, 2):
        steps = _doc("cd.yml")["stages"][stage]["jobs"][0]["strategy"]["runOnce"]["deploy"]["steps"]
        setup = next(s for s in steps if str(s.get("template", "")).endswith("setup-python.yml"))
        assert setup["parameters"]["install"] == "none"
        assert "build-wheel" not in str(steps) and "stage-bundle" not in str(steps)


def test_cd_runs_batch_inference_only_when_asked() -> None:
    deploy_steps = _doc("cd.yml")["stages"][2]["jobs"][0]["strategy"]["runOnce"]["deploy"]["steps"]
    conditional = [s for s in deploy_steps if any(azure_schema.is_expression_key(k) for k in s)]
    assert len(conditional) == 1
    (key, body), = conditional[0].items()
    assert "parameters.runBatchInference" in key
    assert "--run batch_inference" in body[0]["parameters"]["arguments"]
    unconditional = " ".join(str(s) for s in deploy_steps if s is not conditional[0])
    assert "batch_inference" not in unconditional


def test_no_secrets_in_yaml() -> None:
    for path in PIPELINE_FILES:
        text = path.read_text().lower()
        for word in ("client_secret", "clientsecret", "password", "dapi", "databricks_token"):
            assert word not in text, f"{path}: {word}"


# ---------------------------------------------------------------- semantic checks


def test_bundle_targets_and_jobs_are_read_from_the_bundle() -> None:
    assert set(check_pipelines.bundle_targets(REPO_ROOT)) >= {"dev", "test", "staging", "prod"}
    assert set(check_pipelines.bundle_jobs(REPO_ROOT)) >= {"training", "release", "batch_inference"}


def test_semantic_checks_pass_on_the_repository() -> None:
    assert check_pipelines.check(REPO_ROOT) == []


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = copy_repo_subset(tmp_path / "repo")
    assert check_pipelines.check(root) == []
    return root


def _edit(root: Path, rel: str, old: str, new: str) -> None:
    path = root / rel
    text = path.read_text()
    assert old in text, f"{old!r} not in {rel}"
    path.write_text(text.replace(old, new, 1))


def _assert_caught(root: Path, fragment: str) -> None:
    problems = check_pipelines.check(root)
    assert any(fragment in p for p in problems), problems


def test_missing_template_is_caught(repo: Path) -> None:
    _edit(repo, ".azure/pipelines/cd.yml", "templates/steps/install-databricks-cli.yml",
          "templates/steps/install-cli.yml")
    _assert_caught(repo, "template not found: templates/steps/install-cli.yml")


def test_missing_script_is_caught(repo: Path) -> None:
    (repo / "scripts/ci/check-workspace-config.sh").unlink()
    _assert_caught(repo, "script not found: scripts/ci/check-workspace-config.sh")


def test_scripts_without_executable_bits_pass(repo: Path) -> None:
    for path in (repo / "scripts/ci").glob("*.sh"):
        path.chmod(0o644)
    assert check_pipelines.check(repo) == []


def test_template_running_the_script_directly_is_caught(repo: Path) -> None:
    _edit(repo, ".azure/pipelines/templates/steps/databricks-bundle.yml",
          'inlineScript: bash "${{ parameters.root }}/${{ parameters.script }}" ',
          'inlineScript: ${{ parameters.root }}/${{ parameters.script }} ')
    _assert_caught(repo, "runs X/SCRIPT.sh directly")


def test_azure_cli_script_path_is_caught(repo: Path) -> None:
    _edit(repo, ".azure/pipelines/templates/steps/databricks-bundle.yml",
          '          scriptLocation: inlineScript\n'
          '          inlineScript: bash "${{ parameters.root }}/${{ parameters.script }}" ${{ parameters.arguments }}\n',
          '          scriptLocation: scriptPath\n'
          '          scriptPath: ${{ parameters.root }}/${{ parameters.script }}\n'
          '          arguments: ${{ parameters.arguments }}\n')
    _assert_caught(repo, "scriptPath executes")


def test_step_running_a_script_directly_is_caught(repo: Path) -> None:
    _edit(repo, ".azure/pipelines/templates/steps/offline-checks.yml",
          "bash: bash scripts/ci/pr-checks.sh lint", "bash: scripts/ci/pr-checks.sh lint")
    _assert_caught(repo, "runs scripts/ci/pr-checks.sh directly")


def test_script_running_another_script_directly_is_caught(repo: Path) -> None:
    _edit(repo, "scripts/ci/stage-bundle.sh", 'bash "$CI_ROOT/scripts/ci/build-wheel.sh" dist',
          '"$CI_ROOT/scripts/ci/build-wheel.sh" dist')
    _assert_caught(repo, "scripts/ci/stage-bundle.sh: runs $CI_ROOT/scripts/ci/build-wheel.sh directly")


def test_bare_python_in_a_step_is_caught(repo: Path) -> None:
    _edit(repo, ".azure/pipelines/templates/steps/offline-checks.yml",
          "bash: bash scripts/ci/pr-checks.sh lint", "bash: python -m ruff check src")
    _assert_caught(repo, "calls a bare `python`")


def test_bare_python_in_a_script_is_caught(repo: Path) -> None:
    _edit(repo, "scripts/ci/install.sh", '"$py" -m pip --version', "python -m pip --version")
    _assert_caught(repo, "scripts/ci/install.sh: calls a bare `python`")


def test_bare_python_in_the_bundle_build_command_is_caught(repo: Path) -> None:
    _edit(repo, "databricks.yml", "build: bash scripts/ci/build-wheel.sh dist",
          "build: python -m pip wheel --no-deps -w dist .")
    _assert_caught(repo, "targets.dev.artifacts.spark_mlops_wheel.build: build command calls a bare `python`")


def test_workspace_stage_outside_a_compile_time_condition_is_caught(repo: Path) -> None:
    path = repo / ".azure/pipelines/pr-validation.yml"
    text = path.read_text()
    head, stage = text.split("  - ${{ if eq(parameters.workspaceStage, true) }}:\n")
    unwrapped = "\n".join(line[4:] if line.startswith("    ") else line for line in stage.splitlines())
    path.write_text(head + unwrapped + "\n")
    _assert_caught(repo, "(workspace) uses variable group (group: spark-mlops-pr), service connection")


def test_force_lock_on_a_staging_or_prod_deploy_is_caught(repo: Path) -> None:
    _edit(repo, "scripts/ci/bundle-deploy-and-run.sh", 'databricks bundle deploy -t "$target" ||',
          'databricks bundle deploy -t "$target" --force-lock ||')
    _assert_caught(repo, "scripts/ci/bundle-deploy-and-run.sh: --force-lock outside the per-run test deployment")


def test_force_lock_on_the_test_deploy_is_caught(repo: Path) -> None:
    _edit(repo, "scripts/ci/bundle-integration.sh", 'databricks bundle deploy -t "$target" "${bundle_vars[@]}"',
          'databricks bundle deploy -t "$target" "${bundle_vars[@]}" --force-lock')
    _assert_caught(repo, "scripts/ci/bundle-integration.sh: --force-lock outside the per-run test deployment")


def test_force_lock_in_a_pipeline_file_is_caught(repo: Path) -> None:
    _edit(repo, ".azure/pipelines/cd.yml", "arguments: -t prod --run model_deployment", "arguments: -t prod --force-lock --run model_deployment")
    _assert_caught(repo, ".azure/pipelines/cd.yml: --force-lock in a pipeline file")


def test_destroy_job_without_cancel_timeout_is_caught(repo: Path) -> None:
    _edit(repo, ".azure/pipelines/pr-validation.yml", "            cancelTimeoutInMinutes: 35\n", "")
    _assert_caught(repo, "must set cancelTimeoutInMinutes >= the destroy step's timeout (30)")


def test_cancel_timeout_shorter_than_the_destroy_is_caught(repo: Path) -> None:
    _edit(repo, ".azure/pipelines/pr-validation.yml", "cancelTimeoutInMinutes: 35", "cancelTimeoutInMinutes: 5")
    _assert_caught(repo, "(cancelTimeoutInMinutes: 5)")


def test_unknown_job_in_a_gated_run_is_caught(repo: Path) -> None:
    _edit(repo, ".azure/pipelines/cd.yml", "--run model_deployment", "--run model_deploy")
    _assert_caught(repo, "unknown bundle job 'model_deploy'")


def test_missing_schema_fails_only_in_ci(repo: Path, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv(azure_schema.SCHEMA_ENV, str(tmp_path / "no-schema.json"))
    monkeypatch.delenv("CI", raising=False)
    assert check_pipelines.main(["--root", str(repo)]) == 0  # a laptop: the schema part is skipped, said so
    monkeypatch.setenv("CI", "true")
    assert check_pipelines.main(["--root", str(repo)]) == 1


def test_schema_fixture_fails_in_ci(monkeypatch, tmp_path: Path) -> None:
    """The tests' own schema gate: in CI a missing schema is a failure, not a skip."""
    monkeypatch.setenv(azure_schema.SCHEMA_ENV, str(tmp_path / "missing.json"))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        find_schema_or_skip()


def test_unknown_bundle_job_is_caught(repo: Path) -> None:
    _edit(repo, ".azure/pipelines/cd.yml", "--run training", "--run train")
    _assert_caught(repo, "unknown bundle job 'train'")


def test_unknown_bundle_job_in_a_script_is_caught(repo: Path) -> None:
    _edit(repo, "scripts/ci/pr-checks.sh", "spark-mlops run batch_inference", "spark-mlops run batch_scoring")
    _assert_caught(repo, "scripts/ci/pr-checks.sh: unknown bundle job 'batch_scoring'")


def test_job_renamed_in_the_bundle_is_caught(repo: Path) -> None:
    _edit(repo, "resources/release.job.yml", "    release:\n", "    release_gate:\n")
    _assert_caught(repo, "unknown bundle job 'release'")


def test_unknown_target_is_caught(repo: Path) -> None:
    _edit(repo, ".azure/pipelines/cd.yml", "arguments: -t prod --run model_deployment", "arguments: -t production --run model_deployment")
    _assert_caught(repo, "unknown bundle target 'production'")


def test_pr_pipeline_deploying_to_staging_is_caught(repo: Path) -> None:
    _edit(repo, ".azure/pipelines/pr-validation.yml", "arguments: run -t test", "arguments: run -t staging")
    _assert_caught(repo, "the PR pipeline must not deploy/run/destroy on 'staging'")


def test_pr_pipeline_using_the_prod_group_is_caught(repo: Path) -> None:
    _edit(repo, ".azure/pipelines/pr-validation.yml", "- group: spark-mlops-pr", "- group: spark-mlops-prod")
    _assert_caught(repo, "must not use 'spark-mlops-prod'")


def test_pr_pipeline_signing_in_as_the_staging_service_principal_is_caught(repo: Path) -> None:
    """Pull-request code must not run as the identity that owns staging's model (issue 22)."""
    _edit(repo, ".azure/pipelines/pr-validation.yml", "- group: spark-mlops-pr", "- group: spark-mlops-staging")
    _edit(repo, ".azure/pipelines/pr-validation.yml", "    default: spark-mlops-pr\n    values:\n      - spark-mlops-pr\n",
          "    default: spark-mlops-staging\n")
    problems = check_pipelines.check(repo)
    assert any("the PR pipeline must not use 'spark-mlops-staging'" in p for p in problems), problems
    assert any("group: spark-mlops-staging; the PR pipeline may use only 'spark-mlops-pr'" in p for p in problems), problems
    assert any("serviceConnection: parameter prServiceConnection must have 'spark-mlops-pr' as its default and only "
               "value (found default 'spark-mlops-staging', values [])" in p for p in problems), problems


def test_pr_service_connection_parameter_offering_another_connection_is_caught(repo: Path) -> None:
    _edit(repo, ".azure/pipelines/pr-validation.yml", "    values:\n      - spark-mlops-pr\n",
          "    values:\n      - spark-mlops-pr\n      - some-other-connection\n")
    _assert_caught(repo, "parameter prServiceConnection must have 'spark-mlops-pr' as its default and only value "
                   "(found default 'spark-mlops-pr', values ['spark-mlops-pr', 'some-other-connection'])")


def test_azure_cli_v2_is_caught(repo: Path) -> None:
    _edit(repo, ".azure/pipelines/templates/steps/databricks-bundle.yml", "task: AzureCLI@3", "task: AzureCLI@2")
    _assert_caught(repo, "AzureCLI@2 always sets the service connection's subscription after login")


def test_azure_cli_without_allow_no_subscriptions_is_caught(repo: Path) -> None:
    _edit(repo, ".azure/pipelines/templates/steps/databricks-bundle.yml", "          allowNoSubscriptions: true\n", "")
    _assert_caught(repo, "AzureCLI@3 without allowNoSubscriptions: true sets a subscription context after login")


def test_bundle_step_without_restricted_commands_is_caught(repo: Path) -> None:
    _edit(repo, ".azure/pipelines/templates/steps/databricks-bundle.yml",
          "        target:\n          commands: restricted\n          settableVariables: none\n        inputs:\n",
          "        inputs:\n")
    _assert_caught(repo, "steps/0: copies job output into the log; expected target: {commands: restricted, "
                   "settableVariables: none}")


def test_misspelled_azure_cli_v3_input_is_caught(schema_path: Path) -> None:
    text = _mutate("templates/steps/databricks-bundle.yml", "allowNoSubscriptions: true", "allowNoSubscription: true")
    problems = _problems(schema_path, text, template=True)
    assert any("allowNoSubscription" in p and "unexpected" in p for p in problems), problems


def test_prod_deploy_outside_a_deployment_job_is_caught(repo: Path) -> None:
    path = repo / ".azure/pipelines/cd.yml"
    doc = yaml.load(path.read_text(), Loader=yaml.BaseLoader)
    prod_job = doc["stages"][2]["jobs"][0]
    steps = prod_job["strategy"]["runOnce"]["deploy"]["steps"]
    doc["stages"][2]["jobs"][0] = {"job": "deploy_prod", "steps": steps}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    _assert_caught(repo, "writes to 'prod' outside a deployment job")


def test_prod_deploy_bound_to_the_wrong_environment_is_caught(repo: Path) -> None:
    _edit(repo, ".azure/pipelines/cd.yml", "environment: databricks-prod", "environment: databricks-staging")
    _assert_caught(repo, "bound to environment 'databricks-staging', expected 'databricks-prod'")


def test_destroy_without_always_is_caught(repo: Path) -> None:
    _edit(repo, ".azure/pipelines/pr-validation.yml", "                  condition: always()\n", "")
    _assert_caught(repo, "the destroy step must run under always()")


def test_destroy_not_last_is_caught(repo: Path) -> None:
    path = repo / ".azure/pipelines/pr-validation.yml"
    path.write_text(path.read_text() + "              - bash: echo after\n                displayName: after destroy\n")
    _assert_caught(repo, "the destroy step must be the last step of its job")


def test_template_that_drops_the_condition_is_caught(repo: Path) -> None:
    _edit(repo, ".azure/pipelines/templates/steps/databricks-bundle.yml",
          "        condition: ${{ parameters.condition }}\n", "")
    _assert_caught(repo, "does not forward ${{ parameters.condition }}")


def test_temporary_deploy_without_destroy_is_caught(repo: Path) -> None:
    path = repo / ".azure/pipelines/pr-validation.yml"
    text = path.read_text()
    cut = text.index("              - template: templates/steps/databricks-bundle.yml\n                parameters:\n"
                     "                  displayName: bundle destroy")
    path.write_text(text[:cut])
    _assert_caught(repo, "deploys a temporary target but no destroy step follows")


def test_check_pipelines_command_line(repo: Path, capsys) -> None:
    assert check_pipelines.main(["--root", str(repo), "--list-jobs"]) == 0
    assert set(capsys.readouterr().out.split()) >= {"training", "release", "batch_inference"}
    _edit(repo, ".azure/pipelines/cd.yml", "--run training", "--run train")
    assert check_pipelines.main(["--root", str(repo), "--no-schema"]) == 1


# ---------------------------------------------------------------- CD's reading of the validated jobs


def _rejection_task() -> str:
    import re

    text = (REPO_ROOT / "scripts/ci/bundle-deploy-and-run.sh").read_text()
    return re.search(r'^REJECTION_TASK="([a-z_]+)"', text, re.M).group(1)


# model_deployment only copies since the deployment job (resources/deployment_job.job.yml) gates prod.
@pytest.mark.parametrize("job_key", ["release"])
def test_cd_rejection_task_is_the_bundle_jobs_record_rejection(job_key: str) -> None:
    """CD calls a failed run a rejection when this task succeeded: it must be the job's task that
    runs only when validate failed (run_if: ALL_FAILED) and records the verdict."""
    jobs = {}
    for path in sorted((REPO_ROOT / "resources").glob("*.yml")):
        doc = yaml.safe_load(path.read_text()) or {}
        # a job of one target only (model_deployment: prod) sits under targets.<t>.resources
        for scope in [doc, *((doc.get("targets") or {}).values())]:
            jobs.update(((scope or {}).get("resources") or {}).get("jobs") or {})
    assert job_key in jobs, f"bundle job '{job_key}' is not in resources/"
    tasks = {t["task_key"]: t for t in jobs[job_key]["tasks"]}
    task = tasks.get(_rejection_task())
    assert task is not None, f"{job_key} has no task '{_rejection_task()}'"
    assert task.get("run_if") == "ALL_FAILED"
    assert [d["task_key"] for d in task["depends_on"]] == ["validate"]


# ---------------------------------------------------------------- the step's workspace and its targets


def test_every_bundle_step_names_the_workspace_of_its_stage_variable_group() -> None:
    """The profile the script writes is the one of CI_WORKSPACE (the `workspace` parameter): it must
    be the workspace whose DATABRICKS_HOST the stage's variable group holds."""
    expected = {"pr-validation.yml": ["staging", "staging"], "cd.yml": ["staging", "prod", "prod"]}
    for name, workspaces in expected.items():
        doc = check_pipelines.load_pipeline(PIPELINES_DIR / name)
        steps = [s for s in check_pipelines._steps(PIPELINES_DIR / name, doc)
                 if str(s.node.get("template", "")).endswith("databricks-bundle.yml")]
        assert [s.node["parameters"]["workspace"] for s in steps] == workspaces, name
    template = _doc("templates/steps/databricks-bundle.yml")
    param = next(p for p in template["parameters"] if p["name"] == "workspace")
    assert "default" not in param and param["values"] == ["staging", "prod"]
    text = (PIPELINES_DIR / "templates/steps/databricks-bundle.yml").read_text()
    assert text.count("CI_WORKSPACE: ${{ parameters.workspace }}") == 2  # both auth routes


def test_step_with_the_other_stage_workspace_is_caught(repo: Path) -> None:
    _edit(repo, ".azure/pipelines/cd.yml", "                    workspace: prod\n", "                    workspace: staging\n")
    _assert_caught(repo, "parameter workspace is 'staging', but the stage's variable group spark-mlops-prod is the "
                   "prod workspace's")
    _assert_caught(repo, "target 'prod' deploys to the prod workspace, but this step has the staging workspace's")


def test_pr_step_validating_prod_is_caught(repo: Path) -> None:
    _edit(repo, ".azure/pipelines/pr-validation.yml", "--validate staging", "--validate staging --validate prod")
    _assert_caught(repo, "target 'prod' deploys to the prod workspace, but this step has the staging workspace's")
