"""The bundle (databricks.yml + resources/) and its offline validator, on real files.

Mutation tests copy the bundle, break one thing, and check the exact message: file, YAML path,
expected vs found.
"""

from __future__ import annotations

import re
import textwrap

import pytest

from spark_mlops.errors import ConfigError
from spark_mlops_dev.bundle import validate
from spark_mlops_dev.bundle.databricks_cli import resolve_bundle
from spark_mlops_dev.bundle.fake_workspace import SERVICE_PRINCIPAL

TARGETS = ["dev", "test", "staging", "prod"]


def run_check(root, schema_source, targets=None) -> list[str]:
    schema_path = schema_source.path if schema_source is not None else None
    report = validate.check(root, targets, schema_path=schema_path)
    return [str(p) for p in report.problems]


def assert_problem(problems: list[str], expected: str) -> None:
    """``expected`` names the file without a line: a problem matches with or without the line the
    CLI's locations add (``file:12: path: ...``)."""
    lineless = [re.sub(r"^([^:\s]+):\d+: ", r"\1: ", p) for p in problems]
    assert any(p.startswith(expected) for p in [*problems, *lineless]), "\n".join(
        ["expected:", expected, "found:", *problems])


# ---------------------------------------------------------------- the real bundle


@pytest.mark.parametrize("target", TARGETS)
def test_real_bundle_validates(repo_root, schema_source, target):
    assert run_check(repo_root, schema_source, [target]) == []


def test_real_bundle_passes_the_schema(repo_root, require_schema):
    report = validate.check(repo_root, ["dev"], schema_path=require_schema.path)
    # a file ($SPARK_MLOPS_BUNDLE_SCHEMA, a shared/ copy) or, where the CLI is on PATH, its own schema
    expected = str(require_schema.path) if require_schema.path else require_schema.description
    assert report.schema_source == expected
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
    job = resolve_bundle(repo_root, "prod").jobs["release"]
    tasks = {t["task_key"]: t for t in job["tasks"]}
    assert sorted(tasks) == ["promote", "record_rejection", "validate"]  # the CLI sorts tasks by key
    assert "run_if" not in tasks["promote"]  # ALL_SUCCESS: only a validate that exited 0
    assert tasks["promote"]["depends_on"] == [{"task_key": "validate"}]
    assert tasks["record_rejection"]["depends_on"] == [{"task_key": "validate"}]
    assert tasks["record_rejection"]["run_if"] == "ALL_FAILED"
    assert tasks["record_rejection"]["python_wheel_task"]["entry_point"] == "record-rejection"
    named = tasks["validate"]["python_wheel_task"]["named_parameters"]
    assert named["min-thresholds"] == "areaUnderROC=0.75,accuracy=0.7" and named["max-tolerance"] == "0.01"
    assert "report-only" not in named
    assert not any("values." in str(t) for t in job["tasks"])


def test_every_job_has_the_basics(repo_root):
    for target in TARGETS:
        for key, job in resolve_bundle(repo_root, target).jobs.items():
            assert job["max_concurrent_runs"] >= 1, key
            assert job["timeout_seconds"] > 0, key
            for cluster in job.get("job_clusters") or []:
                assert cluster["new_cluster"]["spark_version"] == "18.x-cpu-ml-scala2.13"
                assert cluster["new_cluster"]["data_security_mode"] == "SINGLE_USER"
            for task in job["tasks"]:
                if "python_wheel_task" in task:
                    assert task["libraries"] == [{"whl": "dist/*.whl"}]  # relative to the bundle root, as the CLI rewrites it
                    named = task["python_wheel_task"]["named_parameters"]
                    assert named["target"] == target


def test_schedules_are_active_only_in_prod(repo_root):
    for job in ("batch_inference", "retraining"):
        status = {t: resolve_bundle(repo_root, t).jobs[job]["schedule"]["pause_status"] for t in TARGETS}
        assert status == {"dev": "PAUSED", "test": "PAUSED", "staging": "PAUSED", "prod": "UNPAUSED"}, job


def test_model_source_per_target(repo_root):
    sources = {t: resolve_bundle(repo_root, t).variables["model_source"] for t in TARGETS}
    assert sources == {"dev": "train", "test": "train", "staging": "train", "prod": "staging"}
    deploy = next(t for t in resolve_bundle(repo_root, "prod").jobs["model_deployment"]["tasks"]
                  if t["task_key"] == "deploy")
    assert deploy["python_wheel_task"]["named_parameters"]["source-model-name"] == (
        "staging.spark_mlops.diabetes_classifier")


