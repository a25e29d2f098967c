"""What the kit adds to the lifecycle; ``spark_mlops.devkit.load()`` returns this module, found through
the entry-point group ``spark_mlops.devkit`` (``devtools/pyproject.toml``).

Kept to three functions so that the lifecycle's side of the boundary stays obvious.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from spark_mlops.config import Settings
from spark_mlops_dev.commands import add_commands  # noqa: F401 (part of the hook interface)


def settings_for_target(settings: Settings, target: str) -> Settings:
    """Locally, ``-t prod`` means the model, catalog and schema the prod target's jobs use."""
    from spark_mlops_dev.bundle import targets

    return targets.settings_for_target(settings, targets.load_local(target))


def class_archive_options(jvm_process: Callable[[], subprocess.Popen | None],
                          extra_class_path: Sequence[Path] = ()) -> str:
    """Java options that map (or make) the class-data-sharing archive of Spark's classes and the
    jars put before them (``extra_class_path``); when this process makes it, it is completed at exit
    from the JVM ``jvm_process()`` gives then."""
    import pyspark
    from pyspark.find_spark_home import _find_spark_home  # where launch_gateway finds bin/spark-submit

    from spark_mlops_dev import class_archive

    plan = class_archive.plan(class_archive.cache_dir(), class_archive.java_binary(),
                              Path(_find_spark_home()), pyspark.__version__, extra_class_path)
    class_archive.finish_at_exit(plan, jvm_process)
    return plan.java_options
