"""The one Spark session factory.

On Databricks it returns the cluster's session. Anywhere else it builds a quiet local session
with Delta Lake (the jars bootstrap fetched, :mod:`spark_mlops.delta_jars`), whose temp, warehouse
and metastore folders live under the state folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

from pyspark import SparkConf, SparkContext
from pyspark.java_gateway import launch_gateway
from pyspark.sql import SparkSession

from spark_mlops import delta_jars, devkit, logs
from spark_mlops.config import Settings, on_databricks
from spark_mlops.timing import span


def log4j2_properties(verbose: bool) -> str:
    """The JVM's log configuration: ERROR and above by default, WARN and above at -v.

    PySpark counts as a shell: Spark takes the level configured for the first class that logs
    (WARN when no logger of its own covers it) as the console's level, and announces it ("Setting
    default log level to ...") when it differs from the root's
    (``org.apache.spark.internal.Logging.initializeLogging``). So ``org.apache.spark`` gets a
    logger of its own at the root's level.
    """
    level = "warn" if verbose else "error"
    return f"""\
rootLogger.level = {level}
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{{HH:mm:ss}} %p %c{{1}}: %m%n
logger.spark.name = org.apache.spark
logger.spark.level = {level}
logger.hadoop.name = org.apache.hadoop
logger.hadoop.level = error
logger.sparkenv.name = org.apache.spark.SparkEnv
logger.sparkenv.level = error
"""


def get_spark(settings: Settings) -> SparkSession:
    """The active session if there is one (Databricks, the local runner, tests), else a new local one."""
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    if on_databricks():
        return SparkSession.builder.getOrCreate()
    # Local tables are registered in the (in-memory) catalog when first read, not here:
    # re-registering every table at start-up costs about a second per table.
    with span("spark.start"):
        return _local_session(settings.state_dir)


def _local_session(state_dir: Path) -> SparkSession:
    tmp = state_dir / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    verbose = logs.verbose()
    log4j = state_dir / ("log4j2-verbose.properties" if verbose else "log4j2.properties")
    text = log4j2_properties(verbose)
    if not log4j.exists() or log4j.read_text() != text:
        log4j.write_text(text)
    # Python workers must run this interpreter, not whatever python3 is first on PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("SPARK_LOCAL_DIRS", str(tmp / "spark"))  # shuffle and cache spill files
    jars = delta_jars.class_path()  # before anything starts: a missing jar is one line, not a JVM error
    # The development kit's class-data-sharing archive of Spark's classes, when it is installed
    # (a faster JVM start; clusters have their own JVMs and no kit).
    archive_options = _class_archive_options(jars)
    cores = os.cpu_count() or 2
    java_opts = " ".join(filter(None, [
        f"-Dlog4j.configurationFile=file:{log4j} -Djava.io.tmpdir={tmp} -Dderby.system.home={tmp}",
        # On 2 cores the serial collector scored 1e6 rows and ran the main job in the same time as
        # G1 (the JVM's choice from 2 cores and 1792 MB up) with 90-190 MB less resident memory.
        "-XX:+UseSerialGC" if cores <= 2 else "",
        archive_options,
    ]))
    conf = (
        SparkConf()
        .setMaster(os.environ.get("SPARK_MLOPS_MASTER", "local[*]"))
        .setAppName("spark-mlops")
        .set("spark.driver.memory", os.environ.get("SPARK_MLOPS_DRIVER_MEMORY", "1g"))
        .set("spark.driver.extraJavaOptions", java_opts)
        # Delta Lake, as Databricks has it: the SQL extension (DELETE, DESCRIBE HISTORY, time travel)
        # and the catalog that makes `delta.`<path>`` a table (docs: delta quick-start, "Set up
        # Apache Spark with Delta Lake"). The jars go on the JVM's own class path, where the class
        # archive covers them: spark.jars.packages would run an Ivy resolution at every start, and
        # spark.jars would copy the jars for the executor and load them through Spark's class loader.
        .set("spark.driver.extraClassPath", os.pathsep.join(str(j) for j in jars))
        .set("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .set("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
        # Delta rebuilds a table's file list after each commit with a shuffle into 50 partitions
        # (Snapshot.defaultNumSnapshotPartitions); a local table has a few hundred log entries
        # at most, and 50 tasks of nothing cost seconds per read and per write on 2 cores. One
        # partition: an overwrite and a read of 1,000 rows took 1.15 s against 1.26 s with two.
        .set("spark.databricks.delta.snapshotPartitions", "1")
        .set("spark.ui.enabled", "false")
        .set("spark.ui.showConsoleProgress", "false")
        .set("spark.sql.warehouse.dir", str(state_dir / "warehouse"))
        # Local data is small: the default 200 shuffle partitions only add task overhead.
        .set("spark.sql.shuffle.partitions", str(max(4, 2 * cores)))
        # Splits of at most 32 MB instead of 128 MB: a 1e7-row batch (40 parquet files of 3.3 MB,
        # each counted as 3.3 MB + the 4 MB open cost) becomes 10 even tasks instead of 17+17+6
        # files, whose last wave leaves a core idle. Smaller inputs already split finer (total
        # size / default parallelism), and a one-row-group file stays one split whatever this says.
        .set("spark.sql.files.maxPartitionBytes", str(32 * 1024 * 1024))
        .set("spark.sql.session.timeZone", "UTC")
        # Off: with it on, every Column function call walks the Python stack and makes several
        # more py4j calls to record where it was made, for error messages (StaticSQLConf
        # PYTHON_SQL_DATAFRAME_DEBUGGING_ENABLED: "a non-trivial performance overhead";
        # pyspark/errors/utils.py _with_origin). Building a contract's rules cost seconds per step.
        .set("spark.python.sql.dataFrameDebugging.enabled", "false")
    )
    if SparkContext._gateway is None and not verbose:  # the JVM is launched once per process
        _launch_jvm_without_incubator_warning(conf)
    return SparkSession.builder.config(conf=conf).getOrCreate()


def frame_of_rows(spark: SparkSession, rows: list[tuple], ddl_schema: str):
    """A DataFrame of a few rows built on the driver, handed to the JVM as one Arrow batch.

    ``createDataFrame`` of a Python list goes through an RDD of pickled rows, whose first action
    starts Python workers to unpickle them: about a second and 160 MB of resident memory in a
    local run, for a dozen rows. An Arrow table is read by the JVM itself
    (``pyspark.sql.pandas.conversion._create_from_arrow_table``)."""
    import pyarrow as pa
    from pyspark.sql.pandas.types import to_arrow_schema
    from pyspark.sql.types import StructType

    struct = StructType.fromDDL(ddl_schema)
    table = pa.Table.from_pylist([dict(zip(struct.names, row, strict=True)) for row in rows],
                                 schema=to_arrow_schema(struct))
    return spark.createDataFrame(table, struct)


def _class_archive_options(extra_class_path: list[Path]) -> str:
    """Java options for this JVM's class-data-sharing archive; none once a JVM is running (its
    options are fixed) or without the development kit. ``extra_class_path``: Delta Lake's jars,
    which go before Spark's own (an archive is mapped only with the class path it was made with)."""
    kit = devkit.load()
    if kit is None or SparkContext._gateway is not None:
        return ""
    return kit.class_archive_options(lambda: getattr(SparkContext._gateway, "proc", None), extra_class_path)