def test_model_deployment_and_retraining_shape(repo_root):
    jobs = resolve_bundle(repo_root, "prod").jobs
    md = {t["task_key"]: t for t in jobs["model_deployment"]["tasks"]}
    # The copy only: the new prod version starts the deployment job, which decides (deployment_job.job.yml).
    assert sorted(md) == ["deploy", "mode", "prepare"]
    assert md["mode"]["condition_task"] == {"op": "EQUAL_TO", "left": "staging", "right": "staging"}
    assert md["prepare"]["depends_on"] == [{"task_key": "mode", "outcome": "true"}]
    rt = {t["task_key"]: t for t in jobs["retraining"]["tasks"]}
    assert rt["mode"]["condition_task"]["right"] == "train"
    assert rt["train"]["run_job_task"] == {"job_id": "${resources.jobs.training.id}"}
    assert rt["release"]["run_job_task"] == {"job_id": "${resources.jobs.release.id}"}
    assert jobs["retraining"]["max_concurrent_runs"] == 1 and jobs["retraining"]["queue"] == {"enabled": False}
    rollback = {p["name"]: p["default"] for p in jobs["rollback"]["parameters"]}
    assert rollback == {"reason": "", "version": ""}
    batch = {p["name"]: p["default"] for p in jobs["batch_inference"]["parameters"]}
    assert batch["batch_id"] == ""


def test_local_run_of_prod_resolves(repo_root):
    """The demo runs model_deployment and batch_inference on target prod locally: nothing
    workspace-only (service principal, root path, profile) may block it."""
    from spark_mlops_dev.bundle.runner import plan_job

    bundle = resolve_bundle(repo_root, "prod")
    for job in ("model_deployment", "deployment_job", "batch_inference", "release", "training", "rollback", "status"):
        assert plan_job(bundle, job).task_keys


# ---------------------------------------------------------------- mutations


def test_typo_in_a_key(bundle_copy, require_schema):
    # Offline, the CLI's schema catches it (the CLI itself refuses it with --strict).
    bundle_copy.replace("resources/training.job.yml", "max_concurrent_runs: 1", "max_concurent_runs: 1")
    problems = run_check(bundle_copy.root, require_schema)
    assert_problem(problems, "resources/training.job.yml: resources.jobs.training.max_concurent_runs: "
                   "schema: unknown field 'max_concurent_runs' (did you mean 'max_concurrent_runs'?)")


def test_schema_reports_bad_enum(bundle_copy, require_schema):
    bundle_copy.replace("resources/training.job.yml", "op: GREATER_THAN", "op: MORE_THAN")
    problems = run_check(bundle_copy.root, require_schema, ["dev"])
    assert_problem(problems, "resources/training.job.yml: resources.jobs.training.health.rules[0].op: "
                   "schema: expected one of 'GREATER_THAN', found 'MORE_THAN'")


def test_depends_on_an_unknown_task(bundle_copy, schema_source):
    bundle_copy.replace("resources/model_deployment.job.yml", "- task_key: mode\n                  outcome: \"true\"",
                        "- task_key: mod\n                  outcome: \"true\"")
    problems = run_check(bundle_copy.root, schema_source, ["prod"])
    assert_problem(problems, "resources/model_deployment.job.yml: resources.jobs.model_deployment.tasks[2].depends_on[0]"
                   ".task_key: depends on 'mod', which is not a task of this job; expected one of: deploy, mode")


def test_cycle_in_the_task_graph(bundle_copy, schema_source):
    data = bundle_copy.load("resources/release.job.yml")
    data["resources"]["jobs"]["release"]["tasks"][0]["depends_on"] = [{"task_key": "promote"}]
    bundle_copy.dump("resources/release.job.yml", data)
    problems = run_check(bundle_copy.root, schema_source, ["dev"])
    assert_problem(problems, "resources/release.job.yml: resources.jobs.release.tasks[0].depends_on: the task graph "
                   "has a cycle: promote -> validate -> promote (each depends on the next)")


def test_undeclared_variable(bundle_copy, schema_source):
    bundle_copy.replace("resources/training.job.yml", "clean-table: ${var.clean_table}",
                        "clean-table: ${var.clean_tabel}")
    problems = run_check(bundle_copy.root, schema_source, ["prod"])
    path = "resources.jobs.training.tasks[0].python_wheel_task.named_parameters.clean-table"
    # the CLI's own error, located where the reference is written (the CLI names no place for it)
    assert_problem(problems, f"resources/training.job.yml: {path}: [target prod] the Databricks CLI refuses it: "
                   "reference does not exist: ${var.clean_tabel}")


def test_wrong_entry_point(bundle_copy, schema_source):
    bundle_copy.replace("resources/batch_inference.job.yml", "entry_point: check-batch", "entry_point: check_batch")
    problems = run_check(bundle_copy.root, schema_source, ["dev"])
    assert_problem(problems, "resources/batch_inference.job.yml: resources.jobs.batch_inference.tasks[0]"
                   ".python_wheel_task.entry_point: 'check_batch' is not an entry point in "
                   "[project.entry-points.\"spark_mlops.tasks\"] of pyproject.toml; expected one of: approval-check, check-batch, ")


