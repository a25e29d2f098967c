"""The bundle (databricks.yml + resources/) and its offline validator, on real files.

Mutation tests copy the bundle, break one thing, and check the exact message: file, YAML path,
expected vs found.
"""

from __future__ import annotations

import textwrap

import pytest

from spark_mlops.bundle import loader, validate
from spark_mlops.bundle.loader import load_bundle
from spark_mlops.errors import ConfigError

TARGETS = ["dev", "test", "staging", "prod"]


def run_check(root, schema_source, targets=None) -> list[str]:
    schema_path = schema_source.path if schema_source is not None else None
    report = validate.check(root, targets, schema_path=schema_path)
    return [str(p) for p in report.problems]


def assert_problem(problems: list[str], expected: str) -> None:
    assert any(p.startswith(expected) for p in problems), "\n".join(["expected:", expected, "found:", *problems])


# ---------------------------------------------------------------- the real bundle


@pytest.mark.parametrize("target", TARGETS)
def test_real_bundle_validates(repo_root, schema_source, target):
    assert run_check(repo_root, schema_source, [target]) == []


def test_real_bundle_passes_the_schema(repo_root, require_schema):
    report = validate.check(repo_root, ["dev"], schema_path=require_schema.path)
    assert report.schema_source == str(require_schema.path)
    assert report.problems == []


def test_cli_bundle_validate_shows_every_target(repo_root, schema_source, capsys, monkeypatch):
    from spark_mlops.cli import main

    if schema_source is not None:
        monkeypatch.setenv("SPARK_MLOPS_BUNDLE_SCHEMA", str(schema_source.path))
    assert main(["bundle", "validate", "--root", str(repo_root), "--show"]) == 0
    out = capsys.readouterr().out
    for target in TARGETS:
        assert f"{target}: ok: " in out
        assert f"--- # resolved view of target {target}" in out
    assert "active schedules: batch_inference" in out.split("prod: ok:")[1].splitlines()[0]
    assert out.rstrip().endswith("bundle ok")


def test_release_job_shape(repo_root):
    job = load_bundle(repo_root, "prod").jobs["release"]
    tasks = {t["task_key"]: t for t in job["tasks"]}
    assert list(tasks) == ["validate", "gate", "promote", "reject"]
    assert tasks["validate"]["python_wheel_task"]["named_parameters"]["report-only"] == "true"
    assert tasks["gate"]["condition_task"] == {
        "op": "EQUAL_TO", "left": "{{tasks.validate.values.verdict}}", "right": "passed"}
    assert tasks["promote"]["depends_on"] == [{"task_key": "gate", "outcome": "true"}]
    assert tasks["reject"]["depends_on"] == [{"task_key": "gate", "outcome": "false"}]
    assert tasks["reject"]["python_wheel_task"]["named_parameters"]["reason"] == (
        "{{tasks.validate.values.rejection_reason}}")


def test_every_job_has_the_basics(repo_root):
    for target in TARGETS:
        for key, job in load_bundle(repo_root, target).jobs.items():
            assert job["max_concurrent_runs"] == 1, key
            assert job["timeout_seconds"] > 0, key
            assert job["email_notifications"]["on_failure"], key
            cluster = job["job_clusters"][0]["new_cluster"]
            assert cluster["spark_version"] == "18.0.x-cpu-ml-scala2.13"
            assert cluster["data_security_mode"] == "SINGLE_USER"
            for task in job["tasks"]:
                if "python_wheel_task" in task:
                    assert task["libraries"] == [{"whl": "../dist/*.whl"}]
                    named = task["python_wheel_task"]["named_parameters"]
                    assert named["target"] == target
                    assert named["job-run-id"] == "{{job.run_id}}"


def test_schedule_is_active_only_in_prod(repo_root):
    status = {t: load_bundle(repo_root, t).jobs["batch_inference"]["schedule"]["pause_status"] for t in TARGETS}
    assert status == {"dev": "PAUSED", "test": "PAUSED", "staging": "PAUSED", "prod": "UNPAUSED"}


# ---------------------------------------------------------------- mutations


