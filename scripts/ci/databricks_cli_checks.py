"""The real Databricks CLI validates and deploys this bundle against a fake workspace.

Run by scripts/ci/databricks-cli-checks.sh (which builds the CLI and the wheel first):

    python scripts/ci/databricks_cli_checks.py --bin BIN_DIR [--root .]

1. ``databricks bundle validate --strict -t T`` for dev, test, staging and prod (the CLI is the one
   resolver of the bundle, also locally: spark_mlops_dev.bundle.databricks_cli);
2. (removed: the comparison with the offline loader, which is gone)
3. ``bundle deploy -t staging`` and ``-t prod`` (direct engine, the prebuilt wheel in dist/), then
   everything created is read back from the fake workspace and checked against the CLI's own
   resolved configuration: jobs (tasks and dependencies, entry points and parameters, libraries,
   schedules and pause status, run_as, permissions), UC schemas, volumes, registered models and
   their grants, the experiment and its permissions, and the uploaded wheel (byte for byte);
4. a second deploy plans nothing and changes nothing;
5. ``deploy -t test`` then ``destroy -t test --auto-approve`` leaves nothing behind;
6. with ``--run-jobs``: the CD scripts, unchanged, against the fake workspace that runs the jobs
   it was given (cd_runs.py): staging trains and releases, a rejection and a crash are read as
   such, prod deploys, links its model to its deployment job (link-deployment-job.sh with the real
   CLI against the fake workspace's registry: fake-workspace/registry.go), runs the linked job,
   approves and scores.

The last stdout line is one JSON object (cli_version, validated, deployed, failures; with --run-jobs also ran: target -> job -> the run's result state as
runs/get reports it, registered: the model versions in the registry afterwards, and verdicts: how
CD read the rejection and the crash). Exit 0 when every check passed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cd_runs import CdRuns, registered  # noqa: E402
from fake_workspace import (  # noqa: E402
    SERVICE_PRINCIPAL,
    TARGET_PROFILES,
    CliError,
    FakeWorkspace,
    copy_bundle,
)

from spark_mlops_dev.bundle.databricks_cli import resolve_resource_refs  # noqa: E402

TARGETS = ("dev", "test", "staging", "prod")
DEPLOYED = ("staging", "prod")
TEST_SUFFIX = "ci_cli_check"


def say(text: str) -> None:
    print(text, flush=True)


# ---------------------------------------------------------------- the CLI's resolved view

# An API answer fills fields the configuration leaves out with the API's defaults.
_API_DEFAULTS = (None, 0, False, "", {}, [])
_API_DEFAULT_FIELDS = {"run_if": "ALL_SUCCESS"}


def without_api_defaults(node, key: str = ""):
    """``node`` less the fields that hold only an API default (so that an unset field and its
    default compare equal)."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            v = without_api_defaults(v, k)
            if v in _API_DEFAULTS or _API_DEFAULT_FIELDS.get(k) == v:
                continue
            out[k] = v
        return out
    if isinstance(node, list):
        return [without_api_defaults(v) for v in node]
    return node


def principal(entry: dict) -> str:
    for key in ("user_name", "service_principal_name", "group_name"):
        if entry.get(key):
            return f"{key}:{entry[key]}"
    return "?"


def declared_acl(permissions: list | None) -> dict[str, str]:
    return {principal(p): p["level"] for p in permissions or []}


def deployed_acl(acl: dict) -> dict[str, str]:
    """Direct (not inherited) levels of an object's access control list."""
    out = {}
    for entry in acl.get("access_control_list") or []:
        levels = [p["permission_level"] for p in entry.get("all_permissions") or [] if not p.get("inherited")]
        if levels:
            out[principal(entry)] = levels[0]
    return out


# ---------------------------------------------------------------- checks


