"""Shared helpers for the Azure Pipelines tests (no Spark, no workspace, no network)."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CI_DIR = REPO_ROOT / "scripts" / "ci"
PIPELINES_DIR = REPO_ROOT / ".azure" / "pipelines"
FAKE_DATABRICKS_DIR = Path(__file__).resolve().parent / "fake_databricks"
FAKE_PYTHON = Path(__file__).resolve().parent / "fake_python" / "python3"

if str(CI_DIR) not in sys.path:
    sys.path.insert(0, str(CI_DIR))
# The modules under test live in scripts/ci/ (run there by the pipelines, imported here).
azure_schema = importlib.import_module("azure_schema")
check_pipelines = importlib.import_module("check_pipelines")

# Variables that an Azure Pipelines agent (or a developer's shell) may have set and that change
# what the CI scripts do; the tests start from an environment without them.
_AMBIENT_PREFIXES = ("SYSTEM_", "BUILD_", "AGENT_", "DATABRICKS_", "BUNDLE_VAR_", "ARM_", "CI_", "FAKE_")
_AMBIENT_NAMES = ("TF_BUILD", "servicePrincipalId", "tenantId", "idToken", "NOTIFICATION_EMAIL",
                  "MODEL_SIGNING_PUBLIC_KEYS")


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(_AMBIENT_PREFIXES) and k not in _AMBIENT_NAMES
    }
    env.update(extra)
    return env


def run_script(name: str, *args: str, env: dict[str, str], cwd: Path | None = None,
               root: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    """``bash <root>/scripts/ci/<name> ARGS`` (always through bash, as the pipelines do)."""
    return subprocess.run(
        ["bash", str(root / "scripts" / "ci" / name), *args],
        env=env,
        cwd=cwd or root,
        capture_output=True,
        text=True,
        timeout=120,
    )


def target_profiles(root: Path = REPO_ROOT) -> dict[str, str]:
    """targets.<t>.workspace.profile of databricks.yml (targets without one are left out)."""
    import yaml

    targets = (yaml.safe_load((root / "databricks.yml").read_text()) or {}).get("targets") or {}
    return {t: ((v or {}).get("workspace") or {}).get("profile")
            for t, v in targets.items() if ((v or {}).get("workspace") or {}).get("profile")}


class FakeDatabricks:
    """Puts the TEST DOUBLE of the Databricks CLI first on PATH and reads what it recorded."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.log = tmp / "databricks-calls.jsonl"
        self.env_log = tmp / "databricks-env.jsonl"
        self.state = tmp / "ci-state"
        self.python_log = tmp / "python-calls.jsonl"
        # A home of its own: a developer's ~/.databrickscfg must not change what the CLI double resolves.
        self.home = tmp / "home"
        self.home.mkdir(exist_ok=True)

    def env(self, fail: str = "", **extra: str) -> dict[str, str]:
        base = clean_env()
        return {
            **base,
            "PATH": f"{FAKE_DATABRICKS_DIR}{os.pathsep}{base.get('PATH', '')}",
            "FAKE_DATABRICKS_LOG": str(self.log),
            "FAKE_DATABRICKS_ENV_LOG": str(self.env_log),
            "FAKE_DATABRICKS_FAIL": fail,
            "FAKE_DATABRICKS_TARGET_PROFILES": ",".join(f"{t}={p}" for t, p in target_profiles().items()),
            "HOME": str(self.home),
            "CI_STATE_DIR": str(self.state),
            # the wheel build goes through the TEST DOUBLE of the interpreter (no package index here)
            "CI_PYTHON": str(FAKE_PYTHON),
            "FAKE_REAL_PYTHON": sys.executable,
            "FAKE_PYTHON_LOG": str(self.python_log),
            **extra,
        }

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]

    def wheel_builds(self) -> list[list[str]]:
        if not self.python_log.exists():
            return []
        return [json.loads(line) for line in self.python_log.read_text().splitlines() if line]

    def envs(self) -> list[dict[str, str]]:
        if not self.env_log.exists():
            return []
        return [json.loads(line) for line in self.env_log.read_text().splitlines() if line]


def copy_repo_subset(dest: Path) -> Path:
    """The files the pipeline checks look at, copied so that a test can break them."""
    for rel in (".azure/pipelines", "scripts/ci", "resources"):
        shutil.copytree(REPO_ROOT / rel, dest / rel, ignore=shutil.ignore_patterns("__pycache__"))
    for rel in ("databricks.yml", "scripts/bootstrap.sh", "scripts/test.sh"):
        if (REPO_ROOT / rel).exists():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / rel, dest / rel)
    return dest


def copy_bundle(dest: Path) -> Path:
    """A checkout-like copy of what the CI scripts work on (bundle, sources, scripts/ci), so that
    the wheel they build and the state they write stay out of the repository."""
    for rel in ("resources", "src", "scripts/ci"):
        shutil.copytree(REPO_ROOT / rel, dest / rel, ignore=shutil.ignore_patterns("__pycache__"))
    for rel in ("databricks.yml", "pyproject.toml", "README.md"):
        if (REPO_ROOT / rel).exists():
            shutil.copy2(REPO_ROOT / rel, dest / rel)
    return dest


def strip_exec_bits(root: Path) -> None:
    """What a pipeline artifact download does to the files: no executable bit anywhere."""
    for path in root.rglob("*"):
        if path.is_file():
            path.chmod(path.stat().st_mode & ~0o111)
