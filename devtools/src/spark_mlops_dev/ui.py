"""``spark-mlops ui``: the MLflow UI on this project's local tracking store and registry.

Runs ``mlflow server`` (MLflow's own CLI, mlflow/cli/__init__.py ``server``) on the same stores
as every other command (``config.build_settings``): ``--backend-store-uri`` for the tracking store,
``--registry-store-uri`` for the registry when it is a separate file, and new experiments'
artifacts under the state folder. Runs, their plots (served from the local artifact folder),
registered model versions and their aliases are then visible in a browser.

Local only, by default. The server has no authentication: whoever reaches it can read every run
and set any alias, @champion included. So it listens on a loopback address unless
``--allow-remote`` is given (then with a warning), and it does not proxy artifacts
(``--no-serve-artifacts``: no artifact upload or download through the server's
``mlflow-artifacts`` API; the UI still shows a run's plots, read from the local artifact folder).

Light on memory: one worker (``--workers 1``) and no background job runner
(``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``), about 0.5 GB instead of about 2.9 GB in 15
processes with the defaults. The server runs in its own process group, so that stopping it
(Ctrl-C / SIGINT, or SIGTERM to this process) also stops the uvicorn process it starts.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from spark_mlops import logs
from spark_mlops.config import Settings
from spark_mlops.errors import ConfigError, MlopsError
from spark_mlops.processes import alive

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000
START_TIMEOUT_SECONDS = 90.0
STOP_TIMEOUT_SECONDS = 10.0
LOCAL_SCHEMES = ("sqlite:", "file:", "/")


def check_host(host: str, *, allow_remote: bool) -> str | None:
    """None for a loopback address; for any other, a warning when ``allow_remote``, else ConfigError."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = False  # a host name other than localhost may resolve anywhere
    if loopback:
        return None
    if not allow_remote:
        raise ConfigError(
            f"--host {host}: the MLflow UI has no authentication (anyone who reaches it can read every run and "
            "move @champion); it listens on a loopback address (127.0.0.1, the default) unless you also pass "
            "--allow-remote"
        )
    return (f"warning: the MLflow UI listens on {host}, with no authentication: anyone who can reach it can read "
            "every run and set any alias, @champion included. Stop it (Ctrl-C) when you are done.")


def server_command(settings: Settings, *, host: str, port: int) -> list[str]:
    """The ``mlflow server`` command line for these settings."""
    for uri in (settings.tracking_uri, settings.registry_uri):
        if not uri.startswith(LOCAL_SCHEMES):
            raise ConfigError(
                f"spark-mlops ui serves local stores; {uri} is not one (open that server or workspace in a browser)"
            )
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", settings.tracking_uri,
        "--default-artifact-root", _artifact_root(settings).as_uri(),
        "--host", host, "--port", str(port),
        "--workers", "1",
    ]
    if settings.separate_registry:
        command += ["--registry-store-uri", settings.registry_uri]
    return [*command, "--no-serve-artifacts"]  # no artifact upload/download proxy; the UI reads local files


def _artifact_root(settings: Settings) -> Path:
    """The tracking store's own artifact folder (each local workspace has one: ``-t`` picks it)."""
    from urllib.parse import unquote, urlparse

    from spark_mlops.tracking import artifact_root

    return Path(unquote(urlparse(artifact_root(settings)).path))


def server_environment() -> dict[str, str]:
    env = dict(os.environ)
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # no job-runner processes (about 2 GB)
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):  # the server's own stores come from its flags
        env.pop(var, None)
    return env


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


class _Stop(Exception):
    """Raised in the main thread by the SIGTERM handler."""


def serve(settings: Settings, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          allow_remote: bool = False) -> int:
    """Start the server, print its URL, and block until SIGINT/SIGTERM or until the server exits."""
    warning = check_host(host, allow_remote=allow_remote)
    command = server_command(settings, host=host, port=port)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    _artifact_root(settings).mkdir(parents=True, exist_ok=True)
    log_path = settings.state_dir / "ui.log"
    verbose = logs.verbose()
    log = None if verbose else open(log_path, "w", encoding="utf-8")  # noqa: SIM115 - closed in finally
    url = f"http://{host}:{port}"

    def on_sigterm(signum, frame):
        raise _Stop

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    server = None
    try:
        server = subprocess.Popen(command, env=server_environment(), stdout=log, stderr=log,
                                  stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not _healthy(url):
            if server.poll() is not None:
                raise MlopsError(f"the MLflow server exited with {server.returncode} before it answered on {url}"
                                 f"{_tail(log_path) if log else ''}")
            if time.monotonic() > deadline:
                raise MlopsError(f"the MLflow server did not answer on {url} within {START_TIMEOUT_SECONDS:.0f} s"
                                 f"{_tail(log_path) if log else ''}")
            time.sleep(0.25)
        print(f"MLflow UI: {url}  (tracking {settings.tracking_uri}"
              + (f", registry {settings.registry_uri}" if settings.separate_registry else "")
              + f"; server log {log_path if log else 'above'}). Ctrl-C stops it.", flush=True)
        rc = server.wait()
        raise MlopsError(f"the MLflow server stopped by itself (exit {rc}){_tail(log_path) if log else ''}")
    except (KeyboardInterrupt, _Stop):
        print("\nui: stopping the MLflow server", file=sys.stderr, flush=True)
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        if server is not None:
            _stop(server)
        if log is not None:
            log.close()


def _stop(server: subprocess.Popen) -> None:
    """SIGTERM to the server's whole process group, then SIGKILL after a grace period."""
    if server.poll() is None or alive(server.pid, group=True):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while alive(server.pid, group=True) and time.monotonic() < deadline:
            time.sleep(0.1)
        if alive(server.pid, group=True):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(timeout=STOP_TIMEOUT_SECONDS)




def _tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "; last lines of the server log:\n" + "\n".join(text) if text else ""
