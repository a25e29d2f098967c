"""The CD scripts, unchanged, with the real Databricks CLI against a fake workspace that RUNS jobs.

Part of scripts/ci/databricks_cli_checks.py (after its deploys). The fake workspace
(fake-workspace/jobs.go + fake_workspace_runner.py) runs each deployed job with the project's job
runner, every task in a process of its own with the deployed wheel installed, against the local
stores of SPARK_MLOPS_STATE_DIR (a tracking store per workspace, one shared registry). Then, as
the CD pipeline does (.azure/pipelines/cd.yml):

1. ``bundle-deploy-and-run.sh -t staging --run training --run-release release``: trains and
   registers a model, releases it;
2. ``... -t prod --link-deployment-job --run-gate model_deployment``: the deploy, then
   link-deployment-job.sh links prod's registered model to its deployment job with the real CLI
   (``databricks api`` on the Unity Catalog registry's registered-models get/update, which the fake
   workspace answers: fake-workspace/registry.go), then the copy of staging's champion into prod;
   then the workspace's part of an MLflow 3 deployment job (docs: mlflow/deployment-job), which
   this double does not start by itself (the registry the tasks write is the local one, not an API
   of the fake workspace): the job the model is LINKED to (its ``deployment_job_id``, read back from
   the fake workspace) is run with ``jobs run-now`` for the new version and stops at
   ``Approval_Check``; the Approve button's two acts follow (the version tag ``Approval_Check`` =
   ``Approved`` in the shared registry, then ``jobs repair-run`` of that run), and the repaired run
   deploys the version as prod's @champion; ``... --no-deploy --run batch_inference`` scores a batch;
3. ``... -t staging --run-release release`` deployed with an impossible minimum
   (``BUNDLE_VAR_min_thresholds``): the gate REJECTS the model, which CD reads as a warning;
4. ``... -t staging --run-release release`` deployed with a clean table that does not exist: the
   run CRASHES, which CD reads as a failure, not a rejection.

Each run's result state is read back with ``databricks jobs get-run`` (the Jobs API's answer);
``ran`` maps target -> job -> result state of the runs of steps 1 and 2, ``registered`` lists the
model versions in the shared registry afterwards.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from fake_workspace import TARGET_PROFILES, FakeWorkspace

SCRIPTS = Path(__file__).resolve().parent
_RUN_URL = re.compile(r"^Run URL: *(\S+)", re.M)  # the CLI's progress event, once per run
_RUN_ID = re.compile(r"(?:jobs/\d+/runs|job/\d+/run)/(\d+)")
IMPOSSIBLE = "accuracy=0.9999"


def say(text: str) -> None:
    print(text, flush=True)


class CdRuns:
    def __init__(self, ws: FakeWorkspace, bundle: Path, python: str, fail, state: Path, models: list[str]):
        self.ws, self.bundle, self.python, self.fail = ws, bundle, python, fail
        self.state, self.models = state, models  # the shared registry's folder; staging's and prod's model
        self.ran: dict[str, dict[str, str]] = {}
        self.verdicts: dict[str, str] = {}

    def script(self, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
        """``bash bundle-deploy-and-run.sh ARGS`` as a CD step runs it (off an agent: the fake
        workspace's CLI profiles stand for the variable groups' profiles)."""
        target = args[args.index("-t") + 1]
        extra = {"BUNDLE_ROOT": str(self.bundle), "CI_PYTHON": self.python,
                 "NOTIFICATION_EMAIL": recipient(target), **(env or {})}
        full = self.ws.env(extra)
        for name in ("TF_BUILD", "CI_WORKSPACE"):
            full.pop(name, None)
        say(f"  $ bash scripts/ci/bundle-deploy-and-run.sh {' '.join(args)}"
            + "".join(f" ({k}={v})" for k, v in (env or {}).items()))
        proc = subprocess.Popen(["bash", str(SCRIPTS / "bundle-deploy-and-run.sh"), *args], cwd=self.bundle,
                                env=full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                stdin=subprocess.DEVNULL)
        lines = []
        for line in proc.stdout:  # streamed to CI's log as the script prints it
            lines.append(line)
            say(f"    | {line.rstrip()}")
        return proc.wait(), "".join(lines)

    def check_recipient(self, target: str, job_id: str) -> None:
        """The deployed job emails the recipient CD set (NOTIFICATION_EMAIL), not the placeholder."""
        job = self.ws.cli("jobs", "get", job_id, "-p", TARGET_PROFILES[target], "-o", "json", cwd=self.bundle).json()
        found = ((job.get("settings") or {}).get("email_notifications") or {}).get("on_failure")
        if found != [recipient(target)]:
            self.fail(f"cd {target}: job {job_id} emails {found} on failure, expected [{recipient(target)!r}]")

    def result_states(self, target: str, out: str) -> list[tuple[str, str]]:
        """(job name, result state) of every run the output printed a Run URL for, from runs/get."""
        states = []
        for url in _RUN_URL.findall(out):
            m = _RUN_ID.search(url)
            if not m:
                continue
            run = self.ws.cli("jobs", "get-run", m.group(1), "-p", TARGET_PROFILES[target], "-o", "json",
                              cwd=self.bundle).json()
            state = run.get("state") or {}
            if not states:
                self.check_recipient(target, str(run.get("job_id")))
            states.append((run.get("run_name", ""), str(state.get("result_state") or state.get("life_cycle_state"))))
        return states

    def record(self, target: str, jobs: list[str], out: str) -> None:
        states = self.result_states(target, out)
        if len(states) != len(jobs):
            self.fail(f"cd {target}: expected {len(jobs)} run(s) with a Run URL, found {len(states)}")
        for job, (_, state) in zip(jobs, states, strict=False):
            self.ran.setdefault(target, {})[job] = state

    def run(self) -> None:
        say("==> CD against the fake workspace: deploy staging, run training and release")
        rc, out = self.script("-t", "staging", "--run", "training", "--run-release", "release")
        self.record("staging", ["training", "release"], out)
        if rc != 0 or "REJECTED" in out:
            self.fail(f"cd staging: bundle-deploy-and-run.sh exited {rc} (expected a released model)")

        say("==> CD: deploy prod, link its model to the deployment job, run model_deployment (the copy of "
            "staging's champion)")
        rc, out = self.script("-t", "prod", "--link-deployment-job", "--run-gate", "model_deployment")
        self.record("prod", ["model_deployment"], out)
        if rc != 0:
            self.fail(f"cd prod: bundle-deploy-and-run.sh exited {rc}")
        if "every new version of it now starts that job" not in out:
            self.fail("cd prod: link-deployment-job.sh did not link prod's model to its deployment job")
        self.approve_in_prod()

        say("==> CD: run batch_inference with prod's champion")
        rc, out = self.script("-t", "prod", "--no-deploy", "--run", "batch_inference")
        self.record("prod", ["batch_inference"], out)
        if rc != 0:
            self.fail(f"cd prod: bundle-deploy-and-run.sh --run batch_inference exited {rc}")

        # After prod took staging's champion: a rejected release leaves a failed verdict on the
        # version it validated (here the champion itself), which prod's gate would then refuse.
        say("==> CD: a gate rejection, read from the real `bundle run` output")
        rc, out = self.script("-t", "staging", "--run-release", "release",
                              env={"BUNDLE_VAR_min_thresholds": IMPOSSIBLE})
        rejected = rc == 0 and "REJECTED the model" in out and "CRASHED" not in out
        self.verdicts["rejection"] = "rejected" if rejected else f"exit {rc}"
        if not rejected:
            self.fail(f"cd staging: a release below {IMPOSSIBLE} was not read as a rejection (exit {rc})")

        say("==> CD: a crash, read from the real `bundle run` output")
        rc, out = self.script("-t", "staging", "--run-release", "release",
                              env={"BUNDLE_VAR_clean_table": "no_such_table"})
        crashed = rc == 1 and "CRASHED (not a model rejection)" in out and "Task validate FAILED:" in out
        self.verdicts["crash"] = "crashed" if crashed else f"exit {rc}"
        if not crashed:
            self.fail(f"cd staging: a release without its clean table was not read as a crash (exit {rc})")


    def approve_in_prod(self) -> None:
        """The deployment job of prod's newest version: waiting at Approval_Check, approved, repaired."""
        model = next(m for m in self.models if m.startswith("prod."))
        version = max(int(v.rsplit("/", 1)[1]) for v in registered(self.state, [model]))
        profile = TARGET_PROFILES["prod"]
        job_id = self.linked_job(model)
        if not job_id:
            return
        say(f"==> prod's deployment job (job {job_id}, linked to {model}) for v{version}: evaluation, then "
            "waiting for approval")
        params = {"model_name": model, "model_version": str(version)}
        started = self.ws.cli("jobs", "run-now", "--no-wait", "--json",
                              json.dumps({"job_id": int(job_id), "job_parameters": params}), "-p", profile,
                              "-o", "json", cwd=self.bundle).json()
        run_id = str(started.get("run_id", ""))
        run = self.wait_for(run_id, profile)
        tasks = {t.get("task_key"): (t.get("state") or {}).get("result_state") for t in run.get("tasks") or []}
        say(f"    | run {run_id}: {json.dumps(tasks)}")
        waiting = tasks.get("evaluation") == "SUCCESS" and tasks.get("Approval_Check") == "FAILED"
        self.ran.setdefault("prod", {})["deployment_job (before approval)"] = str((run.get("state") or {}).get("result_state"))
        if not waiting:
            self.fail(f"cd prod: the deployment job did not stop at Approval_Check after a passed evaluation: {tasks}")
            return
        say(f"==> the Approve button: tag Approval_Check=Approved on v{version}, then repair run {run_id}")
        set_tag(self.state, model, version, "Approval_Check", "Approved")
        body = json.dumps({"run_id": int(run_id), "rerun_all_failed_tasks": True})
        repaired = self.ws.cli("jobs", "repair-run", "--json", body, "-p", profile, cwd=self.bundle, check=False,
                               timeout=1200)
        say("".join(f"    | {line}\n" for line in (repaired.stdout + repaired.stderr).splitlines()[-8:]))
        run = self.ws.cli("jobs", "get-run", run_id, "-p", profile, "-o", "json", cwd=self.bundle).json()
        state = str((run.get("state") or {}).get("result_state"))
        self.ran["prod"]["deployment_job"] = state
        if repaired.returncode != 0 or state != "SUCCESS":
            self.fail(f"cd prod: the repaired deployment job run {run_id} ended {state} (exit {repaired.returncode})")


    def linked_job(self, model: str) -> str:
        """The job prod's model is linked to, as the registry answers (registered-models/get), which
        must be the deployment job the deploy created (``bundle summary``)."""
        profile = TARGET_PROFILES["prod"]
        got = self.ws.api_get(f"/api/2.0/mlflow/unity-catalog/registered-models/get?name={model}", profile,
                              cwd=self.bundle)
        linked = str((got.get("registered_model") or {}).get("deployment_job_id") or "")
        summary = self.ws.cli("bundle", "summary", "-t", "prod", "-o", "json", cwd=self.bundle).json()
        deployed = str((((summary.get("resources") or {}).get("jobs") or {}).get("deployment_job") or {}).get("id", ""))
        say(f"  {model}: deployment_job_id {linked or 'none'} (the deployed deployment_job is {deployed or 'none'})")
        if not linked or linked != deployed:
            self.fail(f"cd prod: {model} is linked to job {linked or 'none'}, not the deployment job {deployed}")
            return ""
        return linked

    def wait_for(self, run_id: str, profile: str, timeout_s: float = 1200) -> dict:
        """runs/get until the run ended (what `jobs run-now` without --no-wait polls)."""
        deadline = time.monotonic() + timeout_s
        while True:
            run = self.ws.cli("jobs", "get-run", run_id, "-p", profile, "-o", "json", cwd=self.bundle).json()
            if (run.get("state") or {}).get("life_cycle_state") in ("TERMINATED", "INTERNAL_ERROR", "SKIPPED"):
                return run
            if time.monotonic() > deadline:
                self.fail(f"cd prod: run {run_id} did not end within {timeout_s:.0f} s")
                return run
            time.sleep(2)


