"""Run the benchmarks and write ``benchmarks/results/latest.{json,md}``.

    scripts/bench.sh            # everything (about 20-30 minutes on 2 cores)
    scripts/bench.sh --quick    # tiny data, one repetition, no test suite (a few minutes)
    python -m benchmarks.run --only scoring,demo --reps 5

Each piece runs in its own subprocess so that its peak memory (Python + Java, the whole process
tree) can be measured; see ``benchmarks/measure.py`` and ``benchmarks/workloads.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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
PIECES = ("imports", "scoring", "training", "demo", "tests")
SLOW_PATHS = ("spark_udf", "pandas")  # measured once at the largest size: a minute or more each


def plan(args: argparse.Namespace) -> dict:
    if args.quick:
        return {"score_rows": [1000], "udf_rows": [200], "train_rows": [1000], "cv_rows": [1000],
                "reps": args.reps or 1, "slow_reps_at_max": 1, "demo_pairs": 1, "tests": False}
    return {"score_rows": [10_000, 100_000, 1_000_000], "udf_rows": [10_000, 100_000, 1_000_000],
            "train_rows": [10_000, 100_000, 1_000_000], "cv_rows": [10_000, 100_000, 1_000_000],
            "reps": args.reps or 3, "slow_reps_at_max": 1, "demo_pairs": args.demo_pairs or 3,
            "tests": not args.skip_tests}


def say(text: str) -> None:
    print(f"[bench {datetime.now().strftime('%H:%M:%S')}] {text}", flush=True)


# ---------------------------------------------------------------- pieces


def bench_imports(workdir: Path, p: dict) -> dict:
    runs = [measure.run_worker("imports", {}, workdir / "logs") for _ in range(max(3, p["reps"]))]
    return {"seconds": measure.stats([r["seconds"] for r in runs if "seconds" in r]),
            "what": "import spark_mlops.{prepare,training,validation,promotion,scoring,bundle.runner} "
                    "in a fresh interpreter (pyspark, mlflow, matplotlib are pulled in)"}


def bench_scoring(workdir: Path, p: dict) -> dict:
    say("scoring: setting up the @champion model")
    setup = measure.run_worker("setup", {"workdir": str(workdir)}, workdir / "logs")
    if setup.get("error"):
        return {"error": f"setup failed: {setup['error']}"}
    results = []
    for rows in sorted(set(p["score_rows"]) | set(p["udf_rows"])):
        for path in workloads.SCORING_PATHS:
            if rows not in (p["udf_rows"] if path == "spark_udf" else p["score_rows"]):
                continue
            largest = rows == max(p["score_rows"])
            reps = p["slow_reps_at_max"] if path in SLOW_PATHS and largest else p["reps"]
            say(f"scoring: {path} at {rows} rows x{reps} (load {os.getloadavg()[0]:.2f})")
            r = measure.run_worker("score", {"workdir": str(workdir), "path": path, "rows": rows, "reps": reps},
                                   workdir / "logs")
            seconds = r.get("seconds", [])
            results.append({
                "path": path, "rows": rows, "reps": len(seconds),
                "seconds": measure.stats(seconds),
                "rows_per_second": measure.stats([rows / s for s in seconds], 0),
                "load_seconds": r.get("load_seconds"),
                "peak_rss_mb": r["process"]["peak_rss_mb"],
                "process_wall_seconds": r["process"]["wall_seconds"],
                "error": r.get("error"),
                "load_average": measure.load_average(),
            })
    for r in results:  # time ratio to the I/O floor at the same size (1.0 = as fast as the floor)
        floor = next((f for f in results if f["path"] == "floor" and f["rows"] == r["rows"]), None)
        ok = floor and floor["seconds"]["median"] and r["seconds"]["median"]
        r["x_floor_time"] = round(r["seconds"]["median"] / floor["seconds"]["median"], 2) if ok else None
    return {"model": setup.get("model_version"), "results": results,
            "input": "synthetic parquet, 250k rows per file (1 row group each), 8 features + key"}


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
    cli = Path(sys.executable).parent / "spark-mlops"
    runs = []
    for i in range(p["demo_pairs"]):
        state = workdir / f"demo-{i}"
        shutil.rmtree(state, ignore_errors=True)
        for kind in ("cold", "warm"):
            timings = workdir / "logs" / f"demo-{i}-{kind}-timings.json"
            timings.unlink(missing_ok=True)
            say(f"demo: pair {i + 1}/{p['demo_pairs']}, {kind} (load {os.getloadavg()[0]:.2f})")
            m = measure.run_measured([str(cli), "demo", "--state-dir", str(state)], cwd=ROOT,
                                     env=_demo_env(timings), log=workdir / "logs" / f"demo-{i}-{kind}.log")
            spans = json.loads(timings.read_text())["spans"] if timings.exists() else []
            runs.append({"kind": kind, **m, "spans": spans, "load_average": measure.load_average()})
    summary = {}
    for kind in ("cold", "warm"):
        ok = [r for r in runs if r["kind"] == kind and r["returncode"] == 0]
        names = sorted({s["name"] for r in ok for s in r["spans"]})
        summary[kind] = {
            "wall_seconds": measure.stats([r["wall_seconds"] for r in ok], 2),
            "peak_rss_mb": measure.stats([r["peak_rss_mb"] for r in ok], 0),
            "spans": {n: measure.stats([sum(s["seconds"] for s in r["spans"] if s["name"] == n) for r in ok], 2)
                      for n in names},
            "failed_runs": len([r for r in runs if r["kind"] == kind and r["returncode"] != 0]),
        }
    return {"command": "spark-mlops demo --state-dir <fresh folder> (cold), then again on the same folder (warm)",
            "summary": summary, "runs": runs}


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
            result = workloads.score(spark, workdir, args["path"], args["rows"], args["reps"])
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
    parser.add_argument("--only", default=",".join(PIECES), help=f"comma-separated subset of {','.join(PIECES)}")
    parser.add_argument("--reps", type=int, default=0, help="repetitions per figure (default 3, quick 1)")
    parser.add_argument("--demo-pairs", type=int, default=0, help="cold+warm demo pairs (default 3)")
    parser.add_argument("--skip-tests", action="store_true", help="do not time the test suite")
    parser.add_argument("--workdir", default=str(RESULTS / "raw"), help="data, state and logs (git-ignored)")
    parser.add_argument("--name", default=None, help="result file name (default latest, quick: raw/quick)")
    parser.add_argument("--merge", action="store_true",
                        help="keep the other pieces of an existing result file, replace only those run now")
    parser.add_argument("--include", action="append", default=[], metavar="JSON",
                        help="with --merge: also take the pieces of another result file (e.g. a separate demo run)")
    args = parser.parse_args(argv)
    pieces = [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = sorted(set(pieces) - set(PIECES))
    if unknown:
        parser.error(f"--only: unknown piece(s) {unknown}; choose from {PIECES}")
    p = plan(args)
    workdir = Path(args.workdir).resolve()
    (workdir / "logs").mkdir(parents=True, exist_ok=True)
    name = args.name or ("raw/quick" if args.quick else "latest")
    target = RESULTS / f"{name}.json"
    results: dict = json.loads(target.read_text()) if args.merge and target.exists() else {}
    machine = measure.machine()
    for extra in args.include if args.merge else []:
        other = json.loads(Path(extra).read_text())
        results.update({k: other[k] for k in PIECES if k in other})
    results.update({"started_at": datetime.now(UTC).isoformat(timespec="seconds"), "quick": args.quick,
                    "plan": p, "machine": machine})
    started = time.perf_counter()
    runners = {"imports": bench_imports, "scoring": bench_scoring, "training": bench_training,
               "demo": bench_demo, "tests": bench_tests}
    for piece in pieces:
        if piece == "tests" and not p["tests"]:
            continue
        when = {"git_commit": machine["git_commit"], "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "load_average_at_start": measure.load_average()}
        results[piece] = {**runners[piece](workdir, p), "measured": when}
    results["machine"]["load_average_at_end"] = measure.load_average()
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(results, indent=1, default=str) + "\n")
    target.with_suffix(".md").write_text(render(results))
    say(f"wrote {target} and {target.with_suffix('.md')} in {results['total_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