# Spark's launcher always adds --add-modules=jdk.incubator.vector to the driver's java command
# (launcher JavaModuleOptions.DEFAULT_MODULE_OPTIONS), and the JVM then prints this line on
# stderr at start-up; no java option silences it.
INCUBATOR_WARNING = b"WARNING: Using incubator modules:"


def _launch_jvm_without_incubator_warning(conf: SparkConf) -> None:
    """Start the py4j JVM with its stderr piped through a thread that drops the incubator line.

    ``launch_gateway(popen_kwargs=...)`` is pyspark's hook for capturing the JVM's stderr
    (pyspark/java_gateway.py); ``SparkContext._ensure_initialized`` is where pyspark itself
    installs a gateway, and a session built afterwards uses it instead of launching another.
    """
    gateway = launch_gateway(conf, popen_kwargs={"stderr": subprocess.PIPE})
    threading.Thread(target=forward_jvm_stderr, args=(gateway.proc.stderr,), name="jvm-stderr",
                     daemon=True).start()
    SparkContext._ensure_initialized(gateway=gateway, conf=conf)


def forward_jvm_stderr(stream: IO[bytes]) -> None:
    """Copy the JVM's stderr to this process's fd 2, where it went before, minus the incubator line."""
    for line in iter(stream.readline, b""):
        if not line.startswith(INCUBATOR_WARNING):
            os.write(2, line)
