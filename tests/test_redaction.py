"""No credential from a URI reaches any output (issue 22): every form of secret, through every path
a text takes to the user: the CLI's error line, its unexpected-error line and traceback, the local
runner's progress and task errors, MLflow params and run tags, and registry tags.

Real components only: a closed localhost port for the unreachable server, a sqlite MLflow store,
the local runner on a tiny bundle.
"""

from __future__ import annotations

import io
import logging
import socket
from pathlib import Path

import mlflow
import pytest
import yaml

from spark_mlops import cli, registry, remote, tracking
from spark_mlops import defaults as D
from spark_mlops.config import build_settings, redact
from spark_mlops.constants import EXIT_REGISTRY, EXIT_UNEXPECTED

SECRET = "S3cretPw"  # every form below hides this value


def closed_port() -> int:
    """A localhost port nothing listens on (bound, then released): connections are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def forms(host: str) -> dict[str, str]:
    """One URI per way a credential rides in a URI, each carrying SECRET."""
    return {
        "user:password": f"http://alice:{SECRET}@{host}",
        "password with @": f"http://alice:p@{SECRET}@{host}",
        # SQLAlchemy takes any character but @ in a password; each of these ended the old pattern.
        "password with /": f"http://alice:p/{SECRET}@{host}",
        "password with quotes": f"http://alice:p'{SECRET}\"@{host}",
        "password with <>": f"http://alice:<{SECRET}>@{host}",
        "password with whitespace": f"http://alice:p {SECRET}\tx@{host}",
        "api_key": f"http://{host}/?api_key={SECRET}",
        "client_secret": f"http://{host}/?tenant=t&client_secret={SECRET}",
        "private_token": f"http://{host}/?private_token={SECRET}&page=1",
        "X-Amz-Signature": f"http://{host}/o?X-Amz-Date=1&X-Amz-Credential=AKIA{SECRET}&X-Amz-Signature={SECRET}",
        "fragment access_token": f"http://{host}/cb#access_token={SECRET}&state=1",
        "credential": f"http://{host}/?credential={SECRET}",
        "sas sig": f"http://{host}/c/b?sv=2024&sig={SECRET}%3D",
    }


FORMS = list(forms("h"))
# requests reads the user-info of these as urllib3 does (up to the last @ before the host); with a
# / in the password it reads a host "alice" and a port "p...": an invalid URL, tested on its own.
HTTP_FORMS = [f for f in FORMS if f != "password with /"]


# ---------------------------------------------------------------- redact itself


@pytest.mark.parametrize("form", FORMS)
def test_redact_hides_each_form(form: str):
    uri = forms("example.com:5000")[form]
    out = redact(f"failed to reach {uri} (after 3 tries)")
    assert SECRET not in out
    assert out.startswith("failed to reach http://") and out.endswith("(after 3 tries)")
    assert "example.com:5000" in out  # the server is still named


@pytest.mark.parametrize("text", [
    "sqlite:////tmp/state/tracking.db",
    "file:///data/a@b/c.csv",
    "abfss://raw@account.dfs.core.windows.net/scoring/latest.csv",  # the container, not a credential
    "task_key=validate; run_if=ALL_FAILED",
    "models:/staging.spark_mlops.diabetes_classifier@champion",
])
def test_redact_leaves_what_is_no_credential(text: str):
    assert redact(text) == text


def test_redact_hides_an_authorization_header():
    assert redact("headers {'Authorization': 'Bearer dapi0123456789abcdef'}") == "headers {'Authorization': 'Bearer ***'}"


# ---------------------------------------------------------------- the CLI: a server that cannot be reached


@pytest.fixture
def fast_retries(monkeypatch):
    """The default retry count, without the waits between retries (the count is what is asserted)."""
    for name in remote.RETRY_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "0")


@pytest.mark.parametrize("form", HTTP_FORMS)
def test_unreachable_registry_is_one_redacted_line_and_exit_4(form, fast_retries, tmp_path, capsys, caplog):
    port = closed_port()
    uri = forms(f"127.0.0.1:{port}")[form]
    with caplog.at_level(logging.WARNING, logger="urllib3"):
        code = cli.main(["status", "--state-dir", str(tmp_path), "--tracking-uri", uri, "--registry-uri", uri])
    out, err = capsys.readouterr()
    assert code == EXIT_REGISTRY
    assert SECRET not in out + err + caplog.text
    (line,) = err.strip().splitlines()
    assert line.startswith("spark-mlops status: error: cannot reach the MLflow server http://")
    assert f"127.0.0.1:{port}" in line and "connection refused after at most 4 retries" in line
    # Bounded: the default number of retries, each logged by urllib3, then no more.
    assert sum("Retrying" in r.getMessage() for r in caplog.records) == D.HTTP_MAX_RETRIES


def test_a_password_with_a_slash_is_redacted_from_the_invalid_url_line(fast_retries, tmp_path, capsys, caplog):
    port = closed_port()
    uri = forms(f"127.0.0.1:{port}")["password with /"]
    with caplog.at_level(logging.WARNING, logger="urllib3"):
        code = cli.main(["status", "--state-dir", str(tmp_path), "--tracking-uri", uri, "--registry-uri", uri])
    out, err = capsys.readouterr()
    assert code == EXIT_REGISTRY
    assert SECRET not in out + err + caplog.text
    (line,) = err.strip().splitlines()
    assert line.startswith("spark-mlops status: error: listing versions of ")
    assert f"in http://***@127.0.0.1:{port} failed: Invalid url: http://***@127.0.0.1:{port}/api/" in line


def test_retry_count_and_timeout_are_configurable(monkeypatch, tmp_path, capsys, caplog):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "7")
    uri = f"http://127.0.0.1:{closed_port()}"
    with caplog.at_level(logging.WARNING, logger="urllib3"):
        assert cli.main(["status", "--state-dir", str(tmp_path), "--registry-uri", uri, "--tracking-uri", uri]) == 4
    err = capsys.readouterr().err
    assert "connection refused after at most 1 retries" in err and "timeout 7 s per attempt" in err
    assert sum("Retrying" in r.getMessage() for r in caplog.records) == 1


def test_default_retries_wait_under_a_minute_in_all():
    """Against a refused connection every attempt fails at once, so the waits are the whole cost."""
    wait = remote.worst_case_wait_s(D.HTTP_MAX_RETRIES, D.HTTP_BACKOFF_FACTOR, D.HTTP_BACKOFF_JITTER)
    assert wait == 2 * 2 + 2 * 4 + 2 * 8 + 3 * D.HTTP_BACKOFF_JITTER == 31.0
    assert wait < 60
    # MLflow's own defaults, for comparison: 7 retries, factor 2, about 4 minutes.
    assert remote.worst_case_wait_s(7, 2, 1.0) > 240


def test_a_user_setting_wins_over_the_bounded_default(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "9")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    effective = remote.bound_retries()
    assert effective["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "9"
    assert effective["MLFLOW_HTTP_REQUEST_TIMEOUT"] == str(D.HTTP_TIMEOUT_S)


# ---------------------------------------------------------------- the CLI: anything else that goes wrong


@pytest.fixture
def failing_status(monkeypatch):
    """`status` raising an exception the project did not raise itself, quoting each form."""
    def boom(args):
        raise RuntimeError("could not open " + " and ".join(forms("db.example.com").values()))

    monkeypatch.setitem(cli.HANDLERS, "status", boom)


def test_unexpected_error_is_one_redacted_line_with_a_hint(failing_status, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SPARK_MLOPS_VERBOSE", raising=False)
    assert cli.main(["status", "--state-dir", str(tmp_path)]) == EXIT_UNEXPECTED
    out, err = capsys.readouterr()
    assert SECRET not in out + err
    (line,) = err.strip().splitlines()
    assert line.startswith("spark-mlops status: unexpected error: RuntimeError: could not open http://***@db.example.com")
    assert line.endswith("(run with -v for the traceback)")
    assert "Traceback" not in err


def test_verbose_shows_the_traceback_redacted(failing_status, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SPARK_MLOPS_VERBOSE", raising=False)
    assert cli.main(["-v", "status", "--state-dir", str(tmp_path)]) == EXIT_UNEXPECTED
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "in boom" in err
    assert SECRET not in err
    assert err.strip().splitlines()[-1].startswith("spark-mlops status: unexpected error: RuntimeError:")


def test_a_wheel_task_always_logs_the_redacted_traceback(failing_status, tmp_path, capsys, monkeypatch):
    """On Databricks the task's log is all there is: no -v to add afterwards."""
    monkeypatch.delenv("SPARK_MLOPS_VERBOSE", raising=False)
    assert cli.main(["status", "--state-dir", str(tmp_path), "--unused=1"], ignore_unknown=True) == EXIT_UNEXPECTED
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and SECRET not in err


