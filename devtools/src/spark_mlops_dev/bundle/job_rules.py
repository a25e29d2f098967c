"""Rules on a target's jobs that neither the Databricks CLI nor the Jobs API checks, and that break
in a workspace all the same. Each rule reads ONE target's configuration as the CLI resolves it
(a plain dict: ``databricks bundle validate -o json -t T``, or a deployment's ``bundle summary``,
where a Run Job task may name its child by numeric id) and returns :class:`Finding` objects;
nothing here loads, merges or resolves a bundle.

1. :func:`pushdown_collisions`: a job parameter travels down every Run Job task below its job
   (docs: jobs/job-parameters, "Job parameter pushdown"; jobs/task-parameters: a job parameter
   wins over a task parameter of the same key), so a name a job below uses for something else
   is silently overwritten there (issue 26: batch_inference's ``input``, its scoring batch,
   became training's input through retrain -> retraining -> train).
2. :func:`signing_keys`: ``model_signing_public_keys`` resolving to nothing (or to what is not a
   key) on a target that gates models means every version is refused at load (exit 9).
3. :func:`deployment_job_shape`: the MLflow 3 deployment job the registered model is linked to
   (docs: mlflow/deployment-job): exactly the job parameters ``model_name`` and ``model_version``,
   the approval task ``Approval_Check`` without retries and reached only after ``evaluation``
   succeeded, ``deployment`` only after the approval, one run at a time with the others queued.

Paths are tuples into the configuration (``("resources", "jobs", key, "tasks", 2, ...)``); a
finding's severity is ``error`` (the target is broken as resolved) or ``warning`` (broken unless
the deploy sets what the configuration leaves empty).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from spark_mlops import signing
from spark_mlops.constants import EXIT_UNTRUSTED_MODEL, PRODUCTION_TARGETS
from spark_mlops.errors import ConfigError
from spark_mlops.registry_tags import APPROVAL_CHECK

ERROR = "error"
WARNING = "warning"

_CHILD_REF = re.compile(r"^\$\{resources\.jobs\.([A-Za-z0-9_-]+)\.id\}$")
_FORWARD = re.compile(r"^\{\{\s*job\.parameters\.([\w.-]+)\s*\}\}$")

SIGNING_KEYS_VARIABLE = "model_signing_public_keys"
DEPLOYMENT_JOB = "deployment_job"  # resources/deployment_job.job.yml
DEPLOYMENT_JOB_PARAMETERS = ("model_name", "model_version")
EVALUATION_TASK = "evaluation"
DEPLOYMENT_TASK = "deployment"


@dataclass(frozen=True)
class Finding:
    path: tuple
    message: str
    severity: str = ERROR


def check(config: Mapping[str, Any]) -> list[Finding]:
    """Every rule of this module on one target's resolved configuration."""
    return [*pushdown_collisions(config), *signing_keys(config), *deployment_job_shape(config)]


def _jobs(config: Mapping[str, Any]) -> dict[str, dict]:
    jobs = (config.get("resources") or {}).get("jobs") or {}
    return {k: v for k, v in jobs.items() if isinstance(v, dict)} if isinstance(jobs, dict) else {}


def _tasks(job: dict) -> list[tuple[int, dict]]:
    return [(i, t) for i, t in enumerate(job.get("tasks") or []) if isinstance(t, dict)]


def _parameters(job: dict) -> list[tuple[int, str]]:
    return [(i, str(p.get("name"))) for i, p in enumerate(job.get("parameters") or [])
            if isinstance(p, dict) and p.get("name")]


# ---------------------------------------------------------------- 1. job parameter pushdown


def _child_key(run_job_task: dict, jobs: dict[str, dict], job_ids: Mapping[str, str]) -> str | None:
    """The job a Run Job task starts: ``${resources.jobs.<key>.id}`` as validate prints it, or
    the numeric id of a deployed job (``job_ids``, else the ``id`` ``bundle summary`` gives each job)."""
    job_id = str(run_job_task.get("job_id", "")).strip()
    m = _CHILD_REF.match(job_id)
    if m:
        return m.group(1) if m.group(1) in jobs else None
    if job_id in job_ids:
        return job_ids[job_id] if job_ids[job_id] in jobs else None
    return next((k for k, j in jobs.items() if job_id and str(j.get("id", "")) == job_id), None)


def _uses(job: dict, name: str) -> list[str]:
    """Where a job takes ``name`` that a pushed-down job parameter of that name replaces: its own
    job parameter, and its wheel tasks' keyword arguments (job parameters are pushed down into
    wheel tasks configured with keyword arguments: docs: jobs/task-parameters)."""
    where = [f"its parameter {name!r}"] if name in {n for _, n in _parameters(job)} else []
    where += [f"task {t.get('task_key')!r}'s --{name}" for _, t in _tasks(job)
              if name in ((t.get("python_wheel_task") or {}).get("named_parameters") or {})]
    return where


