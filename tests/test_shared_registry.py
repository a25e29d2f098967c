"""A shared registry over HTTP: a real `mlflow server`, a "dev" process that tracks to its own
sqlite store and registers into the server, and a separate "prod" process that loads @champion
from the server and scores."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import FIXTURES, REPO_ROOT

pytestmark = pytest.mark.slow
MODEL = "shared.ml.diabetes_classifier"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("server")
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = open(folder / "server.log", "w")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{folder}/server.db",
         "--serve-artifacts", "--artifacts-destination", str(folder / "artifacts")],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=folder, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"mlflow server did not start: {(folder / 'server.log').read_text()[-2000:]}")
        time.sleep(0.5)
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()


def run_process(script: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_dev_registers_into_the_server_and_prod_scores_from_it(mlflow_server, tmp_path, monkeypatch):
    dev_state, prod_state = tmp_path / "dev", tmp_path / "prod"
    dev = run_process(f"""
        import sys
        from spark_mlops.cli import main
        common = ["--state-dir", {str(dev_state)!r}, "--registry-uri", {mlflow_server!r},
                  "--model-name", {MODEL!r}]
        for step in (["prepare", "--input", {str(FIXTURES / "diabetes_train.csv")!r}], ["train"],
                     ["validate"], ["promote", "--reason", "from dev"]):
            code = main(step + common)
            if code:
                sys.exit(code)
    """, tmp_path)
    assert dev.returncode == 0, dev.stderr[-3000:]

    # Prod trusts the public key of dev's training identity, configured apart from the version (on
    # Databricks the bundle variable model_signing_public_keys): with none, it loads nothing.
    prod_script = f"""
        import sys
        from spark_mlops.cli import main
        from spark_mlops.config import build_settings
        from spark_mlops.spark import get_spark
        from spark_mlops.tables import tables_for
        args = ["--state-dir", {str(prod_state)!r}, "--registry-uri", {mlflow_server!r}, "--model-name", {MODEL!r}]
        code = main(["score", "--input", {str(FIXTURES / "scoring_batch.csv")!r}, "--batch-id", "shared"] + args)
        if code:
            sys.exit(code)
        settings = build_settings(state_dir={str(prod_state)!r})
        rows = tables_for(get_spark(settings), settings).read(settings.table_name("predictions")).collect()
        print("ROWS", len(rows), sorted({{r["model_version"] for r in rows}}), sorted({{r["model_name"] for r in rows}}))
    """
    untrusting = run_process(prod_script, tmp_path)
    assert untrusting.returncode == 9 and "no public key to verify model signatures" in untrusting.stderr
    monkeypatch.setenv("SPARK_MLOPS_TRUSTED_KEYS", (dev_state / "signing" / "model-signing.pub").read_text())
    prod = run_process(prod_script, tmp_path)
    assert prod.returncode == 0, prod.stderr[-3000:]
    assert f"ROWS 200 ['1'] ['{MODEL}']" in prod.stdout

    server = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    version = server.get_model_version_by_alias(MODEL, "champion")
    assert str(version.version) == "1"
    tags = version.tags
    assert tags["validation_status"] == "passed" and tags["promotion_reason"] == "from dev"
    # The version lives on the server but points back to the training run in dev's own store.
    dev_tracking = f"sqlite:///{dev_state}/workspaces/dev/tracking.db"
    assert tags["training_tracking_uri"] == dev_tracking
    training_run = MlflowClient(tracking_uri=dev_tracking).get_run(tags["training_run_id"])
    assert training_run.data.tags["step"] == "train"
    copy = server.get_run(tags["registry_copy_run_id"])
    assert copy.data.tags["lineage.training_run_id"] == tags["training_run_id"]
