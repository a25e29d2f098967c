"""The alias lock (issues 26 and 27): a lease renewed by its holder, whose expiry reads the registry,
never a time the holder writes; a dead holder (SIGKILL: no ``finally``) never blocks alias moves
for longer than a lease, and a waiter outlasts it; a lock another identity holds is waited on.

On a real sqlite MLflow registry, and on the Unity Catalog double (tests/doubles) where another
identity's lock cannot be read or removed. Waits run on a fake clock, except in the hard-kill
test, whose holder is a real process with a five-second lease.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, TEMPORARILY_UNAVAILABLE
from mlflow.tracking import MlflowClient

from spark_mlops import alias_lock, registry
from spark_mlops.config import build_settings
from spark_mlops.errors import PromotionRefused, RegistryError
from tests.conftest import REPO_ROOT
from tests.doubles.unity_catalog import UnityCatalogClientDouble


@pytest.fixture
def view(tmp_path):
    """A sqlite registry of its own; the lock needs no model versions."""
    settings = build_settings(state_dir=str(tmp_path / "state"), model_name="m")
    registry.client(settings).create_registered_model("m")
    return settings


@pytest.fixture
def uc(view, monkeypatch):
    double = UnityCatalogClientDouble(client(view))
    monkeypatch.setattr(registry, "client", lambda _settings: double)
    return view, double


class FakeClock:
    """Monotonic time that moves only when the lock sleeps; ``on_sleep`` acts at a given poll."""

    def __init__(self, on_sleep=None):
        self.now, self.polls, self.on_sleep = 0.0, 0, on_sleep

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.polls += 1
        self.now += seconds
        if self.on_sleep:
            self.on_sleep(self.polls)


def client(settings) -> MlflowClient:
    """Someone else's client on the same registry (with a tracking URI: MLflow's default would make
    ./mlflow.db)."""
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)


def plant(settings, description: str) -> None:
    """A lock left by someone else, with the given description."""
    client(settings).create_registered_model(alias_lock.lock_name(settings), description=description)


def lock_holder(settings) -> dict:
    raw = client(settings).get_registered_model(alias_lock.lock_name(settings))
    return json.loads(raw.description)


def test_waiters_outlast_a_dead_holders_lease():
    """A hard-killed holder's lock is removed within a lease of the first look; a waiter that gave up
    sooner would fail a move that a short wait would have let through."""
    assert alias_lock.LOCK_TIMEOUT_S >= alias_lock.LEASE_S + 2 * alias_lock.POLL_S
    assert alias_lock.LEASE_S <= 60  # a dead holder blocks moves for about a minute at most


@pytest.mark.parametrize("description", ["not json {", json.dumps(["a", "list"]), json.dumps(
    {"action": "promote", "by": "mallory", "since": (datetime.now(UTC) + timedelta(days=365)).isoformat()})],
    ids=["unreadable", "not an object", "since in the future"])
def test_a_lock_that_is_never_renewed_expires_after_the_lease_whatever_its_description(view, description, capsys):
    plant(view, description)
    clock = FakeClock()
    with alias_lock.held(view, "rollback", timeout_s=120, lease_s=10, clock=clock, sleep=clock.sleep):
        assert lock_holder(view)["action"] == "rollback"
    assert 10 <= clock.now <= 10 + alias_lock.POLL_S  # watched unchanged for one lease, then removed
    assert "removing the alias lock of a holder that stopped" in capsys.readouterr().out


def test_a_lock_whose_registry_timestamps_are_old_is_removed_at_once(view, monkeypatch, capsys):
    """The registry's own clock, not the holder's word: a lock it stamped long ago is dead."""
    plant(view, json.dumps({"action": "train", "since": datetime.now(UTC).isoformat()}))  # claims "now"
    real = alias_lock._look

    def stamped_long_ago(settings, c, name):
        seen = real(settings, c, name)
        return None if seen is None else replace(seen, age_s=3 * 600.0)

    monkeypatch.setattr(alias_lock, "_look", stamped_long_ago)
    clock = FakeClock()
    with alias_lock.held(view, "promote", timeout_s=0, lease_s=600, clock=clock, sleep=clock.sleep):
        pass
    assert clock.polls == 0
    assert "train by ?" in capsys.readouterr().out


def test_a_renewed_lock_is_not_taken_and_the_timeout_names_its_holder(view):
    holder = {"action": "deploy-model", "by": "staging-sp", "job_run_id": "42", "since": "2026-12-07T15:00:00+00:00"}
    plant(view, json.dumps(holder))
    c = client(view)

    def renew(poll):  # the holder renews every 4 polls (2 s) of a 10 s lease
        if poll % 4 == 0:
            c.update_registered_model(alias_lock.lock_name(view), description=json.dumps({**holder, "renewals": poll}))

    clock = FakeClock(renew)
    with pytest.raises(PromotionRefused) as refused:
        with alias_lock.held(view, "promote", timeout_s=30, lease_s=10, clock=clock, sleep=clock.sleep):
            pytest.fail("took a lock its holder renews")
    assert str(refused.value) == ("m: another command is moving its aliases (deploy-model by staging-sp, job run 42, "
                                  "since 2026-12-07T15:00:00+00:00); waited 30s, nothing was changed: run it again "
                                  "when that has finished")
    assert lock_holder(view)["by"] == "staging-sp"


def test_a_lock_released_between_create_and_read_is_retried_after_a_poll_with_a_deadline(view, monkeypatch):
    """The registry answers "exists" to the create and "missing" to the read, for ever: the waiter
    sleeps between tries and stops at its deadline (it used to retry at once, without end)."""
    c = registry.client(view)
    calls = []

    def exists(name, description=None):
        calls.append(name)
        if len(calls) > 1000:
            raise AssertionError("retried a thousand times without a deadline")
        raise MlflowException("exists", error_code=RESOURCE_ALREADY_EXISTS)

    monkeypatch.setattr(c, "create_registered_model", exists)
    monkeypatch.setattr(registry, "client", lambda _settings: c)
    clock = FakeClock()
    with pytest.raises(PromotionRefused, match="a holder that released it meanwhile"):
        with alias_lock.held(view, "promote", timeout_s=5, clock=clock, sleep=clock.sleep):
            pass
    assert clock.polls == len(calls) - 1 == 10


def test_another_identitys_lock_is_waited_on_until_released(uc):
    view, double = uc
    name = alias_lock.lock_name(view)
    plant(view, json.dumps({"action": "rollback", "by": "alice@example.com"}))
    double.foreign.add(name)

    def released(poll):
        if poll == 3:
            double.foreign.discard(name)
            double.delete_registered_model(name)

    clock = FakeClock(released)
    with alias_lock.held(view, "promote", timeout_s=60, clock=clock, sleep=clock.sleep):
        pass
    assert clock.polls == 3


def test_a_dead_lock_this_identity_may_not_remove_is_reported_with_its_owner_to_ask(uc, capsys):
    view, double = uc
    plant(view, json.dumps({"action": "rollback", "by": "alice@example.com"}))
    double.foreign.add(alias_lock.lock_name(view))
    clock = FakeClock()
    with pytest.raises(PromotionRefused) as refused:
        with alias_lock.held(view, "promote", timeout_s=30, lease_s=10, clock=clock, sleep=clock.sleep):
            pass
    assert str(refused.value) == (
        "m: the alias lock m__alias_lock was left by a holder that stopped (a holder this identity may not read: "
        "PERMISSION_DENIED), and this identity may not remove it (PERMISSION_DENIED); waited 30s, nothing was "
        "changed: its owner must delete the registered model m__alias_lock")


def test_the_lock_is_renewed_while_held_and_released_after(uc):
    view, double = uc
    with alias_lock.held(view, "deploy-model", lease_s=0.3):  # renewed every 0.1 s
        for _ in range(300):  # at most 30 s on a loaded machine
            if lock_holder(view).get("renewals", 0) >= 2:
                break
            time.sleep(0.1)
        assert lock_holder(view)["renewals"] >= 2
    assert ("update_model", alias_lock.lock_name(view)) in double.writes
    assert ("delete_model", alias_lock.lock_name(view)) == double.writes[-1]


def test_a_registry_failure_while_waiting_is_a_registry_error(uc):
    view, double = uc
    plant(view, "{}")
    double.outage = MlflowException("the registry is unavailable", error_code=TEMPORARILY_UNAVAILABLE)
    with pytest.raises(RegistryError, match="the registry is unavailable"):
        with alias_lock.held(view, "promote", timeout_s=0):
            pass


HOLDER = """\
import sys, time
from spark_mlops import alias_lock
from spark_mlops.config import build_settings
settings = build_settings(state_dir=sys.argv[1], model_name="m")
with alias_lock.held(settings, "rollback", lease_s=5):
    print("holding", flush=True)
    time.sleep(600)
"""


@pytest.mark.slow  # a SIGKILL fault, and a lease waited out
def test_a_hard_killed_holder_blocks_alias_moves_for_one_lease_only(view, capsys):
    """SIGKILL, as Databricks ends a task at its timeout: no ``finally`` releases the lock. While the
    holder lives it renews, and a waiter with the same lease does not take the lock; once killed,
    the next mover takes it within about a lease."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(HOLDER), str(view.state_dir)], env=env,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(PromotionRefused, match=r"\(rollback by .*, job run -, since .*\); waited 8s"):
            with alias_lock.held(view, "promote", timeout_s=8, lease_s=5):
                pass  # longer than a lease, and the holder renews every 1.7 s
        holder.send_signal(signal.SIGKILL)
        assert holder.wait(timeout=30) == -signal.SIGKILL
        with alias_lock.held(view, "promote", timeout_s=60, lease_s=5):
            assert lock_holder(view)["action"] == "promote"
    finally:
        holder.kill()
        holder.wait(timeout=30)
    out = capsys.readouterr().out
    assert "removing the alias lock of a holder that stopped (rollback by" in out and "lease 5s" in out
