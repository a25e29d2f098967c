"""Measuring helpers: statistics, the machine, and subprocesses with their peak memory and CPU.

Peak memory is the peak of the summed VmRSS of a process and all its descendants (Python,
the Spark JVM, Python workers and their JVMs), sampled every 0.15 s from /proc. The same walk
keeps the CPU time each descendant had used when last seen, so a measured tree's CPU is known
even for processes (the Spark JVM) that their parent never reaps.

Whether other work competed with a piece: the machine's busy CPU time during the piece
(/proc/stat: user, nice, system, irq, softirq and steal, which is the hypervisor taking the cores)
minus the benchmark's own (this process's user + system time and every tree measured with
``run_measured``), divided by the wall time: ``other_cpu_cores``. A piece is ``loaded``, and its
figures do not claim a target, when other processes used more than a quarter of the machine on
average (``OTHER_CPU_SHARE`` x cores; half a core on 2 cores). The load average before and after
is kept for the record but no longer decides: a CPU-bound piece on 2 cores drives it to 2 or
more by itself. CPU a process used after the sampler's last look at it, by a process that lived
less than a sampling interval, or by the kernel on the benchmark's behalf (interrupts, disk
writeback) is not seen as the benchmark's and counts as other work: the error leans towards
marking a piece loaded.
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
from datetime import UTC, datetime
from pathlib import Path

SAMPLE_SECONDS = 0.15
OTHER_CPU_SHARE = 0.25  # of the machine's cores: more than this, used by other processes, is "loaded"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")  # /proc reports CPU time in these per second

# CPU seconds of every tree run_measured has measured in this process so far. A running total,
# like os.times(), because the runs happen deep inside the pieces.
_measured_trees_cpu_seconds = 0.0


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


def machine_busy_cpu_seconds() -> float:
    """CPU seconds all processes of the machine have used since boot (all cores, idle and iowait left out)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]  # guest time is inside user
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def own_cpu_seconds() -> float:
    """CPU seconds the benchmark has used so far: this process and every tree it measured.

    os.times()'s children fields are left out: they miss a Spark JVM its Python parent did not
    reap, and would count the rest of the sampled trees twice."""
    t = os.times()
    return t.user + t.system + _measured_trees_cpu_seconds


def counters() -> dict:
    """What ``conditions`` compares: taken before and after a piece."""
    return {"at": datetime.now(UTC).isoformat(timespec="seconds"), "clock": time.perf_counter(),
            "load": load_average(), "machine_busy_cpu_seconds": machine_busy_cpu_seconds(),
            "own_cpu_seconds": own_cpu_seconds()}


def conditions(before: dict, after: dict, cores: int | None) -> dict:
    """When a piece ran and how busy the machine was, from ``counters()`` before and after it.
    ``loaded``: other processes used more than ``OTHER_CPU_SHARE`` of the cores on average during
    it, so its figures must not be used to claim a target."""
    wall = after["clock"] - before["clock"]
    busy = after["machine_busy_cpu_seconds"] - before["machine_busy_cpu_seconds"]
    own = after["own_cpu_seconds"] - before["own_cpu_seconds"]
    # Never below 0: the kernel counts the machine in whole ticks and processes more finely.
    other = max(0.0, busy - own) / wall if wall > 0 else 0.0
    limit = OTHER_CPU_SHARE * cores if cores else None
    return {"started_at": before["at"], "load_before": before["load"], "load_after": after["load"],
            "wall_seconds": round(wall, 1), "machine_busy_cpu_seconds": round(busy, 1),
            "own_cpu_seconds": round(own, 1), "other_cpu_cores": round(other, 2), "other_cpu_limit": limit,
            "loaded": limit is not None and other > limit, "cores": cores}


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


# ---------------------------------------------------------------- process trees: memory and CPU


