"""Tell a rejected model from a crashed job run, from the run's task states.

Reads the JSON of ``databricks jobs get-run <run_id> -o json`` (Jobs API ``runs/get``: each of
``tasks[]`` has ``task_key`` and ``state.life_cycle_state`` / ``state.result_state``; see
databricks-sdk-py ``databricks/sdk/service/jobs.py``, ``RunTask`` and ``RunResultState``).

The validated jobs (``release``, ``model_deployment``) end a rejection with ``validate`` FAILED
and ``record_rejection`` (``run_if: ALL_FAILED``) SUCCESS; when ``validate`` crashed,
``record_rejection`` fails too. So: the rejection task SUCCESS means "the gate rejected the
model"; anything else means "the run crashed".

    python3 run_result.py --rejection-task record_rejection GET_RUN_JSON   (or - for stdin)

Prints one line per task, then the verdict. Exit 0: rejection recorded; 1: crash (or the
rejection task is absent); 2: the input is not a job run.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

REJECTED = 0
CRASHED = 1
BAD_INPUT = 2


def task_states(run: dict[str, Any]) -> dict[str, str]:
    """task_key -> result_state (or the life cycle state while a task has no result)."""
    states: dict[str, str] = {}
    for task in run.get("tasks") or []:
        state = task.get("state") or {}
        states[str(task.get("task_key"))] = str(
            state.get("result_state") or state.get("life_cycle_state") or "UNKNOWN"
        )
    return states


def classify(run: dict[str, Any], rejection_task: str) -> tuple[int, str]:
    states = task_states(run)
    if not states:
        return CRASHED, "the run has no task states"
    if rejection_task not in states:
        return CRASHED, f"the run has no task '{rejection_task}'"
    if states[rejection_task] == "SUCCESS":
        return REJECTED, f"the gate rejected the model ('{rejection_task}' recorded the rejection)"
    return CRASHED, f"the run crashed ('{rejection_task}' is {states[rejection_task]}, so no verdict was recorded)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rejection-task", required=True, help="task that records a rejection")
    parser.add_argument("run_json", help="output of `databricks jobs get-run <id> -o json`, or - for stdin")
    args = parser.parse_args(argv)
    try:
        text = sys.stdin.read() if args.run_json == "-" else open(args.run_json, encoding="utf-8").read()
        run = json.loads(text)
        if not isinstance(run, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        print(f"run_result: cannot read the job run: {exc}", file=sys.stderr)
        return BAD_INPUT
    for key, state in task_states(run).items():
        print(f"task {key}: {state}")
    code, verdict = classify(run, args.rejection_task)
    print(f"verdict: {verdict}")
    return code


if __name__ == "__main__":
    sys.exit(main())
