"""Run the benchmarks and write ``benchmarks/results/latest.{json,md}``.

    scripts/bench.sh            # everything, one run -> benchmarks/results/latest.{json,md}
    scripts/bench.sh --quick    # tiny data, one round, no test suite -> results/raw/quick.*
    python -m benchmarks.run --only score_process --pairs 7   # a subset -> results/raw/partial.*

Each piece runs in its own subprocess so that its peak memory (Python + Java, the whole process
tree) can be measured; see ``benchmarks/measure.py`` and ``benchmarks/workloads.py``.

Every comparison is paired: the two sides run alternately in the same run (A B A B ...) and the
ratio is taken pair by pair; the report gives the median ratio and its spread. Each piece records
the load average before and after it and how much CPU other processes used during it; a piece
during which they used more than a quarter of the cores is marked and not used to claim a target
(``measure.conditions``). One command, one run, one result file.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):  # python benchmarks/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import measure, workloads  # noqa: E402
from benchmarks.report import render  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PIECES = ("imports", "scoring", "scoring_slow", "score_process", "monitoring", "batch_inference", "job_bounds",
          "training", "demo", "tests")
# The committed run: every piece a target or a comparison of docs/scaling.md needs. Training and
# the test suite are measured on request (--with training,tests); their times are not targets.
DEFAULT_PIECES = ("imports", "scoring", "scoring_slow", "score_process", "monitoring", "batch_inference", "demo")
# What batch_inference is paired against: the commit the cost of the job was measured at when
# issue 30 set its target (25.5 vCPU-s per 1e6 rows); --baseline REV pairs against another.
BATCH_INFERENCE_BASELINE = "69e764e"


def plan(args: argparse.Namespace) -> dict:
    """What to measure. ``score_rows``: floor and native, paired in-process (the largest size is
    the linearity point); ``command_rows``: the score step in-process too; ``slow_rows``: the
    Python-UDF paths (a minute or more each at 1e6), paired with native; ``process_rows``: the
    whole ``spark-mlops score`` process paired with a plain parquet read + Delta write process."""
    baseline = args.baseline or BATCH_INFERENCE_BASELINE
    if args.quick:
        return {"score_rows": [1000, 10_000], "command_rows": [1000], "slow_rows": 200, "process_rows": 1000,
                "rounds": args.reps or 1, "process_pairs": 1, "train_rows": [1000], "cv_rows": [1000],
                "reps": args.reps or 1, "demo_pairs": 1, "tests": False, "job_pairs": 1, "baseline": baseline}
    return {"score_rows": [10_000, 100_000, 1_000_000, 10_000_000], "command_rows": [10_000, 100_000, 1_000_000],
            "slow_rows": 1_000_000, "process_rows": 1_000_000, "rounds": args.reps or 3,
            "process_pairs": args.pairs or 5, "job_pairs": args.pairs or 3, "baseline": baseline,
            "train_rows": [10_000, 100_000, 1_000_000], "cv_rows": [10_000, 100_000, 1_000_000],
            "reps": args.reps or 3, "demo_pairs": args.demo_pairs or 3, "tests": True}


def say(text: str) -> None:
    print(f"[bench {datetime.now().strftime('%H:%M:%S')}] {text}", flush=True)


# ---------------------------------------------------------------- pieces


def bench_imports(workdir: Path, p: dict) -> dict:
    runs = [measure.run_worker("imports", {}, workdir / "logs") for _ in range(max(3, p["reps"]))]
    return {"seconds": measure.stats([r["seconds"] for r in runs if "seconds" in r]),
            "what": "import spark_mlops.{prepare,training,validation,promotion,scoring,bundle.runner} "
                    "in a fresh interpreter (pyspark, mlflow, matplotlib are pulled in)"}


_SETUP: dict[Path, dict] = {}


def _setup_champion(workdir: Path) -> dict:
    """Prepare, train, validate and promote the model every scoring piece uses; once per run."""
    if workdir not in _SETUP or _SETUP[workdir].get("error"):
        say("scoring: setting up the @champion model")
        _SETUP[workdir] = measure.run_worker("setup", {"workdir": str(workdir)}, workdir / "logs")
    return _SETUP[workdir]


def _paired(times: list[dict], path: str, rows: int, base_path: str, base_rows: int | None = None) -> dict:
    """Per-round ratios ``path@rows / base_path@base_rows`` over the rounds where both ran."""
    def by_round(p: str, r: int) -> dict[int, float]:
        return {t["round"]: t["seconds"] for t in times if t["path"] == p and t["rows"] == r and t["seconds"]}

    a, b = by_round(path, rows), by_round(base_path, rows if base_rows is None else base_rows)
    return measure.stats([a[i] / b[i] for i in sorted(a) if i in b])


def _scoring_table(run: dict, base: str) -> list[dict]:
    times = run.get("times", [])
    out = []
    for path, rows in dict.fromkeys((t["path"], t["rows"]) for t in times):
        seconds = [t["seconds"] for t in times if t["path"] == path and t["rows"] == rows and t["seconds"]]
        errors = [t["error"] for t in times if t["path"] == path and t["rows"] == rows and t["error"]]
        out.append({"path": path, "rows": rows, "seconds": measure.stats(seconds),
                    "rows_per_second": measure.stats([rows / s for s in seconds], 0),
                    "load_seconds": run.get("load_seconds", {}).get(path),
                    f"x_{base}": None if path == base else _paired(times, path, rows, base),
                    "error": errors[0] if errors else None})
    return out


def bench_scoring(workdir: Path, p: dict) -> dict:
    """floor and native (and the score step in-process) interleaved round by round, one process."""
    setup = _setup_champion(workdir)
    if setup.get("error"):
        return {"error": f"setup failed: {setup['error']}"}
    cells = [(path, rows) for rows in p["score_rows"] for path in ("floor", "native")]
    cells += [("score_command", rows) for rows in p["command_rows"]]
    cells.sort(key=lambda c: c[1])  # within a round: small to large, so each pair runs back to back
    say(f"scoring: {len(cells)} cells x {p['rounds']} rounds (load {os.getloadavg()[0]:.2f})")
    run = measure.run_worker("score", {"workdir": str(workdir), "piece": "scoring", "cells": cells, "rounds": p["rounds"]},
                             workdir / "logs", timeout=7200)
    results = _scoring_table(run, "floor")
    largest, previous = p["score_rows"][-1], (p["score_rows"][-2] if len(p["score_rows"]) > 1 else None)
    linear = None
    if previous:
        ratio = _paired(run.get("times", []), "native", largest, "native", previous)
        linear = {"rows": largest, "base_rows": previous, "x_time": ratio, "x_rows": largest / previous}
    return {"model": setup.get("model_version"), "results": results, "linearity": linear,
            "peak_rss_mb": run["process"]["peak_rss_mb"], "error": run.get("error"),
            "input": "synthetic parquet, 250k rows per file (1 row group each), 8 features + key",
            "what": "in one process, model loaded once per path; each round runs every cell once, "
                    "pairs back to back; x floor = the path's time / the floor's time in the same round"}


def bench_scoring_slow(workdir: Path, p: dict) -> dict:
    """The Python-UDF paths, one round at one size, each paired with native in the same process."""
    setup = _setup_champion(workdir)
    if setup.get("error"):
        return {"error": f"setup failed: {setup['error']}"}
    rows = p["slow_rows"]
    cells = [("native", rows), ("spark_udf", rows), ("native", rows), ("pandas", rows)]
    say(f"scoring_slow: native / spark_udf / pandas at {rows} rows (load {os.getloadavg()[0]:.2f})")
    run = measure.run_worker("score", {"workdir": str(workdir), "piece": "scoring_slow", "cells": cells, "rounds": 1},
                             workdir / "logs",
                             timeout=3600)
    times = run.get("times", [])
    results = []
    for k, t in enumerate(times):
        before = times[k - 1] if k else None  # each slow path runs right after a native run
        paired = t["path"] != "native" and before and before["path"] == "native" and before["seconds"] and t["seconds"]
        results.append({"path": t["path"], "rows": rows, "seconds": measure.stats([t["seconds"]] if t["seconds"] else []),
                        "x_native": measure.stats([t["seconds"] / before["seconds"]]) if paired else None,
                        "load_seconds": run.get("load_seconds", {}).get(t["path"]), "error": t["error"]})
    return {"results": results, "peak_rss_mb": run["process"]["peak_rss_mb"], "error": run.get("error"),
            "what": "one run each (a minute or more at 1e6 rows), in one process; x native = time / the native run "
                    "just before it; not measured at 1e7"}


def bench_score_process(workdir: Path, p: dict) -> dict:
    """``spark-mlops score`` vs a plain parquet read + Delta write of the same batch, and vs the bare
    minimum that does score's work (``benchmarks.bare_score``): whole processes, A B C A B C."""
    setup = _setup_champion(workdir)
    if setup.get("error"):
        return {"error": f"setup failed: {setup['error']}"}
    rows = p["process_rows"]
    source = workloads.scoring_input(workdir, rows)
    settings = workloads.settings_for(workdir)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPARK_MLOPS_", "MLFLOW_TRACKING", "MLFLOW_REGISTRY"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    score = [sys.executable, "-m", "spark_mlops", "score", "--input", str(source), "--state-dir",
             str(settings.state_dir), "--model-name", settings.model_name, "--experiment", settings.experiment,
             "--output-table", "bench_process_predictions", "--rejected-table", "bench_process_rejected",
             "--batch-id", f"rows{rows}"]
    copy = [sys.executable, "-m", "benchmarks.plain_copy", "--input", str(source), "--output",
            str(workdir / "out" / "plain_copy"), "--state-dir", str(workdir / "plain-copy-state")]
    from spark_mlops import contract as dc

    bare = [sys.executable, "-m", "benchmarks.bare_score", "--input", str(source), "--output",
            str(workdir / "out" / "bare_score"), "--model-uri", f"models:/{settings.model_name}/{setup['model_version']}",
            "--tracking-uri", settings.tracking_uri, "--registry-uri", settings.registry_uri,
            *[a for k in dc.load_contract().key_columns for a in ("--key", k)]]
    logs = workdir / "logs"
    pairs = []
    for i in range(p["process_pairs"] + 1):  # pair 0 warms the file cache and the JVM's class data: not counted
        timings = logs / f"score-process-{i}-timings.json"
        timings.unlink(missing_ok=True)
        say(f"score_process: pair {i}/{p['process_pairs']}{' (warm-up)' if i == 0 else ''} "
            f"(load {os.getloadavg()[0]:.2f})")
        a = measure.run_measured(score, cwd=ROOT, env={**env, "SPARK_MLOPS_TIMINGS": str(timings)},
                                 log=logs / f"score-process-{i}.log")
        b = measure.run_measured(copy, cwd=ROOT, env=env, log=logs / f"plain-copy-{i}.log")
        c = measure.run_measured(bare, cwd=ROOT, env=env, log=logs / f"bare-score-{i}.log")
        spans = json.loads(timings.read_text())["spans"] if timings.exists() else []
        pairs.append({"pair": i, "score": a, "plain_copy": b, "bare_score": c, "spans": spans, "counted": i > 0})
    sides = ("score", "plain_copy", "bare_score")
    counted = [x for x in pairs if x["counted"] and all(x[k]["returncode"] == 0 for k in sides)]
    names = list(dict.fromkeys(s["name"] for x in counted for s in x["spans"]))
    return {
        "rows": rows,
        "score_command": " ".join(score[1:4]) + " --input <batch> ...",
        "plain_copy_command": "python -m benchmarks.plain_copy (spark.read.parquet(batch).write.format(\"delta\").save(out), same Spark settings)",
        "score_wall": measure.stats([x["score"]["wall_seconds"] for x in counted], 2),
        "plain_copy_wall": measure.stats([x["plain_copy"]["wall_seconds"] for x in counted], 2),
        "x_plain_copy": measure.stats([x["score"]["wall_seconds"] / x["plain_copy"]["wall_seconds"] for x in counted]),
        "bare_score_command": "python -m benchmarks.bare_score (plain Spark settings, mlflow.spark.load_model of the "
                              "same version, transform, key + prediction + P(class 1) to Delta)",
        "bare_score_wall": measure.stats([x["bare_score"]["wall_seconds"] for x in counted], 2),
        "x_bare_score": measure.stats([x["score"]["wall_seconds"] / x["bare_score"]["wall_seconds"] for x in counted]),
        "score_peak_rss_mb": measure.stats([x["score"]["peak_rss_mb"] for x in counted], 0),
        "plain_copy_peak_rss_mb": measure.stats([x["plain_copy"]["peak_rss_mb"] for x in counted], 0),
        "bare_score_peak_rss_mb": measure.stats([x["bare_score"]["peak_rss_mb"] for x in counted], 0),
        "spans": {n: measure.stats([sum(s["seconds"] for s in x["spans"] if s["name"] == n) for x in counted], 2)
                  for n in names},
        "failed_pairs": [x["pair"] for x in pairs if any(x[k]["returncode"] for k in sides)],
        "failure_tail": next((x[k]["output_tail"] for x in pairs for k in sides if x[k]["returncode"]), None),
    }