def test_typo_in_a_key(bundle_copy, schema_source):
    bundle_copy.replace("resources/training.job.yml", "max_concurrent_runs: 1", "max_concurent_runs: 1")
    problems = run_check(bundle_copy.root, schema_source)
    assert_problem(problems, "resources/training.job.yml: resources.jobs.training: typed check "
                   "(databricks.bundles.jobs.Job): Unexpected field 'max_concurent_runs' for class Job")
    if schema_source is not None:
        assert_problem(problems, "resources/training.job.yml: resources.jobs.training.max_concurent_runs: "
                       "schema: unknown field 'max_concurent_runs' (did you mean 'max_concurrent_runs'?)")


def test_schema_reports_bad_enum(bundle_copy, require_schema):
    bundle_copy.replace("resources/training.job.yml", "op: GREATER_THAN", "op: MORE_THAN")
    problems = run_check(bundle_copy.root, require_schema, ["dev"])
    assert_problem(problems, "resources/training.job.yml: resources.jobs.training.health.rules[0].op: "
                   "schema: expected one of 'GREATER_THAN', found 'MORE_THAN'")


def test_depends_on_an_unknown_task(bundle_copy, schema_source):
    bundle_copy.replace("resources/release.job.yml", "- task_key: gate\n              outcome: \"true\"",
                        "- task_key: gat\n              outcome: \"true\"")
    problems = run_check(bundle_copy.root, schema_source, ["dev"])
    assert_problem(problems, "resources/release.job.yml: resources.jobs.release.tasks[2].depends_on[0].task_key: "
                   "depends on 'gat', which is not a task of this job; expected one of: validate, gate, reject")


def test_cycle_in_the_task_graph(bundle_copy, schema_source):
    data = bundle_copy.load("resources/release.job.yml")
    data["resources"]["jobs"]["release"]["tasks"][0]["depends_on"] = [{"task_key": "promote"}]
    bundle_copy.dump("resources/release.job.yml", data)
    problems = run_check(bundle_copy.root, schema_source, ["dev"])
    assert_problem(problems, "resources/release.job.yml: resources.jobs.release.tasks[0].depends_on: the task graph "
                   "has a cycle: validate -> promote -> gate -> validate (each depends on the next)")


def test_undeclared_variable(bundle_copy, schema_source):
    bundle_copy.replace("resources/training.job.yml", "clean-table: ${var.clean_table}",
                        "clean-table: ${var.clean_tabel}")
    problems = run_check(bundle_copy.root, schema_source, ["prod"])
    path = "resources.jobs.training.tasks[0].python_wheel_task.named_parameters.clean-table"
    assert_problem(problems, f"resources/training.job.yml: {path}: ${{var.clean_tabel}} refers to an "
                   "undeclared variable")
    assert_problem(problems, f"resources/training.job.yml: {path}: [target prod] cannot resolve "
                   "${var.clean_tabel}: variable 'clean_tabel' is not declared")


def test_wrong_entry_point(bundle_copy, schema_source):
    bundle_copy.replace("resources/batch_inference.job.yml", "entry_point: check-batch", "entry_point: check_batch")
    problems = run_check(bundle_copy.root, schema_source, ["dev"])
    assert_problem(problems, "resources/batch_inference.job.yml: resources.jobs.batch_inference.tasks[0]"
                   ".python_wheel_task.entry_point: 'check_batch' is not an entry point in "
                   "[project.entry-points.\"spark_mlops.tasks\"] of pyproject.toml; expected one of: check-batch, ")


def test_named_parameter_the_subcommand_does_not_accept(bundle_copy, schema_source):
    bundle_copy.replace("resources/training.job.yml", "quarantine-table: ${var.quarantine_table}",
                        "quarantine: ${var.quarantine_table}")
    problems = run_check(bundle_copy.root, schema_source, ["dev"])
    assert_problem(problems, "resources/training.job.yml: resources.jobs.training.tasks[0].python_wheel_task"
                   ".named_parameters.quarantine: `spark-mlops prepare` has no option --quarantine; "
                   "expected one of: ")


def test_required_option_not_passed(bundle_copy, schema_source):
    bundle_copy.replace("resources/batch_inference.job.yml",
                        "              input: \"{{job.parameters.input}}\"\n\n", "\n")
    problems = run_check(bundle_copy.root, schema_source, ["dev"])
    assert_problem(problems, "resources/batch_inference.job.yml: resources.jobs.batch_inference.tasks[0]"
                   ".python_wheel_task.named_parameters: `spark-mlops check-batch` requires --input; not passed")


