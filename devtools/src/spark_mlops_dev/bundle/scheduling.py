"""Which task runs when: dependencies, ``run_if``, parallel tasks, the job's timeout.

"Databricks runs upstream tasks before running downstream tasks, running as many of them in
parallel as possible" (docs: jobs/run-if). :func:`execute` starts every task whose dependencies
have ended, up to ``max_parallel`` at once, among ready tasks in YAML order.

``run_if`` (docs: jobs/run-if): a dependency edge is *excluded* when the dependency was excluded or
when it is a condition whose result differs from the edge's ``outcome``. A task whose dependencies
are all excluded is EXCLUDED whatever its ``run_if``; otherwise ``run_if`` is evaluated over the
other edges (UPSTREAM_FAILED, TIMEDOUT, CANCELED count as failed). An unmet ALL_SUCCESS,
AT_LEAST_ONE_SUCCESS or NONE_FAILED makes the task UPSTREAM_FAILED; an unmet AT_LEAST_ONE_FAILED
or ALL_FAILED makes it EXCLUDED (skipped, counted as successful).

The job's ``timeout_seconds``: when it passes, ``on_deadline`` stops the running tasks, and of the
tasks not started only those whose ``run_if`` handles failure (ALL_DONE, AT_LEAST_ONE_FAILED,
ALL_FAILED) still run: "If a task run is canceled, the cancellation propagates to downstream
tasks, and tasks with a Run if condition that handles failure are run" (docs: jobs/run-if). The
others are CANCELED.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

HANDLES_FAILURE = ("ALL_DONE", "AT_LEAST_ONE_FAILED", "ALL_FAILED")
POLL_S = 0.2


@dataclass(frozen=True)
class Edge:
    upstream: str
    outcome: str | None  # "true" / "false" on a condition's edge


@dataclass(frozen=True)
class Ended:
    """What a dependency edge needs to know about an ended task."""

    status: str
    outcome: bool | None = None  # condition tasks


def decide(run_if: str, edges: Sequence[Edge], ended: Mapping[str, Ended]) -> tuple[bool, str, str]:
    """(run?, status when not run, why) from the dependencies' results and ``run_if``."""
    if not edges:
        return True, "", ""
    kinds: list[str] = []  # "success" | "failed" | "excluded"
    for e in edges:
        r = ended[e.upstream]
        if r.status == "EXCLUDED":
            kinds.append("excluded")
        elif r.status != "SUCCESS":
            kinds.append("failed")
        elif e.outcome is not None and (r.outcome is True) != (e.outcome == "true"):
            kinds.append("excluded")
        else:
            kinds.append("success")
    live = [k for k in kinds if k != "excluded"]
    if not live:
        return False, "EXCLUDED", "all dependencies were excluded"
    ok, failed = live.count("success"), live.count("failed")
    met = {
        "ALL_DONE": True,
        "ALL_SUCCESS": failed == 0,
        "AT_LEAST_ONE_SUCCESS": ok > 0,
        "NONE_FAILED": failed == 0,
        "AT_LEAST_ONE_FAILED": failed > 0,
        "ALL_FAILED": ok == 0,
    }[run_if]
    if met:
        return True, "", ""
    status = "EXCLUDED" if run_if in ("AT_LEAST_ONE_FAILED", "ALL_FAILED") else "UPSTREAM_FAILED"
    upstream = ", ".join(f"{e.upstream} {ended[e.upstream].status}" for e in edges)
    return False, status, f"run_if {run_if} not met: {upstream}"


def execute(order: Sequence[str], upstream: Mapping[str, Sequence[str]], *,
            start: Callable[[str, bool], Callable[[], None] | None],
            max_parallel: int, deadline: float | None,
            on_deadline: Callable[[], None], inline: bool = False,
            poll: Callable[[], None] | None = None) -> bool:
    """Run the graph. ``start(key, after_deadline)`` decides a ready task: it settles it (returns
    None) or returns the work that runs it, on a worker thread (``inline``: on this thread, one at
    a time, the deadline checked between tasks). Returns True when the deadline (a
    ``time.monotonic()`` value) passed. ``poll`` is called at least every :data:`POLL_S` while tasks
    run on workers, and between inline tasks (a cancel request is noticed there)."""
    done: set[str] = set()
    started: set[str] = set()
    running: dict[Future, str] = {}
    timed_out = False
    with ThreadPoolExecutor(max_workers=max(1, max_parallel), thread_name_prefix="task") as pool:
        while len(done) < len(order):
            for key in order:
                if key in started or not all(d in done for d in upstream[key]):
                    continue
                if len(running) >= max_parallel:
                    break
                started.add(key)
                work = start(key, timed_out)
                if work is None:
                    done.add(key)
                elif inline:
                    work()
                    done.add(key)
                    if poll is not None:
                        poll()
                    if not timed_out and deadline is not None and time.monotonic() >= deadline:
                        timed_out = True
                        on_deadline()
                    break  # decide the next task with this one's result
                else:
                    running[pool.submit(work)] = key
            if not running:
                if len(done) < len(order) and not any(
                        k not in started and all(d in done for d in upstream[k]) for k in order):
                    raise RuntimeError("task graph stalled")  # unreachable: the plan has no cycles
                continue
            left = POLL_S if deadline is None or timed_out else min(POLL_S, max(0.0, deadline - time.monotonic()))
            finished, _ = wait(list(running), timeout=left, return_when=FIRST_COMPLETED)
            if poll is not None:
                poll()
            for future in finished:
                future.result()  # a bug in the runner itself surfaces here
                done.add(running.pop(future))
            if not timed_out and deadline is not None and time.monotonic() >= deadline:
                timed_out = True
                on_deadline()
    return timed_out
