"""The CD scripts with the REAL Databricks CLI against the fake workspace that runs jobs
(scripts/ci/fake-workspace/jobs.go, a TEST DOUBLE of the Jobs API's run endpoints, which runs the
deployed job with the project's runner: scripts/ci/fake_workspace_runner.py).

A small bundle of its own keeps these runs fast: a wheel ``gatejobs`` built here, whose
``validate`` entry point passes, rejects (exit 6) or crashes as the job parameter ``mode`` says,
and a ``release`` job routed as the project's (promote after validate; record_rejection
``run_if: ALL_FAILED``, which succeeds only after a rejection). What the CLI prints and returns is
the CLI's own; nothing here writes its output. The project's own jobs run the same way in
scripts/ci/databricks_cli_checks.py --run-jobs (CI's databricks-cli-checks stage).

CD's link of a registered model to its deployment job (scripts/ci/link-deployment-job.sh) runs
here with the real CLI too, against the fake workspace's Unity Catalog registry handler
(scripts/ci/fake-workspace/registry.go), with the failure modes a workspace answers.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from tests.conftest import DATABRICKS_CLI_BIN, REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "scripts" / "ci"))
from fake_workspace import FakeWorkspace, find_bin  # noqa: E402

pytestmark = [pytest.mark.databricks_cli, pytest.mark.slow]

WHEEL = "gatejobs-0.1-py3-none-any.whl"
MODULE = '''
import sys, time

def _mode():
    args = dict(a.removeprefix("--").split("=", 1) for a in sys.argv[1:] if a.startswith("--"))
    return args.get("mode", "pass")

def validate():
    mode = _mode()
    print(f"validate: mode {mode}")
    if mode == "reject":
        print("validate: REJECTED: accuracy 0.5 below 0.9", file=sys.stderr)
        sys.exit(6)
    if mode == "crash":
        raise RuntimeError("table staging.gate.clean does not exist")
    if mode == "sleep":
        time.sleep(120)

def promote():
    print("promote: @champion moved")

def record():
    sys.exit(0 if _mode() == "reject" else 1)
'''
BUNDLE = '''
bundle:
  name: gatejobs
variables:
  mode:
    default: pass
  timeout:
    default: 0
targets:
  staging:
    default: true
    mode: production
    workspace:
      profile: spark-mlops-staging
      root_path: /Workspace/Users/${workspace.current_user.userName}/.bundle/${bundle.name}/${bundle.target}
    run_as:
      service_principal_name: aaaaaaaa-bbbb-4ccc-dddd-eeeeeeeeeeee
    permissions:
      - service_principal_name: aaaaaaaa-bbbb-4ccc-dddd-eeeeeeeeeeee
        level: CAN_MANAGE
resources:
  registered_models:
    model:
      catalog_name: staging
      schema_name: gate
      name: classifier
  jobs:
    release:
      name: release
      timeout_seconds: ${var.timeout}
      parameters:
        - name: mode
          default: ${var.mode}
      job_clusters:
        - job_cluster_key: ml_cluster
          new_cluster: {spark_version: 18.4.x-cpu-ml-scala2.13, node_type_id: Standard_D4ds_v5, num_workers: 0}
      tasks:
        - task_key: validate
          job_cluster_key: ml_cluster
          libraries: [{whl: ./dist/WHEEL_FILE}]
          python_wheel_task: {package_name: gatejobs, entry_point: validate,
                              named_parameters: {mode: "{{job.parameters.mode}}"}}
        - task_key: promote
          depends_on: [{task_key: validate}]
          job_cluster_key: ml_cluster
          libraries: [{whl: ./dist/WHEEL_FILE}]
          python_wheel_task: {package_name: gatejobs, entry_point: promote}
        - task_key: record_rejection
          depends_on: [{task_key: validate}]
          run_if: ALL_FAILED
          job_cluster_key: ml_cluster
          libraries: [{whl: ./dist/WHEEL_FILE}]
          python_wheel_task: {package_name: gatejobs, entry_point: record,
                              named_parameters: {mode: "{{job.parameters.mode}}"}}
'''.replace("WHEEL_FILE", WHEEL)


def _wheel(dest: Path) -> Path:
    """A minimal, valid wheel (PEP 427) with the entry points above."""
    files = {
        "gatejobs/__init__.py": MODULE,
        "gatejobs-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: gatejobs\nVersion: 0.1\n",
        "gatejobs-0.1.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        "gatejobs-0.1.dist-info/entry_points.txt": "[console_scripts]\nvalidate = gatejobs:validate\n"
                                                  "promote = gatejobs:promote\nrecord = gatejobs:record\n",
    }
    record = []
    path = dest / WHEEL
    with zipfile.ZipFile(path, "w") as z:
        for name, text in files.items():
            data = text.encode()
            z.writestr(name, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{name},sha256={digest},{len(data)}")
        record.append("gatejobs-0.1.dist-info/RECORD,,")
        z.writestr("gatejobs-0.1.dist-info/RECORD", "\n".join(record) + "\n")
    return path


@pytest.fixture(scope="module")
def cli_bin() -> Path:
    if DATABRICKS_CLI_BIN:
        os.environ["SPARK_MLOPS_DATABRICKS_CLI_BIN"] = DATABRICKS_CLI_BIN
    try:
        found = find_bin()
    finally:
        os.environ.pop("SPARK_MLOPS_DATABRICKS_CLI_BIN", None)
    if found is None:
        message = ("the Databricks CLI and fake-workspace are not built: "
                   "SPARK_MLOPS_DATABRICKS_CLI_BIN=\"$(bash scripts/ci/build-databricks-cli.sh | tail -n 1)\"")
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(f"CI=true: {message}")
        pytest.skip(message)
    return found


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("gatejobs")
    (root / "databricks.yml").write_text(BUNDLE)
    (root / "dist").mkdir()
    _wheel(root / "dist")
    return root


@pytest.fixture(scope="module")
def workspace(cli_bin, tmp_path_factory):
    work = tmp_path_factory.mktemp("fake-workspace")
    with FakeWorkspace(cli_bin, work / "ws", python=sys.executable, state_dir=work / "state") as ws:
        yield ws


def _deploy(workspace: FakeWorkspace, bundle: Path, mode: str, timeout: int = 0) -> None:
    workspace.cli("bundle", "deploy", "-t", "staging", cwd=bundle,
                  env={"BUNDLE_VAR_mode": mode, "BUNDLE_VAR_timeout": str(timeout)})


def _cd(workspace: FakeWorkspace, bundle: Path, mode: str, *args: str) -> subprocess.CompletedProcess:
    """The bundle deployed with the job parameter ``mode``, then scripts/ci/bundle-deploy-and-run.sh
    ``--no-deploy ARGS`` as a CD step runs it (its deploy wants the project's wheel), with the real CLI."""
    _deploy(workspace, bundle, mode)
    full = workspace.env({"BUNDLE_ROOT": str(bundle), "CI_PYTHON": sys.executable})
    for name in ("TF_BUILD", "CI_WORKSPACE", "NOTIFICATION_EMAIL"):
        full.pop(name, None)
    return subprocess.run(["bash", str(REPO_ROOT / "scripts" / "ci" / "bundle-deploy-and-run.sh"), *args],
                          cwd=bundle, env=full, capture_output=True, text=True, timeout=900,
                          stdin=subprocess.DEVNULL)


def _run_id(text: str) -> str:
    m = re.findall(r"Run URL: *\S*?(?:jobs/\d+/runs|job/\d+/run)/(\d+)", text)
    assert m, text
    return m[-1]


def _get_run(workspace: FakeWorkspace, bundle: Path, run_id: str) -> dict:
    return workspace.cli("jobs", "get-run", run_id, "-p", "spark-mlops-staging", "-o", "json", cwd=bundle).json()


def test_a_passing_release_prints_each_tasks_output_and_succeeds(workspace, bundle) -> None:
    result = _cd(workspace, bundle, "pass", "-t", "staging", "--no-deploy", "--run-release", "release")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "job 'release' (target staging) succeeded. Run URL: http" in out
    assert "Task validate:\nvalidate: mode pass" in out and "promote: @champion moved" in out
    run = _get_run(workspace, bundle, _run_id(out))
    states = {t["task_key"]: t["state"].get("result_state") for t in run["tasks"]}
    assert run["state"] == {"life_cycle_state": "TERMINATED", "result_state": "SUCCESS"}
    assert states == {"validate": "SUCCESS", "promote": "SUCCESS", "record_rejection": "EXCLUDED"}


def test_a_gate_rejection_is_read_as_a_rejection_from_the_real_cli(workspace, bundle) -> None:
    result = _cd(workspace, bundle, "reject", "-t", "staging", "--no-deploy", "--run-release", "release")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out  # a rejected release is a warning: the pipeline goes on
    assert "Task validate FAILED:" in out  # the CLI's own block, from runs/get-output
    assert "failed to reach TERMINATED or SKIPPED, got INTERNAL_ERROR: Task validate failed with message: " \
           "Workload failed, see run output for details." in out
    assert "task record_rejection: SUCCESS" in out
    assert "REJECTED the model" in out and "CRASHED" not in out


def test_a_crash_is_read_as_a_crash_with_the_tasks_exception(workspace, bundle) -> None:
    result = _cd(workspace, bundle, "crash", "-t", "staging", "--no-deploy", "--run-release", "release")
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "Task validate FAILED:\nRuntimeError: table staging.gate.clean does not exist" in out, out
    assert "task record_rejection: FAILED" in out
    assert "CRASHED (not a model rejection)" in out


@pytest.mark.parametrize(("mode", "verdict"), [
    ("reject", "gate failed: job 'release' on target staging REJECTED the model; staging keeps its current @champion"),
    ("crash", "job 'release' on target staging CRASHED (not a model rejection)"),
])
def test_a_gate_job_fails_the_step_on_a_rejection_and_on_a_crash_each_named(workspace, bundle, mode, verdict) -> None:
    result = _cd(workspace, bundle, mode, "-t", "staging", "--no-deploy", "--run-gate", "release")
    assert result.returncode == 1
    assert verdict in result.stderr, result.stdout + result.stderr


def test_a_job_past_its_timeout_is_stopped_and_timed_out(workspace, bundle) -> None:
    _deploy(workspace, bundle, "sleep", timeout=5)
    started = time.monotonic()
    result = workspace.cli("bundle", "run", "release", "-t", "staging", cwd=bundle, check=False)
    took = time.monotonic() - started
    assert result.returncode == 1
    assert "Error: run timed out: Run timed out" in result.stderr
    assert took < 100, f"the sleeping task was not stopped at the timeout ({took:.0f} s)"
    run = _get_run(workspace, bundle, _run_id(result.stderr))
    assert run["state"]["result_state"] == "TIMEDOUT"
    # stopped while it ran (the runner reports a task stopped at the job's timeout TIMEDOUT)
    assert {t["task_key"]: t["state"]["result_state"] for t in run["tasks"]}["validate"] in ("TIMEDOUT", "CANCELED")


def test_a_cancelled_run_stops_and_is_canceled(workspace, bundle) -> None:
    _deploy(workspace, bundle, "sleep")
    started = workspace.cli("bundle", "run", "release", "-t", "staging", "--no-wait", cwd=bundle)
    run_id = _run_id(started.stderr + started.stdout)
    deadline = time.monotonic() + 120
    def validate_state() -> str:
        tasks = {t["task_key"]: t for t in _get_run(workspace, bundle, run_id)["tasks"]}
        return tasks["validate"]["state"]["life_cycle_state"]

    while validate_state() != "RUNNING":
        assert time.monotonic() < deadline, "the run never started its first task"
        time.sleep(0.5)
    workspace.cli("jobs", "cancel-run", run_id, "-p", "spark-mlops-staging", cwd=bundle, timeout=300)
    run = _get_run(workspace, bundle, run_id)
    assert run["state"]["life_cycle_state"] == "TERMINATED" and run["state"]["result_state"] == "CANCELED"
    states = {t["task_key"]: t["state"].get("result_state") for t in run["tasks"]}
    assert states["validate"] in ("CANCELED", "TIMEDOUT"), states  # stopped while it ran
    assert states["promote"] != "SUCCESS", states
    listed = workspace.cli("jobs", "list-runs", "--active-only", "-p", "spark-mlops-staging", "-o", "json",
                           cwd=bundle).json()
    assert run_id not in {str(r["run_id"]) for r in listed or []}


def test_a_failed_run_is_repaired_in_place_from_its_failed_tasks(workspace, bundle) -> None:
    _deploy(workspace, bundle, "crash")
    failed = workspace.cli("bundle", "run", "release", "-t", "staging", cwd=bundle, check=False)
    assert failed.returncode == 1
    run_id = _run_id(failed.stderr)
    body = json.dumps({"run_id": int(run_id), "rerun_all_failed_tasks": True, "job_parameters": {"mode": "pass"}})
    workspace.cli("jobs", "repair-run", "--json", body, "-p", "spark-mlops-staging", cwd=bundle, timeout=300)
    run = _get_run(workspace, bundle, run_id)
    assert run["state"] == {"life_cycle_state": "TERMINATED", "result_state": "SUCCESS"}
    assert {t["task_key"]: t["state"].get("result_state") for t in run["tasks"]} == {
        "validate": "SUCCESS", "promote": "SUCCESS", "record_rejection": "EXCLUDED"}


def test_each_task_runs_from_the_deployed_wheel_in_a_task_environment(workspace, bundle) -> None:
    _deploy(workspace, bundle, "pass")
    result = workspace.cli("bundle", "run", "release", "-t", "staging", cwd=bundle)
    assert "validate: mode pass" in result.stdout
    root = Path(os.environ.get("SPARK_MLOPS_TASK_ENVS") or Path.home() / ".cache" / "spark-mlops" / "task-envs")
    installed = list(root.glob("*/lib/python*/site-packages/gatejobs-0.1.dist-info"))
    assert installed, "no task environment has the deployed wheel installed"
    # The source of the wheel's module in the task environment is the deployed wheel's, byte for byte.
    module = installed[0].parent / "gatejobs" / "__init__.py"
    assert module.read_text() == MODULE


# ---------------------------------------------------------------- the deployment-job link

MODEL = "staging.gate.classifier"
REGISTRY = "/api/2.0/mlflow/unity-catalog/registered-models"


def _link(workspace: FakeWorkspace, bundle: Path) -> subprocess.CompletedProcess:
    """scripts/ci/link-deployment-job.sh as CD runs it after the deploy (here: the release job)."""
    full = workspace.env({"BUNDLE_ROOT": str(bundle), "CI_PYTHON": sys.executable})
    for name in ("TF_BUILD", "CI_WORKSPACE"):
        full.pop(name, None)
    return subprocess.run(["bash", str(REPO_ROOT / "scripts" / "ci" / "link-deployment-job.sh"), "-t", "staging",
                           "--job", "release"], cwd=bundle, env=full, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)


def _patch(workspace: FakeWorkspace, bundle: Path, body: dict, *args: str, **env: str):
    return workspace.cli("api", "patch", f"{REGISTRY}/update", "--json", json.dumps(body), *args,
                         cwd=bundle, check=False, env=env or None)


def test_the_link_script_links_the_deployed_model_with_the_real_cli(workspace, bundle) -> None:
    _deploy(workspace, bundle, "pass")
    job_id = str(workspace.cli("bundle", "summary", "-t", "staging", "-o", "json", cwd=bundle)
                 .json()["resources"]["jobs"]["release"]["id"])
    # "" disconnects a job (MLflow #18488): the test starts from an unlinked model, however often it runs.
    unlinked = _patch(workspace, bundle, {"name": MODEL, "deployment_job_id": ""}, "-p", "spark-mlops-staging")
    assert unlinked.returncode == 0, unlinked.stderr
    assert "deployment_job_id" not in json.loads(unlinked.stdout)["registered_model"]

    first = _link(workspace, bundle)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"link: {MODEL} deployment_job_id none -> {job_id} (release)" in first.stdout
    assert f"link: {MODEL} -> deployment job {job_id} (release): every new version of it now starts that job" \
        in first.stdout
    got = workspace.api_get(f"{REGISTRY}/get?name={MODEL}", "spark-mlops-staging", cwd=bundle)
    assert got["registered_model"]["name"] == MODEL and got["registered_model"]["deployment_job_id"] == job_id

    again = _link(workspace, bundle)  # idempotent: read back, equal, nothing written
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{MODEL} is already linked to deployment job {job_id} (release); nothing changed" in again.stdout
    assert "dbapi" not in first.stdout + first.stderr + again.stdout + again.stderr  # no token in the log


def test_a_bundle_not_deployed_is_one_line_and_exit_2(workspace, bundle, tmp_path) -> None:
    undeployed = tmp_path / "undeployed"
    undeployed.mkdir()
    (undeployed / "databricks.yml").write_text((bundle / "databricks.yml").read_text()
                                               .replace("name: gatejobs", "name: gatejobs_undeployed", 1))
    result = _link(workspace, undeployed)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "link-deployment-job: job 'release' has no deployed id (none): run `bundle deploy` first" in result.stderr
    assert "link:" not in result.stdout


def test_the_registry_answers_what_a_workspace_answers_when_a_link_cannot_be_made(workspace, bundle, tmp_path) -> None:
    _deploy(workspace, bundle, "pass")
    sp = ("-p", "spark-mlops-staging")
    missing = workspace.cli("api", "get", f"{REGISTRY}/get?name=staging.gate.nothing", *sp, cwd=bundle, check=False)
    assert missing.returncode == 1 and "Routine or Model 'staging.gate.nothing' does not exist." in missing.stderr
    cases = {  # body -> the workspace's one line
        "no such job": ({"name": MODEL, "deployment_job_id": "987654321987"}, "Job 987654321987 does not exist."),
        "not a job id": ({"name": MODEL, "deployment_job_id": "release"}, "Invalid deployment_job_id 'release'"),
        "two-part name": ({"name": "gate.classifier", "deployment_job_id": ""}, "must specify all three levels"),
        "no such model": ({"name": "staging.gate.nothing", "deployment_job_id": ""}, "does not exist."),
    }
    for case, (body, line) in cases.items():
        r = _patch(workspace, bundle, body, *sp)
        assert r.returncode == 1 and line in r.stderr, (case, r.stderr)
    # A user who neither owns the model (the deploying service principal does) nor holds MANAGE on it.
    config = tmp_path / "user.cfg"
    config.write_text(f"[user]\nhost = {workspace.url}\ntoken = dbapi0staging\n")
    as_user = {"DATABRICKS_CONFIG_FILE": str(config)}
    r = _patch(workspace, bundle, {"name": MODEL, "deployment_job_id": ""}, "-p", "user", **as_user)
    assert r.returncode == 1 and f"User does not have MANAGE on Routine or Model '{MODEL}'." in r.stderr, r.stderr
    r = workspace.cli("api", "get", f"{REGISTRY}/get?name={MODEL}", "-p", "user", cwd=bundle, check=False, env=as_user)
    assert r.returncode == 1 and "does not have any privilege" in r.stderr, r.stderr
