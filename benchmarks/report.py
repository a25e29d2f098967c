"""The markdown view of a results JSON, and the targets checked against it."""

from __future__ import annotations

PIECES = ("imports", "scoring", "training", "demo", "tests")

DEMO_SPANS = (  # (span name, label); indented labels are parts of the step above them
    ("spark.start", "Spark start (inside the first step)"),
    ("step.prepare", "prepare (incl. Spark start, first imports)"),
    ("step.train", "train step"),
    ("train.fit", "  fit"),
    ("train.log_model", "  log model"),
    ("train.register", "  register + @challenger"),
    ("step.validate", "validate"),
    ("validate.load_model", "  load model"),
    ("step.promote", "promote"),
    ("step.check-batch", "check batch"),
    ("step.score", "score"),
    ("score.load_model", "  load model"),
)


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


def targets(res: dict) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met) for each target of the issue; met is None when not measured."""
    out: list[tuple[str, str, bool | None]] = []
    scoring = (res.get("scoring") or {}).get("results", [])
    big = max((r["rows"] for r in scoring), default=None)
    native, udf, floor = (_find(scoring, path=p, rows=big) for p in ("native", "spark_udf", "floor"))
    n, u, f = _median(native), _median(udf), _median(floor)
    out.append((f"native scoring >= 10x faster than spark_udf at {big:,} rows" if big else "native vs spark_udf",
                f"{u / n:.1f}x" if n and u else "not measured", (u / n >= 10) if n and u else None))
    out.append((f"native scoring within 2x of the I/O floor at {big:,} rows" if big else "native vs floor",
                f"{n / f:.2f}x the floor's time" if n and f else "not measured", (n / f <= 2) if n and f else None))
    warm = ((res.get("demo") or {}).get("summary") or {}).get("warm")
    if warm and warm["wall_seconds"]["median"] is not None:
        w, m = warm["wall_seconds"], warm["peak_rss_mb"]
        out.append(("main job warm wall <= 20 s", f"{w['median']:.1f} s (median; max {w['max']:.1f})",
                    w["median"] <= 20))
        out.append(("main job peak RSS <= 1.2 GB (Python + Java)", f"{m['median'] / 1024:.2f} GB (median; max "
                    f"{m['max'] / 1024:.2f})", m["median"] <= 1.2 * 1024))
    for label, rows, key, pick in (
        ("native scoring", scoring, "path", "native"),
        ("training (defaults)", ((res.get("training") or {}).get("results", [])), "mode", "default"),
    ):
        a, b = _median(_find(rows, **{key: pick, "rows": 100_000})), _median(_find(rows, **{key: pick, "rows": 1_000_000}))
        out.append((f"{label}: 1e5 -> 1e6 rows no worse than linear (time ratio <= 10)",
                    f"{b / a:.1f}x time for 10x rows" if a and b else "not measured", (b / a <= 10) if a and b else None))
    return out


def render(res: dict) -> str:
    m = res["machine"]
    lines = [
        "# Benchmark results",
        "",
        f"{res['started_at']}{' (quick run)' if res.get('quick') else ''}, git {m.get('git_commit')}: "
        f"{m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, {m['java']}, Python {m['python']}, "
        f"Spark {m['spark']}, MLflow {m['mlflow']}. Load average (1/5/15 min) {m['load_average_at_start']} at "
        f"start, {m.get('load_average_at_end')} at the end: a shared machine, so timings can move by up to 2x. "
        "Figures are medians with the spread (min-max) of the repetitions in brackets. "
        "Peak RSS is Python + Java + workers together.",
        "",
        "; ".join(f"{k} measured at {res[k]['measured']['started_at']} (git {res[k]['measured']['git_commit']}, "
                  f"load {res[k]['measured']['load_average_at_start']})"
                  for k in PIECES if isinstance(res.get(k), dict) and "measured" in res[k]),
        "",
        "## Targets",
        "",
        "| Target | Measured | Met |",
        "|---|---|---|",
    ]
    for name, value, met in targets(res):
        lines.append(f"| {name} | {value} | {'yes' if met else ('no' if met is False else '-')} |")
    if "scoring" in res:
        s = res["scoring"]
        lines += ["", "## Batch scoring", "", f"Input: {s.get('input', '-')}. Time from reading the input to the "
                  "written parquet; model load excluded (shown separately).", "",
                  "| Rows | Path | Rows/s | Seconds | x floor time | Model load s | Peak RSS MB | Note |",
                  "|---:|---|---:|---:|---:|---:|---:|---|"]
        for r in s.get("results", []):
            note = r["error"] or ""
            lines.append(f"| {r['rows']:,} | {r['path']} | {_spread(r['rows_per_second'], '', 0)} | "
                         f"{_spread(r['seconds'])} | {r['x_floor_time'] or '-'} | {r['load_seconds'] or '-'} | "
                         f"{r['peak_rss_mb']:,.0f} | {note} |")
        if s.get("error"):
            lines.append(f"\nScoring failed: {s['error']}")
    if "training" in res:
        t = res["training"]
        lines += ["", "## Training", "", t.get("what", ""), "",
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
        lines += ["", "## The main job (`spark-mlops demo`)", "", res["demo"]["command"] + ".", "",
                  "| | Cold | Warm |", "|---|---:|---:|",
                  f"| Wall | {_spread(d['cold']['wall_seconds'], ' s')} | {_spread(d['warm']['wall_seconds'], ' s')} |",
                  f"| Peak RSS | {_spread(d['cold']['peak_rss_mb'], ' MB', 0)} | "
                  f"{_spread(d['warm']['peak_rss_mb'], ' MB', 0)} |"]
        for name, label in DEMO_SPANS:
            cold, warm = d["cold"]["spans"].get(name), d["warm"]["spans"].get(name)
            if cold or warm:
                lines.append(f"| {label.replace('  ', '&nbsp;&nbsp;')} | {_spread(cold, ' s')} | {_spread(warm, ' s')} |")
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
                  f"{t['peak_rss_mb']:,.0f} MB ({t['summary']}); load average at the end {t['load_average']}."]
    lines += ["", f"Total benchmark time: {res.get('total_seconds')} s.", ""]
    return "\n".join(lines)