def _process_table() -> dict[int, tuple[int, int, int]]:
    """pid -> (parent pid, start time, CPU ticks used so far: utime + stime) of every process."""
    table: dict[int, tuple[int, int, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # Fields after the command name (which may hold spaces) start after the last ')';
        # fields[0] is field 3 of proc(5): ppid is field 4, utime 14, stime 15, starttime 22.
        fields = stat[stat.rindex(")") + 2 :].split()
        table[int(entry)] = (int(fields[1]), int(fields[19]), int(fields[11]) + int(fields[12]))
    return table


def _descendants(root: int, table: dict[int, tuple[int, int, int]]) -> list[int]:
    """``root`` and all its descendants that are in ``table`` (alive when it was read)."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _memory(pid: int) -> tuple[str, int, int]:
    """(executable, VmSize, VmRSS in bytes) of ``pid``; empty when it is gone."""
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                      if line.startswith(("VmSize:", "VmRSS:")))
        return exe, int(fields["VmSize"].split()[0]) * 1024, int(fields["VmRSS"].split()[0]) * 1024
    except (OSError, ValueError, KeyError):
        return "", 0, 0


def tree_rss(pids: list[int], table: dict[int, tuple[int, int, int]]) -> int:
    """Summed resident memory of ``pids``, in bytes, each process's pages once.

    A child that still has its parent's executable and address-space size has not run anything
    of its own yet: it is the moment between fork (or the JVM's posix_spawn, whose child shares
    the JVM's memory until it executes jspawnhelper) and exec, and its resident pages are its
    parent's. Summing it would count the parent twice: a JVM of 700 MB momentarily read as 1.4 GB.
    """
    memory = {pid: _memory(pid) for pid in pids}
    total = 0
    for pid, (exe, size, rss) in memory.items():
        parent = memory.get(table[pid][0])
        if parent and exe and (exe, size) == parent[:2]:
            continue
        total += rss
    return total


class PeakSampler(threading.Thread):
    """Samples a process tree every SAMPLE_SECONDS: its peak summed RSS, and the CPU ticks each
    process in it had used when last seen (keyed by pid and start time, so a reused pid is a new
    process)."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.samples = pid, 0, 0
        self.cpu_ticks: dict[tuple[int, int], int] = {}
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            table = _process_table()
            pids = _descendants(self.pid, table)
            self.peak = max(self.peak, tree_rss(pids, table))
            for pid in pids:
                _, started, ticks = table[pid]
                self.cpu_ticks[(pid, started)] = ticks
            self.samples += 1
            self._stop_event.wait(SAMPLE_SECONDS)

    @property
    def cpu_seconds(self) -> float:
        return sum(self.cpu_ticks.values()) / CLOCK_TICKS

    def stop(self) -> None:
        self._stop_event.set()
        self.join()

    def sample_cpu(self) -> None:
        """One more reading of the tree's CPU ticks, taken while the exited root is still a zombie:
        a zombie's /proc/<pid>/stat keeps its final utime and stime, which the periodic samples
        miss for the time since the last one."""
        table = _process_table()
        for pid in _descendants(self.pid, table):
            _, started, ticks = table[pid]
            self.cpu_ticks[(pid, started)] = max(ticks, self.cpu_ticks.get((pid, started), 0))


def _wait_unreaped(proc: subprocess.Popen, timeout: float) -> None:
    """Block until ``proc`` exits without reaping it (waitid's WNOWAIT), so that its /proc entry can
    still be read; a timer kills it after ``timeout`` seconds."""
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    finally:
        timer.cancel()


def run_measured(argv: list[str], *, cwd: str | Path | None = None, env: dict | None = None,
                 timeout: float = 1800, log: Path | None = None) -> dict:
    """Run a command; return its exit code, wall time, peak tree RSS, tree CPU seconds and the tail
    of its output. The tree's CPU is added to ``own_cpu_seconds()``."""
    global _measured_trees_cpu_seconds
    log_file = open(log, "w", encoding="utf-8") if log else subprocess.DEVNULL  # noqa: SIM115
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    sampler = PeakSampler(proc.pid)
    sampler.start()
    _wait_unreaped(proc, timeout)
    wall = time.perf_counter() - start
    sampler.stop()
    sampler.sample_cpu()
    rc = proc.wait()
    _measured_trees_cpu_seconds += sampler.cpu_seconds
    if log:
        log_file.close()
    tail = log.read_text(errors="replace").splitlines()[-15:] if log else []
    return {"returncode": rc, "wall_seconds": round(wall, 3), "peak_rss_mb": round(sampler.peak / 1024**2, 1),
            "tree_cpu_seconds": round(sampler.cpu_seconds, 2), "rss_samples": sampler.samples,
            "output_tail": tail if rc else []}


def run_worker(kind: str, args: dict, workdir: Path, *, timeout: float = 1800, env: dict | None = None) -> dict:
    """Run ``python -m benchmarks.run worker <kind>`` and merge its JSON result with wall/RSS.
    ``env``: variables set for the worker on top of this process's (e.g. a ``PYTHONPATH``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    tag = "-".join(str(v) for k, v in args.items() if k != "workdir" and isinstance(v, str | int))[:60]
    tag = "".join(c if c.isalnum() or c in "-_" else "_" for c in tag) or "run"
    out = workdir / f"worker-{kind}-{tag}.json"
    out.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "benchmarks.run", "worker", kind, "--args", json.dumps(args), "--out", str(out)]
    measured = run_measured(argv, cwd=Path(__file__).resolve().parents[1], env={**os.environ, **(env or {})},
                            timeout=timeout, log=workdir / f"worker-{kind}-{tag}.log")
    result = json.loads(out.read_text()) if out.exists() else {}
    if measured["returncode"] and "error" not in result:
        result["error"] = f"worker exited with {measured['returncode']}: " + " | ".join(measured["output_tail"][-3:])
    return {**result, "process": measured}
