"""The development kit (``spark_mlops_dev``), when it is installed: the one place the lifecycle reaches it.

The wheel that job clusters install is the lifecycle alone. On a developer's machine and in CI,
``scripts/bootstrap.sh`` also installs the kit (``devtools/``), which adds the local tooling:
the ``run``, ``bundle``, ``demo``, ``ui`` and ``generate-data`` subcommands, ``-t TARGET``
meaning a target's model, catalog and schema from ``databricks.yml``, and a faster local JVM
start. Without the kit these are simply absent; nothing in the lifecycle depends on them.
"""

from __future__ import annotations

from types import ModuleType


def load() -> ModuleType | None:
    """``spark_mlops_dev.hooks``, or None when the kit is not installed."""
    try:
        from spark_mlops_dev import hooks
    except ModuleNotFoundError as exc:
        if exc.name in ("spark_mlops_dev", "spark_mlops_dev.hooks"):
            return None
        raise  # the kit is installed but broken: say so rather than run without it
    return hooks
