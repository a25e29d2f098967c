"""The markdown view of a results JSON, and the targets checked against it."""

from __future__ import annotations

from benchmarks.measure import OTHER_CPU_SHARE


def _spread(s: dict | None, unit: str = "", digits: int = 2) -> str:
    if not s or s.get("median") is None:
        return "-"
    fmt = f"{{:,.{digits}f}}"
    med = fmt.format(s["median"])
    if s["n"] == 1:
        return f"{med}{unit} (1 run)"
    return f"{med}{unit} ({fmt.format(s['min'])}-{fmt.format(s['max'])})"


def _find(results: list[dict], **match) -> dict | None:
    return next((r for r in results if all(r.get(k) == v for k, v in match.items())), None)


def _median(r: dict | None, key: str = "seconds") -> float | None:
    return r[key]["median"] if r and not r.get("error") and r.get(key) and r[key].get("median") else None


def _ratio(s: dict | None) -> str:
    if not s or s.get("median") is None:
        return "not measured"
    spread = f" (pairs: {s['min']:.2f}-{s['max']:.2f}, n={s['n']})" if s["n"] > 1 else " (1 pair)"
    return f"{s['median']:.2f}x{spread}"


def _loaded(res: dict, piece: str) -> str | None:
    """Why a piece's figures cannot claim a target, if they cannot."""
    m = (res.get(piece) or {}).get("measured") or {}
    if m.get("loaded"):
        return (f"not claimed: other processes used {m['other_cpu_cores']:.2f} cores "
                f"(> {m['other_cpu_limit']:.2f} of {m['cores']})")
    return None


def targets(res: dict) -> list[tuple[str, str, bool | str | None]]:
    """(target, measured, met) for each target of the issue. met: True/False, None when not
    measured, or a string saying why a figure measured under load is not used to claim it."""
    out: list[tuple[str, str, bool | str | None]] = []

    def add(name: str, piece: str, value: str, met: bool | None) -> None:
        out.append((name, value, (_loaded(res, piece) or met) if met is not None else None))

    process = res.get("score_process") or {}
    x = process.get("x_plain_copy")
    rows = process.get("rows") or (res.get("plan") or {}).get("process_rows")
    ok = bool(x and x.get("median"))
    add(f"`score` whole process <= 1.5x a plain parquet read + Delta write process, {rows:,} rows, paired" if rows
        else "`score` whole process <= 1.5x a plain parquet read + Delta write process", "score_process",
        _ratio(x), (x["median"] <= 1.5) if ok else None)

    xb = process.get("x_bare_score")
    if xb is not None:
        ok = bool(xb.get("median"))
        add(f"`score` whole process <= 1.0x the bare minimum script (benchmarks.bare_score), {rows:,} rows, paired",
            "score_process", _ratio(xb), (xb["median"] <= 1.0) if ok else None)
    job = res.get("batch_inference") or {}
    if job and not job.get("error"):
        v = (job.get("vcpu_seconds_per_1e6") or {}).get("this")
        ok = bool(v and v.get("median"))
        add(f"`batch_inference` <= 15 vCPU-s per 1e6 rows (tasks' wall x cores), paired against {job['baseline']}",
            "batch_inference", f"{_spread(v, ' vCPU-s')}; {_ratio(job.get('x_baseline'))} the baseline's time"
            if ok else "not measured", (v["median"] <= 15) if ok else None)

    scoring = (res.get("scoring") or {}).get("results", [])
    sizes = sorted({r["rows"] for r in scoring if r["path"] == "native"})
    ref = rows if rows in sizes else (max((n for n in sizes if n <= 1_000_000), default=None))
    native = _find(scoring, path="native", rows=ref) if ref else None
    xf = native.get("x_floor") if native else None
    ok = bool(xf and xf.get("median"))
    add(f"native .transform() + write <= 2x the I/O floor, {ref:,} rows, in-process, paired" if ref else
        "native .transform() + write <= 2x the I/O floor", "scoring", _ratio(xf), (xf["median"] <= 2) if ok else None)

    lin = (res.get("scoring") or {}).get("linearity")
    if lin:
        xt, bound = lin["x_time"], 1.2 * lin["x_rows"]
        ok = bool(xt and xt.get("median"))
        add(f"native scoring {lin['rows']:,} rows within 1.2x of {lin['x_rows']:.0f}x the {lin['base_rows']:,}-row time",
            "scoring", f"{_ratio(xt)} the time for {lin['x_rows']:.0f}x the rows", (xt["median"] <= bound) if ok else None)

    slow = (res.get("scoring_slow") or {}).get("results", [])
    for path in ("spark_udf", "pandas"):  # measured, no target: how much the seed's paths cost
        r = next((r for r in slow if r["path"] == path and r.get("x_native")), None)
        if r:
            add(f"{path} time / native .transform() time, {r['rows']:,} rows, paired (measured, no target)",
                "scoring_slow", _ratio(r["x_native"]), None)
    mon = res.get("monitoring") or {}
    xm = mon.get("x_score")
    if mon and not mon.get("error"):
        ok = bool(xm and xm.get("median"))
        add(f"monitoring a {mon['rows']:,}-row batch <= 0.5x the time of scoring it, paired", "monitoring",
            _ratio(xm), (xm["median"] <= 0.5) if ok else None)

    demo = res.get("demo") or {}
    warm = (demo.get("summary") or {}).get("warm")
    if warm and warm["wall_seconds"]["median"] is not None:
        xb, m = demo.get("x_bare_start"), warm["peak_rss_mb"]
        ok = bool(xb and xb.get("median"))
        add("main job warm wall <= 2.5x a bare Spark start + one tiny job, paired", "demo", _ratio(xb),
            (xb["median"] <= 2.5) if ok else None)
        add("main job peak RSS <= 1.0 GB = 1,024 MiB (Python + Java)", "demo",
            f"{m['median']:,.0f} MiB (median; max {m['max']:,.0f})", m["median"] <= 1024)
    training = (res.get("training") or {}).get("results", [])
    a, b = (_median(_find(training, mode="default", rows=n)) for n in (100_000, 1_000_000))
    if a and b:
        add("training (defaults): 1e5 -> 1e6 rows no worse than linear (time ratio <= 10)", "training",
            f"{b / a:.1f}x time for 10x rows", b / a <= 10)
    return out


