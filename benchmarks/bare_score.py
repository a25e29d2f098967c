"""The bare minimum that does ``score``'s work, as a whole process: what ``score`` is paired against.

    python -m benchmarks.bare_score --input DIR --output DIR --model-uri models:/NAME/VERSION \
        --tracking-uri URI --registry-uri URI --key patient_id

A script anyone would write without this project: a Spark session with plain settings (the
defaults, plus Delta Lake's two documented session settings and its jars from the local
repository with ``spark.jars``, so nothing is downloaded), ``mlflow.spark.load_model`` of the
same registered version, ``transform`` of the parquet batch as read, and each row's key,
prediction and P(class 1) written to a path-based Delta table (overwritten). No contract, no
rejects, no batch partition, no lineage columns, no MLflow run.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bare_score")
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--model-uri", required=True)
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--registry-uri", required=True)
    parser.add_argument("--key", action="append", required=True, help="a key column (repeat for several)")
    args = parser.parse_args(argv)

    import mlflow
    import mlflow.spark
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    from spark_mlops import delta_jars

    spark = (SparkSession.builder.master("local[*]").appName("bare-score")
             .config("spark.jars", ",".join(str(j) for j in delta_jars.class_path()))
             .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
             .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
             .getOrCreate())
    mlflow.set_tracking_uri(args.tracking_uri)
    mlflow.set_registry_uri(args.registry_uri)
    model = mlflow.spark.load_model(args.model_uri)
    scored = model.transform(spark.read.parquet(args.input))
    (scored.select(*args.key, F.col("prediction").cast("int").alias("prediction"),
                   vector_to_array("probability")[1].alias("probability"))
     .write.format("delta").mode("overwrite").save(args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
