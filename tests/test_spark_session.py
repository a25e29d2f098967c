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