def test_prod_without_run_as(bundle_copy, schema_source):
    data = bundle_copy.load("databricks.yml")
    del data["targets"]["prod"]["run_as"]
    bundle_copy.dump("databricks.yml", data)
    problems = run_check(bundle_copy.root, schema_source)
    assert_problem(problems, "databricks.yml: targets.prod.run_as: expected run_as with service_principal_name, "
                   "found None")
    assert_problem(problems, "databricks.yml: run_as: [target prod] run_as resolves to {}; expected a service "
                   "principal")
    assert not any("targets.staging" in p for p in problems)


def test_staging_in_development_mode(bundle_copy, schema_source):
    bundle_copy.replace("databricks.yml", "  staging:\n    mode: production", "  staging:\n    mode: development")
    problems = run_check(bundle_copy.root, schema_source, ["staging"])
    assert_problem(problems, "databricks.yml: targets.staging.mode: expected 'production', found 'development'")


def test_unpaused_schedule_in_dev(bundle_copy, schema_source):
    bundle_copy.replace("databricks.yml", "    mode: development\n    default: true\n",
                        "    mode: development\n    default: true\n    variables:\n"
                        "      scoring_schedule_pause_status: UNPAUSED\n")
    problems = run_check(bundle_copy.root, schema_source)
    assert_problem(problems, "resources/batch_inference.job.yml: resources.jobs.batch_inference.schedule."
                   "pause_status: [target dev] expected PAUSED (no active schedule outside prod), found UNPAUSED "
                   "(written as '${var.scoring_schedule_pause_status}')")
    assert not any("[target prod]" in p or "[target staging]" in p for p in problems)


def test_test_target_schedule_without_pause_status(bundle_copy, schema_source):
    # test is not in development mode: a schedule without pause_status is UNPAUSED there
    # unless presets.trigger_pause_status says otherwise; removing the preset must be caught.
    bundle_copy.replace("resources/batch_inference.job.yml",
                        "        pause_status: ${var.scoring_schedule_pause_status}\n", "")
    bundle_copy.replace("databricks.yml", "      trigger_pause_status: PAUSED\n", "")
    problems = run_check(bundle_copy.root, schema_source, ["dev", "test"])
    assert_problem(problems, "resources/batch_inference.job.yml: resources.jobs.batch_inference.schedule."
                   "pause_status: [target test] expected PAUSED")
    assert not any("[target dev]" in p for p in problems)  # development mode pauses it


def test_hard_coded_workspace_host(bundle_copy, schema_source):
    bundle_copy.replace("databricks.yml", "  staging:\n    mode: production\n",
                        "  staging:\n    mode: production\n    workspace:\n"
                        "      host: https://adb-1234567890123456.7.azuredatabricks.net\n", )
    bundle_copy.replace("databricks.yml", "    workspace:\n      host: https://adb-1234567890123456.7"
                        ".azuredatabricks.net\n    workspace:\n",
                        "    workspace:\n      host: https://adb-1234567890123456.7.azuredatabricks.net\n", )
    problems = run_check(bundle_copy.root, schema_source, ["staging"])
    assert_problem(problems, "databricks.yml: targets.staging.workspace.host: hard-coded workspace host "
                   "'https://adb-1234567890123456.7.azuredatabricks.net'; expected none")


def test_token_in_a_comment(bundle_copy, schema_source):
    bundle_copy.replace("databricks.yml", "bundle:\n", "# token dapi" + "0123456789abcdef" * 2 + "\nbundle:\n")
    lineno = bundle_copy.path("databricks.yml").read_text().splitlines().index("bundle:")
    problems = run_check(bundle_copy.root, schema_source, ["dev"])
    assert_problem(problems, f"databricks.yml: line {lineno} (comment): looks like a Databricks personal access "
                   "token (dapi…); expected no credentials")


def test_task_value_not_set_by_the_upstream_task(bundle_copy, schema_source):
    bundle_copy.replace("resources/release.job.yml", "values.rejection_reason}}", "values.rejection_reson}}")
    problems = run_check(bundle_copy.root, schema_source, ["dev"])
    assert_problem(problems, "resources/release.job.yml: resources.jobs.release.tasks[3].python_wheel_task."
                   "named_parameters.reason: {{tasks.validate.values.rejection_reson}}: task 'validate' "
                   "(entry point 'validate') sets challenger_version, rejection_reason, verdict; 'rejection_reson' "
                   "is not one of them")


