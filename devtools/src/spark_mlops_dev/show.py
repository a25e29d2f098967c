"""``spark-mlops show``: a table's rows or its Delta history, found by name as the jobs name it.

Locally a table ``catalog.schema.t`` is a Delta table in the state folder's warehouse
(:class:`spark_mlops.tables.LocalWarehouse`); this reads it through the same
:class:`spark_mlops.tables.DeltaTables` the lifecycle writes with, so what it prints is what the
next step would read. ``--version`` reads an earlier version (Delta time travel); ``--history``
lists the commits with the job run and batch each recorded in its ``userMetadata``.
"""

from __future__ import annotations

from spark_mlops import text
from spark_mlops.config import Settings
from spark_mlops.errors import ConfigError

HISTORY_COLUMNS = ("version", "timestamp", "operation", "operationMetrics", "userMetadata")


def _tables(settings: Settings, table: str):
    from spark_mlops.spark import get_spark
    from spark_mlops.tables import tables_for

    name = settings.table_name(table)
    tables = tables_for(get_spark(settings), settings)
    if not tables.exists(name):
        raise ConfigError(f"table {name} does not exist (locally: under {settings.state_dir / 'warehouse'}); "
                          "with the main job's tables, pass its target: -t staging or -t prod")
    return tables, name


def rows(settings: Settings, table: str, limit: int, *, version: int | None = None) -> str:
    """The first ``limit`` rows, ordered by every column for a stable print, with the row count."""
    tables, name = _tables(settings, table)
    frame = tables.read(name, version=version)
    shown = frame.orderBy(*frame.columns).limit(limit).collect()
    at = f" at version {version}" if version is not None else ""
    header = f"{name}{at}: {frame.count()} rows"
    cells = [tuple(_cell(r[c]) for c in frame.columns) for r in shown]
    return "\n".join([header, *text.table(tuple(frame.columns), cells)])


def history(settings: Settings, table: str, limit: int) -> str:
    tables, name = _tables(settings, table)
    commits = tables.history(name, limit)
    cells = [(str(c["version"]), str(c["timestamp"])[:19], c["operation"],
              _metrics(c["operationMetrics"]), c["userMetadata"] or "-") for c in commits]
    return "\n".join([f"{name}: the last {len(commits)} commit(s)", *text.table(HISTORY_COLUMNS, cells)])


def _metrics(metrics: dict | None) -> str:
    """The row counts of a commit's metrics (what a reader asks first), not all twenty of them."""
    picked = {k: v for k, v in (metrics or {}).items() if k in ("numOutputRows", "numDeletedRows", "numFiles")}
    return " ".join(f"{k}={v}" for k, v in sorted(picked.items())) or "-"


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "-" if value is None else str(value)
