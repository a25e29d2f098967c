"""The README works as pasted: its shell blocks, in order, in a fresh copy of the repository.

Left out, by their first word: the test suite itself and the benchmarks (they run in CI as
stages of their own). The copy shares this checkout's ``.venv`` (a symlink), since creating one is
what ``scripts/bootstrap.sh`` does on every fresh CI machine anyway; everything else starts empty.
The commands the main job prints at its end are run as printed, too.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

NOT_RUN_HERE = ("./scripts/test.sh", "./scripts/bench.sh")
_BLOCK = re.compile(r"```bash\n(.*?)```", re.S)


def readme_commands(readme: str) -> list[str]:
    """The README's shell lines, in order, without those left out above."""
    lines = []
    for block in _BLOCK.findall(readme):
        for line in block.splitlines():
            command = line.split("  #", 1)[0].strip()  # a trailing comment is the README's, not the shell's
            if command and not command.startswith("#") and not command.startswith(NOT_RUN_HERE):
                lines.append(command)
    return lines


def printed_next_commands(output: str) -> list[str]:
    """The commands the main job prints after ``Next:``, one per indented line (comments dropped)."""
    _, found, rest = output.partition("\nNext:\n")
    assert found, "the main job printed no 'Next:' section"
    commands = []
    for line in rest.splitlines():
        if not line.startswith("  "):
            break
        commands.append(line.split("  #", 1)[0].strip())
    return [c for c in commands if c]


def fresh_copy(destination: Path) -> Path:
    """The files git knows (tracked, or new and not ignored), as a clone of this working tree would have them."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        source = REPO_ROOT / rel
        if source.is_file():
            (destination / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / rel)
    # The copy's bootstrap must find the shared .venv current: a stale one would be reinstalled
    # from the copy, and this checkout's editable install would then point into a temp folder.
    # The stamp is scripts/bootstrap.sh's stamp_of: sha256 of the two pyproject files, concatenated.
    stamp = hashlib.sha256(b"".join((REPO_ROOT / f).read_bytes() for f in ("pyproject.toml", "devtools/pyproject.toml")))
    installed = REPO_ROOT / ".venv" / ".installed"
    if not installed.is_file() or installed.read_text().strip() != stamp.hexdigest():
        pytest.fail(".venv is older than pyproject.toml: run the tests through scripts/test.sh, which bootstraps first")
    (destination / ".venv").symlink_to(REPO_ROOT / ".venv")
    return destination


def _run(script: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPARK_MLOPS_", "MLFLOW_", "PYTHONPATH"))}
    return subprocess.run(["bash", "-c", "set -euo pipefail\n" + script], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=1800, check=False)


def test_readme_commands_skip_only_the_suite_and_the_benchmarks():
    commands = readme_commands((REPO_ROOT / "README.md").read_text())
    assert commands[0] == "./scripts/demo.sh"
    assert "source .venv/bin/activate" in commands
    assert not [c for c in commands if c.startswith(NOT_RUN_HERE)]


@pytest.mark.slow
def test_the_readme_works_as_pasted_in_a_fresh_copy(tmp_path):
    clone = fresh_copy(tmp_path / "clone")
    before = {p.name for p in clone.iterdir()}
    commands = readme_commands((clone / "README.md").read_text())

    ran = _run("\n".join(commands), clone)
    assert ran.returncode == 0, ran.stdout[-4000:] + ran.stderr[-4000:]
    assert "Traceback" not in ran.stdout + ran.stderr

    printed = printed_next_commands(ran.stdout)
    assert printed, ran.stdout[-2000:]
    # What the main job prints and the README already ran (after it, in order) has just worked as
    # printed; the rest runs now, except the UI server.
    rest = [c for c in printed if c not in commands and not c.startswith("spark-mlops ui")]
    if rest:
        again = _run("source .venv/bin/activate\n" + "\n".join(rest), clone)
        assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-4000:]
        assert "Traceback" not in again.stdout + again.stderr

    assert {p.name for p in clone.iterdir()} == before | {".mlops"}  # nothing written outside the state folder