def test_task_value_from_a_task_that_is_not_upstream(bundle_copy, schema_source):
    data = bundle_copy.load("resources/release.job.yml")
    gate = data["resources"]["jobs"]["release"]["tasks"][1]
    del gate["depends_on"]
    bundle_copy.dump("resources/release.job.yml", data)
    problems = run_check(bundle_copy.root, schema_source, ["dev"])
    assert_problem(problems, "resources/release.job.yml: resources.jobs.release.tasks[1].condition_task.left: "
                   "{{tasks.validate.values.verdict}}: task 'validate' is not upstream of 'gate'")


def test_undeclared_job_parameter(bundle_copy, schema_source):
    bundle_copy.replace("resources/batch_inference.job.yml", "{{job.parameters.batch_id}}", "{{job.parameters.batch}}")
    problems = run_check(bundle_copy.root, schema_source, ["dev"])
    assert_problem(problems, "resources/batch_inference.job.yml: resources.jobs.batch_inference.tasks[1]."
                   "python_wheel_task.named_parameters.batch-id: {{job.parameters.batch}} is not a job parameter; "
                   "expected one of: batch_id, input")


def test_duplicate_task_key(bundle_copy, schema_source):
    bundle_copy.replace("resources/training.job.yml", "- task_key: train", "- task_key: prepare")
    problems = run_check(bundle_copy.root, schema_source, ["dev"])
    assert_problem(problems, "resources/training.job.yml: resources.jobs.training.tasks[1].task_key: duplicate "
                   "task_key 'prepare' (also tasks[0])")


def test_main_exit_code_and_problem_list(bundle_copy, schema_source, capsys):
    bundle_copy.replace("resources/training.job.yml", "entry_point: train", "entry_point: fit")
    schema_path = schema_source.path if schema_source is not None else None
    assert validate.main(bundle_copy.root, ["dev"], schema_path=schema_path) == 1
    out = capsys.readouterr().out
    assert "dev: FAILED" not in out  # the problem is not target specific
    assert "1 problem(s):" in out
    assert "resources/training.job.yml: resources.jobs.training.tasks[1].python_wheel_task.entry_point: 'fit'" in out


# ---------------------------------------------------------------- loader


def write(root, rel, text):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")


@pytest.fixture
def small_bundle(tmp_path):
    write(tmp_path, "databricks.yml", """\
        bundle: {name: small}
        include: [resources/*.yml]
        variables:
          catalog: {default: main}
          schema: {default: "${var.catalog}_ml"}
          cluster:
            type: complex
            default: {spark_version: "18.0.x-cpu-ml-scala2.13", num_workers: 1}
        targets:
          dev: {default: true, mode: development}
          prod:
            mode: production
            workspace: {root_path: /Workspace/Shared/small}
            run_as: {service_principal_name: sp-1}
            variables: {catalog: prod_cat}
            resources:
              jobs:
                j:
                  tags: {env: prod}
                  job_clusters:
                    - job_cluster_key: c
                      new_cluster: {num_workers: 4, custom_tags: {env: prod}}
                  tasks:
                    - task_key: a
                      max_retries: 3
                    - task_key: c
                      depends_on: [{task_key: b}]
        """)
    write(tmp_path, "resources/j.yml", """\
        resources:
          experiments:
            e: {name: "/Users/${workspace.current_user.userName}/small-${bundle.target}"}
          jobs:
            j:
              name: j ${bundle.target}
              tags: {project: small}
              job_clusters:
                # a literal map: merged with the target's. (A "${var.x}" string would be replaced
                # by the target's map, as the Databricks CLI merges before resolving variables.)
                - job_cluster_key: c
                  new_cluster: {spark_version: "18.0.x-cpu-ml-scala2.13", num_workers: 1}
              tasks:
                - task_key: a
                  python_wheel_task:
                    package_name: p
                    entry_point: e
                    named_parameters:
                      schema: ${var.schema}
                      experiment: ${resources.experiments.e.name}
                      job-id: ${resources.jobs.j.id}
                      run: "{{job.run_id}}"
                      files: ${workspace.file_path}
                - task_key: b
                  depends_on: [{task_key: a}]
        """)
    return tmp_path