def bench_monitoring(workdir: Path, p: dict) -> dict:
    """``monitor`` of a batch against ``score`` of the same batch, in one process, S M S M ..."""
    setup = _setup_champion(workdir)
    if setup.get("error"):
        return {"error": f"setup failed: {setup['error']}"}
    rows = p["process_rows"]
    say(f"monitoring: score then monitor {rows} rows x{p['rounds']} (load {os.getloadavg()[0]:.2f})")
    run = measure.run_worker("monitor", {"workdir": str(workdir), "rows": rows, "reps": p["rounds"]},
                             workdir / "logs", timeout=3600)
    return {"rows": rows, "score_seconds": measure.stats(run.get("score_seconds", [])),
            "monitor_seconds": measure.stats(run.get("monitor_seconds", [])),
            "x_score": measure.stats(run.get("ratios", [])), "peak_rss_mb": run["process"]["peak_rss_mb"],
            "error": run.get("error"),
            "what": "scoring.run then monitoring.run of the same keyed batch (monitor reads the input's valid "
                    "rows and the predictions), alternating in one process; x score = monitor / score, pair by pair"}


def bench_job_bounds(workdir: Path, p: dict) -> dict:
    """The costs that bound ``batch_inference`` (docs/scaling.md, "What bounds V"), each measured
    apart in one process, every cell once per round (``workloads.job_bounds_rounds``)."""
    setup = _setup_champion(workdir)
    if setup.get("error"):
        return {"error": f"setup failed: {setup['error']}"}
    rows = p["process_rows"]
    say(f"job_bounds: {len(workloads.JOB_BOUNDS_CELLS)} cells x{p['rounds']} at {rows} rows "
        f"(load {os.getloadavg()[0]:.2f})")
    run = measure.run_worker("job_bounds", {"workdir": str(workdir), "rows": rows, "rounds": p["rounds"]},
                             workdir / "logs", timeout=3600)
    counted = [t for t in run.get("times", []) if not t["warm_up"]]
    rounds: dict[int, dict[str, float]] = {}
    for t in counted:
        rounds.setdefault(t["round"], {})[t["cell"]] = t["seconds"]

    def extra(cell: str, base: str) -> dict:  # paired: the two cells of the same round
        return measure.stats([r[cell] - r[base] for r in rounds.values() if cell in r and base in r])

    return {"rows": rows, "error": run.get("error"),
            "cells": {c: measure.stats([t["seconds"] for t in counted if t["cell"] == c])
                      for c in workloads.JOB_BOUNDS_CELLS},
            "paired": {"delta_replace - delta_append": extra("delta_replace", "delta_append"),
                       "check_pass - check_pass_no_keys": extra("check_pass", "check_pass_no_keys")},
            "what": "in one process, every cell once per round after a warm-up round: the batch read, the "
                    "champion's transform (both to the noop sink), writes of the predictions held in memory "
                    "(parquet, Delta append, Delta replaceWhere of one partition), a new Delta version's file "
                    "list (1,000 rows), check_batch's counting pass with and without its distinct keys"}


