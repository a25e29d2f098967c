"""The real Databricks CLI against a test double of a workspace: local runs, the tests and CI.

``fake-workspace`` (scripts/ci/fake-workspace/main.go) serves the Databricks CLI's own fake
workspace (``libs/testserver``) on 127.0.0.1; scripts/ci/build-databricks-cli.sh builds it beside
the CLI and scripts/bootstrap.sh sets both up. ``bundle validate`` needs a workspace (it reads the
current user), so every local resolution of the bundle (:mod:`.databricks_cli`) talks to one of
these, never to a real workspace. :class:`FakeWorkspace` starts it, writes a temporary CLI config whose profiles point at it
(no real credentials anywhere: the tokens are the double's identity markers) and runs
``databricks`` with an environment that reaches nothing else.

Identities (libs/testserver/fake_workspace.go): a token starting ``dbapi1`` is the service
principal ``aaaaaaaa-bbbb-4ccc-dddd-eeeeeeeeeeee`` (its application id is its user name), one
starting ``dbapi0`` the user ``tester@databricks.com``; the rest of the token names the workspace,
so the two profiles the targets name are two workspaces, as in production:

  DEFAULT              user, workspace "dev"       (the dev target names no profile)
  spark-mlops-staging  service principal, "staging" (targets test and staging)
  spark-mlops-prod     service principal, "prod"    (target prod)

Used by :mod:`.databricks_cli`, scripts/ci (through scripts/ci/fake_workspace.py) and the tests.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SERVICE_PRINCIPAL = "aaaaaaaa-bbbb-4ccc-dddd-eeeeeeeeeeee"
USER = "tester@databricks.com"
PROFILES = {
    "DEFAULT": "dbapi0dev",
    "spark-mlops-staging": "dbapi1staging",
    "spark-mlops-prod": "dbapi1prod",
}
TARGET_PROFILES = {"dev": "DEFAULT", "test": "spark-mlops-staging", "staging": "spark-mlops-staging",
                   "prod": "spark-mlops-prod"}
# staging/prod are deployed by their service principal and run as that same identity (as in CD).
BUNDLE_VARIABLES = {"service_principal": SERVICE_PRINCIPAL}
START_TIMEOUT_S = 30.0
BIN_ENV = "SPARK_MLOPS_DATABRICKS_CLI_BIN"  # folder with databricks + fake-workspace


# The CLI keeps a local copy of each target's deployment state in <bundle>/.databricks/bundle/<target>:
# the bundle is deployed from a fresh copy, so that no state of an earlier fake workspace (or a
# developer's real one) is read or touched.
_NOT_COPIED = shutil.ignore_patterns(".git", ".venv", ".databricks", ".mlops", "test-results", "__pycache__",
                                     "*.egg-info", ".pytest_cache", ".ruff_cache", "mlruns", "spark-warehouse",
                                     "node_modules", "dist", "build", "mlartifacts", "metastore_db",
                                     "derby.log")


def copy_bundle(root: str | os.PathLike, dest: str | os.PathLike, wheel: str | os.PathLike | None = None) -> Path:
    """The bundle at ``root`` copied to ``dest`` without local state; ``dist/`` holds ``wheel``, or
    a stand-in file named like the prebuilt wheel (``bundle validate`` only matches the glob of
    databricks.yml's artifact)."""
    dest = Path(dest)
    shutil.copytree(root, dest, ignore=_NOT_COPIED, symlinks=True)
    (dest / "dist").mkdir()
    if wheel is not None:
        shutil.copy2(wheel, dest / "dist" / Path(wheel).name)
    else:
        (dest / "dist" / "spark_mlops-0.0.0-py3-none-any.whl").write_bytes(b"stand-in for validate")
    return dest


class CliError(RuntimeError):
    """A ``databricks`` command failed; the message has its command line and output tail."""


def find_bin() -> Path | None:
    """The folder holding ``databricks`` and ``fake-workspace``: $SPARK_MLOPS_DATABRICKS_CLI_BIN,
    else the virtualenv's bin folder (scripts/bootstrap.sh links both there), else the folder of a
    ``databricks`` on PATH that has ``fake-workspace`` beside it."""
    named = os.environ.get(BIN_ENV)
    if named:  # named explicitly: that folder or nothing
        folder = Path(named)
        return folder if (folder / "databricks").is_file() and (folder / "fake-workspace").is_file() else None
    candidates = [Path(sys.prefix) / "bin"]
    on_path = shutil.which("databricks")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for folder in candidates:
        if (folder / "databricks").is_file() and (folder / "fake-workspace").is_file():
            return folder
    return None


@dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)


