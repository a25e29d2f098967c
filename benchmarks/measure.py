"""Measuring helpers: statistics, the machine, and subprocesses with their peak memory.

Peak memory is the peak of the summed VmRSS of a process and all its descendants (Python,
the Spark JVM, Python workers and their JVMs), sampled every 0.15 s from /proc.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

SAMPLE_SECONDS = 0.15


def stats(values: list[float], digits: int = 3) -> dict:
    """Median and spread (min-max) of repeated measurements."""
    if not values:
        return {"n": 0, "median": None, "min": None, "max": None, "values": []}
    return {
        "n": len(values),
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "values": [round(v, digits) for v in values],
    }


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def conditions(started_at: str, before: list[float], after: list[float], cores: int | None) -> dict:
    """When a piece ran and how busy the machine was. ``loaded``: the 1-minute load average before
    or after it was above the core count, so other work competed for the cores during it and its
    figures must not be used to claim a target."""
    peak = max(before[0], after[0])
    return {"started_at": started_at, "load_before": before, "load_after": after,
            "loaded": bool(cores) and peak > cores, "cores": cores}


def _meminfo_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _java_version() -> str:
    try:
        out = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=30, check=False)
        return (out.stderr or out.stdout).splitlines()[0].strip()
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=False, cwd=Path(__file__).resolve().parents[1])
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def machine() -> dict:
    from importlib.metadata import version

    return {
        "cores": os.cpu_count(),
        "memory_gib": _meminfo_gib(),
        "cpu": _cpu_model(),
        "os": platform.platform(),
        "java": _java_version(),
        "python": platform.python_version(),
        "spark": version("pyspark"),
        "mlflow": version("mlflow"),
        "git_commit": _git_commit(),
        "load_average_at_start": load_average(),
    }


# ---------------------------------------------------------------- process-tree memory


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # Fields after the command name (which may hold spaces) start after the last ')'.
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def _rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def tree_rss(root: int) -> int:
    """Summed resident memory of ``root`` and all its descendants, in bytes."""
    children = _children_map()
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += _rss_bytes(pid)
        todo.extend(children.get(pid, []))
    return total


class PeakSampler(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.samples = pid, 0, 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            self.samples += 1
            self._stop_event.wait(SAMPLE_SECONDS)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def run_measured(argv: list[str], *, cwd: str | Path | None = None, env: dict | None = None,
                 timeout: float = 1800, log: Path | None = None) -> dict:
    """Run a command; return its exit code, wall time, peak tree RSS and the tail of its output."""
    log_file = open(log, "w", encoding="utf-8") if log else subprocess.DEVNULL  # noqa: SIM115
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    sampler = PeakSampler(proc.pid)
    sampler.start()
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = proc.wait()
    wall = time.perf_counter() - start
    sampler.stop()
    if log:
        log_file.close()
    tail = log.read_text(errors="replace").splitlines()[-15:] if log else []
    return {"returncode": rc, "wall_seconds": round(wall, 3), "peak_rss_mb": round(sampler.peak / 1024**2, 1),
            "rss_samples": sampler.samples, "output_tail": tail if rc else []}


def run_worker(kind: str, args: dict, workdir: Path, *, timeout: float = 1800) -> dict:
    """Run ``python -m benchmarks.run worker <kind>`` and merge its JSON result with wall/RSS."""
    workdir.mkdir(parents=True, exist_ok=True)
    tag = "-".join(str(v) for k, v in args.items() if k != "workdir" and isinstance(v, str | int))[:60]
    tag = "".join(c if c.isalnum() or c in "-_" else "_" for c in tag) or "run"
    out = workdir / f"worker-{kind}-{tag}.json"
    out.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "benchmarks.run", "worker", kind, "--args", json.dumps(args), "--out", str(out)]
    measured = run_measured(argv, cwd=Path(__file__).resolve().parents[1], env=dict(os.environ),
                            timeout=timeout, log=workdir / f"worker-{kind}-{tag}.log")
    result = json.loads(out.read_text()) if out.exists() else {}
    if measured["returncode"] and "error" not in result:
        result["error"] = f"worker exited with {measured['returncode']}: " + " | ".join(measured["output_tail"][-3:])
    return {**result, "process": measured}
