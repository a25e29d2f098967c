"""One target of the bundle as the real Databricks CLI resolved it (``bundle validate -o json``).

:class:`Bundle` is what the runner, the demo, ``status``/``approve`` and the validator read. The
CLI's ``--include-locations`` output (``__locations``: databricks/cli
bundle/config/mutator/populate_locations.go, libs/dyn/dynloc) says in which file and line each
top-level key, resource, job ``tasks`` list and task was written; :meth:`Bundle.where` names the
nearest one for a path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from spark_mlops_dev.bundle.files import format_path


@dataclass
class Bundle:
    root: Path
    target: str
    config: dict
    variables: dict
    locations: dict = field(default_factory=dict)  # the CLI's __locations: {"files": [...], "locations": {...}}

    @property
    def jobs(self) -> dict[str, dict]:
        return (self.config.get("resources") or {}).get("jobs") or {}

    @property
    def mode(self) -> str | None:
        return (self.config.get("bundle") or {}).get("mode")

    def where(self, path: tuple) -> tuple[str, int | None]:
        """(file, line) where ``path`` of the resolved configuration was written, as precisely as the
        CLI records it (its first location of the longest recorded prefix: the effective one)."""
        files = self.locations.get("files") or []
        recorded = self.locations.get("locations") or {}
        for n in range(len(path), 0, -1):
            hits = recorded.get(format_path(path[:n]))
            if hits:
                index, line = hits[0][0], hits[0][1]
                if 0 <= index < len(files):
                    return files[index], line
        return "databricks.yml", None