class Checks:
    def __init__(self, ws: FakeWorkspace, root: Path):
        self.ws = ws
        self.root = root
        self.failures: list[str] = []

    def fail(self, text: str) -> None:
        self.failures.append(text)
        say(f"  FAIL {text}")

    def expect(self, where: str, found, expected) -> bool:
        field = where.rsplit(": ", 1)[-1]
        found = without_api_defaults({field: found}).get(field)
        expected = without_api_defaults({field: expected}).get(field)
        if found != expected:
            self.fail(f"{where}: expected {json.dumps(expected, sort_keys=True)}, "
                      f"found {json.dumps(found, sort_keys=True)}")
            return False
        return True

    def cli(self, *args: str, env: dict | None = None, check: bool = True):
        return self.ws.cli(*args, cwd=self.root, env=env, check=check)

    def get(self, path: str, target: str, missing_ok: bool = False):
        return self.ws.api_get(path, TARGET_PROFILES[target], cwd=self.root, missing_ok=missing_ok)

    # -- 1. validate
    def validate(self, target: str, env: dict | None = None) -> dict | None:
        r = self.cli("bundle", "validate", "--strict", "-t", target, env=env, check=False)
        if r.returncode != 0:
            self.fail(f"bundle validate --strict -t {target} exited {r.returncode}: "
                      f"{(r.stderr or r.stdout).strip()[-2500:]}")
            return None
        return self.cli("bundle", "validate", "-o", "json", "-t", target, env=env).json()

    # -- 3. read back a deployment
    def summary(self, target: str, env: dict | None = None) -> dict:
        return self.cli("bundle", "summary", "-o", "json", "-t", target, env=env).json()

    def readback(self, target: str, resolved: dict, summary: dict, wheel: Path) -> dict:
        """Everything the deployment of ``target`` created, checked against ``resolved`` (the CLI's
        own ``validate -o json``); returns a snapshot for the idempotency check."""
        expected = resolve_resource_refs(resolved)
        res = expected.get("resources") or {}
        deployed = summary.get("resources") or {}
        snapshot: dict = {}
        ids = {key: str(item.get("id")) for key, item in (deployed.get("jobs") or {}).items()}
        artifact_path = expected["workspace"]["artifact_path"]
        wheel_sha = hashlib.sha256(wheel.read_bytes()).hexdigest()

        listed = {str(j["job_id"]): j["settings"]["name"]
                  for j in self.cli("jobs", "list", "-p", TARGET_PROFILES[target], "-o", "json").json() or []}
        for key, job in sorted((res.get("jobs") or {}).items()):
            where = f"{target}: job {key}"
            if key not in ids or ids[key] not in listed:
                self.fail(f"{where}: not deployed (bundle summary ids {ids}, workspace jobs {listed})")
                continue
            # `jobs get` (typed): `api get` would pass the id through a float64 and round it.
            got = self.cli("jobs", "get", ids[key], "-p", TARGET_PROFILES[target], "-o", "json").json()
            settings = got["settings"]
            snapshot[f"jobs.{key}"] = settings
            for field in ("name", "parameters", "schedule", "run_as", "max_concurrent_runs", "tags", "queue",
                          "job_clusters", "email_notifications", "timeout_seconds", "health"):
                self.expect(f"{where}: {field}", settings.get(field), job.get(field))
            got_tasks = {t["task_key"]: t for t in settings.get("tasks") or []}
            want_tasks = {t["task_key"]: t for t in job.get("tasks") or []}
            if not self.expect(f"{where}: task keys", sorted(got_tasks), sorted(want_tasks)):
                continue
            for tkey, want in want_tasks.items():
                have = got_tasks[tkey]
                tw = f"{where}: task {tkey}"
                for field in ("depends_on", "run_if", "python_wheel_task", "condition_task", "job_cluster_key",
                              "max_retries", "min_retry_interval_millis", "retry_on_timeout", "timeout_seconds"):
                    self.expect(f"{tw}: {field}", have.get(field), want.get(field))
                if "run_job_task" in want:
                    m = re.fullmatch(r"\$\{resources\.jobs\.([\w-]+)\.id\}", str(want["run_job_task"]["job_id"]))
                    target_id = ids.get(m.group(1)) if m else want["run_job_task"]["job_id"]
                    self.expect(f"{tw}: run_job_task.job_id", str(have.get("run_job_task", {}).get("job_id")),
                                str(target_id))
                for lib in have.get("libraries") or []:
                    path = lib.get("whl", "")
                    if not path.startswith(f"{artifact_path}/.internal/") or not path.endswith(wheel.name):
                        self.fail(f"{tw}: library {path}: expected the prebuilt {wheel.name} uploaded "
                                  f"under {artifact_path}/.internal/")
            acl = deployed_acl(self.get(f"/api/2.0/permissions/jobs/{ids[key]}", target))
            snapshot[f"jobs.{key}.permissions"] = acl
            self.expect(f"{where}: permissions", acl, declared_acl(job.get("permissions")))

        # The uploaded wheel: the bytes of dist/, not a rebuild.
        remote = f"{artifact_path}/.internal/{wheel.name}"
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / wheel.name
            r = self.cli("workspace", "export", remote, "--format", "AUTO", "--file", str(out),
                         "-p", TARGET_PROFILES[target], check=False)
            if r.returncode != 0 or not out.exists():
                self.fail(f"{target}: wheel {remote} not in the workspace: {r.stderr.strip()[-500:]}")
            else:
                self.expect(f"{target}: sha256 of the uploaded wheel", hashlib.sha256(out.read_bytes()).hexdigest(),
                            wheel_sha)

        for key, exp in sorted((res.get("experiments") or {}).items()):
            item = (deployed.get("experiments") or {}).get(key) or {}
            got = self.get(f"/api/2.0/mlflow/experiments/get?experiment_id={item.get('id')}", target,
                           missing_ok=True)
            if not got:
                self.fail(f"{target}: experiment {key} ({exp['name']}) not deployed")
                continue
            self.expect(f"{target}: experiment {key}: name", got["experiment"]["name"], exp["name"])
            acl = deployed_acl(self.get(f"/api/2.0/permissions/experiments/{item.get('id')}", target))
            snapshot[f"experiments.{key}"] = {"name": got["experiment"]["name"], "permissions": acl}
            self.expect(f"{target}: experiment {key}: permissions", acl, declared_acl(exp.get("permissions")))

        for kind, api in (("schemas", "schemas"), ("volumes", "volumes"), ("registered_models", "models")):
            for key, obj in sorted((res.get(kind) or {}).items()):
                full = ".".join(obj[f] for f in (("catalog_name", "name") if kind == "schemas"
                                                 else ("catalog_name", "schema_name", "name")))
                got = self.get(f"/api/2.1/unity-catalog/{api}/{full}", target, missing_ok=True)
                if not got:
                    self.fail(f"{target}: {kind} {key} ({full}) not deployed")
                    continue
                snapshot[f"{kind}.{key}"] = {k: got.get(k) for k in ("full_name", "comment", "volume_type")}
                self.expect(f"{target}: {kind} {key}: full_name", got.get("full_name"), full)
                if obj.get("grants"):
                    securable = {"registered_models": "function", "volumes": "volume", "schemas": "schema"}[kind]
                    grants = self.get(f"/api/2.1/unity-catalog/permissions/{securable}/{full}", target)
                    have = {g["principal"]: sorted(g.get("privileges") or [])
                            for g in grants.get("privilege_assignments") or []}
                    want = {g["principal"]: sorted(g.get("privileges") or []) for g in obj["grants"]}
                    snapshot[f"{kind}.{key}.grants"] = have
                    self.expect(f"{target}: {kind} {key}: grants", have, want)
        return snapshot

    def project_rules(self, target: str, snapshot: dict) -> None:
        """What this project's deployment promises, stated once more against the deployed jobs."""
        jobs = {k.split(".")[1]: v for k, v in snapshot.items() if k.startswith("jobs.") and k.count(".") == 1}
        for key, settings in jobs.items():
            self.expect(f"{target}: job {key}: run_as", settings.get("run_as"),
                        {"service_principal_name": SERVICE_PRINCIPAL})
            acl = snapshot.get(f"jobs.{key}.permissions") or {}
            if acl.get(f"service_principal_name:{SERVICE_PRINCIPAL}") not in ("IS_OWNER", "CAN_MANAGE"):
                self.fail(f"{target}: job {key}: the service principal does not own or manage it: {acl}")
            schedule = settings.get("schedule")
            if schedule:
                want = "UNPAUSED" if target == "prod" else "PAUSED"
                self.expect(f"{target}: job {key}: schedule.pause_status", schedule.get("pause_status"), want)
        self.expect(f"{target}: model_deployment job deployed", "model_deployment" in jobs, target == "prod")