def test_named_parameter_the_subcommand_does_not_accept(bundle_copy, schema_source):
    bundle_copy.replace("resources/training.job.yml", "quarantine-table: ${var.quarantine_table}",
                        "quarantine: ${var.quarantine_table}")
    problems = run_check(bundle_copy.root, schema_source, ["dev"])
    assert_problem(problems, "resources/training.job.yml: resources.jobs.training.tasks[0].python_wheel_task"
                   ".named_parameters.quarantine: `spark-mlops prepare` has no option --quarantine; "
                   "expected one of: ")


def test_required_option_not_passed(bundle_copy, schema_source):
    bundle_copy.replace("resources/batch_inference.job.yml",
                        "              input: \"{{job.parameters.scoring_input}}\"\n\n", "\n")
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
    bundle_copy.replace("databricks.yml", "    variables:\n      schema: ${resources.schemas.deployment_schema.name}\n",
                        "    variables:\n      schema: ${resources.schemas.deployment_schema.name}\n"
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


def test_undeclared_job_parameter(bundle_copy, schema_source):
    bundle_copy.replace("resources/batch_inference.job.yml", "{{job.parameters.batch_id}}", "{{job.parameters.batch}}")
    problems = run_check(bundle_copy.root, schema_source, ["dev"])
    assert_problem(problems, "resources/batch_inference.job.yml: resources.jobs.batch_inference.tasks[6]."
                   "python_wheel_task.named_parameters.batch-id: {{job.parameters.batch}} is not a job parameter; "
                   "expected one of: batch_id, scoring_input")


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
    assert re.search(r"resources/training\.job\.yml:\d+: resources\.jobs\.training\.tasks\[1\]\.python_wheel_task"
                     r"\.entry_point: 'fit'", out), out


# ---------------------------------------------------------------- the CLI resolves (spark_mlops_dev.bundle.databricks_cli)


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
            default: {spark_version: "18.x-cpu-ml-scala2.13", num_workers: 1}
        targets:
          dev: {default: true, mode: development}
          prod:
            mode: production
            workspace: {root_path: "/Workspace/Users/${workspace.current_user.userName}/small"}
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
                      job_cluster_key: c
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
                  new_cluster: {spark_version: "18.x-cpu-ml-scala2.13", num_workers: 1}
              tasks:
                - task_key: a
                  job_cluster_key: c
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
                  job_cluster_key: c
                  depends_on: [{task_key: a}]
                  python_wheel_task: {package_name: p, entry_point: e}
        """)
    return tmp_path


def test_default_target_and_where_things_were_written(small_bundle):
    b = resolve_bundle(small_bundle)
    assert b.target == "dev" and b.mode == "development"
    # the CLI's own locations (--include-locations): file and line of each job and task
    assert b.where(("resources", "jobs", "j", "tasks", 1, "depends_on")) == ("resources/j.yml", 25)
    assert b.where(("resources", "jobs", "j")) == ("resources/j.yml", 6)


def test_target_override_merge(small_bundle):
    b = resolve_bundle(small_bundle, "prod")
    job = b.jobs["j"]
    assert [t["task_key"] for t in job["tasks"]] == ["a", "b", "c"]  # merged by task_key, new ones appended
    assert job["tasks"][0]["max_retries"] == 3
    assert job["tasks"][0]["python_wheel_task"]["entry_point"] == "e"  # kept from the base definition
    assert job["job_clusters"] == [{"job_cluster_key": "c", "new_cluster": {
        "spark_version": "18.x-cpu-ml-scala2.13", "num_workers": 4, "custom_tags": {"env": "prod"}}}]
    assert job["tags"] == {"project": "small", "env": "prod"}
    assert b.config["run_as"] == {"service_principal_name": "sp-1"}
    assert b.where(("resources", "jobs", "j", "tasks", 2)) == ("databricks.yml", 26)  # the target's own task


def test_variables_recursive_and_overridden(small_bundle, monkeypatch):
    assert resolve_bundle(small_bundle, "prod").variables["schema"] == "prod_cat_ml"
    b = resolve_bundle(small_bundle, "prod", {"catalog": "sandbox"})
    assert b.variables["schema"] == "sandbox_ml"
    assert b.jobs["j"]["tasks"][0]["python_wheel_task"]["named_parameters"]["schema"] == "sandbox_ml"
    monkeypatch.setenv("BUNDLE_VAR_catalog", "from_env")
    assert resolve_bundle(small_bundle, "prod").variables["schema"] == "from_env_ml"
    assert resolve_bundle(small_bundle, "prod", {"catalog": "flag"}).variables["schema"] == "flag_ml"  # --var wins
    with pytest.raises(ConfigError, match="nope"):
        resolve_bundle(small_bundle, "prod", {"nope": "x"})


def test_names_are_the_fake_workspace_users(small_bundle):
    # Locally the CLI deploys dev as the fake workspace's user, tester@databricks.com, and development
    # mode names things as it does for that user (apply_target_mode.go, apply_presets.go).
    b = resolve_bundle(small_bundle, "dev")
    named = b.jobs["j"]["tasks"][0]["python_wheel_task"]["named_parameters"]
    assert named["experiment"] == "/Users/tester@databricks.com/[dev tester] small-dev"
    assert named["files"] == "/Workspace/Users/tester@databricks.com/.bundle/small/dev/files"
    assert named["job-id"] == "${resources.jobs.j.id}"  # only known after deploy
    assert named["run"] == "{{job.run_id}}"
    assert b.jobs["j"]["name"] == "[dev tester] j dev"
    assert b.jobs["j"]["tags"] == {"project": "small", "dev": "tester"}


def test_a_variable_overrides_file_sets_a_complex_variable(small_bundle):
    # The CLI reads .databricks/bundle/<target>/variable-overrides.json (set_variables.go): the one way
    # besides the YAML to give a complex variable a value. The offline loader never read it.
    write(small_bundle, "resources/k.yml", """\
        resources:
          jobs:
            k:
              job_clusters:
                - job_cluster_key: c
                  new_cluster: ${var.cluster}
              tasks:
                - task_key: a
                  job_cluster_key: c
                  python_wheel_task: {package_name: p, entry_point: e}
        """)
    write(small_bundle, ".databricks/bundle/dev/variable-overrides.json",
          '{"cluster": {"spark_version": "18.x-cpu-ml-scala2.13", "num_workers": 7}}')
    cluster = resolve_bundle(small_bundle, "dev").jobs["k"]["job_clusters"][0]["new_cluster"]
    assert cluster == {"spark_version": "18.x-cpu-ml-scala2.13", "num_workers": 7}


def test_a_complex_variable_from_the_environment_is_refused(small_bundle, monkeypatch):
    # CLI 1.12.1 refuses complex values from BUNDLE_VAR_* (set_variables.go); the offline loader took
    # them as JSON, so a local run worked where CD's deploy fails.
    monkeypatch.setenv("BUNDLE_VAR_cluster", '{"spark_version": "18.x-cpu-ml-scala2.13", "num_workers": 2}')
    with pytest.raises(ConfigError, match="not supported for complex variable cluster"):
        resolve_bundle(small_bundle, "dev")


def test_the_clis_refusals_reach_our_validator_with_file_and_line(small_bundle):
    path = small_bundle / "resources/j.yml"
    path.write_text(path.read_text().replace("${var.schema}", "${var.schma}"))
    problems = [str(p) for p in validate.check(small_bundle, ["dev"]).problems]
    assert_problem(problems, "resources/j.yml:20: resources.jobs.j.tasks[0].python_wheel_task.named_parameters.schema: "
                   "[target dev] the Databricks CLI refuses it: reference does not exist: ${var.schma}")
    path.write_text(path.read_text().replace("${var.schma}", "${var.schema}"))
    write(small_bundle, "resources/z.yml", "resources:\n  jobs:\n    j: {name: again}\n")
    problems = [str(p) for p in validate.check(small_bundle, ["dev"]).problems]
    assert_problem(problems, "resources/j.yml:6: resources.jobs.j: [target dev] the Databricks CLI refuses it: multiple "
                   "resources or scripts have been defined with the same key: j (resources/z.yml:3:8)")


def test_circular_variables_are_refused_by_the_cli(small_bundle):
    path = small_bundle / "databricks.yml"
    path.write_text(path.read_text().replace("catalog: {default: main}", "catalog: {default: \"${var.schema}\"}"))
    with pytest.raises(ConfigError, match="cycle detected in field resolution"):
        resolve_bundle(small_bundle, "dev")
    problems = [str(p) for p in validate.check(small_bundle, ["dev"]).problems]
    assert any("[target dev] the Databricks CLI refuses it: cycle detected in field resolution" in p
               for p in problems), problems


def test_a_target_value_for_an_undeclared_variable_is_refused_by_the_cli(small_bundle):
    path = small_bundle / "databricks.yml"
    path.write_text(path.read_text().replace("variables: {catalog: prod_cat}", "variables: {catalgo: prod_cat}"))
    problems = [str(p) for p in validate.check(small_bundle, ["prod"]).problems]
    assert any("[target prod] the Databricks CLI refuses it: failed to perform target override for target=prod: "
               "variable catalgo is not defined but is assigned a value"
               in p for p in problems), problems


def test_without_the_cli_resolving_says_what_to_run(small_bundle, monkeypatch, tmp_path):
    monkeypatch.setenv("SPARK_MLOPS_DATABRICKS_CLI_BIN", str(tmp_path / "nothing-here"))
    with pytest.raises(ConfigError, match=r"not set up: run `source scripts/bootstrap.sh` \(needs Go >= 1.26\)"):
        resolve_bundle(small_bundle, "dev")


def test_a_second_resolution_is_read_from_the_cache(small_bundle, monkeypatch, tmp_path):
    from spark_mlops_dev.bundle import databricks_cli

    monkeypatch.setenv("SPARK_MLOPS_STATE_DIR", str(tmp_path / "state"))

    first = databricks_cli.validate(small_bundle, "dev")
    second = databricks_cli.validate(small_bundle, "dev")
    assert second.cached and second.config == first.config
    path = small_bundle / "resources/j.yml"
    path.write_text(path.read_text().replace("name: j ${bundle.target}", "name: k ${bundle.target}"))
    third = databricks_cli.validate(small_bundle, "dev")
    assert not third.cached and third.config["resources"]["jobs"]["j"]["name"] == "[dev tester] k dev"


def test_real_bundle_names(repo_root):
    # The test target's presets prefix its schema, model and experiment (apply_presets.go), and
    # every reference to the schema resource names the prefixed schema; the raw inputs stay in the
    # platform schema. test/staging/prod are deployed by the service principal, as in CD.
    b = resolve_bundle(repo_root, "test", {"deployment_suffix": "pr_42"})
    named = b.jobs["training"]["tasks"][1]["python_wheel_task"]["named_parameters"]
    assert named["model-name"] == "staging.test_pr_42_spark_mlops.test_pr_42_diabetes_classifier"
    assert named["clean-table"] == "clean" and named["schema"] == "test_pr_42_spark_mlops"
    assert named["dfs-tmpdir"] == "/Volumes/staging/test_pr_42_spark_mlops/mlflow_tmp"
    assert b.jobs["training"]["parameters"][0] == {
        "name": "input", "default": "/Volumes/staging/spark_mlops/raw/training/diabetes.csv"}
    assert named["experiment"] == f"/Users/{SERVICE_PRINCIPAL}/[test pr_42] spark-mlops-test"
    assert b.config["workspace"]["root_path"] == f"/Workspace/Users/{SERVICE_PRINCIPAL}/.bundle/spark-mlops/test/pr_42"
    assert validate.bundle_schemas(b).deployed == {"deployment_schema": "test_pr_42_spark_mlops"}
    dev = resolve_bundle(repo_root, "dev")
    assert validate.bundle_schemas(dev).deployed == {"deployment_schema": "dev_tester_spark_mlops"}


def test_normalize_prefix_matches_the_cli():
    assert validate._normalize_prefix("[dev lennart] ") == "dev_lennart_"
    assert validate._normalize_prefix("[test pr_1.2] ") == "test_pr_1_2_"


# ---------------------------------------------------------------- schema source, task values


def test_no_schema_is_said_clearly(bundle_copy, monkeypatch):
    from spark_mlops_dev.bundle import schema as bschema

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


def test_password_value(bundle_copy, schema_source):
    bundle_copy.replace("databricks.yml", "  schema:\n    description:", "  schema:\n    password: hunter2\n"
                        "    description:")
    problems = run_check(bundle_copy.root, schema_source, ["dev"])
    assert_problem(problems, "databricks.yml: variables.schema.password: a secret-looking key with a literal value; "
                   "expected a secret reference")


# ---------------------------------------------------------------- issue 9 / issue 8 rules (mutations)


def test_beta_runtime_key_is_refused_for_staging_and_prod(bundle_copy, schema_source):
    bundle_copy.replace("databricks.yml", "default: 18.x-cpu-ml-scala2.13", "default: 18.0.x-cpu-ml-scala2.13")
    problems = run_check(bundle_copy.root, schema_source)
    assert_problem(problems, "resources/training.job.yml: resources.jobs.training.job_clusters[0].new_cluster."
                   "spark_version: [target prod] spark_version '18.0.x-cpu-ml-scala2.13' (var.spark_version) is a "
                   "Beta/preview runtime")
    assert any("[target staging] spark_version '18.0.x" in p for p in problems)
    assert not any("[target dev] spark_version" in p or "[target test] spark_version" in p for p in problems)


def test_test_target_task_naming_the_prefixed_schema(bundle_copy, schema_source):
    # The original bug: the schema resource is created as test_<suffix>_spark_mlops, the tasks
    # write to spark_mlops.
    bundle_copy.replace("databricks.yml", "      catalog: staging\n      schema: ${resources.schemas.deployment_schema.name}",
                        "      catalog: staging\n      schema: ${var.base_schema}")
    problems = run_check(bundle_copy.root, schema_source, ["test"])
    assert_problem(problems, "resources/training.job.yml: resources.jobs.training.tasks[0].python_wheel_task."
                   "named_parameters.schema: [target test] names schema 'spark_mlops', but the target's name prefix "
                   "makes the CLI create it as 'test_manual_spark_mlops'")
    # A UC resource naming the schema the bundle creates by its written name, the CLI itself points at
    # the schema resource (bundle/config/mutator/resourcemutator/capture_uc_dependencies.go): the volume lands in it.
    assert not any("resources.volumes.mlflow_tmp.schema_name" in p for p in problems), problems
    assert "expected ${resources.schemas.deployment_schema.name}" in problems[0] + "".join(problems)


def test_skip_name_prefix_for_schema_is_understood(bundle_copy, schema_source):
    # With the CLI's experimental switch the written name is the deployed name: no problem.
    bundle_copy.replace("databricks.yml", "include:\n", "experimental:\n  skip_name_prefix_for_schema: true\n\ninclude:\n")
    bundle_copy.replace("databricks.yml", "      catalog: staging\n      schema: ${resources.schemas.deployment_schema.name}",
                        "      catalog: staging\n      schema: ${var.base_schema}")
    assert run_check(bundle_copy.root, schema_source, ["test"]) == []


def test_dev_target_writing_to_a_shared_schema(bundle_copy, schema_source):
    data = bundle_copy.load("databricks.yml")
    del data["targets"]["dev"]["variables"]
    del data["targets"]["dev"]["resources"]
    bundle_copy.dump("databricks.yml", data)
    problems = run_check(bundle_copy.root, schema_source, ["dev"])
    assert_problem(problems, "resources/mlflow.yml: resources.volumes.mlflow_tmp.schema_name: [target dev] writes to "
                   "schema 'spark_mlops', which every developer shares")
    assert_problem(problems, "resources/training.job.yml: resources.jobs.training.tasks[1].python_wheel_task."
                   "named_parameters.schema: [target dev] writes to schema 'spark_mlops'")


def test_dev_schema_named_per_user_is_accepted(bundle_copy, schema_source):
    data = bundle_copy.load("databricks.yml")
    del data["targets"]["dev"]["resources"]
    data["targets"]["dev"]["variables"]["schema"] = "spark_mlops_${workspace.current_user.short_name}"
    bundle_copy.dump("databricks.yml", data)
    assert run_check(bundle_copy.root, schema_source, ["dev"]) == []


def test_gate_on_a_task_value_of_a_wheel_task(bundle_copy, schema_source):
    data = bundle_copy.load("resources/release.job.yml")
    tasks = data["resources"]["jobs"]["release"]["tasks"]
    tasks.insert(1, {"task_key": "gate", "depends_on": [{"task_key": "validate"}],
                     "condition_task": {"op": "EQUAL_TO", "left": "{{tasks.validate.values.verdict}}",
                                        "right": "passed"}})
    tasks[2]["depends_on"] = [{"task_key": "gate", "outcome": "true"}]
    bundle_copy.dump("resources/release.job.yml", data)
    problems = run_check(bundle_copy.root, schema_source, ["dev"])
    assert_problem(problems, "resources/release.job.yml: resources.jobs.release.tasks[0].condition_task.left: "
                   "{{tasks.validate.values.verdict}}: task 'validate' is a python_wheel_task; only Python notebook "
                   "tasks can set task values")


def test_report_only_validate_in_a_job(bundle_copy, schema_source):
    data = bundle_copy.load("resources/release.job.yml")
    data["resources"]["jobs"]["release"]["tasks"][0]["python_wheel_task"]["named_parameters"]["report-only"] = "true"
    bundle_copy.dump("resources/release.job.yml", data)
    problems = run_check(bundle_copy.root, schema_source, ["dev"])
    assert_problem(problems, "resources/release.job.yml: resources.jobs.release.tasks[2].python_wheel_task."
                   "named_parameters.report-only: report-only makes validate exit 0 when it rejects")


def test_shared_root_path_in_prod(bundle_copy, schema_source):
    bundle_copy.replace("databricks.yml", "      profile: spark-mlops-prod\n      root_path: /Workspace/Users/"
                        "${workspace.current_user.userName}/.bundle/${bundle.name}/${bundle.target}",
                        "      profile: spark-mlops-prod\n      root_path: /Workspace/Shared/.bundle/${bundle.name}/"
                        "${bundle.target}")
    problems = run_check(bundle_copy.root, schema_source)
    # (the CLI refuses /Workspace/Shared itself with --strict; ours asks for the SP's home)
    assert_problem(problems, "databricks.yml: workspace.root_path: [target prod] "
                   "'/Workspace/Shared/.bundle/spark-mlops/prod'; expected a root path under the deploying "
                   "service principal's home")
    assert not any("[target staging]" in p for p in problems)


def test_shared_experiment_in_staging(bundle_copy, schema_source):
    data = bundle_copy.load("databricks.yml")
    data["targets"]["staging"]["variables"]["experiment_name"] = "/Shared/spark-mlops-staging"
    bundle_copy.dump("databricks.yml", data)
    problems = run_check(bundle_copy.root, schema_source, ["staging"])
    assert_problem(problems, "resources/mlflow.yml: resources.experiments.model_experiment.name: [target staging] "
                   "'/Shared/spark-mlops-staging' is writable by every workspace user")


def test_account_group_in_workspace_permissions_and_workspace_group_in_grants(bundle_copy, schema_source):
    bundle_copy.replace("databricks.yml", "group_name: ${var.workspace_readers_group}",
                        "group_name: account users", count=2)
    bundle_copy.replace("resources/mlflow.yml", "principal: ${var.uc_model_readers}", "principal: users")
    problems = run_check(bundle_copy.root, schema_source, ["prod"])
    assert_problem(problems, "databricks.yml: permissions[1].group_name: "
                   "[target prod] 'account users' is an account-level group")
    # the CLI copies the top-level permissions onto every resource: said once, where they are written
    assert sum("'account users' is an account-level group" in p for p in problems) == 1, problems
    assert_problem(problems, "resources/mlflow.yml: resources.registered_models.model.grants[0].principal: "
                   "[target prod] 'users' is a workspace-local group")


def test_prod_without_its_own_workspace_profile(bundle_copy, schema_source):
    bundle_copy.replace("databricks.yml", "profile: spark-mlops-prod", "profile: spark-mlops-staging")
    problems = run_check(bundle_copy.root, schema_source, ["prod"])
    assert_problem(problems, "databricks.yml: targets.prod.workspace.profile: prod uses the same profile as staging "
                   "('spark-mlops-staging')")
    bundle_copy.replace("databricks.yml", "      profile: spark-mlops-staging\n      root_path: /Workspace/Users/"
                        "${workspace.current_user.userName}/.bundle/${bundle.name}/${bundle.target}\n    run_as:\n"
                        "      service_principal_name: ${var.service_principal}\n    permissions:\n"
                        "      - level: CAN_MANAGE\n        service_principal_name: ${var.service_principal}\n"
                        "      - level: CAN_VIEW\n        group_name: ${var.workspace_readers_group}\n    variables:\n"
                        "      # Deploy", "      root_path: /Workspace/Users/${workspace.current_user.userName}/"
                        ".bundle/${bundle.name}/${bundle.target}\n    run_as:\n"
                        "      service_principal_name: ${var.service_principal}\n    permissions:\n"
                        "      - level: CAN_MANAGE\n        service_principal_name: ${var.service_principal}\n"
                        "      - level: CAN_VIEW\n        group_name: ${var.workspace_readers_group}\n    variables:\n"
                        "      # Deploy")
    problems = run_check(bundle_copy.root, schema_source, ["prod"])
    assert_problem(problems, "databricks.yml: targets.prod.workspace.profile: expected the CLI profile of the prod "
                   "target's workspace (e.g. spark-mlops-prod), found none")


def test_interpolated_workspace_profile(bundle_copy, schema_source):
    bundle_copy.replace("databricks.yml", "profile: spark-mlops-prod", "profile: ${var.catalog}")
    problems = run_check(bundle_copy.root, schema_source, ["prod"])
    assert_problem(problems, "databricks.yml: targets.prod.workspace.profile: '${var.catalog}': the CLI does not "
                   "interpolate workspace.profile")


def test_spark_model_task_without_dfs_tmpdir(bundle_copy, schema_source):
    bundle_copy.replace("resources/batch_inference.job.yml", "              dfs-tmpdir: ${var.dfs_tmpdir}\n", "")
    bundle_copy.replace("resources/training.job.yml", "dfs-tmpdir: ${var.dfs_tmpdir}", "dfs-tmpdir: /tmp/mlflow")
    problems = run_check(bundle_copy.root, schema_source, ["staging"])
    assert_problem(problems, "resources/batch_inference.job.yml: resources.jobs.batch_inference.tasks[6]."
                   "python_wheel_task.named_parameters: [target staging] task 'score' (spark-mlops score) logs or "
                   "loads a Spark model but passes no dfs-tmpdir")
    assert_problem(problems, "resources/training.job.yml: resources.jobs.training.tasks[1].python_wheel_task."
                   "named_parameters.dfs-tmpdir: [target staging] '/tmp/mlflow' is not a UC volume of this bundle; "
                   "expected one of: /Volumes/staging/spark_mlops/mlflow_tmp")


def test_machine_specific_path_in_a_comment(bundle_copy, schema_source):
    bundle_copy.replace("databricks.yml", "bundle:\n", "# measured facts: see /work/shared/FACTS.md\nbundle:\n")
    bundle_copy.replace("resources/mlflow.yml", "resources:\n", "# schema: ../../shared/schema.json\nresources:\n")
    problems = run_check(bundle_copy.root, schema_source, ["dev"])
    lineno = bundle_copy.path("databricks.yml").read_text().splitlines().index("bundle:")
    assert_problem(problems, f"databricks.yml: line {lineno}: '/work/shared/FACTS.md' points outside the repository")
    assert any(p.startswith("resources/mlflow.yml: line ") and "'../../shared/schema.json' points outside" in p
               for p in problems)


def test_no_machine_specific_paths_in_product_files(repo_root):
    """Product files (not tests) point only inside the repository, at workspace paths or at public sources."""
    roots = ["databricks.yml", "pyproject.toml", "README.md", "resources", "src", "docs", "scripts", ".azure"]
    found = []
    for name in roots:
        base = repo_root / name
        files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file()) if base.is_dir() else []
        for path in files:
            if path.suffix in (".pyc", ".whl", ".parquet", ".png") or "__pycache__" in path.parts:
                continue
            for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                for hit in validate.local_paths(line, path.parent, repo_root):
                    found.append(f"{path.relative_to(repo_root)}:{lineno}: {hit}")
    assert found == []


def test_retraining_schedule_rule(bundle_copy, schema_source):
    bundle_copy.replace("databricks.yml", "      model_source: staging\n", "      model_source: train\n")
    bundle_copy.replace("databricks.yml", "      retraining_schedule_pause_status: UNPAUSED\n",
                        "      retraining_schedule_pause_status: PAUSED\n")
    problems = run_check(bundle_copy.root, schema_source, ["prod"])
    assert_problem(problems, "resources/retraining.job.yml: resources.jobs.retraining.schedule.pause_status: "
                   "[target prod] model_source is 'train', so prod retrains on this schedule: expected UNPAUSED, "
                   "found PAUSED (written as '${var.retraining_schedule_pause_status}')")


def test_retraining_schedule_active_in_staging(bundle_copy, schema_source):
    data = bundle_copy.load("databricks.yml")
    data["targets"]["staging"]["variables"]["retraining_schedule_pause_status"] = "UNPAUSED"
    bundle_copy.dump("databricks.yml", data)
    problems = run_check(bundle_copy.root, schema_source)
    assert_problem(problems, "resources/retraining.job.yml: resources.jobs.retraining.schedule.pause_status: "
                   "[target staging] expected PAUSED (retraining runs on its schedule only in prod), found UNPAUSED")
    assert not any("[target prod]" in p for p in problems)


def test_retraining_that_queues(bundle_copy, schema_source):
    bundle_copy.replace("resources/retraining.job.yml", "      queue:\n        enabled: false\n",
                        "      queue:\n        enabled: true\n")
    problems = run_check(bundle_copy.root, schema_source, ["prod"])
    assert_problem(problems, "resources/retraining.job.yml: resources.jobs.retraining.queue: [target prod] expected "
                   "queue: {enabled: false}")


def test_run_job_task_naming_an_unknown_job(bundle_copy, schema_source):
    bundle_copy.replace("resources/retraining.job.yml", "${resources.jobs.training.id}", "${resources.jobs.trainig.id}")
    problems = run_check(bundle_copy.root, schema_source, ["dev"])
    # (the CLI leaves ${resources.*.id} for deploy time: our rule names it now)
    assert_problem(problems, "resources/retraining.job.yml: resources.jobs.retraining.tasks[2].run_job_task.job_id: "
                   "[target dev] ${resources.jobs.trainig.id}; expected ${resources.jobs.<key>.id} of another job")
    # A literal id points at whatever job has that id in one workspace.
    bundle_copy.replace("resources/retraining.job.yml", "${resources.jobs.trainig.id}", "123456")
    problems = run_check(bundle_copy.root, schema_source, ["dev"])
    assert_problem(problems, "resources/retraining.job.yml: resources.jobs.retraining.tasks[2].run_job_task.job_id: "
                   "[target dev] 123456; expected ${resources.jobs.<key>.id} of another job")


def test_model_source_that_deploys_from_itself(bundle_copy, schema_source):
    data = bundle_copy.load("databricks.yml")
    data["targets"]["prod"]["variables"]["catalog"] = "staging"
    data["targets"]["staging"]["variables"]["model_source"] = "staging"
    data["targets"]["dev"]["variables"]["model_source"] = "prod"
    bundle_copy.dump("databricks.yml", data)
    problems = run_check(bundle_copy.root, schema_source, ["prod", "staging", "dev"])
    assert_problem(problems, "databricks.yml: variables.source_catalog: [target prod] model_source "
                   "is 'staging' but source_catalog is this target's own catalog ('staging')")
    assert_problem(problems, "databricks.yml: variables.model_source: [target staging] model_source is "
                   "'staging' but this target has no model_deployment job")
    assert_problem(problems, "databricks.yml: variables.model_source: [target dev] expected one of train, "
                   "staging, found 'prod'")


def test_dfs_tmpdir_volume_maps_into_the_state_folder_locally(tmp_path, monkeypatch):
    # The bundle passes /Volumes/<catalog>/<schema>/mlflow_tmp; off Databricks it is a folder of
    # the local state, like every other /Volumes path.
    from spark_mlops.config import build_settings

    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    settings = build_settings(state_dir=str(tmp_path), dfs_tmpdir="/Volumes/prod/spark_mlops/mlflow_tmp")
    assert settings.dfs_tmpdir == str(tmp_path.resolve() / "volumes" / "prod" / "spark_mlops" / "mlflow_tmp")
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "18.0")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///" + str(tmp_path / "t.db"))
    on_databricks = build_settings(state_dir=str(tmp_path), dfs_tmpdir="/Volumes/prod/spark_mlops/mlflow_tmp",
                                   registry_uri="sqlite:///" + str(tmp_path / "r.db"))
    assert on_databricks.dfs_tmpdir == "/Volumes/prod/spark_mlops/mlflow_tmp"