class FakeWorkspace:
    """``with FakeWorkspace(bin_dir) as ws: ws.cli("bundle", "validate", cwd=root)``."""

    def __init__(self, bin_dir: str | os.PathLike, workdir: str | os.PathLike | None = None, *,
                 python: str | os.PathLike | None = None, state_dir: str | os.PathLike | None = None,
                 runner: str | os.PathLike | None = None):
        """With ``python`` (the project's interpreter), ``state_dir`` (the local stores the
        workspaces' jobs use) and ``runner`` (scripts/ci/fake_workspace_runner.py), the fake
        workspace RUNS the jobs deployed to it (fake-workspace/jobs.go); without them runs/* answer
        as libs/testserver does."""
        self.bin = Path(bin_dir)
        self.runner = Path(runner) if runner else None
        self.python = str(python) if python else None
        self.state_dir = Path(state_dir).resolve() if state_dir else None
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="fake-workspace-"))
        self.url = ""
        self.proc: subprocess.Popen | None = None
        self.log_path = self.workdir / "fake-workspace.log"
        self.config_path = self.workdir / "databrickscfg"

    # -- lifecycle
    def start(self) -> FakeWorkspace:
        self.workdir.mkdir(parents=True, exist_ok=True)
        url_file = self.workdir / "url"
        url_file.unlink(missing_ok=True)
        log = self.log_path.open("w")
        cmd = [str(self.bin / "fake-workspace"), "-url-file", str(url_file)]
        env = dict(os.environ)
        if self.python and self.state_dir and self.runner:
            cmd += ["-python", self.python, "-runner", str(self.runner)]
            env["SPARK_MLOPS_STATE_DIR"] = str(self.state_dir)
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not url_file.exists():
            if self.proc.poll() is not None:
                raise CliError(f"fake-workspace exited with {self.proc.returncode} before listening: "
                               f"{self.log_path.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise CliError(f"fake-workspace did not listen within {START_TIMEOUT_S:.0f} s")
            time.sleep(0.05)
        self.url = url_file.read_text().strip()
        sections = [f"[{name}]\nhost = {self.url}\ntoken = {token}\n" for name, token in PROFILES.items()]
        self.config_path.write_text("\n".join(sections))
        (self.workdir / "cache").mkdir(exist_ok=True)
        return self

    def stop(self) -> str:
        """Stop the server; raise CliError when it saw requests it could not answer."""
        if self.proc is None:
            return ""
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)  # running jobs are stopped first (jobs.go stopAll)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log = self.log_path.read_text() if self.log_path.exists() else ""
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if proc.returncode not in (0, -signal.SIGKILL):
            unanswered = [line for line in log.splitlines() if "ERROR" in line or "No handler" in line]
            raise CliError("fake-workspace: the CLI called endpoints the test double does not answer: "
                           + " | ".join(unanswered[:5]))
        return log

    def __enter__(self) -> FakeWorkspace:
        return self.start()

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.stop()
        else:  # the first error is the one to report
            try:
                self.stop()
            except CliError:
                pass

    # -- running the CLI
    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The process environment less any Databricks/Azure login, plus the double's config."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("DATABRICKS_", "ARM_", "AZURE_", "BUNDLE_VAR_"))}
        env.update({
            "DATABRICKS_CONFIG_FILE": str(self.config_path),
            "DATABRICKS_CACHE_DIR": str(self.workdir / "cache"),
            # The direct deployment engine needs no Terraform (bundle/direct; default since 1.3.0).
            "DATABRICKS_BUNDLE_ENGINE": "direct",
            **{f"BUNDLE_VAR_{k}": v for k, v in BUNDLE_VARIABLES.items()},
            "DO_NOT_TRACK": "true",
            "PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}",
        })
        env.update(extra or {})
        return env

    def cli(self, *args: str, cwd: str | os.PathLike, check: bool = True,
            env: dict[str, str] | None = None, timeout: float = 300) -> Result:
        cmd = [str(self.bin / "databricks"), *args]
        proc = subprocess.run(cmd, cwd=cwd, env=self.env(env), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
        result = Result(cmd[1:], proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            tail = (proc.stderr.strip() or proc.stdout.strip())[-3000:]
            raise CliError(f"databricks {' '.join(args)} exited {proc.returncode}:\n{tail}")
        return result

    def api_get(self, path: str, profile: str, *, cwd: str | os.PathLike, missing_ok: bool = False):
        """``databricks api get PATH -p PROFILE`` as JSON (None for a 404 with missing_ok)."""
        r = self.cli("api", "get", path, "-p", profile, cwd=cwd, check=False)
        if r.returncode != 0:
            if missing_ok and re.search(r"does not exist|doesn't exist|not found|404", r.stderr, re.I):
                return None
            raise CliError(f"databricks api get {path} -p {profile} exited {r.returncode}: "
                           f"{r.stderr.strip()[-1500:]}")
        return json.loads(r.stdout) if r.stdout.strip() else {}
