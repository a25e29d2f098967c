"""The development kit (``spark_mlops_dev``), when it is installed: the one place the lifecycle reaches it.

The wheel that job clusters install is the lifecycle alone. On a developer's machine and in CI,
``scripts/bootstrap.sh`` also installs the kit (``devtools/``), which adds the local tooling:
the ``run``, ``bundle``, ``demo``, ``ui`` and ``generate-data`` subcommands, ``-t TARGET``
meaning a target's model, catalog and schema from ``databricks.yml``, and a faster local JVM
start. Without the kit these are simply absent; nothing in the lifecycle depends on them.

The lifecycle never imports the kit: the kit declares its hooks module in the entry-point group
:data:`GROUP` (``devtools/pyproject.toml``), and :func:`load` finds it in the installed
distributions' metadata, so the lifecycle's import graph ends at this module.
"""

from __future__ import annotations

import functools
from importlib import metadata
from types import ModuleType

from spark_mlops.errors import ConfigError

GROUP = "spark_mlops.devkit"
HOOKS = "hooks"  # the entry point's name: a module with add_commands, settings_for_target, class_archive_options


@functools.cache
def load() -> ModuleType | None:
    """The kit's hooks module, or None when no installed distribution declares one."""
    points = [p for p in metadata.entry_points(group=GROUP) if p.name == HOOKS]
    if not points:
        return None
    if len({p.value for p in points}) > 1:
        raise ConfigError(f"entry-point group {GROUP}: {len(points)} distributions declare {HOOKS!r} "
                          f"({', '.join(sorted(p.value for p in points))}); expected one")
    try:
        return points[0].load()
    except ImportError as exc:  # the kit is declared but broken: say so rather than run without it
        raise ConfigError(f"the development kit is installed but cannot be imported "
                          f"({GROUP} {HOOKS} = {points[0].value}): {exc}") from exc