def test_loader_default_target_and_origins(small_bundle):
    b = load_bundle(small_bundle)
    assert b.target == "dev" and b.mode == "development"
    assert b.origins[("resources", "jobs", "j")] == "resources/j.yml"
    assert b.where(("resources", "jobs", "j", "tasks", 0)) == "resources/j.yml: resources.jobs.j.tasks[0]"


def test_loader_target_override_merge(small_bundle):
    job = load_bundle(small_bundle, "prod").jobs["j"]
    assert [t["task_key"] for t in job["tasks"]] == ["a", "b", "c"]  # merged by task_key, new ones appended
    assert job["tasks"][0]["max_retries"] == 3
    assert job["tasks"][0]["python_wheel_task"]["entry_point"] == "e"  # kept from the base definition
    assert job["job_clusters"] == [{"job_cluster_key": "c", "new_cluster": {
        "spark_version": "18.0.x-cpu-ml-scala2.13", "num_workers": 4, "custom_tags": {"env": "prod"}}}]
    assert job["tags"] == {"project": "small", "env": "prod"}
    b = load_bundle(small_bundle, "prod")
    assert b.config["run_as"] == {"service_principal_name": "sp-1"}
    assert b.config["workspace"]["file_path"] == "/Workspace/Shared/small/files"
    assert b.where(("resources", "jobs", "j", "tags", "env")) == "databricks.yml: targets.prod.resources.jobs.j.tags.env"


def test_loader_variables_recursive_and_overridden(small_bundle, monkeypatch):
    assert load_bundle(small_bundle, "prod").variables["schema"] == "prod_cat_ml"
    b = load_bundle(small_bundle, "prod", {"catalog": "sandbox"})
    assert b.variables["schema"] == "sandbox_ml"
    assert b.jobs["j"]["tasks"][0]["python_wheel_task"]["named_parameters"]["schema"] == "sandbox_ml"
    monkeypatch.setenv("BUNDLE_VAR_catalog", "from_env")
    assert load_bundle(small_bundle, "prod").variables["schema"] == "from_env_ml"
    assert load_bundle(small_bundle, "prod", {"catalog": "flag"}).variables["schema"] == "flag_ml"  # --var wins
    with pytest.raises(ConfigError, match="variable 'nope' is not declared"):
        load_bundle(small_bundle, "prod", {"nope": "x"})


def test_loader_local_resolution(small_bundle):
    remote = load_bundle(small_bundle, "dev")
    named = remote.jobs["j"]["tasks"][0]["python_wheel_task"]["named_parameters"]
    assert named["experiment"] == "/Users/${workspace.current_user.userName}/small-dev"
    assert named["job-id"] == "${resources.jobs.j.id}"  # only known after deploy
    assert named["run"] == "{{job.run_id}}"

    local = load_bundle(small_bundle, "dev", local=True)
    named = local.jobs["j"]["tasks"][0]["python_wheel_task"]["named_parameters"]
    assert named["experiment"] == "/Users/local-user/small-dev"
    assert named["files"] == "/local/.bundle/small/dev/files"
    assert named["run"] == "{{job.run_id}}"
    assert local.config["workspace"]["root_path"] == "/local/.bundle/small/dev"
    assert local.jobs["j"]["name"] == "j dev"


def test_loader_complex_variable_is_not_shared(small_bundle):
    write(small_bundle, "resources/k.yml", """\
        resources:
          jobs:
            k:
              job_clusters:
                - job_cluster_key: c
                  new_cluster: ${var.cluster}
        """)
    write(small_bundle, "resources/l.yml", """\
        resources:
          jobs:
            l:
              job_clusters:
                - job_cluster_key: c
                  new_cluster: ${var.cluster}
        """)
    b = load_bundle(small_bundle, "dev")
    b.jobs["k"]["job_clusters"][0]["new_cluster"]["num_workers"] = 9
    assert b.jobs["l"]["job_clusters"][0]["new_cluster"]["num_workers"] == 1


