"""The local workspace's part in MLflow 3 deployment jobs: what Databricks does around a job run.

On Databricks (docs: mlflow/deployment-job) the workspace

* starts the deployment job linked to a registered model (its ``deployment_job_id``) for every new
  version, with the job parameters ``model_name`` and ``model_version``, queued one run at a time
  (the job's ``max_concurrent_runs: 1`` with its queue);
* shows the run on the version's page, whose **Approve** button sets the approval task's tag to
  ``Approved`` and repairs the run, which resumes from the approval task.

Here: :func:`link` links a target's model to its bundle job (locally the registered-model tag
``deployment_job_id`` holds the job's resource key: no workspace assigns ids); :func:`after_run`
is called after a job run (``spark-mlops run``, the demo) and starts the linked deployment job for
each version that run registered, one after the other (a job run's tasks never start a job of
their own: this is the workspace's doing, outside the runner); :func:`approve` is the Approve button
(:func:`spark_mlops.approval.approve`, then a repair of the version's deployment job run through
the local runner). Nothing here runs on Databricks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from spark_mlops import approval, registry
from spark_mlops import registry_tags as rt
from spark_mlops.config import Settings
from spark_mlops.errors import ConfigError
from spark_mlops_dev.bundle import targets
from spark_mlops_dev.bundle.runner import STDOUT, JobRunResult, new_run_id, repair_run, run_job

DEPLOYMENT_JOB = "deployment_job"  # the bundle's deployment job (resources/deployment_job.job.yml)


@dataclass(frozen=True)
class Started:
    version: str
    result: JobRunResult


def link(settings: Settings, bundle: Any, job_key: str = DEPLOYMENT_JOB) -> bool:
    """Link the target's registered model to its deployment job, as CD does after `bundle deploy`."""
    if job_key not in bundle.jobs:
        raise ConfigError(f"target {bundle.target} has no job {job_key!r} to link its model to")
    return approval.link(targets.settings_for_target(settings, bundle), job_key)


def after_run(settings: Settings, bundle: Any, job_key: str, since: datetime, *,
              out: TextIO | None | str = STDOUT, process_per_task: bool = True) -> list[Started]:
    """After a run of ``job_key`` that started at ``since``: start the linked deployment job for
    each version of the target's model created since then, oldest first, one run at a time (the
    queue of a job with max_concurrent_runs 1); the runs started. A bundle with no job that takes
    a deployment job's two parameters has nothing a model could be linked to."""
    if not any({"model_name", "model_version"} <= {p.get("name") for p in job.get("parameters") or []}
               for job in bundle.jobs.values()):
        return []
    view = targets.settings_for_target(settings, bundle)
    linked = approval.linked_job(view)
    if linked is None or job_key == linked:
        return []
    if linked not in bundle.jobs:
        _say(out, f"workspace: {view.model_name} is linked to deployment job {linked!r}, which target "
             f"{bundle.target} does not have; no deployment job started")
        return []
    since_ms = int(since.timestamp() * 1000)
    new = [r for r in registry.versions(view) if r.created >= since_ms and rt.DEPLOYMENT_JOB_RUN_ID not in r.tags]
    return [start(view, bundle, row.version, linked, out=out, process_per_task=process_per_task) for row in new]


def start(view: Settings, bundle: Any, version: str, job_key: str = DEPLOYMENT_JOB, *,
          out: TextIO | None | str = STDOUT, process_per_task: bool = True) -> Started:
    """One deployment job run for ``version`` (what the workspace does when the version is created)."""
    run_id = new_run_id()
    # The workspace records the run on the version (ModelVersion.deployment_job_state on Unity Catalog).
    registry.set_tags(view, version, {rt.DEPLOYMENT_JOB_RUN_ID: run_id})
    _say(out, f"\nworkspace: new version {view.model_name} v{version} -> deployment job {job_key} run {run_id}")
    result = run_job(bundle, job_key, {"model_name": view.model_name, "model_version": version}, run_id,
                     state_dir=view.state_dir, out=out, process_per_task=process_per_task)
    if result.tasks.get(rt.APPROVAL_CHECK) is not None and result.tasks[rt.APPROVAL_CHECK].status == "FAILED":
        _say(out, waiting_line(view, version))
    return Started(version, result)


def waiting_line(view: Settings, version: str) -> str:
    return (f"workspace: {view.model_name} v{version} is waiting for approval; approve it (as the Approve "
            f"button does) with:\n  spark-mlops approve -t {view.target} --version {version}{_state_flag(view)}")


def _state_flag(view: Settings) -> str:
    from spark_mlops.config import DEFAULT_STATE_DIR

    return "" if Path(view.state_dir) == Path(DEFAULT_STATE_DIR).resolve() else f" --state-dir {view.state_dir}"


def deployment_run_id(view: Settings, version: str) -> str:
    """The deployment job run that handles ``version`` (recorded on the version when it started)."""
    tags = dict(registry.get_version(view, version).tags or {})
    run_id = tags.get(rt.DEPLOYMENT_JOB_RUN_ID)
    if not run_id:
        raise ConfigError(f"{view.model_name} v{version}: no deployment job run handles it (no "
                          f"{rt.DEPLOYMENT_JOB_RUN_ID} tag; is the model linked to its deployment job?); "
                          "the approval was recorded and applies when its deployment job runs")
    return run_id


def _say(out: TextIO | None | str, text: str) -> None:
    if out is None:
        return
    import sys

    print(text, file=sys.stdout if out == STDOUT else out, flush=True)


def approve(settings: Settings, bundle: Any, version: str, *, out: TextIO | None | str = STDOUT,
            process_per_task: bool = True) -> JobRunResult:
    """The Approve button: the approval tag on the version, then a repair of the version's
    deployment job run (every task that did not succeed: the approval task and what follows),
    which resumes from the approval task with the evaluation's result and the run id kept."""
    view = targets.settings_for_target(settings, bundle)
    approval.approve(view, version)  # refuses (exit 5, nothing changed) a version its evaluation rejected
    run_id = deployment_run_id(view, version)
    _say(out, f"workspace: repairing deployment job run {run_id} (the failed tasks, from {rt.APPROVAL_CHECK})")
    return _repair(bundle, run_id, view, out=out, process_per_task=process_per_task)


def _repair(bundle: Any, run_id: str, view: Settings, *, out: TextIO | None | str, process_per_task: bool) -> JobRunResult:
    """``POST /api/2.2/jobs/runs/repair`` with ``rerun_all_failed_tasks``, as the Approve button repairs."""
    return repair_run(bundle, run_id, rerun_all_failed=True, state_dir=view.state_dir, out=out,
                      process_per_task=process_per_task)
