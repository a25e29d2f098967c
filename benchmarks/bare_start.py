"""The main job's baseline: a bare local Spark start plus one tiny job, as a whole process.

    python -m benchmarks.bare_start --state-dir DIR

The same session the lifecycle's steps build (``spark_mlops.spark.get_spark``: Delta Lake loaded,
the same Java options and class archive, the same settings), one Spark job
(``spark.range(1).count()``), then exit. The main job (``spark-mlops demo``) is compared with this
process pair by pair: the ratio says how many "Spark starts" the whole story costs.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bare_start")
    parser.add_argument("--state-dir", required=True)
    args = parser.parse_args(argv)

    from spark_mlops.config import build_settings
    from spark_mlops.spark import get_spark

    spark = get_spark(build_settings(state_dir=args.state_dir))
    return 0 if spark.range(1).count() == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
