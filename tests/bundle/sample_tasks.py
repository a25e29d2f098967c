"""Entry points for the runner tests: tiny python_wheel_task targets, no Spark.

Each reads ``--key=value`` pairs from ``sys.argv[1:]`` like a real wheel entry point. Most
append one JSON line to the file given as ``--log``: the task name and the argv it was called
with, so tests can check order and resolved parameters.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def _args() -> dict[str, str]:
    out: dict[str, str] = {}
    for arg in sys.argv[1:]:
        key, _, value = arg.removeprefix("--").partition("=")
        out[key] = value
    return out


def _log(name: str) -> dict[str, str]:
    args = _args()
    if args.get("log"):
        with Path(args["log"]).open("a", encoding="utf-8") as fh:
            entry = {"task": args.get("name", name), "argv": sys.argv, "pid": os.getpid(), "time": time.time(),
                     "state_dir": os.environ.get("SPARK_MLOPS_STATE_DIR")}
            fh.write(json.dumps(entry) + "\n")
    return args


def ok() -> None:
    _log("ok")


def fail_once() -> None:
    """Fails on its first call, succeeds afterwards (the count lives in ``--counter``)."""
    args = _log("fail_once")
    counter = Path(args["counter"])
    calls = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(calls))
    if calls == 1:
        raise RuntimeError("first attempt fails")


def always_fail() -> None:
    _log("always_fail")
    raise RuntimeError("this task always fails")


def exit_with() -> None:
    """``sys.exit(--code)``, like the CLI wrapper entry points do."""
    args = _log("exit_with")
    sys.exit(int(args.get("code", "0")))


def fail_with() -> None:
    """Raises a RuntimeError whose message is ``--message`` (e.g. a URI with a password in it)."""
    args = _log("fail_with")
    raise RuntimeError(args.get("message", ""))


def sleep() -> None:
    """Sleeps ``--seconds`` (a task that outlasts a small timeout_seconds), then succeeds; logs
    ``<name>.done`` when it ends and ``<name>.finally`` from its ``finally`` block."""
    args = _log("sleep")
    try:
        time.sleep(float(args.get("seconds", "0")))
        _log_event(args, "done")
    finally:
        _log_event(args, "finally")


def stubborn() -> None:
    """Ignores SIGTERM (a task that will not stop when asked), then sleeps ``--seconds``."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    args = _log("stubborn")
    time.sleep(float(args.get("seconds", "0")))
    _log_event(args, "done")


def _log_event(args: dict[str, str], event: str) -> None:
    if args.get("log"):
        with Path(args["log"]).open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"task": f"{args.get('name', 'sleep')}.{event}", "time": time.time()}) + "\n")


_REMEMBERED: list[str] = []


def remember() -> None:
    """Leaves state in its process: a module global and an environment variable."""
    _log("remember")
    _REMEMBERED.append("set")
    os.environ["SAMPLE_TASKS_REMEMBERED"] = "1"


def recall() -> None:
    """Logs what this process still holds from earlier tasks, and the environment it was given."""
    args = _args()
    with Path(args["log"]).open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"task": args.get("name", "recall"), "pid": os.getpid(), "global": list(_REMEMBERED),
                             "env": {k: os.environ.get(k) for k in ("SAMPLE_TASKS_REMEMBERED", "MLFLOW_TRACKING_URI",
                                                                   "SPARK_MLOPS_STATE_DIR", "SPARK_MLOPS_TARGET")}})
                 + "\n")
