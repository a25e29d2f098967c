"""scripts/bootstrap.sh sets up what the README's commands need, the Databricks CLI included."""

from __future__ import annotations

import os
import subprocess

from tests.conftest import REPO_ROOT


def test_without_go_bootstrap_says_in_one_line_what_to_install():
    # Every folder of PATH but the ones holding a `go`; no CLI named: bootstrap would have to build it.
    path = os.pathsep.join(d for d in os.environ["PATH"].split(os.pathsep)
                           if d and not os.access(os.path.join(d, "go"), os.X_OK))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARK_MLOPS_")}
    env["PATH"] = path
    r = subprocess.run(["bash", "-c", "source scripts/bootstrap.sh"], cwd=REPO_ROOT, env=env,
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode != 0
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("bootstrap: Go >= 1.26 is needed to build the Databricks CLI that resolves the bundle "
                                "(found: none); install it from https://go.dev/dl/"), r.stderr
    assert sum("Go" in line for line in lines) == 1