def pushdown_collisions(config: Mapping[str, Any], *, origins: list[str] | None = None,
                        job_ids: Mapping[str, str] | None = None) -> list[Finding]:
    """A job parameter that reaches, through Run Job tasks, a job below that takes a parameter of
    the same name, and overrides it there. A Run Job task that passes the name on explicitly
    (``job_parameters: {x: "{{job.parameters.x}}"}``) means it: from there on it is the child's
    parameter. A Run Job task that sets the name to anything else is overridden by the job
    parameter, which is reported as well. ``origins``: the jobs whose parameters to follow (all
    of them unless given: the local runner follows the job it runs); ``job_ids``: deployed job
    ids to job keys, for Run Job tasks that name their child by id."""
    jobs = _jobs(config)
    findings: list[Finding] = []
    for origin in jobs if origins is None else [o for o in origins if o in jobs]:
        own = dict((n, i) for i, n in _parameters(jobs[origin]))
        if own:
            findings += _walk(jobs, job_ids or {}, origin, own, origin, set(own), (origin,))
    return findings


def _walk(jobs: dict[str, dict], job_ids: Mapping[str, str], origin: str, own: dict[str, int], key: str,
          carried: set[str], chain: tuple[str, ...]) -> list[Finding]:
    """Follow ``origin``'s parameters ``carried`` from job ``key`` down its Run Job tasks."""
    findings: list[Finding] = []
    for i, task in _tasks(jobs[key]):
        rjt = task.get("run_job_task")
        if not isinstance(rjt, dict):
            continue
        child = _child_key(rjt, jobs, job_ids)
        if child is None or child in chain:  # not a job of this bundle, or a cycle (reported elsewhere)
            continue
        explicit = rjt.get("job_parameters") if isinstance(rjt.get("job_parameters"), dict) else {}
        below = (*chain, child)
        via = f"{' -> '.join(below)}, task {task.get('task_key')!r}"
        still = set(carried)
        for name in sorted(carried):
            given = explicit.get(name)
            forwarded = isinstance(given, str) and (m := _FORWARD.match(given)) is not None and m.group(1) == name
            if forwarded:
                if name in {n for _, n in _parameters(jobs[child])}:
                    still.discard(name)  # the child's own parameter from here on: meant
                continue
            if name in explicit:
                findings.append(Finding(
                    ("resources", "jobs", key, "tasks", i, "run_job_task", "job_parameters", name),
                    f"task {task.get('task_key')!r} of {key} runs job {child} with {name}={given!r}, but job "
                    f"parameter {name!r} of {origin} is pushed down over it (a job parameter wins over a task "
                    "parameter of the same key: docs: jobs/job-parameters \"Job parameter pushdown\"); expected "
                    f"{{{{job.parameters.{name}}}}} or a job parameter of another name"))
                continue
            where = _uses(jobs[child], name)
            if where:
                findings.append(Finding(
                    ("resources", "jobs", origin, "parameters", own[name], "name"),
                    f"job parameter {name!r} of {origin} reaches job {child} ({via}) and overrides "
                    f"{', '.join(where)} (Run Job tasks receive the job's parameters: docs: jobs/job-parameters "
                    f"\"Job parameter pushdown\"); expected a name no job below {origin} takes, or "
                    f"job_parameters: {{{name}: \"{{{{job.parameters.{name}}}}}\"}} on the Run Job task "
                    "where the child is meant to get it"))
        if still:
            findings += _walk(jobs, job_ids, origin, own, child, still, below)
    return findings


# ---------------------------------------------------------------- 2. model-signing keys


def signing_keys(config: Mapping[str, Any]) -> list[Finding]:
    """On a target that gates models (production mode, or staging/prod), the trusted public keys
    must be keys: with none, every load of every version refuses it (spark_mlops.signing reads
    SPARK_MLOPS_TRUSTED_KEYS, which the job clusters set from this variable)."""
    bundle = config.get("bundle") or {}
    target = str(bundle.get("target") or "")
    if bundle.get("mode") != "production" and target not in PRODUCTION_TARGETS:
        return []
    spec = (config.get("variables") or {}).get(SIGNING_KEYS_VARIABLE)
    if not isinstance(spec, dict):
        return []  # a bundle without model signing
    value = spec.get("value", spec.get("default"))
    path = ("variables", SIGNING_KEYS_VARIABLE)
    if not str(value or "").replace(",", " ").strip():
        return [Finding(path, f"target {target}: {SIGNING_KEYS_VARIABLE} is empty, so every model version is "
                        f"refused at load (exit {EXIT_UNTRUSTED_MODEL}): set BUNDLE_VAR_{SIGNING_KEYS_VARIABLE} "
                        "(CD: MODEL_SIGNING_PUBLIC_KEYS) to the training key's ed25519:<base64> before deploying "
                        "(docs/first-deploy.md, \"The model-signing key\")", WARNING)]
    try:
        signing.parse_public_keys(str(value), SIGNING_KEYS_VARIABLE)
    except ConfigError as exc:
        return [Finding(path, f"{exc}: every model version would be refused at load (exit {EXIT_UNTRUSTED_MODEL})")]
    return []


# ---------------------------------------------------------------- 3. the deployment job


def _run_if(task: dict) -> str:
    return str(task.get("run_if") or "ALL_SUCCESS")


