"""The local session's settings that the rest of the code relies on."""

from __future__ import annotations


def test_column_functions_record_no_call_site(spark):
    from pyspark.errors.utils import is_debugging_enabled
    from pyspark.sql import functions as F

    assert spark.conf.get("spark.python.sql.dataFrameDebugging.enabled") == "false"
    F.col("x") + 1  # the first Column function call reads the setting once per process
    assert is_debugging_enabled() is False


def test_on_two_cores_or_fewer_the_driver_uses_the_serial_collector(spark):
    import os

    beans = spark._jvm.java.lang.management.ManagementFactory.getGarbageCollectorMXBeans()
    names = {bean.getName() for bean in beans}
    if (os.cpu_count() or 2) <= 2:
        assert names == {"Copy", "MarkSweepCompact"}  # the serial collector's young and old generations
    else:
        assert "Copy" not in names


def test_rows_built_on_the_driver_reach_the_jvm_without_python_workers(spark):
    """frame_of_rows keeps types, nulls and UTC timestamps, and its plan has no PythonRDD, whose
    first action would start Python workers (createDataFrame of a list does)."""
    from datetime import UTC, datetime

    from spark_mlops.spark import frame_of_rows

    at = datetime(2026, 12, 5, 1, 2, 3, tzinfo=UTC)
    rows = [("m", 0.25, 3, at), ("m", None, None, at)]
    frame = frame_of_rows(spark, rows, "name string, value double, rows long, at timestamp")
    assert [f.dataType.simpleString() for f in frame.schema] == ["string", "double", "bigint", "timestamp"]
    assert [tuple(r) for r in frame.selectExpr("name", "value", "rows", "date_format(at, 'HH:mm:ss')").collect()] \
        == [("m", 0.25, 3, "01:02:03"), ("m", None, None, "01:02:03")]  # the session's time zone is UTC
    assert "PythonRDD" not in frame._jdf.queryExecution().toRdd().toDebugString()
    assert "PythonRDD" in spark.createDataFrame(rows, frame.schema)._jdf.queryExecution().toRdd().toDebugString()
