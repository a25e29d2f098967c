"""One alias move of a model at a time: a lock held by promote, rollback, deploy-model and train.

The lock is a registered model named ``<model>__alias_lock`` in the registry that holds the
aliases: creating a registered model whose name exists fails (``RESOURCE_ALREADY_EXISTS``), in
Unity Catalog as in MLflow's SQL registry (a unique name, checked in the same transaction that
inserts it, ``mlflow/store/model_registry/sqlalchemy_store.py``), so of two commands creating it
at once exactly one succeeds. It needs nothing but the registry both already use: no Spark, no
file system semantics of a FUSE mount, and the same permissions (creating a model in the
schema, which the job's identity has: the bundle creates the model there). Its description
names the holder (for people: nothing below trusts it).

**A lease, renewed.** A holder can die without a ``finally``: Databricks kills a task at its
timeout, a cluster can be lost, a process gets SIGKILL. So the lock is a lease of
:data:`LEASE_S`: while it holds the lock, a holder rewrites the description every third of the
lease (the registry stamps its own ``last_updated_timestamp``), so a long hold (deploy-model
waits up to 10 minutes for a Unity Catalog copy to register) stays held, and a dead holder's lock
stops changing. A waiter takes a lock as dead when the registry shows no renewal for the lease:
either the registry's own timestamps (creation or last update, never a time the holder writes)
are older than twice the lease (the second lease absorbs a clock difference between this machine
and the registry), or the waiter itself has watched the lock unchanged for a whole lease on its
own monotonic clock (which needs no clock agreement at all, and so also expires a lock whose
timestamps lie in the future or that this identity cannot read). The dead lock is removed and
the waiter takes it; the removal is the one check-then-act step (two waiters removing the same
dead lock at the same instant could both go on; the read-back of the alias after the move still
reports a lost move).

**Waiting outlasts a dead holder.** A waiter waits :data:`LOCK_TIMEOUT_S`, three leases: a dead
holder's lock is always removed within one lease and a poll of the first look, so a hard kill
delays the next alias move by at most about a minute, never fails it; only a live holder that
keeps renewing for three minutes makes a waiter stop, with one line naming the holder (exit 5).
A lock another identity created is waited on like any other; when this identity may not read or
remove it (Unity Catalog: only its owner may delete a registered model), the line says who holds
it as far as it can be read, and that the lock must be deleted by its owner.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from mlflow.exceptions import MlflowException

from spark_mlops import registry
from spark_mlops import registry_tags as rt
from spark_mlops.config import Settings
from spark_mlops.errors import PromotionRefused

LEASE_S = 60.0  # a holder renews every LEASE_S / 3; a lock unrenewed for a lease is dead
LOCK_TIMEOUT_S = 3 * LEASE_S  # a waiter always outlasts a dead holder's lease
POLL_S = 0.5
ALREADY_EXISTS = ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS")
DENIED = ("PERMISSION_DENIED", "UNAUTHORIZED", "UNAUTHENTICATED")


def lock_name(settings: Settings) -> str:
    return f"{settings.model_name}{rt.LOCK_SUFFIX}"


@dataclass(frozen=True)
class _Seen:
    """One look at the lock: what changes when its holder renews it, and who holds it."""

    state: tuple  # (created, last updated, description), or ("unreadable", error code)
    holder: dict  # the description's fields, {} when unreadable
    age_s: float | None  # since the registry last stamped it, by its own timestamps; None unreadable
    denied: str | None = None  # the error code when this identity may not read the lock


@contextmanager
def held(settings: Settings, action: str, *, timeout_s: float | None = None, lease_s: float | None = None,
         clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> Iterator[None]:
    """Hold the alias lock of ``settings.model_name`` for the block, renewing it meanwhile."""
    from spark_mlops.identity import actor

    c = registry.client(settings)
    name = lock_name(settings)
    lease = LEASE_S if lease_s is None else lease_s
    mine = {"token": uuid.uuid4().hex, "action": action, "by": actor().name,
            "job_run_id": settings.job_run_id or rt.UNSET, "host": socket.gethostname(), "pid": os.getpid(),
            "since": _now(), "lease_s": lease}
    wait = LOCK_TIMEOUT_S if timeout_s is None else timeout_s
    deadline = clock() + wait
    watched: tuple[tuple, float] | None = None  # (state, when first seen unchanged)
    seen: _Seen | None = None
    not_removed: str | None = None
    while True:
        try:
            c.create_registered_model(name, description=json.dumps(mine, sort_keys=True))
            break
        except MlflowException as exc:
            if exc.error_code not in ALREADY_EXISTS:
                raise registry.failure(settings, f"taking the alias lock {name}", exc) from exc
        seen = _look(settings, c, name)
        if seen is not None:  # else released between our create and our read: try again after the poll
            if watched is None or watched[0] != seen.state:
                watched, not_removed = (seen.state, clock()), None  # renewed, or a new holder
            unchanged_s = clock() - watched[1]
            if not_removed is None and ((seen.age_s is not None and seen.age_s > 2 * lease) or unchanged_s >= lease):
                not_removed = _remove_dead(settings, c, name, seen, max(unchanged_s, seen.age_s or 0.0), lease)
                if not_removed is None:
                    continue
        if clock() >= deadline:
            raise PromotionRefused(_busy(settings, name, seen, wait, not_removed))
        sleep(POLL_S)
    stop = threading.Event()
    renewer = threading.Thread(target=_renew, args=(settings, name, mine, lease, stop), daemon=True,
                               name=f"alias-lock-renewal-{name}")
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join(timeout=lease)
        current = _look(settings, c, name)
        if current is not None and current.holder.get("token") == mine["token"]:
            try:
                c.delete_registered_model(name)
            except MlflowException as exc:
                if not registry.is_missing(exc):
                    raise registry.failure(settings, f"releasing the alias lock {name}", exc) from exc


def _renew(settings: Settings, name: str, mine: dict, lease: float, stop: threading.Event) -> None:
    """Rewrite the lock's description every third of the lease while it is ours. A failed renewal
    is skipped (the next one may pass); a lock that is no longer ours is left alone."""
    c = registry.client(settings)
    renewals = 0
    while not stop.wait(lease / 3):
        try:
            if json.loads(c.get_registered_model(name).description or "{}").get("token") != mine["token"]:
                return  # removed as dead (we stalled past the lease): the read-back reports a lost move
            renewals += 1
            c.update_registered_model(name, description=json.dumps({**mine, "renewals": renewals}, sort_keys=True))
        except (MlflowException, ValueError, AttributeError):
            continue


def _look(settings: Settings, c, name: str) -> _Seen | None:
    try:
        model = c.get_registered_model(name)
    except MlflowException as exc:
        if registry.is_missing(exc):
            return None
        if exc.error_code in DENIED:  # e.g. created by another identity: wait on it all the same
            return _Seen(("unreadable", exc.error_code), {}, None, exc.error_code)
        raise registry.failure(settings, f"reading the alias lock {name}", exc) from exc
    try:
        holder = json.loads(model.description or "{}")
    except ValueError:
        holder = {}
    stamps = [t for t in (model.creation_timestamp, model.last_updated_timestamp) if isinstance(t, int | float)]
    age = (time.time() * 1000 - max(stamps)) / 1000 if stamps else None
    return _Seen((model.creation_timestamp, model.last_updated_timestamp, model.description),
                 holder if isinstance(holder, dict) else {}, age)


def _who(seen: _Seen | None) -> str:
    if seen is None:
        return "a holder that released it meanwhile"
    if seen.denied:
        return f"a holder this identity may not read: {seen.denied}"
    h = seen.holder
    if not h:
        return "a holder whose lock description is unreadable"
    return (f"{h.get('action', '?')} by {h.get('by', '?')}, job run {h.get('job_run_id', rt.UNSET)}, "
            f"since {h.get('since', '?')}")


def _remove_dead(settings: Settings, c, name: str, seen: _Seen, unrenewed_s: float, lease: float) -> str | None:
    """Remove a lock unrenewed for the lease; None when it is gone, else why it could not be removed."""
    print(f"{settings.model_name}: removing the alias lock of a holder that stopped ({_who(seen)}; "
          f"not renewed for {unrenewed_s:.0f}s, lease {lease:g}s)")
    try:
        c.delete_registered_model(name)
    except MlflowException as exc:
        if registry.is_missing(exc):
            return None
        if exc.error_code in DENIED:
            return exc.error_code
        raise registry.failure(settings, f"removing the dead alias lock {name}", exc) from exc
    return None


def _busy(settings: Settings, name: str, seen: _Seen | None, wait: float, not_removed: str | None) -> str:
    if not_removed:
        return (f"{settings.model_name}: the alias lock {name} was left by a holder that stopped ({_who(seen)}), "
                f"and this identity may not remove it ({not_removed}); waited {wait:.0f}s, nothing was changed: "
                f"its owner must delete the registered model {name}")
    return (f"{settings.model_name}: another command is moving its aliases ({_who(seen)}); waited {wait:.0f}s, "
            "nothing was changed: run it again when that has finished")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