def _conditions(res: dict, piece: str) -> str:
    m = (res.get(piece) or {}).get("measured") or {}
    if not m:
        return ""
    mark = " **Measured under load: not used to claim a target.**" if m.get("loaded") else ""
    return (f"Measured {m['started_at']}, load average (1/5/15 min) {m['load_before']} before and "
            f"{m['load_after']} after; other processes used {m['other_cpu_cores']:.2f} cores on average "
            f"over {m['wall_seconds']:.0f} s.{mark}")


def render(res: dict) -> str:
    m = res["machine"]
    lines = [
        "# Benchmark results",
        "",
        f"{res['started_at']}{' (quick run: tiny data, figures say nothing)' if res.get('quick') else ''}, "
        f"git {m.get('git_commit')}, one run of `{res.get('command', 'scripts/bench.sh')}` "
        f"(pieces: {', '.join(res.get('pieces', []))}): "
        f"{m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, {m['java']}, Python {m['python']}, "
        f"Spark {m['spark']}, MLflow {m['mlflow']}. Load average {m['load_average_at_start']} at start, "
        f"{m.get('load_average_at_end')} at the end. Comparisons are paired (A B A B in the same run, the "
        "ratio taken pair by pair): ratios are medians with the spread of the pairs. Times are medians "
        "with the spread (min-max) of the repetitions. Peak RSS is Python + Java + workers together. "
        f"A piece during which other processes (not the benchmark's) used more than {OTHER_CPU_SHARE:.0%} "
        "of the cores on average is marked and does not claim a target; the load average is recorded beside "
        "it but includes the benchmark's own work.",
        "",
        "## Targets",
        "",
        "| Target | Measured | Met |",
        "|---|---|---|",
    ]
    for name, value, met in targets(res):
        verdict = met if isinstance(met, str) else ("yes" if met else ("no" if met is False else "-"))
        lines.append(f"| {name} | {value} | {verdict} |")
    if "score_process" in res and not res["score_process"].get("error"):
        sp = res["score_process"]
        lines += ["", "## `spark-mlops score` vs a plain parquet read + Delta write, whole processes", "",
                  f"{sp['rows']:,} rows. A: `{sp['score_command']}`; B: {sp['plain_copy_command']}. "
                  "Run A B A B after one uncounted warm-up pair. " + _conditions(res, "score_process"), "",
                  "| | score | plain read + Delta write | score / plain (pair by pair) |", "|---|---:|---:|---:|",
                  f"| Wall | {_spread(sp['score_wall'], ' s')} | {_spread(sp['plain_copy_wall'], ' s')} | "
                  f"{_ratio(sp['x_plain_copy'])} |",
                  f"| Peak RSS | {_spread(sp['score_peak_rss_mb'], ' MB', 0)} | "
                  f"{_spread(sp['plain_copy_peak_rss_mb'], ' MB', 0)} | |"]
        if sp.get("bare_score_wall"):
            lines += ["", f"C, run after each B: {sp['bare_score_command']}.", "",
                      "| | score | bare minimum script | score / bare (pair by pair) |", "|---|---:|---:|---:|",
                      f"| Wall | {_spread(sp['score_wall'], ' s')} | {_spread(sp['bare_score_wall'], ' s')} | "
                      f"{_ratio(sp.get('x_bare_score'))} |",
                      f"| Peak RSS | {_spread(sp['score_peak_rss_mb'], ' MB', 0)} | "
                      f"{_spread(sp.get('bare_score_peak_rss_mb'), ' MB', 0)} | |"]
        if sp.get("spans"):
            lines += ["", "Where the score process spends its time (spans, medians over the pairs):", "",
                      "| Span | Seconds |", "|---|---:|"]
            lines += [f"| {n} | {_spread(v, ' s')} |" for n, v in sp["spans"].items()]
        if sp.get("failed_pairs"):
            lines.append(f"\nPairs {sp['failed_pairs']} failed: {' | '.join(sp.get('failure_tail') or [])}")
    elif "score_process" in res:
        lines += ["", f"Score process benchmark failed: {res['score_process']['error']}"]
    if "batch_inference" in res:
        j = res["batch_inference"]
        if j.get("error"):
            lines += ["", f"batch_inference benchmark failed: {j['error']}"]
        else:
            v, c = j["vcpu_seconds_per_1e6"], j["cpu_seconds_per_1e6"]
            lines += ["", "## The `batch_inference` job's tasks, against the baseline commit", "",
                      f"{j['rows']:,} rows; {j['what']}. Baseline: {j['baseline']}. " + _conditions(res, "batch_inference"),
                      "", "| Task (seconds, counted rounds) | this checkout | baseline |", "|---|---:|---:|"]
            for task in j["tasks"]["this"]:
                lines.append(f"| {task} | {_spread(j['tasks']['this'][task]['seconds'], ' s')} | "
                             f"{_spread(j['tasks']['baseline'][task]['seconds'], ' s')} |")
            lines += [f"| **vCPU-s per 1e6 rows** (wall x cores) | {_spread(v['this'])} | {_spread(v['baseline'])} |",
                      f"| CPU-s per 1e6 rows (measured) | {_spread(c['this'])} | {_spread(c['baseline'])} |",
                      f"| this / baseline, pair by pair | {_ratio(j['x_baseline'])} | |",
                      f"| Peak RSS | {_spread(j['peak_rss_mb']['this'], ' MB', 0)} | "
                      f"{_spread(j['peak_rss_mb']['baseline'], ' MB', 0)} |",
                      "", f"Load average after each run: this {j['load_average']['this']}, baseline "
                      f"{j['load_average']['baseline']}."]
            spans = [(task, name, v) for task, t in j["tasks"]["this"].items() for name, v in t.get("spans", {}).items()]
            if spans:
                lines += ["", "Where this checkout's tasks spend their time (spans, medians of the counted rounds; "
                          "the rest of a task is opening tables, the registry and MLflow):", "",
                          "| Task | Span | Seconds |", "|---|---|---:|"]
                lines += [f"| {task} | {name} | {_spread(v, ' s')} |" for task, name, v in spans]
            errors = [e for side in j["errors"].values() for e in side]
            if errors:
                lines.append(f"\nFailed runs: {' | '.join(errors)}")
    if "job_bounds" in res:
        b = res["job_bounds"]
        if b.get("error"):
            lines += ["", f"job_bounds benchmark failed: {b['error']}"]
        else:
            lines += ["", "## What bounds the `batch_inference` job, each cost measured apart", "",
                      f"{b['rows']:,} rows; {b['what']}. " + _conditions(res, "job_bounds"), "",
                      "| Cell | Seconds |", "|---|---:|"]
            lines += [f"| {cell} | {_spread(v, ' s')} |" for cell, v in b["cells"].items()]
            lines += [f"| {name} (round by round) | {_spread(v, ' s')} |" for name, v in b.get("paired", {}).items()]
    if "scoring" in res:
        s = res["scoring"]
        lines += ["", "## Batch scoring in one process", "", f"Input: {s.get('input', '-')}; {s.get('what', '')}. "
                  "Model load excluded (shown separately). " + _conditions(res, "scoring"), "",
                  "| Rows | Path | Rows/s | Seconds | x floor (paired) | Model load s | Note |",
                  "|---:|---|---:|---:|---:|---:|---|"]
        for r in s.get("results", []):
            lines.append(f"| {r['rows']:,} | {r['path']} | {_spread(r['rows_per_second'], '', 0)} | "
                         f"{_spread(r['seconds'])} | {_ratio(r['x_floor']) if r.get('x_floor') else '-'} | "
                         f"{r['load_seconds'] or '-'} | {r['error'] or ''} |")
        lin = s.get("linearity")
        if lin:
            lines.append(f"\nnative at {lin['rows']:,} rows / native at {lin['base_rows']:,} rows, round by round: "
                         f"{_ratio(lin['x_time'])} for {lin['x_rows']:.0f}x the rows.")
        lines.append(f"\nPeak RSS of the scoring process: {s.get('peak_rss_mb', 0):,.0f} MB.")
        if s.get("error"):
            lines.append(f"\nScoring failed: {s['error']}")
    if "scoring_slow" in res:
        s = res["scoring_slow"]
        lines += ["", "## Python-UDF scoring paths", "", f"{s.get('what', '')}. " + _conditions(res, "scoring_slow"),
                  "", "| Rows | Path | Seconds | x native (paired) | Model load s | Note |", "|---:|---|---:|---:|---:|---|"]
        for r in s.get("results", []):
            lines.append(f"| {r['rows']:,} | {r['path']} | {_spread(r['seconds'])} | "
                         f"{_ratio(r['x_native']) if r.get('x_native') else '-'} | {r['load_seconds'] or '-'} | "
                         f"{r['error'] or ''} |")
        if s.get("error"):
            lines.append(f"\nFailed: {s['error']}")
    if "training" in res:
        t = res["training"]
        lines += ["", "## Training", "", t.get("what", "") + ". " + _conditions(res, "training"), "",
                  "| Rows | Train rows | Mode | Seconds | Peak RSS MB | Note |", "|---:|---:|---|---:|---:|---|"]
        for r in t["results"]:
            if r.get("skipped"):
                lines.append(f"| {r['rows']:,} | - | {r['mode']} | - | - | skipped: {r['skipped']} |")
                continue
            lines.append(f"| {r['rows']:,} | {r.get('train_rows') or '-'} | {r['mode']} | {_spread(r['seconds'])} | "
                         f"{r['peak_rss_mb']:,.0f} | {r.get('error') or ''} |")
    if "demo" in res:
        d = res["demo"]["summary"]
        imports = (res.get("imports") or {}).get("seconds")
        lines += ["", "## The main job (`spark-mlops demo`)", "", res["demo"]["command"] + ". " + _conditions(res, "demo"),
                  "", "| | Cold | Warm |", "|---|---:|---:|",
                  f"| Wall | {_spread(d['cold']['wall_seconds'], ' s')} | {_spread(d['warm']['wall_seconds'], ' s')} |",
                  f"| Peak RSS | {_spread(d['cold']['peak_rss_mb'], ' MB', 0)} | "
                  f"{_spread(d['warm']['peak_rss_mb'], ' MB', 0)} |"]
        bare = d.get("bare_start") or {}
        lines.append(f"| bare Spark start + one tiny job (paired with each warm run) | - | "
                     f"{_spread(bare.get('wall_seconds'), ' s')} |")
        lines.append(f"| warm / bare start, pair by pair | - | {_ratio(res['demo'].get('x_bare_start'))} |")
        # jobs, the steps inside them (summed over the jobs that run them), then the spans in steps
        names = list(dict.fromkeys([*d["cold"]["spans"], *d["warm"]["spans"]]))
        for name in sorted(names, key=lambda n: (not n.startswith("job."), not n.startswith("step."),
                                                 names.index(n))):
            label = name if name.startswith(("job.", "step.")) else "&nbsp;&nbsp;" + name
            lines.append(f"| {label} | {_spread(d['cold']['spans'].get(name), ' s')} | "
                         f"{_spread(d['warm']['spans'].get(name), ' s')} |")
        if imports:
            lines.append(f"| imports (fresh interpreter, measured apart) | {_spread(imports, ' s')} | "
                         f"{_spread(imports, ' s')} |")
        failed = d["cold"]["failed_runs"] + d["warm"]["failed_runs"]
        if failed:
            lines.append(f"\n{failed} demo run(s) failed; see the logs under benchmarks/results/raw/logs.")
    if "tests" in res:
        t = res["tests"]
        lines += ["", "## Test suite", "",
                  f"`{t['command']}`: {t['wall_seconds']:.0f} s wall, exit {t['returncode']}, peak RSS "
                  f"{t['peak_rss_mb']:,.0f} MB ({t['summary']}). " + _conditions(res, "tests")]
    lines += ["", f"Total benchmark time: {res.get('total_seconds')} s.", ""]
    return "\n".join(lines)
