"""A Spark-free local-table write for the crash tests in test_tables.py.

Its own module (not the test module) so that the subprocess does not import tests/conftest.py,
which clears every SPARK_MLOPS_* variable, the test-only pause switch included.
"""

from __future__ import annotations


def write_and_commit(warehouse: str, tag: str, partition: str, *keys: str) -> None:
    """Write a tiny parquet file per table (pyarrow, no JVM) and commit them with LocalTableStore."""
    from pathlib import Path

    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyspark.sql.types import StringType, StructField, StructType

    from spark_mlops.tables import LocalTableStore, StagedTable

    schema = StructType([StructField("tag", StringType()), StructField("table", StringType())]).jsonValue()
    store = LocalTableStore(Path(warehouse))
    staged = {}
    for key in keys:
        folder = store.staging_dir(key)
        data = folder / f"batch_id={partition}" if partition else folder
        data.mkdir(parents=True)
        pq.write_table(pa.table({"tag": [tag] * 3, "table": [key] * 3}), data / "part-0.parquet")
        staged[key] = StagedTable(folder, schema, ("batch_id",) if partition else ())
    store.commit(staged, partition=("batch_id", partition) if partition else None)
