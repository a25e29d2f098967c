"""Tracking and registry servers over HTTP: bounded retries, and one line when one cannot be reached.

MLflow retries a failed HTTP request 7 times with exponential backoff and a 120 s timeout per
attempt (``mlflow/environment_variables.py``: ``MLFLOW_HTTP_REQUEST_MAX_RETRIES``,
``..._BACKOFF_FACTOR``, ``..._BACKOFF_JITTER``, ``..._TIMEOUT``), which is minutes per request
against a server that refuses connections, and then ends in a traceback. :func:`bound_retries`
sets shorter defaults (:mod:`spark_mlops.defaults`, under a minute in all against a refused
connection) for every variable the user has not set; a transient error, on Databricks too, still
gets retried. :func:`unreachable` turns the exception MLflow raises when the retries are spent into
a :class:`RegistryError` naming the server (credentials redacted): exit 4, one line.

Imports neither MLflow nor requests: the CLI calls it before anything else.
"""

from __future__ import annotations

import os
import re

from spark_mlops import defaults as D
from spark_mlops.config import redact
from spark_mlops.errors import RegistryError

RETRY_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": D.HTTP_MAX_RETRIES,
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": D.HTTP_BACKOFF_FACTOR,
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": D.HTTP_BACKOFF_JITTER,
    "MLFLOW_HTTP_REQUEST_TIMEOUT": D.HTTP_TIMEOUT_S,
}
# Exceptions of requests / urllib3 that mean "no answer from the server" (not an HTTP error status).
_CONNECTION_ERRORS = {"ConnectionError", "ConnectTimeout", "NewConnectionError", "MaxRetryError",
                      "ConnectTimeoutError", "NameResolutionError", "ProtocolError", "ReadTimeout"}
# The server of a redacted URL: scheme, ***@ when it had user-info, host and port.
_SERVER = re.compile(r"\b(https?://(?:\*\*\*@)?[^\s/?#'\"<>@]+)")


def bound_retries() -> dict[str, str]:
    """Set MLflow's HTTP retry variables the user left unset; return the values in effect."""
    for name, value in RETRY_ENV.items():
        os.environ.setdefault(name, str(value))
    return {name: os.environ[name] for name in RETRY_ENV}


def worst_case_wait_s(max_retries: int, backoff_factor: float, backoff_jitter: float) -> float:
    """The longest total backoff of one request that fails every attempt at once (a refused
    connection), by urllib3's rule: no wait after the first failure, then factor * 2**(n-1) plus
    up to ``backoff_jitter`` (``urllib3/util/retry.py`` ``Retry.get_backoff_time``, capped at 120 s)."""
    return sum(min(120.0, backoff_factor * 2 ** (n - 1) + backoff_jitter) for n in range(2, max_retries + 1))


def _chain(exc: BaseException):
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def unreachable(exc: BaseException) -> RegistryError | None:
    """A one-line :class:`RegistryError` when ``exc`` (or what caused it) is a failure to reach an
    HTTP server, else None."""
    chain = list(_chain(exc))
    network = [e for e in chain if type(e).__name__ in _CONNECTION_ERRORS
               and type(e).__module__.split(".")[0] in ("requests", "urllib3")]
    if not network:
        return None
    server = None
    for e in chain:
        request = getattr(e, "request", None)
        url = getattr(request, "url", None) if request is not None else None
        # Redacted before the server is cut out: a password may hold any character a host cannot.
        m = _SERVER.search(redact(str(url or ""))) or _SERVER.search(redact(str(e)))
        if m:
            server = m.group(1)
            break
    text = " ".join(str(e) for e in network)
    reason = ("connection refused" if "refused" in text.lower()
              else "timed out" if "timed out" in text.lower() or "timeout" in type(network[0]).__name__.lower()
              else "name not resolved" if "resolve" in text.lower() or "Name or service" in text
              else "no answer")
    effective = {name: os.environ.get(name, "?") for name in RETRY_ENV}
    return RegistryError(redact(
        f"cannot reach the MLflow server {server or '(unknown)'}: {reason} after "
        f"{effective['MLFLOW_HTTP_REQUEST_MAX_RETRIES']} retries (MLFLOW_HTTP_REQUEST_MAX_RETRIES; "
        f"timeout {effective['MLFLOW_HTTP_REQUEST_TIMEOUT']} s per attempt, MLFLOW_HTTP_REQUEST_TIMEOUT)"))