def _gated(by: str, key: str, tasks: dict[str, dict], seen: frozenset = frozenset()) -> bool:
    """True when task ``key`` runs only after task ``by`` SUCCEEDED: it runs on ALL_SUCCESS and one
    of its dependencies is ``by`` or is itself gated by ``by`` (docs: jobs/run-if: every other
    condition also runs after a failed or excluded dependency)."""
    task = tasks.get(key) or {}
    if key in seen or _run_if(task) != "ALL_SUCCESS":
        return False
    deps = [d.get("task_key") for d in task.get("depends_on") or [] if isinstance(d, dict)]
    return any(d == by or _gated(by, d, tasks, seen | {key}) for d in deps)


def _deployment_jobs(jobs: dict[str, dict]) -> Iterator[str]:
    """The bundle's deployment job, and any job that takes a deployment job's two parameters."""
    for key, job in jobs.items():
        if key == DEPLOYMENT_JOB or set(DEPLOYMENT_JOB_PARAMETERS) <= {n for _, n in _parameters(job)}:
            yield key


def deployment_job_shape(config: Mapping[str, Any]) -> list[Finding]:
    """The shape the workspace relies on when it runs the job for each new version of the linked
    model, and when a person's Approve repairs the run (docs: mlflow/deployment-job)."""
    jobs = _jobs(config)
    return [finding for jkey in _deployment_jobs(jobs) for finding in _deployment_job(jkey, jobs[jkey])]


def _deployment_job(jkey: str, job: dict) -> list[Finding]:
    findings: list[Finding] = []

    def add(path: tuple, message: str) -> None:
        findings.append(Finding(("resources", "jobs", jkey, *path),
                                f"deployment job {jkey!r}: {message} (docs: mlflow/deployment-job)"))

    names = [n for _, n in _parameters(job)]
    if sorted(names) != sorted(DEPLOYMENT_JOB_PARAMETERS):
        add(("parameters",), f"expected exactly the job parameters {' and '.join(DEPLOYMENT_JOB_PARAMETERS)}, "
            f"which the workspace passes for each new model version, found {names or 'none'}")
    tasks = {str(t.get("task_key")): t for _, t in _tasks(job)}
    index = {str(t.get("task_key")): i for i, t in _tasks(job)}
    for key, task in tasks.items():  # task parameters of these names are the documented mistake
        for kind in ("python_wheel_task", "notebook_task", "spark_python_task"):
            spec = task.get(kind) or {}
            named = spec.get("named_parameters") or spec.get("base_parameters") or {}
            for name in sorted(set(DEPLOYMENT_JOB_PARAMETERS) & set(named if isinstance(named, dict) else {})):
                add(("tasks", index[key], kind, "named_parameters" if "named_parameters" in spec else "base_parameters",
                     name),
                    f"task {key!r} declares {name!r} as a task parameter; expected it as a job parameter only "
                    f"({{{{job.parameters.{name}}}}})")
    approval = tasks.get(APPROVAL_CHECK)
    if approval is None:
        others = [k for k in tasks if k.lower().startswith("approval")]
        add(("tasks",), f"no task {APPROVAL_CHECK!r} (the approval step, whose name is the version tag the "
            f"Approve button sets), found {others or 'no approval task'}")
    else:
        apath = ("tasks", index[APPROVAL_CHECK])
        retries = approval.get("max_retries")
        if retries not in (None, 0):
            add((*apath, "max_retries"), f"{APPROVAL_CHECK} has max_retries {retries!r}; expected 0 (a retry "
                "re-checks before anyone could approve, and the Approve button repairs the run instead)")
        if EVALUATION_TASK not in tasks:
            add(("tasks",), f"no task {EVALUATION_TASK!r} to evaluate the version before {APPROVAL_CHECK}")
        elif not _gated(EVALUATION_TASK, APPROVAL_CHECK, tasks):
            add((*apath, "depends_on"), f"{APPROVAL_CHECK} can run without a successful {EVALUATION_TASK!r}; "
                f"expected it to depend on {EVALUATION_TASK!r} (directly or through tasks that run only on "
                "success) with run_if ALL_SUCCESS, so that a person approves only an evaluated version")
        if DEPLOYMENT_TASK not in tasks:
            add(("tasks",), f"no task {DEPLOYMENT_TASK!r} after {APPROVAL_CHECK}")
        elif not _gated(APPROVAL_CHECK, DEPLOYMENT_TASK, tasks):
            add(("tasks", index[DEPLOYMENT_TASK], "depends_on"),
                f"{DEPLOYMENT_TASK!r} can run without a passed {APPROVAL_CHECK}; expected it to depend on "
                f"{APPROVAL_CHECK} (directly or through tasks that run only on success) with run_if ALL_SUCCESS")
    if job.get("max_concurrent_runs") != 1:
        add(("max_concurrent_runs",), f"expected 1 (one version at a time), found {job.get('max_concurrent_runs')!r}")
    if (job.get("queue") or {}).get("enabled") is not True:
        add(("queue",), f"expected queue: {{enabled: true}} (the versions registered meanwhile wait their turn; "
            f"without a queue their runs are skipped), found {job.get('queue')!r}")
    return findings
