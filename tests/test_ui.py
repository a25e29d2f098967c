"""``spark-mlops ui``: a real MLflow server on the local stores, checked through its REST API."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from spark_mlops.config import build_settings
from spark_mlops.errors import ConfigError
from spark_mlops_dev import ui
from tests.conftest import REPO_ROOT, run_cli


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, route: str, **query: str) -> dict:
    with urllib.request.urlopen(f"{url}{route}?{urllib.parse.urlencode(query)}", timeout=10) as response:
        return json.load(response)


def test_the_server_command_uses_the_settings_stores(tmp_path):
    settings = build_settings(state_dir=str(tmp_path))
    command = ui.server_command(settings, host="127.0.0.1", port=5123)
    assert command[1:4] == ["-m", "mlflow", "server"]
    flags = dict(zip(command[4::2], command[5::2], strict=False))
    assert flags["--backend-store-uri"] == settings.tracking_uri
    assert flags["--registry-store-uri"] == settings.registry_uri != settings.tracking_uri
    assert flags["--workers"] == "1" and flags["--port"] == "5123"
    assert "--no-serve-artifacts" in command  # no artifact upload/download proxy
    assert ui.server_environment()["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    with pytest.raises(ConfigError, match="serves local stores"):
        ui.server_command(build_settings(state_dir=str(tmp_path), tracking_uri="http://mlflow.example:5000"),
                          host="127.0.0.1", port=1)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_hosts_need_no_flag(host):
    assert ui.check_host(host, allow_remote=False) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "10.0.0.5", "my-laptop.example.com"])
def test_other_hosts_are_refused_unless_asked_and_then_warned(host):
    with pytest.raises(ConfigError, match="--allow-remote"):
        ui.check_host(host, allow_remote=False)
    warning = ui.check_host(host, allow_remote=True)
    assert warning.startswith(f"warning: the MLflow UI listens on {host}, with no authentication")
    assert "@champion" in warning


def test_ui_on_all_interfaces_without_the_flag_exits_2_and_starts_nothing(tmp_path, capsys):
    port = _free_port()
    assert run_cli("ui", "--host", "0.0.0.0", "--port", str(port), "--state-dir", str(tmp_path / "state")) == 2
    err = capsys.readouterr().err
    assert "spark-mlops ui: error: --host 0.0.0.0: the MLflow UI has no authentication" in err
    assert not (tmp_path / "state" / "ui.log").exists()  # no server was started
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.slow
def test_ui_serves_the_run_plots_version_and_aliases_then_stops_on_ctrl_c(spark, fixture_copy, tmp_path):
    state = str(tmp_path / "state")
    data = fixture_copy("diabetes_train.csv")
    assert run_cli("prepare", "--input", data, "--state-dir", state) == 0
    assert run_cli("train", "--params", "numTrees=5,maxDepth=3", "--state-dir", state) == 0
    settings = build_settings(state_dir=state)

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(REPO_ROOT / p) for p in ("src", "devtools/src"))}
    proc = subprocess.Popen([sys.executable, "-m", "spark_mlops", "ui", "--state-dir", state, "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        first = proc.stdout.readline()  # printed once the server answers
        assert first.startswith(f"MLflow UI: {url}"), (first, proc.stderr.read() if proc.poll() is not None else "")

        experiment = _get(url, "/api/2.0/mlflow/experiments/get-by-name",
                          experiment_name=settings.experiment)["experiment"]
        request = urllib.request.Request(f"{url}/api/2.0/mlflow/runs/search", method="POST",
                                         data=json.dumps({"experiment_ids": [experiment["experiment_id"]]}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            runs = json.load(response)["runs"]
        assert len(runs) == 1
        run_id = runs[0]["info"]["run_id"]

        plots = _get(url, "/api/2.0/mlflow/artifacts/list", run_id=run_id, path="plots")["files"]
        assert {"plots/roc_curve.png", "plots/confusion_matrix.png"} <= {f["path"] for f in plots}
        with urllib.request.urlopen(f"{url}/get-artifact?path=plots/roc_curve.png&run_uuid={run_id}",
                                    timeout=10) as response:  # what the browser fetches to show the plot
            assert response.read(8) == b"\x89PNG\r\n\x1a\n"

        # The artifact proxy (upload/download through the server) is off: --no-serve-artifacts.
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{url}/api/2.0/mlflow-artifacts/artifacts?path=", timeout=10)
        assert refused.value.code == 503

        model = _get(url, "/api/2.0/mlflow/registered-models/get", name=settings.model_name)["registered_model"]
        assert {"alias": "challenger", "version": "1"} in model["aliases"]
        version = _get(url, "/api/2.0/mlflow/model-versions/get", name=settings.model_name,
                       version="1")["model_version"]
        assert version["run_id"] == run_id and "challenger" in version["aliases"]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            rc = proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert rc == 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the server's process group (uvicorn included) is gone
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                break
        time.sleep(0.2)
    else:
        pytest.fail(f"something still listens on port {port} after the ui stopped")
