"""A one-line progress display for long steps, on a terminal only.

``with progress("score"):`` shows, on stderr and only when stderr is a terminal, a line such as

    [score] 12.4 s | stage 7 (parquet at ...): 3/8 tasks | 1,250,000 rows read

refreshed by a daemon thread that polls Spark's status tracker (``SparkContext.statusTracker()``,
the public API behind the Spark UI's progress bars) and, for rows read, the input-record counts
of the stages it has seen. Nothing at all is written when stderr is not a terminal (CI logs, pipes,
files), and nothing during the first second, so quick commands stay silent. Nested uses (the
local runner runs each task inside ``spark-mlops run``) show the innermost step's name.

While the line is shown, writes to ``sys.stdout``/``sys.stderr`` clear it first, so the
step's own lines are not printed after it on the same line.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TextIO

CLEAR = "\r\x1b[K"
DELAY_SECONDS = 1.0
INTERVAL_SECONDS = 0.5

_labels: list[str] = []  # the steps currently inside progress(), outermost first
_lock = threading.Lock()


@dataclass(frozen=True)
class StageSnapshot:
    stage_id: int
    name: str
    tasks_done: int
    tasks_total: int


def render(step: str, elapsed: float, stage: StageSnapshot | None, rows_read: int | None, width: int = 100) -> str:
    """The progress line (without the leading clear), at most ``width`` characters."""
    parts = [f"[{step}] {elapsed:.1f} s"]
    if stage is not None:
        name = stage.name.split("\n", 1)[0]
        if len(name) > 40:
            name = name[:39] + "…"
        parts.append(f"stage {stage.stage_id} ({name}): {stage.tasks_done}/{stage.tasks_total} tasks")
    if rows_read:
        parts.append(f"{rows_read:,} rows read")
    line = " | ".join(parts)
    return line if len(line) <= width else line[: width - 1] + "…"


class _SparkPoller:
    """What Spark is doing now; every call is guarded: a display must never fail a step."""

    def __init__(self) -> None:
        self._rows_by_stage: dict[int, int] = {}

    @staticmethod
    def _context():
        from pyspark import SparkContext

        return SparkContext._active_spark_context  # None until a session has started

    def poll(self) -> tuple[StageSnapshot | None, int | None]:
        sc = self._context()
        if sc is None:
            return None, None
        try:
            tracker = sc.statusTracker()
            stages = [s for s in (tracker.getStageInfo(i) for i in tracker.getActiveStageIds()) if s is not None]
        except Exception:  # noqa: BLE001 - the context may be stopping
            return None, None
        current = None
        if stages:
            s = max(stages, key=lambda x: x.stageId)
            current = StageSnapshot(s.stageId, s.name, s.numCompletedTasks, s.numTasks)
        for s in stages:
            self._rows_by_stage.setdefault(s.stageId, 0)
        return current, self._rows_read(sc)

    def _rows_read(self, sc) -> int | None:
        # The status store is what the Spark UI reads (AppStatusStore.lastStageAttempt); Scala's
        # private[spark] is public to the JVM. Counts grow as tasks finish.
        try:
            store = sc._jsc.sc().statusStore()
            for stage_id in self._rows_by_stage:
                self._rows_by_stage[stage_id] = int(store.lastStageAttempt(stage_id).inputRecords())
        except Exception:  # noqa: BLE001
            return None
        return sum(self._rows_by_stage.values())


class _ClearingStream:
    """A stdout/stderr stand-in that clears the progress line before anything else is written."""

    def __init__(self, inner: TextIO, display: _Display):
        self._inner, self._display = inner, display

    def write(self, text: str) -> int:
        self._display.clear()
        return self._inner.write(text)

    def __getattr__(self, name: str):
        return getattr(self._inner, name)


class _Display(threading.Thread):
    def __init__(self, stream: TextIO, interval: float, delay: float, poller: _SparkPoller):
        super().__init__(name="spark-mlops-progress", daemon=True)
        self.stream, self.interval, self.delay, self.poller = stream, interval, delay, poller
        self.started = time.monotonic()
        self.shown = False
        self._stop_event = threading.Event()

    def run(self) -> None:
        if self._stop_event.wait(self.delay):
            return
        while not self._stop_event.is_set():
            stage, rows = self.poller.poll()
            with _lock:
                if self._stop_event.is_set():
                    break
                label = _labels[-1] if _labels else "spark-mlops"
                self.stream.write(CLEAR + render(label, time.monotonic() - self.started, stage, rows))
                self.stream.flush()
                self.shown = True
            self._stop_event.wait(self.interval)

    def clear(self) -> None:
        with _lock:
            if self.shown:
                self.stream.write(CLEAR)
                self.stream.flush()
                self.shown = False

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)
        self.clear()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or not a real stream
        return False


@contextmanager
def progress(step: str, *, stream: TextIO | None = None, interval: float = INTERVAL_SECONDS,
             delay: float = DELAY_SECONDS) -> Iterator[None]:
    """Show progress for ``step`` while the block runs (see the module docstring)."""
    nested = bool(_labels)
    _labels.append(step)
    try:
        target = sys.stderr if stream is None else stream
        if nested or not _is_terminal(target):
            yield
            return
        display = _Display(target, interval, delay, _SparkPoller())
        saved = sys.stdout, sys.stderr
        # The display writes to the real stream; everything else goes through the proxies.
        sys.stdout, sys.stderr = _ClearingStream(saved[0], display), _ClearingStream(saved[1], display)
        display.start()
        try:
            yield
        finally:
            display.stop()
            sys.stdout, sys.stderr = saved
    finally:
        _labels.pop()
