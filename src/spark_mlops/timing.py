"""Opt-in timing spans for benchmarks: ``SPARK_MLOPS_TIMINGS=<file>`` turns them on.

``with span("train.fit"): ...`` records the span's name, start (seconds since this module was
imported) and duration in a module-level list; the list is written to the file as JSON when the
process exits. Without the environment variable a span costs one dictionary lookup.
"""

from __future__ import annotations

import atexit
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

ENV_VAR = "SPARK_MLOPS_TIMINGS"
_ORIGIN = time.perf_counter()
SPANS: list[dict[str, float | str]] = []


@contextmanager
def span(name: str) -> Iterator[None]:
    if not os.environ.get(ENV_VAR):
        yield
        return
    start = time.perf_counter()
    try:
        yield
    finally:
        SPANS.append({"name": name, "start": round(start - _ORIGIN, 4),
                      "seconds": round(time.perf_counter() - start, 4)})


def _write() -> None:
    path = os.environ.get(ENV_VAR)
    if path and SPANS:
        with open(path, "w", encoding="utf-8") as out:
            json.dump({"pid": os.getpid(), "spans": SPANS}, out, indent=1)


atexit.register(_write)
