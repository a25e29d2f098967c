"""The one entry-point resolver: which ``module:attr`` a ``python_wheel_task`` runs.

Databricks looks the task's ``entry_point`` up by name in the wheel's entry-point metadata, in
any group (databricks/cli ``bundle/trampoline/python_wheel.go``; acceptance test
``integration_whl``). Locally the wheel is the bundle's own project, so its ``pyproject.toml`` is
read the same way (``[project.scripts]``, ``[project.gui-scripts]``, every
``[project.entry-points.<group>]``); a package that is not the bundle's project is looked up in
the installed distributions.
"""

from __future__ import annotations

import re
import tomllib
from importlib import import_module, metadata
from pathlib import Path
from typing import Any

from spark_mlops.errors import ConfigError


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def project_entry_points(root: Path) -> tuple[str | None, dict[str, str]]:
    """(the project's name, {entry point name: "module:attr"}) from ``root/pyproject.toml``."""
    path = Path(root) / "pyproject.toml"
    if not path.is_file():
        return None, {}
    try:
        project = tomllib.loads(path.read_text(encoding="utf-8")).get("project") or {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    points: dict[str, str] = {}
    groups = [project.get("scripts") or {}, project.get("gui-scripts") or {},
              *((project.get("entry-points") or {}).values())]
    for group in groups:
        for name, target in group.items():
            points.setdefault(name, target)
    return project.get("name"), points


def resolve(root: Path, package: str | None, entry: str | None, *, where: str) -> str:
    """``module:attr`` of ``entry`` in ``package``; ConfigError (naming ``where``) when there is none."""
    if not package or not entry:
        raise ConfigError(f"{where}: python_wheel_task needs package_name and entry_point")
    name, points = project_entry_points(root)
    if name is not None and _normalize(name) == _normalize(package):
        if entry not in points:
            raise ConfigError(f"{where}: entry point {entry!r} is not declared in {Path(root) / 'pyproject.toml'} "
                              f"(declared: {', '.join(sorted(points)) or 'none'})")
        return points[entry]
    try:
        dist = metadata.distribution(package)
    except metadata.PackageNotFoundError:
        raise ConfigError(
            f"{where}: package {package!r} is neither the bundle's project ({name or 'no pyproject.toml'}) "
            "nor an installed distribution"
        ) from None
    for ep in dist.entry_points:
        if ep.name == entry:
            return ep.value
    raise ConfigError(f"{where}: the installed package {package!r} has no entry point {entry!r}")


def load(target: str) -> Any:
    """The callable a resolved ``module:attr`` (extras dropped) names, imported."""
    target = target.split("[", 1)[0].strip()
    module_name, _, attr = target.partition(":")
    obj: Any = import_module(module_name.strip())
    for part in attr.strip().split(".") if attr.strip() else []:
        obj = getattr(obj, part)
    return obj
