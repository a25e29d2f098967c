"""The wheel job clusters install holds the lifecycle only (the development kit stays local)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

# What only a developer's machine or CI needs: it lives in devtools/ (spark_mlops_dev).
LOCAL_TOOLING = ("bundle/", "demo.py", "synthetic.py", "ui.py", "class_archive.py")
DEVELOPMENT_ONLY_REQUIREMENTS = ("jsonschema", "regex", "databricks-bundles", "pytest", "ruff")


@pytest.fixture(scope="module")
def cluster_wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "ci" / "build-wheel.sh"), str(out)],
                           capture_output=True, text=True, env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
                                                                "HOME": str(out)})
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = out.glob("spark_mlops-*.whl")
    return wheel


def test_the_cluster_wheel_holds_no_local_tooling(cluster_wheel: Path) -> None:
    names = zipfile.ZipFile(cluster_wheel).namelist()
    modules = {n.removeprefix("spark_mlops/") for n in names if n.startswith("spark_mlops/")}
    assert "cli.py" in modules and "scoring.py" in modules and "devkit.py" in modules
    shipped = sorted(m for m in modules if m.startswith(LOCAL_TOOLING))
    assert shipped == []
    assert not [n for n in names if n.startswith("spark_mlops_dev")]


def test_the_cluster_wheel_requires_nothing_only_development_needs(cluster_wheel: Path) -> None:
    with zipfile.ZipFile(cluster_wheel) as wheel:
        meta = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(wheel.read(meta).decode())
    unconditional = [r for r in metadata.get_all("Requires-Dist") or [] if "extra ==" not in r]
    names = {r.split(";")[0].split("[")[0].split("<")[0].split(">")[0].split("=")[0].split("~")[0].strip().lower()
             for r in unconditional}
    # open-data-contract-standard reads the contracts (docs/contracts.md); DBR 18 ML has its pydantic.
    assert names == {"pyyaml", "matplotlib", "open-data-contract-standard"}
    assert not names & set(DEVELOPMENT_ONLY_REQUIREMENTS)
