"""One alias move of a model at a time: a lock held by promote, rollback, deploy-model and train.

The lock is a registered model named ``<model>__alias_lock`` in the registry that holds the
aliases: creating a registered model whose name exists fails (``RESOURCE_ALREADY_EXISTS``), in
Unity Catalog as in MLflow's SQL registry (a unique name, checked in the same transaction that
inserts it, ``mlflow/store/model_registry/sqlalchemy_store.py``), so of two commands creating it
at once exactly one succeeds. It needs nothing but the registry both already use: no Spark, no
file system semantics of a FUSE mount, and the same permissions (creating a model in the
schema, which the job's identity has: the bundle creates the model there). Its description
names the holder.

A command waits up to :data:`LOCK_TIMEOUT_S` for the lock, then stops with one line naming the
holder (exit 5). A lock older than :data:`LEASE_S` belongs to a holder that died (an alias move
takes seconds): it is removed, and that removal is the one step that is check-then-act (two
commands removing the same dead lock at the same instant could both go on; the read-back of the
alias after the move still reports a lost move).
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from mlflow.exceptions import MlflowException

from spark_mlops import registry
from spark_mlops import registry_tags as rt
from spark_mlops.config import Settings
from spark_mlops.errors import PromotionRefused

LOCK_TIMEOUT_S = 120.0
LEASE_S = 900.0
POLL_S = 0.5
ALREADY_EXISTS = ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS")


def lock_name(settings: Settings) -> str:
    return f"{settings.model_name}{rt.LOCK_SUFFIX}"


@contextmanager
def held(settings: Settings, action: str, *, timeout_s: float | None = None,
         clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> Iterator[None]:
    """Hold the alias lock of ``settings.model_name`` for the block."""
    from spark_mlops.identity import actor

    c = registry.client(settings)
    name = lock_name(settings)
    who = actor()
    mine = {"token": uuid.uuid4().hex, "action": action, "by": who.name, "job_run_id": settings.job_run_id or rt.UNSET,
            "host": socket.gethostname(), "pid": os.getpid(), "since": _now()}
    wait = LOCK_TIMEOUT_S if timeout_s is None else timeout_s
    deadline = clock() + wait
    while True:
        try:
            c.create_registered_model(name, description=json.dumps(mine, sort_keys=True))
            break
        except MlflowException as exc:
            if exc.error_code not in ALREADY_EXISTS:
                raise registry.failure(settings, f"taking the alias lock {name}", exc) from exc
        holder = _holder(settings, c, name)
        if holder is None:
            continue  # released between our create and our read: try again at once
        if _age_s(holder) > LEASE_S:
            _remove_dead(settings, c, name, holder)
            continue
        if clock() >= deadline:
            raise PromotionRefused(
                f"{settings.model_name}: another command is moving its aliases ({holder.get('action', '?')} by "
                f"{holder.get('by', '?')}, job run {holder.get('job_run_id', rt.UNSET)}, since {holder.get('since', '?')}); "
                f"waited {wait:.0f}s, nothing was changed: run it again when that has finished")
        sleep(POLL_S)
    try:
        yield
    finally:
        holder = _holder(settings, c, name)
        if holder is not None and holder.get("token") == mine["token"]:
            try:
                c.delete_registered_model(name)
            except MlflowException as exc:
                if not registry.is_missing(exc):
                    raise registry.failure(settings, f"releasing the alias lock {name}", exc) from exc


def _holder(settings: Settings, c, name: str) -> dict | None:
    try:
        description = c.get_registered_model(name).description or "{}"
    except MlflowException as exc:
        if registry.is_missing(exc):
            return None
        raise registry.failure(settings, f"reading the alias lock {name}", exc) from exc
    try:
        holder = json.loads(description)
    except ValueError:
        holder = {}
    return holder if isinstance(holder, dict) else {}


def _age_s(holder: dict) -> float:
    try:
        return (datetime.now(UTC) - datetime.fromisoformat(str(holder["since"]))).total_seconds()
    except (KeyError, ValueError, TypeError):
        return 0.0  # unreadable: never treated as dead


def _remove_dead(settings: Settings, c, name: str, holder: dict) -> None:
    print(f"{settings.model_name}: removing the alias lock of a holder that stopped ({holder.get('action', '?')} by "
          f"{holder.get('by', '?')} since {holder.get('since', '?')}, older than {LEASE_S:.0f}s)")
    try:
        c.delete_registered_model(name)
    except MlflowException as exc:
        if not registry.is_missing(exc):
            raise registry.failure(settings, f"removing the dead alias lock {name}", exc) from exc


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
