"""The measured workloads. Each takes a SparkSession and a work folder and returns plain data,
so the orchestrator can run it in a subprocess (for peak memory) and tests can run it in-process.

Scoring paths, all on the same ``@champion`` model and the same parquet input (synthetic rows,
250k rows per file), each timed from reading the input to the written parquet output:

- ``floor``: read the input and write the key and the features out again, no model (the I/O floor);
- ``native``: what ``spark_mlops.scoring`` does: ``mlflow.spark.load_model`` (once) then
  ``transform`` (without the raw prediction column, as ``scoring.without_raw_prediction``) and the
  lineage columns, written as parquet;
- ``score_command``: ``spark_mlops.scoring.run`` as the CLI runs it (contract checks, registry
  lookup, partitioned table write, counts, MLflow run);
- ``spark_udf``: ``mlflow.pyfunc.spark_udf(..., env_manager="local")``, as the older design scored;
- ``pandas``: ``mlflow.pyfunc.load_model(...).predict`` on a pandas DataFrame read with pandas.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

SCORING_PATHS = ("floor", "native", "score_command", "spark_udf", "pandas")
MODEL_NAME = "bench_model"
TRAIN_SEED, SCORE_SEED = 11, 23


def settings_for(workdir: Path):
    from spark_mlops.config import build_settings

    return build_settings(state_dir=str(workdir / "state"), model_name=MODEL_NAME, experiment="bench",
                          git_commit="bench")


def _synthetic_input(workdir: Path, kind: str, rows: int, seed: int, with_label: bool) -> Path:
    """A parquet folder of ``rows`` synthetic rows, written once and reused across runs."""
    from spark_mlops_dev import synthetic

    path = workdir / "data" / f"{kind}-{rows}"
    if not (path / "_DONE").exists():
        shutil.rmtree(path, ignore_errors=True)
        synthetic.write(str(path), rows=rows, seed=seed, fmt="parquet", with_label=with_label)
        (path / "_DONE").write_text("")
    return path


def scoring_input(workdir: Path, rows: int) -> Path:
    return _synthetic_input(workdir, "score", rows, SCORE_SEED, with_label=False)


def training_input(workdir: Path, rows: int) -> Path:
    return _synthetic_input(workdir, "train", rows, TRAIN_SEED, with_label=True)


def setup_champion(spark, workdir: Path, rows: int = 10_000, params: dict | None = None) -> dict:
    """Prepare, train, validate and promote one model: the ``@champion`` every scoring path uses."""
    from spark_mlops import prepare, promotion, registry, training, validation
    from spark_mlops.config import CHAMPION_ALIAS, PrepareConfig, PromoteConfig, TrainConfig, ValidateConfig

    settings = settings_for(workdir)
    existing = registry.alias_version(settings, CHAMPION_ALIAS) if settings.state_dir.exists() else None
    if existing:
        return {"model_version": existing, "reused": True}
    source = training_input(workdir, rows)
    prepare.run(settings, PrepareConfig(input=str(source)))
    training.run(settings, TrainConfig(params=params or {}))
    validation.run(settings, ValidateConfig())
    version = promotion.promote(settings, PromoteConfig(reason="benchmark"))
    return {"model_version": version, "reused": False, "training_rows": rows}


# ---------------------------------------------------------------- scoring


def _features_frame(spark, source: Path, contract):
    from pyspark.sql import functions as F

    df = spark.read.parquet(str(source))
    return df.select(*contract.key_columns, *[F.col(c).cast("double").alias(c) for c in contract.feature_names])


def score_rounds(spark, workdir: Path, cells: list[tuple[str, int]], rounds: int) -> dict:
    """Time each (path, rows) cell once per round, the cells in the given order in every round.

    Interleaving (A B A B ...) is what makes ratios trustworthy on a shared machine: the cells of
    one round ran within seconds of each other, so the ratio of two cells is taken round by round.
    Model loading is timed once per path, apart. A failing cell (e.g. out of memory) is recorded
    and not retried; the other cells go on.
    """
    import mlflow
    import mlflow.pyfunc
    import mlflow.spark

    from spark_mlops import contract as dc
    from spark_mlops import registry, scoring, tracking
    from spark_mlops.config import CHAMPION_ALIAS

    unknown = sorted({p for p, _ in cells} - set(SCORING_PATHS))
    if unknown:
        raise ValueError(f"unknown scoring path(s) {unknown}; choose from {SCORING_PATHS}")
    settings = settings_for(workdir)
    tracking.configure(settings)
    contract = dc.load_contract()
    version = registry.require_alias(settings, CHAMPION_ALIAS, "run the benchmark setup first")
    uri = registry.model_uri(settings, version)
    for rows in sorted({r for _, r in cells}):
        scoring_input(workdir, rows)  # generated once, before any timing

    models, load_seconds = {}, {}
    for path in dict.fromkeys(p for p, _ in cells):
        start = time.perf_counter()
        if path == "native":
            models[path] = scoring.without_raw_prediction(mlflow.spark.load_model(uri))
        elif path == "spark_udf":
            models[path] = mlflow.pyfunc.spark_udf(spark, uri, env_manager="local", result_type="double")
        elif path == "pandas":
            models[path] = mlflow.pyfunc.load_model(uri)
        load_seconds[path] = round(time.perf_counter() - start, 3)

    times: list[dict] = []
    failed: set[tuple[str, int]] = set()
    for i in range(rounds):
        for path, rows in cells:
            if (path, rows) in failed:
                continue
            start = time.perf_counter()
            error = None
            try:
                _score_once(spark, workdir, settings, contract, version, path, rows, models.get(path))
            except Exception as exc:  # noqa: BLE001 - e.g. out of memory: record it, do not crash
                error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}"
                failed.add((path, rows))
            times.append({"round": i, "path": path, "rows": rows, "error": error,
                          "seconds": None if error else round(time.perf_counter() - start, 4)})
    return {"model_version": version, "load_seconds": load_seconds, "times": times}


def _score_once(spark, workdir: Path, settings, contract, version: str, path: str, rows: int, model) -> None:
    from pyspark.sql import functions as F

    from spark_mlops import scoring
    from spark_mlops.config import ScoreConfig

    source = scoring_input(workdir, rows)
    out = workdir / "out" / path
    out.parent.mkdir(parents=True, exist_ok=True)
    if path == "pandas":
        import pandas as pd

        frame = pd.read_parquet(source)
        features = frame[contract.feature_names].astype("float64")
        result = frame[list(contract.key_columns)].copy()
        result["prediction"] = model.predict(features)
        result.to_parquet(out, index=False)
        return
    if path == "score_command":
        scoring.run(settings, ScoreConfig(input=str(source), output_table="bench_predictions",
                                          rejected_table="bench_rejected", batch_id=f"rows{rows}"))
        return
    df = _features_frame(spark, source, contract)
    if path == "native":
        scored = scoring.with_lineage(model.transform(df), contract, settings.model_name, version,
                                      datetime.now(UTC).replace(microsecond=0))
    elif path == "spark_udf":
        scored = df.select(*contract.key_columns, model(*[F.col(c) for c in contract.feature_names]).alias("prediction"))
    else:
        scored = df
    scored.write.mode("overwrite").parquet(str(out))


def score(spark, workdir: Path, path: str, rows: int, reps: int) -> dict:
    """One path, ``reps`` times (unpaired; kept for quick checks by hand)."""
    r = score_rounds(spark, workdir, [(path, rows)], reps)
    seconds = [t["seconds"] for t in r["times"] if t["seconds"] is not None]
    error = next((t["error"] for t in r["times"] if t["error"]), None)
    return {"path": path, "rows": rows, "model_version": r["model_version"],
            "load_seconds": r["load_seconds"].get(path, 0.0), "seconds": seconds, "error": error}


# ---------------------------------------------------------------- monitoring (issue 11)


def monitor_vs_score(spark, workdir: Path, rows: int, reps: int = 1) -> dict:
    """Score a ``rows``-row batch with the CLI's code path, then monitor it, in the same run:
    the target is monitoring at most 0.5x the time of scoring."""
    from spark_mlops import monitoring, scoring
    from spark_mlops.config import ScoreConfig

    settings = settings_for(workdir)
    source = scoring_input(workdir, rows)
    batch = f"monitor{rows}"
    score_s, monitor_s = [], []
    for _ in range(reps):
        start = time.perf_counter()
        scoring.run(settings, ScoreConfig(input=str(source), output_table="bench_predictions",
                                          rejected_table="bench_rejected", batch_id=batch))
        score_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        monitoring.run(settings, monitoring.MonitorConfig(
            batch_id=batch, predictions_table="bench_predictions", rejected_table="bench_rejected",
            monitoring_table="bench_monitoring", input=str(source)))
        monitor_s.append(time.perf_counter() - start)
    # Paired: each monitor run follows the score run of the same batch; the ratio is taken pair by pair.
    return {"rows": rows, "score_seconds": score_s, "monitor_seconds": monitor_s,
            "ratios": [m / sc for m, sc in zip(monitor_s, score_s, strict=True)]}


# ---------------------------------------------------------------- the batch_inference job (issue 30)

BATCH_INFERENCE_TASKS = ("check_batch", "score", "monitor", "drift_check")


def _cpu_seconds() -> float:
    """CPU seconds this process and its Spark JVM (the local master: driver and executors) have used."""
    from pyspark import SparkContext

    t = os.times()
    total = t.user + t.system
    proc = getattr(SparkContext._gateway, "proc", None)
    if proc is not None:
        stat = Path(f"/proc/{proc.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def batch_inference_rounds(spark, workdir: Path, rows: int, rounds: int, tables_suffix: str) -> dict:
    """The tasks of the ``batch_inference`` job on one ``rows``-row batch, in order, ``rounds``
    times in this process, each task timed (wall and CPU of this process and its JVM): as on a job
    cluster, where each task is a process attached to an already running Spark. Round 0 warms the
    JVM (class loading, code generation) and is reported apart. Only the step functions the job's
    wheel tasks call are used, with the same arguments in every version of the code, so that the
    same function can time an older commit (``PYTHONPATH`` pointing at its ``src``)."""
    from spark_mlops import monitoring, prepare, scoring, timing
    from spark_mlops.config import ScoreConfig

    settings = settings_for(workdir)
    source = str(scoring_input(workdir, rows))
    names = {"output_table": f"bench_bi_predictions{tables_suffix}",
             "rejected_table": f"bench_bi_rejected{tables_suffix}",
             "monitoring_table": f"bench_bi_monitoring{tables_suffix}"}
    batch = f"bi{rows}"
    tasks = {
        "check_batch": lambda settings: prepare.check_batch(settings, source),
        "score": lambda settings: scoring.run(settings, ScoreConfig(
            input=source, output_table=names["output_table"], rejected_table=names["rejected_table"], batch_id=batch)),
        "monitor": lambda settings: monitoring.run(settings, monitoring.MonitorConfig(
            batch_id=batch, predictions_table=names["output_table"], rejected_table=names["rejected_table"],
            monitoring_table=names["monitoring_table"], input=source)),
        "drift_check": lambda settings: monitoring.drift_check(settings, batch, names["monitoring_table"], source=source),
    }
    out = []
    for i in range(rounds + 1):
        # Each round is one job run, as the job's tasks get {{job.run_id}} (--job-run-id): what
        # check_batch records is then read back by score of the same round only (issue 30).
        job_run = dataclasses.replace(settings, job_run_id=f"bench-{uuid.uuid4().hex[:12]}-{i}")
        for task in BATCH_INFERENCE_TASKS:
            first_span = len(timing.SPANS)  # spans are recorded when SPARK_MLOPS_TIMINGS is set
            wall, cpu = time.perf_counter(), _cpu_seconds()
            tasks[task](job_run)
            spans: dict[str, float] = {}
            for s in timing.SPANS[first_span:]:
                spans[s["name"]] = round(spans.get(s["name"], 0.0) + s["seconds"], 3)
            out.append({"round": i, "task": task, "warm_up": i == 0, "seconds": round(time.perf_counter() - wall, 3),
                        "cpu_seconds": round(_cpu_seconds() - cpu, 3), "spans": spans})
    import spark_mlops

    return {"rows": rows, "times": out, "code": str(Path(spark_mlops.__file__).resolve().parents[1])}


JOB_BOUNDS_CELLS = ("read", "transform", "parquet_write", "delta_append", "delta_replace", "file_list",
                    "check_pass", "check_pass_no_keys")


def job_bounds_rounds(spark, workdir: Path, rows: int, rounds: int) -> dict:
    """The costs docs/scaling.md says bound the ``batch_inference`` job, each measured apart on the
    same ``rows``-row batch, every cell once per round (round 0 is a warm-up):

    - ``read``: the batch read and discarded (the ``noop`` sink); ``transform``: the champion's
      transform and the prediction columns, discarded: the model's own work;
    - over the predictions held in memory: a parquet write, a Delta append, and a Delta overwrite
      of one partition (``replaceWhere``, as ``score`` writes);
    - ``file_list``: after a 1,000-row append, the file list of that new table version (Delta's
      log replay, which any read or overwrite of a new version pays);
    - ``check_pass``: ``check_batch``'s counting pass; ``check_pass_no_keys``: the same without
      the count of distinct keys.
    """
    from pyspark.sql import functions as F

    from spark_mlops import contract as dc
    from spark_mlops import registry, scoring
    from spark_mlops.config import CHAMPION_ALIAS
    from spark_mlops.prepare import read_checked

    settings = settings_for(workdir)
    contract = dc.load_contract(settings.contract)
    source = str(scoring_input(workdir, rows))
    version = registry.alias_version(settings, CHAMPION_ALIAS)
    fitted, _ = registry.load_spark_model(settings, version)
    model = scoring.without_raw_prediction(fitted)
    batch = spark.read.parquet(source)
    scored = scoring.with_lineage(model.transform(batch), contract, settings.model_name, version,
                                  datetime.now(UTC).replace(microsecond=0))
    # Cached under a plan of its own: a cache of ``scored`` itself would also serve ``transform``.
    cached = scored.withColumn("__held", F.lit(True)).cache()
    cached.count()
    held = cached.drop("__held")
    out = workdir / "out" / "job_bounds"
    shutil.rmtree(out, ignore_errors=True)
    small = spark.range(1000).select(F.col("id"), (F.col("id") * 2).alias("value"))

    def file_list() -> float:
        small.write.format("delta").mode("append").save(str(out / "small"))
        start = time.perf_counter()
        spark.read.format("delta").load(str(out / "small")).inputFiles()
        return time.perf_counter() - start

    def check(keys: bool):
        return lambda: read_checked(spark, settings, source, contract, with_label=False, count_duplicate_keys=keys,
                                    count_rejected=True)

    partitioned = held.withColumn("batch_id", F.lit("b"))
    cells = {
        "read": lambda: batch.write.format("noop").mode("overwrite").save(),
        "transform": lambda: scored.write.format("noop").mode("overwrite").save(),
        "parquet_write": lambda: held.write.mode("overwrite").parquet(str(out / "parquet")),
        "delta_append": lambda: held.write.format("delta").mode("append").save(str(out / "append")),
        "delta_replace": lambda: (partitioned.write.format("delta").mode("overwrite").partitionBy("batch_id")
                                  .option("replaceWhere", "batch_id = 'b'").save(str(out / "replace"))),
        "file_list": file_list,
        "check_pass": check(True),
        "check_pass_no_keys": check(False),
    }
    times = []
    for i in range(rounds + 1):
        for name in JOB_BOUNDS_CELLS:
            start = time.perf_counter()
            timed = cells[name]()
            seconds = timed if isinstance(timed, float) else time.perf_counter() - start
            times.append({"round": i, "cell": name, "warm_up": i == 0, "seconds": round(seconds, 3)})
    cached.unpersist()
    return {"rows": rows, "times": times}


# ---------------------------------------------------------------- training


def train(spark, workdir: Path, rows: int, mode: str, reps: int, params: dict | None = None) -> dict:
    """Time ``training.fit`` (the pipeline, or a CrossValidator search) on a cached train split."""
    from pyspark.sql import functions as F

    from spark_mlops import contract as dc
    from spark_mlops import prepare, training
    from spark_mlops.config import PrepareConfig, TrainConfig, build_settings
    from spark_mlops.tables import tables_for

    settings = build_settings(state_dir=str(workdir / f"train-state-{rows}"), git_commit="bench")
    contract = dc.load_contract()
    clean_name = settings.table_name("clean")
    tables = tables_for(spark, settings)
    prepare_seconds = None
    if not tables.exists(clean_name):
        start = time.perf_counter()
        prepare.run(settings, PrepareConfig(input=str(training_input(workdir, rows)), min_rows=1))
        prepare_seconds = round(time.perf_counter() - start, 3)
    data = tables.read(clean_name).where(F.col(dc.SPLIT_COLUMN) == "train").cache()
    train_rows = data.count()
    if mode == "cv":
        conf = TrainConfig(params=params or {}, cv_folds=2, grid={"maxDepth": [4, 6]})
    else:
        conf = TrainConfig(params=params or {})
    times: list[float] = []
    for _ in range(reps):
        start = time.perf_counter()
        training.fit(data, contract, conf)
        times.append(time.perf_counter() - start)
    data.unpersist()
    return {"rows": rows, "train_rows": train_rows, "mode": mode, "seconds": times,
            "prepare_seconds": prepare_seconds,
            "config": {"classifier": conf.classifier, "cv_folds": conf.cv_folds, "grid": conf.grid}}


def imports() -> float:
    """Seconds to import what the demo's steps import (run in a fresh process)."""
    start = time.perf_counter()
    import spark_mlops.prepare  # noqa: F401
    import spark_mlops.promotion  # noqa: F401
    import spark_mlops.scoring  # noqa: F401
    import spark_mlops.training  # noqa: F401
    import spark_mlops.validation  # noqa: F401
    import spark_mlops_dev.bundle.runner  # noqa: F401

    return time.perf_counter() - start