def plan_actions(checks: Checks, target: str) -> dict[str, str]:
    plan = checks.cli("bundle", "plan", "-o", "json", "-t", target).json()
    return {key: item.get("action") for key, item in (plan.get("plan") or {}).items()}


def run(bin_dir: Path, root: Path, run_jobs: bool = False) -> dict:
    started = time.monotonic()
    wheels = sorted((root / "dist").glob("spark_mlops-*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"dist/: expected one prebuilt wheel (bash scripts/ci/build-wheel.sh dist), found {len(wheels)}")
    with tempfile.TemporaryDirectory(prefix="databricks-cli-checks-") as tmp:
        state = Path(tmp) / "state" if run_jobs else None
        return _run(bin_dir, copy_bundle(root, Path(tmp) / "bundle", wheels[0]), started, state)


def stage_fixtures(root: Path, state: Path, resolved: dict[str, dict]) -> None:
    """The raw data a workspace's volumes hold, in the local stores (as the demo stages it)."""
    from spark_mlops.config import build_settings
    from spark_mlops_dev import demo

    settings = build_settings(state_dir=str(state))
    for target in ("staging", "prod"):
        variables = {k: v.get("value") for k, v in (resolved[target].get("variables") or {}).items()
                     if isinstance(v, dict)}
        demo.stage_fixtures(settings, root, variables)


def model_names(resolved: dict[str, dict]) -> list[str]:
    names = []
    for target in ("staging", "prod"):
        for model in ((resolved[target].get("resources") or {}).get("registered_models") or {}).values():
            names.append(".".join(str(model[f]) for f in ("catalog_name", "schema_name", "name")))
    return names


def _run(bin_dir: Path, root: Path, started: float, state: Path | None = None) -> dict:
    wheels = sorted((root / "dist").glob("spark_mlops-*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"dist/: expected one prebuilt wheel (bash scripts/ci/build-wheel.sh dist), found {len(wheels)}")
    wheel = wheels[0]
    wheel_sha_before = hashlib.sha256(wheel.read_bytes()).hexdigest()
    result: dict = {"cli_version": "", "validated": [], "deployed": {}, "failures": []}
    with FakeWorkspace(bin_dir, python=sys.executable if state else None, state_dir=state) as ws:
        checks = Checks(ws, root)
        version = ws.cli("version", cwd=root).stdout.strip()
        result["cli_version"] = version.removeprefix("Databricks CLI v")
        say(f"==> {version}, fake workspace {ws.url}")

        say("==> bundle validate --strict")
        resolved: dict[str, dict] = {}
        for target in TARGETS:
            config = checks.validate(target)
            if config is not None:
                resolved[target] = config
                result["validated"].append(target)
                say(f"  ok {target}")


        for target in DEPLOYED:
            if target not in resolved:
                continue
            say(f"==> bundle deploy -t {target}")
            checks.cli("bundle", "deploy", "-t", target)
            summary = checks.summary(target)
            snapshot = checks.readback(target, resolved[target], summary, wheel)
            checks.project_rules(target, snapshot)
            res = resolved[target].get("resources") or {}
            result["deployed"][target] = {kind: len(res.get(kind) or {}) for kind in
                                          ("jobs", "experiments", "registered_models", "volumes", "schemas")}
            result["deployed"][target]["tasks"] = sum(len(j.get("tasks") or []) for j in (res.get("jobs") or {}).values())

            say(f"==> a second deploy -t {target} changes nothing")
            actions = plan_actions(checks, target)
            changed = {k: a for k, a in actions.items() if a != "skip"}
            if not actions or changed:
                checks.fail(f"{target}: bundle plan after deploy: expected every action 'skip', found {changed or 'no plan'}")
            checks.cli("bundle", "deploy", "-t", target)
            again = checks.readback(target, resolved[target], checks.summary(target), wheel)
            checks.expect(f"{target}: ids after the second deploy",
                          {k: v.get("id") for k, v in (checks.summary(target).get("resources") or {}).get("jobs", {}).items()},
                          {k: v.get("id") for k, v in (summary.get("resources") or {}).get("jobs", {}).items()})
            if again != snapshot:
                diff = sorted(k for k in set(again) | set(snapshot) if again.get(k) != snapshot.get(k))
                checks.fail(f"{target}: the second deploy changed {diff}")
            result["deployed"][target]["second_deploy_changes"] = len(changed)

        if "test" in resolved:
            say(f"==> bundle deploy -t test (suffix {TEST_SUFFIX}), then destroy")
            env = {"BUNDLE_VAR_deployment_suffix": TEST_SUFFIX}
            config = checks.validate("test", env) or resolved["test"]
            root_path = config["workspace"]["root_path"]
            jobs_before = {str(j["job_id"]) for j in checks.cli("jobs", "list", "-p", TARGET_PROFILES["test"],
                                                                 "-o", "json").json() or []}
            checks.cli("bundle", "deploy", "-t", "test", env=env)
            summary = checks.summary("test", env)
            checks.readback("test", config, summary, wheel)
            checks.cli("bundle", "destroy", "-t", "test", "--auto-approve", env=env)
            left = checks_left_behind(checks, config, summary, jobs_before, root_path)
            for line in left:
                checks.fail(f"test: left behind after destroy: {line}")
            result["destroyed_test"] = not left

        if state is not None and {"staging", "prod"} <= set(resolved):
            stage_fixtures(root, state, resolved)
            cd = CdRuns(ws, root, sys.executable, checks.fail, state, model_names(resolved))
            cd.run()
            result["ran"] = cd.ran
            result["verdicts"] = cd.verdicts
            result["registered"] = registered(state, model_names(resolved))
            say(f"  ran: {json.dumps(cd.ran)}")
            say(f"  registered: {json.dumps(result['registered'])}")

    if hashlib.sha256(wheel.read_bytes()).hexdigest() != wheel_sha_before or not wheel.exists():
        checks.fail(f"dist/{wheel.name} changed during the deploys: the prebuilt wheel must be uploaded, not rebuilt")
    result["failures"] = checks.failures
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


def checks_left_behind(checks: Checks, config: dict, summary: dict, jobs_before: set[str], root_path: str) -> list[str]:
    left = []
    jobs_now = {str(j["job_id"]): j["settings"]["name"]
                for j in checks.cli("jobs", "list", "-p", TARGET_PROFILES["test"], "-o", "json").json() or []}
    left += [f"job {name} ({jid})" for jid, name in jobs_now.items() if jid not in jobs_before]
    res = resolve_resource_refs(config).get("resources") or {}
    for kind, api in (("schemas", "schemas"), ("volumes", "volumes"), ("registered_models", "models")):
        for obj in (res.get(kind) or {}).values():
            full = ".".join(obj[f] for f in (("catalog_name", "name") if kind == "schemas"
                                             else ("catalog_name", "schema_name", "name")))
            if checks.get(f"/api/2.1/unity-catalog/{api}/{full}", "test", missing_ok=True):
                left.append(f"{kind} {full}")
    for key, item in ((summary.get("resources") or {}).get("experiments") or {}).items():
        got = checks.get(f"/api/2.0/mlflow/experiments/get?experiment_id={item.get('id')}", "test", missing_ok=True)
        if got and (got.get("experiment") or {}).get("lifecycle_stage") != "deleted":
            left.append(f"experiment {key} ({got['experiment'].get('name')})")
    if checks.get(f"/api/2.0/workspace/get-status?path={root_path}", "test", missing_ok=True):
        left.append(f"folder {root_path}")
    return left


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", required=True, type=Path, help="folder with databricks and fake-workspace")
    parser.add_argument("--root", default=Path("."), type=Path, help="the bundle root (default: .)")
    parser.add_argument("--run-jobs", action="store_true",
                        help="also run the CD scripts against the fake workspace, which runs the deployed jobs")
    args = parser.parse_args(argv)
    try:
        result = run(args.bin, args.root.resolve(), args.run_jobs)
    except CliError as exc:
        result = {"cli_version": "", "validated": [], "deployed": {}, "failures": [str(exc)]}
        say(f"  FAIL {exc}")
    ok = not result["failures"]
    say(f"==> {'every check passed' if ok else 'FAILED'}")
    print(json.dumps(result, sort_keys=False))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