def set_tag(state_dir: Path, name: str, version: int, key: str, value: str) -> None:
    """What the Approve button writes: a tag on the model version, in the shared registry."""
    code = (
        "import sys\n"
        "from mlflow.tracking import MlflowClient\n"
        "from spark_mlops.config import local_registry_uri\n"
        "from pathlib import Path\n"
        "uri = local_registry_uri(Path(sys.argv[1]))\n"
        "MlflowClient(tracking_uri=uri, registry_uri=uri).set_model_version_tag(*sys.argv[2:6])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(state_dir), name, str(version), key, value],
                          capture_output=True, text=True, env={**os.environ, "MLFLOW_ENABLE_ASYNC_LOGGING": "false"})
    if proc.returncode != 0:
        raise RuntimeError(f"setting {key} on {name}/{version} failed: {proc.stderr.strip()[-500:]}")


def recipient(target: str) -> str:
    """The NOTIFICATION_EMAIL of a workspace's variable group, as CI stands it in."""
    return f"mlops-{target}@ci.example"


def registered(state_dir: Path, names: list[str]) -> list[str]:
    """``name/version`` of every version of ``names`` in the shared local registry."""
    code = (
        "import json, sys\n"
        "from mlflow.tracking import MlflowClient\n"
        "from spark_mlops.config import local_registry_uri\n"
        "from pathlib import Path\n"
        "uri = local_registry_uri(Path(sys.argv[1]))\n"
        "c = MlflowClient(tracking_uri=uri, registry_uri=uri)\n"
        "out = []\n"
        "for n in sys.argv[2:]:\n"
        "    out += [f'{n}/{v.version}' for v in c.search_model_versions(f\"name='{n}'\")]\n"
        "print(json.dumps(sorted(out, key=lambda s: (s.rsplit('/', 1)[0], int(s.rsplit('/', 1)[1])))))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(state_dir), *names], capture_output=True, text=True,
                          env={**os.environ, "MLFLOW_ENABLE_ASYNC_LOGGING": "false"})
    if proc.returncode != 0:
        raise RuntimeError(f"reading the registry failed: {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
