"""Who is acting, and how we know: recorded with every alias move (``promoted_by`` and its source).

On Databricks a task runs as its job's run-as identity, and the SDK's runtime authentication
acts as that identity, so ``current_user.me()`` names it (databricks-sdk
``credentials_provider.runtime_native_auth``; for a service principal ``user_name`` is its
application id). Elsewhere the name is only as good as its source, which is recorded beside it:
the Azure Pipelines variable of the person who queued the run, else the operating-system user.
No variable of our own can set it.
"""

from __future__ import annotations

import functools
import getpass
import os
from dataclasses import dataclass

from spark_mlops.config import on_databricks

AZURE_PIPELINES_VARIABLES = ("BUILD_REQUESTEDFOREMAIL", "BUILD_REQUESTEDFOR")


@dataclass(frozen=True)
class Actor:
    name: str
    source: str


def actor() -> Actor:
    if on_databricks():
        return _databricks_identity()
    for var in AZURE_PIPELINES_VARIABLES:
        if os.environ.get(var):
            return Actor(os.environ[var], f"Azure Pipelines {var} (the person who queued the run)")
    try:
        return Actor(getpass.getuser(), "operating-system user")
    except (KeyError, OSError):
        return Actor("unknown", "operating-system user (unavailable)")


@functools.cache  # one REST call per process: a task's identity does not change while it runs
def _databricks_identity() -> Actor:
    try:
        from databricks.sdk import WorkspaceClient

        me = WorkspaceClient().current_user.me()
        return Actor(str(me.user_name or me.display_name or me.id), "Databricks current user (the job's run-as identity)")
    except Exception as exc:  # noqa: BLE001 - the move must not fail for want of a name; the gap is recorded
        return Actor("unknown", f"Databricks current user unavailable ({type(exc).__name__})")
