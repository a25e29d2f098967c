"""Entry points for the job-cluster tests (test_runner_cluster.py): tasks that use Spark the way
the lifecycle's tasks do (``SparkSession.builder.getOrCreate()``, ``spark_mlops.spark.get_spark``)
and append what they found to the ``--log`` file as one JSON line."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

_LEFT: list[str] = []  # what this Python process was left by earlier tasks (module state)


def _args() -> dict[str, str]:
    out: dict[str, str] = {}
    for arg in sys.argv[1:]:
        key, _, value = arg.removeprefix("--").partition("=")
        out[key] = value
    return out


def _write(args: dict[str, str], entry: dict) -> None:
    with Path(args["log"]).open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry) + "\n")


def _session():
    from pyspark.sql import SparkSession

    return SparkSession.builder.getOrCreate()


def _seen(spark, name: str) -> dict:
    from pyspark.sql import SparkSession

    from spark_mlops.config import build_settings
    from spark_mlops.spark import get_spark

    sc = spark.sparkContext
    return {
        "task": name, "pid": os.getpid(),
        "jvm_pid": int(spark._jvm.java.lang.ProcessHandle.current().pid()),
        "app_id": sc.applicationId,
        "active_is_builder": SparkSession.getActiveSession() is spark,
        "product_app_id": get_spark(build_settings()).sparkContext.applicationId,
        "temp_views": sorted(t.name for t in spark.catalog.listTables() if t.isTemporary),
        "conf_left": spark.conf.get("spark.mlops.test.left", None),
        "module_left": list(_LEFT), "env_left": os.environ.get("CLUSTER_TASKS_LEFT"),
    }


def report() -> None:
    """What this task finds on its Spark session and in its Python, then leaves some of both."""
    args = _args()
    name = args.get("name", "report")
    spark = _session()
    entry = _seen(spark, name)
    if args.get("udf"):  # a Python UDF: a worker the cluster's JVM starts
        from pyspark.sql.functions import udf

        double = udf(lambda x: x * 2, "long")
        entry["udf"] = [r[0] for r in spark.range(3).select(double("id")).collect()]
    if args.get("wait_idle"):  # the Spark jobs an earlier task left: canceled?
        tracker = spark.sparkContext.statusTracker()
        deadline = time.monotonic() + float(args["wait_idle"])
        while tracker.getActiveJobsIds() and time.monotonic() < deadline:
            time.sleep(0.2)
        entry["active_jobs"] = list(tracker.getActiveJobsIds())
    spark.range(1).createOrReplaceTempView(f"{name}_view")
    spark.conf.set("spark.mlops.test.left", name)
    _LEFT.append(name)
    os.environ["CLUSTER_TASKS_LEFT"] = name
    _write(args, entry)


def die() -> None:
    """Starts a Spark job that would run for hours, then SIGKILLs its own process (never the
    runner's: ``--runner-pid``)."""
    args = _args()
    if str(os.getpid()) == args.get("runner-pid"):
        raise RuntimeError("this task runs in the runner's process: not killing it")
    spark = _session()
    _write(args, {**_seen(spark, args.get("name", "die")), "event": "started"})
    threading.Thread(target=lambda: spark.range(10 ** 13).selectExpr("sum(id * id)").collect(), daemon=True).start()
    tracker = spark.sparkContext.statusTracker()
    deadline = time.monotonic() + 60
    while not tracker.getActiveJobsIds() and time.monotonic() < deadline:
        time.sleep(0.1)
    os.kill(os.getpid(), signal.SIGKILL)


def linger() -> None:
    """Attaches, then sleeps ``--seconds`` (past its timeout)."""
    args = _args()
    _session()
    time.sleep(float(args.get("seconds", "0")))


def stop_spark() -> None:
    """``spark.stop()``, then ``getOrCreate()`` again and a query."""
    args = _args()
    spark = _session()
    spark.stop()
    again = _session()
    _write(args, {**_seen(again, args.get("name", "stop_spark")), "count_after": again.range(5).count()})
