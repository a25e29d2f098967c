"""Smoke test of the benchmarks on tiny data: every piece runs and the results have their keys.

No timing is asserted here; the figures live in benchmarks/results/latest.{json,md}.
"""

from __future__ import annotations

import json
import sys

from benchmarks import measure, report, workloads


def test_workloads_and_report_on_tiny_data(spark, tmp_path):
    small = {"numTrees": 5, "maxDepth": 3}  # the workloads' code paths, not their default model size
    setup = workloads.setup_champion(spark, tmp_path, rows=600, params=small)
    assert setup["model_version"] == "1"

    scoring = []
    for path in ("floor", "native", "score_command", "pandas"):  # spark_udf: about 40 s of fixed cost
        r = workloads.score(spark, tmp_path, path, rows=300, reps=1)
        assert r["error"] is None, r
        assert len(r["seconds"]) == 1 and r["seconds"][0] > 0
        scoring.append({"path": path, "rows": 300, "reps": 1, "seconds": measure.stats(r["seconds"]),
                        "rows_per_second": measure.stats([300 / s for s in r["seconds"]], 0),
                        "load_seconds": r["load_seconds"], "peak_rss_mb": 0.0, "error": None,
                        "x_floor_time": 1.0})
    assert (tmp_path / "out" / "native").is_dir()

    trained = workloads.train(spark, tmp_path, rows=600, mode="cv", reps=1, params=small)
    assert trained["train_rows"] > 0 and len(trained["seconds"]) == 1

    results = {
        "started_at": "now", "quick": True, "machine": measure.machine(),
        "scoring": {"input": "tiny", "results": scoring},
        "training": {"what": "tiny", "results": [{"mode": "cv", "rows": 600, "train_rows": trained["train_rows"],
                                                  "seconds": measure.stats(trained["seconds"]),
                                                  "peak_rss_mb": 0.0, "error": None}]},
    }
    for key in ("cores", "memory_gib", "java", "python", "spark", "mlflow", "load_average_at_start"):
        assert results["machine"][key] is not None, key
    text = report.render(json.loads(json.dumps(results)))
    assert "## Batch scoring" in text and "| 300 | native |" in text and "## Training" in text
    assert [t[0] for t in report.targets(results)][:2] == [
        "native scoring >= 10x faster than spark_udf at 300 rows", "native scoring within 2x of the I/O floor at 300 rows"]


def test_run_measured_samples_the_process_tree_and_reads_spans(tmp_path):
    spans = tmp_path / "spans.json"
    child = "import time; b = bytearray(64 * 1024 * 1024); time.sleep(0.6)"
    script = (
        "import os, subprocess, sys\n"
        "from spark_mlops.timing import span\n"
        f"with span('step.child'):\n    subprocess.run([sys.executable, '-c', {child!r}], check=True)\n"
    )
    env = {**__import__("os").environ, "SPARK_MLOPS_TIMINGS": str(spans)}
    m = measure.run_measured([sys.executable, "-c", script], env=env, log=tmp_path / "log.txt")
    assert m["returncode"] == 0
    assert m["peak_rss_mb"] > 64  # the child's 64 MB are counted with the parent
    recorded = json.loads(spans.read_text())["spans"]
    assert [s["name"] for s in recorded] == ["step.child"] and recorded[0]["seconds"] >= 0.6
