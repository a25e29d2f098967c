"""A plain PySpark read of a parquet batch and a Delta write of it, as a whole process.

    python -m benchmarks.plain_copy --input DIR --output DIR --state-dir DIR

The whole-process floor that ``spark-mlops score`` is compared with: the same interpreter, the
same Spark session settings (``spark_mlops.spark.get_spark``, Delta Lake loaded), the same input,
and every column written to a path-based Delta table (overwritten); no contract, no model, no
registry, no MLflow.
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
    spark.read.parquet(args.input).write.format("delta").mode("overwrite").save(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
