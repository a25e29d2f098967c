"""The main job on the embedded default: the older design's whole story, from the bundle's own jobs.

1. target ``staging``: ``training`` then ``release`` (the candidate becomes staging's @champion);
2. target ``prod``: ``model_deployment`` copies staging's @champion into prod's model; the new prod
   version starts prod's deployment job (its model is linked to it, as CD links it after
   ``bundle deploy -t prod``): evaluation on prod's own holdout against prod's @champion, then
   ``Approval_Check`` stops the run: the version waits for a person's approval. The demo stops
   there and prints the command that approves it (as the Approve button on the version's page
   does: the tag, then a repair of the run, which resumes from the approval task and makes it
   prod's @champion). With ``--approve`` the demo gives that approval itself and goes on;
3. target ``prod``: ``batch_inference`` scores a batch with prod's @champion.

Every job runs through the local runner from the same YAML a workspace deploys. Staging and prod
are separate workspaces, each with a tracking store of its own (``<state>/workspaces/<name>``),
sharing one registry, as the two workspaces share one Unity Catalog metastore: two catalogs in it
(``staging.<schema>.<model>`` and ``prod.<schema>.<model>``), version files in registry storage.
The fixture data is copied to where the targets expect their inputs (``/Volumes/...`` maps to
``<state>/volumes``). Each task runs in a process of its own on its job cluster's shared JVM (the
runner's default); ``--in-process`` runs them all in this process.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

from spark_mlops import registry_tags as rt
from spark_mlops.config import DEFAULT_STATE_DIR, Settings
from spark_mlops.tables import local_path
from spark_mlops.timing import span
from spark_mlops_dev import workspace
from spark_mlops_dev.bundle import targets
from spark_mlops_dev.bundle.resolved import Bundle
from spark_mlops_dev.bundle.runner import JobRunResult, run_job

# (target, jobs in order): the way a model reaches production in deploy-the-model mode.
STORY = (("staging", ("training", "release")), ("prod", ("model_deployment", "batch_inference")))
LINKED = ("prod",)  # targets whose model CD links to its deployment job (scripts/ci/link-deployment-job.sh)
FIXTURES = {"training_input": "diabetes_train.csv", "scoring_input": "scoring_batch.csv"}


def stage_fixtures(settings: Settings, root: Path, variables: dict) -> None:
    for variable, fixture in FIXTURES.items():
        destination = Path(local_path(settings, str(variables[variable])))
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / "fixtures" / fixture, destination)


def job_settings(settings: Settings, bundle: Bundle) -> Settings:
    """``settings`` seen as the bundle's tasks see them: its model name, catalog and schema."""
    return targets.settings_for_target(settings, bundle)


def run(settings: Settings, runs: int = 1, *, process_per_task: bool = True, approve: bool = False) -> int:
    root = targets.bundle_root()
    bundles = {target: targets.load_local(target, root) for target, _ in STORY}
    for bundle in bundles.values():
        stage_fixtures(settings, root, bundle.variables)
    for target in LINKED:
        workspace.link(settings, bundles[target])
    for attempt in range(1, runs + 1):
        for target, jobs in STORY:
            for job in jobs:
                print(f"\n=== demo run {attempt}/{runs}: job {job} (target {target}) ===", flush=True)
                started = datetime.now(UTC)
                with span(f"job.{job}"):
                    result = run_job(bundles[target], job, state_dir=settings.state_dir,
                                     process_per_task=process_per_task)
                if not result.ok:
                    print(f"demo: job {job} on target {target} ended {result.state}; stopping")
                    return result.exit_code or 1
                for handled in workspace.after_run(settings, bundles[target], job, started,
                                                   process_per_task=process_per_task):
                    code = _through_approval(settings, bundles[target], handled, approve, process_per_task)
                    if code is not None:
                        return code
    _report(settings, bundles["prod"])
    return 0


def _waiting(result: JobRunResult) -> bool:
    """The deployment job run stopped at its approval task, its evaluation passed."""
    tasks = result.statuses()
    return tasks.get("evaluation") == "SUCCESS" and tasks.get(rt.APPROVAL_CHECK) == "FAILED"


def _through_approval(settings: Settings, bundle: Bundle, handled: workspace.Started, approve: bool,
                      process_per_task: bool) -> int | None:
    """None to go on; else the demo's exit code (0: stopped where a person approves)."""
    if handled.result.ok:
        return None
    if not _waiting(handled.result):
        print(f"demo: the deployment job run for v{handled.version} ended {handled.result.state}; stopping")
        return handled.result.exit_code or 1
    if not approve:
        view = job_settings(settings, bundle)
        print(f"\ndemo: stopped: {view.model_name} v{handled.version} is waiting for approval.")
        print("\nNext:")
        print("\n".join(next_commands(settings.state_dir, (
            (f"spark-mlops approve -t {bundle.target} --version {handled.version}",
             "approve it as the Approve button does: the tag, then the run repaired"),
            ("spark-mlops run batch_inference -t prod", "then score a batch with prod's @champion"),
        ))))
        return 0
    print(f"\ndemo --approve: approving v{handled.version} as a person would on the version's page", flush=True)
    repaired = workspace.approve(settings, bundle, handled.version, process_per_task=process_per_task)
    if not repaired.ok:
        print(f"demo: the repaired deployment job run ended {repaired.state}; stopping")
        return repaired.exit_code or 1
    return None


# What to look at next, printed at the end and runnable as printed (tests/test_readme.py runs them).
NEXT = (
    ("source .venv/bin/activate", "spark-mlops on your PATH (or prefix commands with .venv/bin/)"),
    ("spark-mlops status -t prod", "versions, aliases, verdicts, lineage, last monitored batch"),
    ("spark-mlops show -t prod predictions --limit 5", "the scored rows, each with the version that scored it"),
    ("spark-mlops show -t prod predictions --history", "the Delta commits: which job run wrote which batch"),
    ("spark-mlops ui -t prod", "the MLflow UI on prod's runs and the shared registry (Ctrl-C stops it)"),
)


def _report(settings: Settings, prod: Bundle) -> None:
    from spark_mlops import registry

    view = job_settings(settings, prod)
    print("\n" + registry.status_table(view))
    print("\nNext:")
    print("\n".join(next_commands(settings.state_dir)))


def next_commands(state_dir: Path, steps: tuple[tuple[str, str], ...] = NEXT) -> list[str]:
    """``steps`` (default :data:`NEXT`) as lines to print; a state folder other than the default is
    passed along."""
    extra = "" if state_dir == Path(DEFAULT_STATE_DIR).resolve() else f" --state-dir {state_dir}"
    commands = [(c + extra if c.startswith("spark-mlops ") else c, why) for c, why in steps]
    width = max(len(c) for c, _ in commands)
    return [f"  {c.ljust(width)}  # {why}" for c, why in commands]
