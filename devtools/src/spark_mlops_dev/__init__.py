"""The spark-mlops development kit: local tooling that job clusters never install.

The local job runner, the bundle's resolution by the real Databricks CLI against its fake
workspace, and the validator (``bundle/``), the main job (``demo``), example data
(``synthetic``), the MLflow UI launcher (``ui``) and the local JVM's class-data-sharing archive
(``class_archive``). The lifecycle reaches the kit only through
``spark_mlops.devkit``, which finds :mod:`spark_mlops_dev.hooks` through the entry-point group
``spark_mlops.devkit`` (never by an import).
"""