def _checkout_of(rev: str, workdir: Path) -> Path:
    """The ``src`` folder of commit ``rev``, exported once under ``workdir`` (``git archive``)."""
    sha = subprocess.run(["git", "rev-parse", "--verify", f"{rev}^{{commit}}"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.strip()
    target = workdir / f"code-{sha[:12]}"
    if not (target / "src" / "spark_mlops").is_dir():
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        archive = subprocess.run(["git", "archive", sha, "src"], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target / "src"


def _knows_signatures(src: Path) -> bool:
    return (src / "spark_mlops" / "signing.py").is_file()


@contextlib.contextmanager
def _signatures_aside(state: Path, aside: bool):
    """A baseline from before model signatures (issue 27) refuses the champion's
    ``files.sha256.json.sig``, a file its manifest does not name: while it runs, the signatures
    are moved out of the state folder, the model's own files untouched; they are back before the next side runs."""
    moved: list[tuple[Path, Path]] = []
    holding = state.with_name(state.name + "-signatures-aside")  # outside the models: any extra file is refused
    try:
        if aside:
            for sig in state.rglob("files.sha256.json.sig"):
                kept = holding / sig.relative_to(state)
                kept.parent.mkdir(parents=True, exist_ok=True)
                sig.rename(kept)
                moved.append((sig, kept))
        yield
    finally:
        for sig, kept in moved:
            kept.rename(sig)


def bench_batch_inference(workdir: Path, p: dict) -> dict:
    """The ``batch_inference`` job's tasks on one 1e6-row batch (``workloads.batch_inference_rounds``),
    this checkout against the baseline commit, A B A B: each side one worker process per pair, a
    warm-up round then a counted one. vCPU-s per 1e6 rows as docs/scaling.md counts them (the
    tasks' wall seconds x the machine's cores), and as measured (CPU seconds of Python and JVM)."""
    setup = _setup_champion(workdir)
    if setup.get("error"):
        return {"error": f"setup failed: {setup['error']}"}
    rows, cores = p["process_rows"], os.cpu_count() or 2
    try:
        baseline_src = _checkout_of(p["baseline"], workdir)
    except subprocess.CalledProcessError as exc:
        return {"error": f"baseline {p['baseline']}: {(exc.stderr or b'').strip()[:300]!r}"}
    sides = {"this": ROOT / "src", "baseline": baseline_src}
    runs: dict[str, list[dict]] = {side: [] for side in sides}
    for i in range(p["job_pairs"]):
        for side, src in sides.items():
            say(f"batch_inference: pair {i + 1}/{p['job_pairs']}, {side} (load {os.getloadavg()[0]:.2f})")
            env = {"PYTHONPATH": os.pathsep.join([str(src), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
                   "SPARK_MLOPS_TIMINGS": str(workdir / "logs" / f"batch-inference-{side}-{i}-timings.json")}
            with _signatures_aside(workdir / "state", side == "baseline" and not _knows_signatures(src)):
                r = measure.run_worker("batch_inference", {"workdir": str(workdir), "rows": rows, "rounds": 1,
                                                           "suffix": f"_{side}", "side": side, "pair": i},
                                       workdir / "logs", timeout=3600, env=env)
            runs[side].append({**r, "load_average": measure.load_average()})

    def per_task(side: str) -> dict:
        counted = [t for r in runs[side] for t in r.get("times", []) if not t["warm_up"]]

        def spans(task: str) -> dict:
            of_task = [t.get("spans", {}) for t in counted if t["task"] == task]
            names = dict.fromkeys(n for s in of_task for n in s)
            return {n: measure.stats([s.get(n, 0.0) for s in of_task]) for n in names}

        return {task: {"seconds": measure.stats([t["seconds"] for t in counted if t["task"] == task]),
                       "cpu_seconds": measure.stats([t["cpu_seconds"] for t in counted if t["task"] == task]),
                       "spans": spans(task)}
                for task in workloads.BATCH_INFERENCE_TASKS}

    def totals(side: str, key: str) -> list[float | None]:
        out = []
        for r in runs[side]:
            counted = [t[key] for t in r.get("times", []) if not t["warm_up"]]
            out.append(sum(counted) if counted and not r.get("error") else None)
        return out

    scale = 1_000_000 / rows
    wall = {side: totals(side, "seconds") for side in sides}
    cpu = {side: totals(side, "cpu_seconds") for side in sides}
    pairs = [i for i in range(p["job_pairs"]) if wall["this"][i] and wall["baseline"][i]]
    return {
        "rows": rows, "baseline": p["baseline"], "baseline_code": runs["baseline"][0].get("code") if runs["baseline"] else None,
        "tasks": {side: per_task(side) for side in sides},
        "vcpu_seconds_per_1e6": {side: measure.stats([wall[side][i] * cores * scale for i in pairs], 2) for side in sides},
        "cpu_seconds_per_1e6": {side: measure.stats([cpu[side][i] * scale for i in pairs], 2) for side in sides},
        "x_baseline": measure.stats([wall["this"][i] / wall["baseline"][i] for i in pairs]),
        "errors": {side: [r["error"] for r in runs[side] if r.get("error")] for side in sides},
        "peak_rss_mb": {side: measure.stats([r["process"]["peak_rss_mb"] for r in runs[side]], 0) for side in sides},
        "load_average": {side: [r["load_average"] for r in runs[side]] for side in sides},
        "what": "check_batch, score, monitor, drift_check of one keyed parquet batch, in one process per side and "
                "pair (a warm-up round, then the counted one); vCPU-s = the tasks' wall seconds x "
                f"{cores} cores, per 1e6 rows; CPU-s = the process's and its JVM's CPU time; x baseline = "
                "this checkout's wall / the baseline's, pair by pair",
    }


def bench_training(workdir: Path, p: dict) -> dict:
    results = []
    for mode, sizes in (("default", p["train_rows"]), ("cv", p["cv_rows"])):
        for rows in sizes:
            reps = p["reps"] if (mode == "default" and rows < 1_000_000) else 1
            if mode == "cv" and rows >= 1_000_000:
                default = next((r for r in results if r["mode"] == "default" and r["rows"] == rows), None)
                one_fit = default["seconds"]["median"] if default and default["seconds"]["median"] else None
                # 2 folds x 2 candidates + the refit on everything: about 3.5x one full fit.
                if one_fit is None or one_fit * 3.5 > 300:
                    results.append({"mode": mode, "rows": rows, "skipped": f"estimated {one_fit and one_fit * 3.5:.0f} s"
                                    " (3.5 x one fit) exceeds the 300 s budget"})
                    continue
            say(f"training: {mode} at {rows} rows x{reps} (load {os.getloadavg()[0]:.2f})")
            r = measure.run_worker("train", {"workdir": str(workdir), "rows": rows, "mode": mode, "reps": reps},
                                   workdir / "logs")
            results.append({"mode": mode, "rows": rows, "train_rows": r.get("train_rows"),
                            "seconds": measure.stats(r.get("seconds", [])), "config": r.get("config"),
                            "peak_rss_mb": r["process"]["peak_rss_mb"], "error": r.get("error"),
                            "load_average": measure.load_average()})
    return {"what": "training.fit on the cached train split (80 % of rows), random_forest defaults "
                    "(numTrees=50, maxDepth=6); cv = CrossValidator, 2 folds, grid maxDepth=4|6",
            "results": results}


def _demo_env(timings: Path) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SPARK_MLOPS_", "MLFLOW_TRACKING", "MLFLOW_REGISTRY", "DATABRICKS_"))}
    env["SPARK_MLOPS_TIMINGS"] = str(timings)
    return env


def bench_demo(workdir: Path, p: dict) -> dict:
    """The main job cold (fresh state folder) and warm (the same folder again), each warm run paired
    with a bare Spark start + one tiny job (``benchmarks.bare_start``) right after it."""
    cli = Path(sys.executable).parent / "spark-mlops"
    bare = [sys.executable, "-m", "benchmarks.bare_start", "--state-dir", str(workdir / "bare-start-state")]
    runs = []
    for i in range(p["demo_pairs"]):
        state = workdir / f"demo-{i}"
        shutil.rmtree(state, ignore_errors=True)
        for kind in ("cold", "warm", "bare_start"):
            timings = workdir / "logs" / f"demo-{i}-{kind}-timings.json"
            timings.unlink(missing_ok=True)
            say(f"demo: pair {i + 1}/{p['demo_pairs']}, {kind} (load {os.getloadavg()[0]:.2f})")
            command = bare if kind == "bare_start" else [str(cli), "demo", "--state-dir", str(state)]
            m = measure.run_measured(command, cwd=ROOT, env=_demo_env(timings),
                                     log=workdir / "logs" / f"demo-{i}-{kind}.log")
            spans = json.loads(timings.read_text())["spans"] if timings.exists() else []
            runs.append({"kind": kind, "pair": i, **m, "spans": spans, "load_average": measure.load_average()})
    summary = {}
    for kind in ("cold", "warm", "bare_start"):
        ok = [r for r in runs if r["kind"] == kind and r["returncode"] == 0]
        names = list(dict.fromkeys(s["name"] for r in ok for s in r["spans"]))
        summary[kind] = {
            "wall_seconds": measure.stats([r["wall_seconds"] for r in ok], 2),
            "peak_rss_mb": measure.stats([r["peak_rss_mb"] for r in ok], 0),
            "spans": {n: measure.stats([sum(s["seconds"] for s in r["spans"] if s["name"] == n) for r in ok], 2)
                      for n in names},
            "failed_runs": len([r for r in runs if r["kind"] == kind and r["returncode"] != 0]),
        }
    walls = {(r["kind"], r["pair"]): r["wall_seconds"] for r in runs if r["returncode"] == 0}
    pairs = [walls[("warm", i)] / walls[("bare_start", i)] for i in range(p["demo_pairs"])
             if ("warm", i) in walls and ("bare_start", i) in walls]
    return {"command": "spark-mlops demo --state-dir <fresh folder> (cold), then again on the same folder (warm), "
                       "then python -m benchmarks.bare_start (a local session as the steps build it + "
                       "spark.range(1).count())",
            "summary": summary, "x_bare_start": measure.stats(pairs), "runs": runs}


def bench_tests(workdir: Path, p: dict) -> dict:
    say(f"tests: python -m pytest -q (load {os.getloadavg()[0]:.2f})")
    log = workdir / "logs" / "tests.log"
    m = measure.run_measured([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=ROOT,
                             env=dict(os.environ), timeout=3600, log=log)
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return {"command": "python -m pytest -q", "wall_seconds": m["wall_seconds"], "returncode": m["returncode"],
            "peak_rss_mb": m["peak_rss_mb"], "summary": lines[-1] if lines else "", "load_average": measure.load_average()}


# ---------------------------------------------------------------- workers (run in subprocesses)


def worker(kind: str, args: dict, out: Path) -> None:
    if kind == "imports":
        result = {"seconds": workloads.imports()}
    else:
        from spark_mlops.spark import get_spark

        workdir = Path(args["workdir"])
        spark = get_spark(workloads.settings_for(workdir))
        if kind == "setup":
            result = workloads.setup_champion(spark, workdir)
        elif kind == "score":
            result = workloads.score_rounds(spark, workdir, [tuple(c) for c in args["cells"]], args["rounds"])
        elif kind == "monitor":
            result = workloads.monitor_vs_score(spark, workdir, args["rows"], args["reps"])
        elif kind == "batch_inference":
            result = workloads.batch_inference_rounds(spark, workdir, args["rows"], args["rounds"], args["suffix"])
        elif kind == "job_bounds":
            result = workloads.job_bounds_rounds(spark, workdir, args["rows"], args["rounds"])
        elif kind == "train":
            result = workloads.train(spark, workdir, args["rows"], args["mode"], args["reps"])
        else:
            raise SystemExit(f"unknown worker {kind!r}")
    out.write_text(json.dumps(result, indent=1, default=str))


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["worker"]:
        w = argparse.ArgumentParser(prog="benchmarks.run worker")
        w.add_argument("kind")
        w.add_argument("--args", default="{}")
        w.add_argument("--out", required=True)
        a = w.parse_args(argv[1:])
        worker(a.kind, json.loads(a.args), Path(a.out))
        return 0
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny data, one repetition, no test suite")
    parser.add_argument("--only", default=None,
                        help=f"comma-separated subset of {','.join(PIECES)} (written to raw/partial, not latest)")
    parser.add_argument("--with", dest="extra", default="",
                        help="pieces to add to the default set (training, tests)")
    parser.add_argument("--reps", type=int, default=0, help="rounds/repetitions per figure (default 3, quick 1)")
    parser.add_argument("--pairs", type=int, default=0, help="score-process pairs after the warm-up (default 5)")
    parser.add_argument("--demo-pairs", type=int, default=0, help="cold+warm demo pairs (default 3)")
    parser.add_argument("--baseline", default="",
                        help=f"the commit batch_inference is paired against (default {BATCH_INFERENCE_BASELINE})")
    parser.add_argument("--workdir", default=str(RESULTS / "raw"), help="data, state and logs (git-ignored)")
    args = parser.parse_args(argv)
    chosen = args.only or ",".join([*DEFAULT_PIECES, *args.extra.split(",")])
    pieces = [x for x in PIECES if x in {y.strip() for y in chosen.split(",")}]
    unknown = sorted({y.strip() for y in chosen.split(",") if y.strip()} - set(PIECES))
    if unknown:
        parser.error(f"--only/--with: unknown piece(s) {unknown}; choose from {PIECES}")
    p = plan(args)
    workdir = Path(args.workdir).resolve()
    (workdir / "logs").mkdir(parents=True, exist_ok=True)
    # The headline file comes only from one full run: never from a subset or pieces of other runs.
    name = "raw/quick" if args.quick else ("raw/partial" if args.only else "latest")
    target = RESULTS / f"{name}.json"
    machine = measure.machine()
    results: dict = {"started_at": datetime.now(UTC).isoformat(timespec="seconds"), "quick": args.quick,
                     "command": " ".join(["python -m benchmarks.run", *argv]),
                     "pieces": pieces, "plan": p, "machine": machine}
    started = time.perf_counter()
    runners = {"imports": bench_imports, "scoring": bench_scoring, "scoring_slow": bench_scoring_slow,
               "score_process": bench_score_process, "monitoring": bench_monitoring,
               "batch_inference": bench_batch_inference, "job_bounds": bench_job_bounds, "training": bench_training,
               "demo": bench_demo,
               "tests": bench_tests}
    for piece in pieces:
        if piece == "tests" and not p["tests"]:
            continue
        # Every piece runs its work in measured subprocesses (their trees) and this process: both are
        # the benchmark's own CPU, everything else on the machine is other work.
        before = measure.counters()
        measured = runners[piece](workdir, p)
        results[piece] = {**measured, "measured": measure.conditions(before, measure.counters(), machine["cores"])}
    results["machine"]["load_average_at_end"] = measure.load_average()
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(results, indent=1, default=str) + "\n")
    target.with_suffix(".md").write_text(render(results))
    say(f"wrote {target} and {target.with_suffix('.md')} in {results['total_seconds']} s")
    return 0

if __name__ == "__main__":
    sys.exit(main())