# ---------------------------------------------------------------- the local runner

PYPROJECT = """\
[project]
name = "sample-tasks"
version = "0.0.1"

[project.entry-points."spark_mlops.tasks"]
fail_with = "tests.bundle.sample_tasks:fail_with"
"""


@pytest.mark.parametrize("form", FORMS)
def test_runner_output_and_task_errors_are_redacted(form, tmp_path: Path):
    from spark_mlops_dev.bundle import runner
    from spark_mlops_dev.bundle.databricks_cli import resolve_bundle

    uri = forms("db.example.com")[form]
    job = {"name": "leaky", "parameters": [{"name": "input", "default": uri}],
           "tasks": [{"task_key": "read", "python_wheel_task": {
               "package_name": "sample_tasks", "entry_point": "fail_with",
               "named_parameters": {"message": f"cannot read {uri}"}}, "environment_key": "default"}]}
    config = {"bundle": {"name": "sample"}, "targets": {"dev": {"default": True, "mode": "development"}},
              "resources": {"jobs": {"leaky": job}}}
    (tmp_path / "databricks.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    out = io.StringIO()
    result = runner.run_job(resolve_bundle(tmp_path, None), "leaky", out=out)
    assert result.tasks["read"].status is runner.TaskStatus.FAILED
    printed = out.getvalue()
    assert "parameters: input=http://" in printed and "<- read: FAILED" in printed
    assert SECRET not in printed + result.summary() + str(result.tasks["read"].error)
    assert result.tasks["read"].error.startswith("RuntimeError: cannot read http://")


# ---------------------------------------------------------------- MLflow params and tags


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One sqlite tracking store and registry for the params/tags tests (creating one costs seconds)."""
    settings = build_settings(state_dir=str(tmp_path_factory.mktemp("redaction") / "state"))
    experiment_id = tracking.configure(settings)
    client = mlflow.MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)
    client.create_registered_model(settings.model_name)
    return settings, experiment_id, client


@pytest.mark.parametrize("form", FORMS)
def test_params_run_tags_and_registry_tags_are_redacted(form, store):
    settings, experiment_id, client = store
    uri = forms("db.example.com")[form]
    tracking.configure(settings)
    with mlflow.start_run(experiment_id=experiment_id, tags=tracking.safe({"source": uri})) as run:
        tracking.log_params({"input": uri, "rows": 3})
    data = client.get_run(run.info.run_id).data
    assert data.params["rows"] == "3"
    assert data.params["input"].startswith("http://") and SECRET not in data.params["input"]
    assert data.tags["source"].startswith("http://") and SECRET not in data.tags["source"]

    version = client.create_model_version(settings.model_name, source=f"{run.info.artifact_uri}/model",
                                          run_id=run.info.run_id)
    registry.set_tags(settings, version.version, {"reason": f"rolled back: bad input {uri}"})
    tag = client.get_model_version(settings.model_name, version.version).tags["reason"]
    assert tag.startswith("rolled back: bad input http://") and SECRET not in tag


def test_every_mlflow_param_and_run_tag_goes_through_the_redaction():
    """The call sites: params only through tracking.log_params, run tags only through
    tracking.safe, model version tags only through registry.set_tags / its lineage."""
    import re

    src = Path(__file__).resolve().parents[1] / "src" / "spark_mlops"
    for path in sorted(src.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if path.name != "tracking.py":
            assert not re.search(r"mlflow\.(log_param|log_params|set_tag|set_tags)\(", text), path
        for call in re.finditer(r"mlflow\.start_run\((.*?)\)(?: as \w+)?:", text, re.S):
            assert "tags=tracking.safe(" in call.group(1), f"{path}: {call.group(0)[:80]}"
        if path.name != "registry.py":
            assert "set_model_version_tag(" not in text, path


@pytest.mark.slow
def test_validate_against_a_refused_tracking_server_ends_with_the_bounded_defaults(tmp_path: Path):
    """The whole command in a fresh process with MLflow's variables unset: one redacted line, exit 4,
    after our bounded retries (whose worst-case wait test_default_retries_wait_under_a_minute_in_all
    checks), not MLflow's own defaults."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in remote.RETRY_ENV and not k.startswith("MLFLOW_")}
    uri = f"http://alice:{SECRET}@127.0.0.1:{closed_port()}"
    done = subprocess.run([sys.executable, "-m", "spark_mlops", "validate", "--state-dir", str(tmp_path / "state"),
                           "--tracking-uri", uri, "--registry-uri", uri],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == EXIT_REGISTRY, done.stderr
    assert SECRET not in done.stdout + done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("spark-mlops validate: error: cannot reach the MLflow server http://***@127.0.0.1:")
    assert f"after at most {D.HTTP_MAX_RETRIES} retries" in last and f"timeout {D.HTTP_TIMEOUT_S} s" in last, last
    assert "Traceback" not in done.stderr
