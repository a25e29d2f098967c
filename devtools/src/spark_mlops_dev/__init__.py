"""The spark-mlops development kit: local tooling that job clusters never install.

The local job runner and the offline bundle loader and validator (``bundle/``), the main job
(``demo``), example data (``synthetic``), the MLflow UI launcher (``ui``) and the local JVM's
class-data-sharing archive (``class_archive``). The lifecycle reaches the kit only through
``spark_mlops.devkit``, which finds :mod:`spark_mlops_dev.hooks` through the entry-point group
``spark_mlops.devkit`` (never by an import).
"""
