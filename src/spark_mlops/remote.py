"""Tracking and registry servers over HTTP: bounded waits, and one line when one cannot be reached.

MLflow retries a failed HTTP request 7 times with exponential backoff and a 120 s timeout per
attempt (``mlflow/environment_variables.py``: ``MLFLOW_HTTP_REQUEST_MAX_RETRIES``,
``..._BACKOFF_FACTOR``, ``..._BACKOFF_JITTER``, ``..._TIMEOUT``), which is minutes per request
against a server that refuses connections, and then ends in a traceback. :func:`bound_retries`
sets shorter defaults (:mod:`spark_mlops.defaults`) for every variable the user has not set; a
transient error, on Databricks too, still gets retried.

A server that does not answer at all (a firewall that drops packets, a process that accepts and
hangs) costs each attempt its whole timeout: 5 attempts of 30 s plus the waits, 184 s. MLflow has
no setting for either bound, so :func:`bound_requests` adds two to MLflow's HTTP client, once per
process: a connect timeout (``SPARK_MLOPS_HTTP_CONNECT_TIMEOUT``, 5 s; the read timeout stays
``MLFLOW_HTTP_REQUEST_TIMEOUT``), and one deadline per request over all its attempts and waits
(``SPARK_MLOPS_HTTP_DEADLINE``, 50 s): no retry starts, and no wait lasts, past it, and each
attempt's connect and read timeouts are cut to what is left of it (urllib3's ``Timeout.total``).
A request that makes progress is not cut: the read timeout bounds a silence, not a transfer. It
wraps ``mlflow.utils.rest_utils._get_http_response_with_retries`` (every MLflow REST call over
``requests``) and gives MLflow's sessions a ``Retry`` that knows the deadline; both are
checked against the pinned MLflow (tests/test_unreachable_server.py).

:func:`unreachable` turns the exception MLflow raises when the retries are spent into a
:class:`RegistryError` naming the server (credentials redacted) and the bounds in effect: exit 4,
one line.

Imports neither MLflow nor requests at import time: the CLI calls :func:`bound_retries` before
anything else; :func:`bound_requests` runs where MLflow is first used (tracking, registry).
"""

from __future__ import annotations

import contextvars
import os
import re
import time

from spark_mlops import defaults as D
from spark_mlops.config import redact
from spark_mlops.errors import ConfigError, RegistryError

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
# Ours, where MLflow has no setting (defaults: D.HTTP_CONNECT_TIMEOUT_S, D.HTTP_DEADLINE_S).
CONNECT_TIMEOUT_ENV = "SPARK_MLOPS_HTTP_CONNECT_TIMEOUT"
DEADLINE_ENV = "SPARK_MLOPS_HTTP_DEADLINE"


def bound_retries() -> dict[str, str]:
    """Set MLflow's HTTP retry variables the user left unset; return the values in effect."""
    for name, value in RETRY_ENV.items():
        os.environ.setdefault(name, str(value))
    return {name: os.environ[name] for name in RETRY_ENV}


def limits() -> dict[str, float]:
    """The connect timeout and the per-request deadline in effect (seconds)."""
    def seconds(name: str, default: float) -> float:
        text = os.environ.get(name, "").strip()
        try:
            value = float(text) if text else float(default)
        except ValueError as exc:
            raise ConfigError(f"{name}={text!r}: expected a number of seconds") from exc
        if not value > 0:
            raise ConfigError(f"{name}={text!r}: expected a number of seconds above 0")
        return value
    return {"connect_s": seconds(CONNECT_TIMEOUT_ENV, D.HTTP_CONNECT_TIMEOUT_S),
            "deadline_s": seconds(DEADLINE_ENV, D.HTTP_DEADLINE_S)}


# The deadline of the request this thread is making (monotonic seconds), for the Retry below.
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("spark_mlops_http_deadline", default=None)


def bound_requests() -> dict[str, float]:
    """:func:`bound_retries`, and the connect timeout and per-request deadline in MLflow's HTTP
    client (installed once per process); the bounds in effect."""
    from mlflow.utils import request_utils, rest_utils
    from urllib3.util.retry import Retry
    from urllib3.util.timeout import Timeout

    bound_retries()
    in_effect = limits()
    if getattr(rest_utils._get_http_response_with_retries, "bounded_by_spark_mlops", False):
        return in_effect

    class DeadlineTimeout(Timeout):
        """urllib3 clones the request's timeout for each attempt (``Timeout.clone``): ``total``
        read then is what is left of the deadline, so no attempt outlasts it."""

        def __init__(self, connect: float, read: float, deadline: float):
            self.deadline = deadline
            super().__init__(connect=connect, read=read)

        @property
        def total(self) -> float:
            return max(0.001, self.deadline - time.monotonic())

        @total.setter
        def total(self, _value) -> None:  # Timeout.__init__ sets it; the deadline decides
            pass

    class DeadlineRetry(Retry):
        """MLflow's retry policy, except that no retry starts or waits past the request's deadline."""

        def is_exhausted(self) -> bool:
            if super().is_exhausted():
                return True
            deadline = _DEADLINE.get()
            return deadline is not None and time.monotonic() + self.get_backoff_time() >= deadline

        def get_retry_after(self, response):
            wait, deadline = super().get_retry_after(response), _DEADLINE.get()
            return wait if wait is None or deadline is None else min(wait, max(0.0, deadline - time.monotonic()))

    original = rest_utils._get_http_response_with_retries

    def bounded(method, url, *args, **kwargs):
        bounds = limits()
        deadline = time.monotonic() + bounds["deadline_s"]
        read = kwargs.get("timeout")
        if isinstance(read, int | float) and not isinstance(read, bool):  # MLFLOW_HTTP_REQUEST_TIMEOUT
            kwargs["timeout"] = DeadlineTimeout(connect=min(bounds["connect_s"], read), read=read, deadline=deadline)
        token = _DEADLINE.set(deadline)
        try:
            return original(method, url, *args, **kwargs)
        finally:
            _DEADLINE.reset(token)

    bounded.bounded_by_spark_mlops = True
    request_utils.Retry = DeadlineRetry  # the class MLflow's cached sessions build their policy from
    request_utils._cached_get_request_session.cache_clear()  # no session made before keeps the old one
    rest_utils._get_http_response_with_retries = bounded
    return in_effect


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
    try:
        bounds = {k: f"{v:g}" for k, v in limits().items()}
    except ConfigError:
        bounds = {"connect_s": "?", "deadline_s": "?"}
    return RegistryError(redact(
        f"cannot reach the MLflow server {server or '(unknown)'}: {reason} after at most "
        f"{effective['MLFLOW_HTTP_REQUEST_MAX_RETRIES']} retries (MLFLOW_HTTP_REQUEST_MAX_RETRIES; "
        f"connect timeout {bounds['connect_s']} s, {CONNECT_TIMEOUT_ENV}; "
        f"timeout {effective['MLFLOW_HTTP_REQUEST_TIMEOUT']} s per attempt, MLFLOW_HTTP_REQUEST_TIMEOUT; "
        f"{bounds['deadline_s']} s in all, {DEADLINE_ENV})"))
