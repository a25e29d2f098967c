"""The bundle's files as written: databricks.yml and the files its ``include`` globs name.

Nothing here resolves the bundle (the real Databricks CLI does: :mod:`.databricks_cli`). The
validator reads the files as written for what only the written text shows: the schema of each
file, duplicate task keys (the CLI merges them silently), hosts and secrets in values and
comments, and the targets' own settings (mode, run_as, workspace profile) per file.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

import yaml

from spark_mlops.errors import ConfigError

BUNDLE_FILE_NAMES = ("databricks.yml", "databricks.yaml", "bundle.yml", "bundle.yaml")
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def format_path(path: tuple) -> str:
    """``("a", "b", 2, "c")`` -> ``a.b[2].c`` (the CLI's own notation, libs/dyn path.String)."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "<root>"


def find_bundle_file(root: Path) -> Path:
    for name in BUNDLE_FILE_NAMES:
        if (root / name).is_file():
            return root / name
    raise ConfigError(f"{root}: no bundle file ({' / '.join(BUNDLE_FILE_NAMES)})")


def read_yaml(path: Path, root: Path) -> dict:
    rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{rel}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{rel}: expected a mapping at the top level, found {type(data).__name__}")
    return data


def bundle_files(root: str | Path) -> list[tuple[str, dict]]:
    """``[(relative path, data as written), ...]``: the bundle file first, then the includes
    (each glob's matches sorted, as the CLI loads them: bundle/config/loader/process_root_includes.go)."""
    root = Path(root).resolve()
    main = find_bundle_file(root)
    data = read_yaml(main, root)
    out = [(main.name, data)]
    includes = data.get("include") or []
    if not isinstance(includes, list):
        raise ConfigError(f"{main.name}: include: expected a list of glob patterns")
    seen = {main.name}
    for i, pattern in enumerate(includes):
        if not isinstance(pattern, str):
            raise ConfigError(f"{main.name}: include[{i}]: expected a glob pattern, found {pattern!r}")
        for match in sorted(glob.glob(pattern, root_dir=root, recursive=True)):
            rel = Path(match).as_posix()
            if rel in seen or not (root / rel).is_file():
                continue
            seen.add(rel)
            out.append((rel, read_yaml(root / rel, root)))
    return out


def written_sections(files: list[tuple[str, dict]]) -> tuple[dict, dict]:
    """The top-level sections as written, each file's entries side by side (``targets``,
    ``variables``, ``workspace``, ``run_as``, ...: nothing merged or resolved), and the file
    that wrote each top-level key and each ``targets.<name>`` / ``variables.<name>``."""
    sections: dict[str, Any] = {}
    origins: dict[tuple, str] = {}
    for rel, data in files:
        for key, value in data.items():
            origins.setdefault((key,), rel)
            if isinstance(value, dict):
                for name in value:
                    origins.setdefault((key, name), rel)
                sections.setdefault(key, {})
                if isinstance(sections[key], dict):
                    for name, item in value.items():
                        sections[key].setdefault(name, item)
            else:
                sections.setdefault(key, value)
    return sections, origins


def origin_of(origins: dict, path: tuple, default: str = "databricks.yml") -> str:
    """The file a written path came from: the longest recorded prefix wins."""
    for n in range(len(path), -1, -1):
        hit = origins.get(tuple(path[:n]))
        if hit is not None:
            return hit
    return default
