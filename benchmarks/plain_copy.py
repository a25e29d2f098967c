"""A plain PySpark read-and-write of a parquet batch, as a whole process.

    python -m benchmarks.plain_copy --input DIR --output DIR --state-dir DIR

The whole-process floor that ``spark-mlops score`` is compared with: the same interpreter, the
same Spark session settings (``spark_mlops.spark.get_spark``), the same input, and every column
written back as parquet; no contract, no model, no registry, no MLflow.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.plain_copy")
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--state-dir", required=True)
    args = parser.parse_args(argv)

    from spark_mlops.config import build_settings
    from spark_mlops.spark import get_spark

    spark = get_spark(build_settings(state_dir=args.state_dir))
    spark.read.parquet(args.input).write.mode("overwrite").parquet(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
