"""A tracking or registry server that does not answer fails the command within a minute (issue 27):
a short connect timeout and one deadline per request, over all its attempts and waits.

Real sockets on loopback only: a server that accepts and never answers (the kernel completes the
handshake; nothing reads the request), and one whose accept queue is full, so that the kernel
drops new connection attempts as a firewall would. No timed asserts: the error line names the
bounds in effect, and urllib3's own log counts the attempts the deadline allowed. Every real wait
is a few seconds, set by the test's own short bounds.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time

import pytest

from spark_mlops import cli, remote
from spark_mlops import defaults as D
from spark_mlops.constants import EXIT_REGISTRY
from spark_mlops.errors import ConfigError

SECRET = "S3cretPw"


@pytest.fixture
def short_bounds(monkeypatch):
    """A read timeout of 2 s, a connect timeout of 1 s, 3 s per request; retries without waits."""
    bounds = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "4", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
              "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "2",
              "SPARK_MLOPS_HTTP_CONNECT_TIMEOUT": "1", "SPARK_MLOPS_HTTP_DEADLINE": "3"}
    for name, value in bounds.items():
        monkeypatch.setenv(name, value)
    return bounds


@pytest.fixture
def silent_server():
    """A port whose listener accepts connections (in the kernel) and never reads or answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


@pytest.fixture
def dropping_server():
    """A port whose accept queue is full: the kernel drops further SYNs, as a firewall does."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.2)  # let the kernel finish the fillers' handshakes
    with socket.socket() as probe:
        probe.settimeout(1.0)
        with pytest.raises(TimeoutError):  # the precondition: a connect here gets no answer
            probe.connect(("127.0.0.1", port))
    yield port
    for s in [*fillers, server]:
        s.close()


def test_the_default_bounds_end_a_request_within_a_minute(monkeypatch):
    monkeypatch.delenv(remote.CONNECT_TIMEOUT_ENV, raising=False)
    monkeypatch.delenv(remote.DEADLINE_ENV, raising=False)
    assert remote.limits() == {"connect_s": D.HTTP_CONNECT_TIMEOUT_S, "deadline_s": D.HTTP_DEADLINE_S}
    assert D.HTTP_DEADLINE_S < 60  # no attempt and no wait outlasts it
    assert D.HTTP_CONNECT_TIMEOUT_S < D.HTTP_TIMEOUT_S <= D.HTTP_DEADLINE_S


@pytest.mark.parametrize("value", ["soon", "0", "-5"])
def test_a_bad_bound_is_a_configuration_error(value, monkeypatch):
    monkeypatch.setenv(remote.DEADLINE_ENV, value)
    with pytest.raises(ConfigError, match=f"{remote.DEADLINE_ENV}='{value}': expected a number of seconds"):
        remote.limits()


def test_a_server_that_accepts_and_never_answers_fails_at_the_deadline(short_bounds, silent_server, tmp_path,
                                                                       capsys, caplog):
    uri = f"http://alice:{SECRET}@127.0.0.1:{silent_server}"
    with caplog.at_level(logging.WARNING, logger="urllib3"):
        code = cli.main(["status", "--state-dir", str(tmp_path), "--tracking-uri", uri, "--registry-uri", uri])
    out, err = capsys.readouterr()
    assert code == EXIT_REGISTRY
    assert SECRET not in out + err + caplog.text
    (line,) = err.strip().splitlines()
    assert line == (f"spark-mlops status: error: cannot reach the MLflow server http://***@127.0.0.1:{silent_server}: "
                    "timed out after at most 4 retries (MLFLOW_HTTP_REQUEST_MAX_RETRIES; connect timeout 1 s, "
                    "SPARK_MLOPS_HTTP_CONNECT_TIMEOUT; timeout 2 s per attempt, MLFLOW_HTTP_REQUEST_TIMEOUT; "
                    "3 s in all, SPARK_MLOPS_HTTP_DEADLINE)")
    # Two attempts fit in the deadline (2 s, then what is left of 3 s), not the five of the retry count.
    retries = [r.getMessage() for r in caplog.records if "Retrying" in r.getMessage()]
    assert len(retries) == 1 and "Read timed out. (read timeout=2" in retries[0]


def test_a_server_that_drops_connections_meets_the_connect_timeout(short_bounds, dropping_server, tmp_path):
    """In a process of its own, so that a missing bound fails the test in a minute instead of hanging
    it: MLflow's read timeout (30 s here) would otherwise be every attempt's connect timeout too."""
    env = {**os.environ, **short_bounds, "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
    uri = f"http://alice:{SECRET}@127.0.0.1:{dropping_server}"
    script = ("import logging, sys\nlogging.basicConfig(level=logging.WARNING)\nfrom spark_mlops import cli\n"
              "sys.exit(cli.main(sys.argv[1:]))\n")
    done = subprocess.run([sys.executable, "-c", script, "status", "--state-dir", str(tmp_path),
                           "--tracking-uri", uri, "--registry-uri", uri],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == EXIT_REGISTRY, done.stderr
    assert SECRET not in done.stdout + done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"spark-mlops status: error: cannot reach the MLflow server http://***@127.0.0.1:"
                           f"{dropping_server}: timed out after at most 4 retries"), last
    assert "connect timeout 1 s" in last and "timeout 30 s per attempt" in last and "3 s in all" in last
    # Each attempt gave up at the connect timeout, not at the 30 s read timeout.
    attempts = [line for line in done.stderr.splitlines() if "Retrying" in line]
    assert attempts and all("connect timeout=1" in a for a in attempts), attempts


def test_mlflow_sessions_carry_the_deadline_once_installed():
    """The two places of the pinned MLflow that the bounds rest on."""
    from mlflow.utils import request_utils, rest_utils

    remote.bound_requests()
    wrapped = rest_utils._get_http_response_with_retries
    assert wrapped.bounded_by_spark_mlops
    remote.bound_requests()  # once per process: the wrapper is not wrapped again
    assert rest_utils._get_http_response_with_retries is wrapped
    session = request_utils._get_request_session(1, 0, 0.0, (503,), True, True)
    assert type(session.get_adapter("http://127.0.0.1").max_retries).__name__ == "DeadlineRetry"