def test_loader_unknown_reference_names_file_path_and_reference(small_bundle):
    path = small_bundle / "resources/j.yml"
    path.write_text(path.read_text().replace("${var.schema}", "${var.schma}"))
    with pytest.raises(ConfigError) as exc:
        load_bundle(small_bundle, "dev")
    assert str(exc.value).startswith(
        "resources/j.yml: resources.jobs.j.tasks[0].python_wheel_task.named_parameters.schema: "
        "cannot resolve ${var.schma}: variable 'schma' is not declared")


def test_loader_circular_variables(small_bundle):
    path = small_bundle / "databricks.yml"
    path.write_text(path.read_text().replace("catalog: {default: main}", "catalog: {default: \"${var.schema}\"}"))
    with pytest.raises(ConfigError, match=r"circular reference: var\.\w+ -> var\.\w+ -> var\.\w+"):
        load_bundle(small_bundle, "dev")


def test_loader_duplicate_resource_across_files(small_bundle):
    write(small_bundle, "resources/z.yml", "resources:\n  jobs:\n    j: {name: again}\n")
    with pytest.raises(ConfigError, match=r"resources/z.yml: resources.jobs.j: already defined in resources/j.yml"):
        loader.load_raw(small_bundle)


def test_loader_real_bundle_names(repo_root):
    b = load_bundle(repo_root, "test", {"deployment_suffix": "pr_42"}, local=True)
    named = b.jobs["training"]["tasks"][1]["python_wheel_task"]["named_parameters"]
    assert named["model-name"] == "staging.spark_mlops_pr_42.diabetes_classifier"
    assert named["clean-table"] == "clean" and named["schema"] == "spark_mlops_pr_42"
    assert b.config["resources"]["schemas"]["ci_schema"]["name"] == "spark_mlops_pr_42"
    assert b.config["resources"]["volumes"]["mlflow_tmp"]["schema_name"] == "spark_mlops_pr_42"
    assert b.jobs["training"]["parameters"][0] == {
        "name": "input", "default": "/Volumes/staging/spark_mlops/raw/training/diabetes.csv"}
    assert named["experiment"] == "/Shared/spark-mlops-test-pr_42"
    assert b.config["workspace"]["root_path"] == "/local/.bundle/spark-mlops/test"
    assert load_bundle(repo_root, "prod").config["workspace"]["root_path"] == (
        "/Workspace/Shared/.bundle/spark-mlops/prod")


# ---------------------------------------------------------------- schema source, task values


def test_no_schema_is_said_clearly(bundle_copy, monkeypatch):
    from spark_mlops.bundle import schema as bschema

    monkeypatch.setenv("SPARK_MLOPS_BUNDLE_SCHEMA", str(bundle_copy.root / "missing.json"))
    monkeypatch.setenv("PATH", str(bundle_copy.root))  # no databricks CLI
    with pytest.raises(bschema.SchemaUnavailable, match="no Databricks bundle schema found; looked at: "
                       r"\$SPARK_MLOPS_BUNDLE_SCHEMA=.*missing.json \(no such file\); `databricks bundle schema` "
                       r"\(no databricks CLI on PATH\); shared/databricks-bundle-schema/jsonschema.json in "):
        bschema.find_schema(bundle_copy.root)
    report = validate.check(bundle_copy.root, ["dev"])
    assert report.problems == []
    assert report.schema_source is None
    assert report.warnings[0].startswith("schema check skipped: no Databricks bundle schema found")


def test_task_values_cross_checked_with_the_validation_module(tmp_path):
    source = tmp_path / "validation.py"
    source.write_text('TASK_VALUES = frozenset({"verdict", "challenger_version", "rejection_reason"})\n')
    values, note = validate.task_values_from_source(source)
    assert values["validate"] == validate.TASK_VALUES["validate"] and note is None

    source.write_text('TASK_VALUES: dict[str, str] = {"verdict": "passed|failed", "version": "n"}\n')
    values, note = validate.task_values_from_source(source)
    assert values["validate"] == {"verdict", "version"}
    assert note.startswith("spark_mlops.validation.TASK_VALUES is ['verdict', 'version']")


def test_password_value(bundle_copy, schema_source):
    bundle_copy.replace("databricks.yml", "  schema:\n    description:", "  schema:\n    password: hunter2\n"
                        "    description:")
    problems = run_check(bundle_copy.root, schema_source, ["dev"])
    assert_problem(problems, "databricks.yml: variables.schema.password: a secret-looking key with a literal value; "
                   "expected a secret reference")
