"""What a command prints besides its own result lines: quiet by default, chatty on request.

Quiet (the default): Spark, MLflow and alembic log ERROR and above only, and lines about job
parameters a task does not use are not printed. (MLflow's warnings in a normal run are about its
own internals, e.g. "Union type hint ... inferred as AnyType" while a model loads.) Verbose
(``spark-mlops -v`` or ``SPARK_MLOPS_VERBOSE=1``): Spark logs WARN, MLflow and alembic INFO
(sqlite schema migrations, store set-up), as they would without this module.

Imports nothing heavy: :func:`configure` must run before ``mlflow`` is first imported.
``import mlflow`` configures its own loggers (``mlflow`` and ``alembic`` at INFO, each with a
stderr handler) unless ``MLFLOW_CONFIGURE_LOGGING`` is false (mlflow/__init__.py,
mlflow/utils/logging_utils.py ``_configure_mlflow_loggers``); the alembic INFO lines come from
the sqlite store's first opening (``mlflow/store/db/utils.py`` ``_initialize_tables``), which
happens in whichever MLflow call touches the store first, so setting levels later (e.g. in
``tracking.configure``) misses commands that open the store before it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import traceback
from collections.abc import Iterator

from spark_mlops.config import redact

ENV_VAR = "SPARK_MLOPS_VERBOSE"
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_LIBRARIES = ("mlflow", "alembic")
_HANDLER_NAME = "spark_mlops"


def verbose() -> bool:
    return os.environ.get(ENV_VAR, "").strip().lower() in ("1", "true", "yes", "on")


def set_verbose(on: bool) -> None:
    """Record the choice in the environment: tasks run in this process and subprocesses see it."""
    if on:
        os.environ[ENV_VAR] = "1"


def library_level() -> int:
    return logging.INFO if verbose() else logging.ERROR


def _redacting(factory):
    """A log record factory whose records carry their message (and traceback) already redacted:
    libraries log URIs too (urllib3's "Retrying ... /path?api_key=..."), and a filter on one
    logger would miss the others. Every handler, ours or not, then sees only redacted text."""

    def make(*args, **kwargs) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        try:
            record.msg, record.args = redact(record.getMessage()), None
        except Exception:  # noqa: BLE001 - a malformed record is logging's own business
            return record
        if record.exc_info and not record.exc_text:
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
        return record

    make.redacting = True  # type: ignore[attr-defined]
    return make


def configure() -> None:
    """Set the MLflow/alembic log levels for this process; idempotent, cheap, no heavy imports."""
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "redacting", False):
        logging.setLogRecordFactory(_redacting(factory))
    level = library_level()
    if level == logging.INFO:
        # MLflow's own set-up, which happens on import, logs exactly this; just undo any quieting.
        for name in _LIBRARIES:
            logging.getLogger(name).setLevel(level)
        return
    if "mlflow" not in sys.modules:
        # MLflow would otherwise install its own INFO handlers when imported; ours replace them.
        os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
    for name in _LIBRARIES:
        logger = logging.getLogger(name)
        logger.setLevel(level)
        if not logger.handlers:  # MLflow already configured it when imported earlier (tests, notebooks)
            handler = logging.StreamHandler(sys.stderr)
            handler.set_name(_HANDLER_NAME)
            handler.setFormatter(logging.Formatter(_FORMAT, "%Y/%m/%d %H:%M:%S"))
            logger.addHandler(handler)
            logger.propagate = False


def note(text: str) -> None:
    """A line only worth printing at -v (e.g. job parameters a task ignores)."""
    if verbose():
        print(text, file=sys.stderr)


@contextlib.contextmanager
def library_prints() -> Iterator[None]:
    """Hold back what a library call prints on stderr by itself, unless verbose.

    MLflow's registry calls print progress with ``eprint`` rather than logging it ("Registered
    model ... already exists. Creating a new version of this model...", "Copied version ...";
    mlflow/tracking/_model_registry/fluent.py, mlflow/store/model_registry/abstract_store.py), so
    log levels cannot quiet them; the step prints its own line about the same event.
    """
    if verbose():
        yield
        return
    with contextlib.redirect_stderr(io.StringIO()):
        yield
