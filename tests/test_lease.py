"""Supervision never waits on the database, and an attempt that cannot renew its lease
stops its script before the run could be taken over (real runner, real processes, a real
SQLite store whose heartbeats stall or fail the way a cut network makes them)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from jupyter_scriptrun.config import Settings
from jupyter_scriptrun.contract.registry import Registry
from jupyter_scriptrun.defaults import TICK_S
from jupyter_scriptrun.execution.executor import Executor
from jupyter_scriptrun.status import ExecutionStatus
from jupyter_scriptrun.store import Store, new_execution_id
from tests.conftest import queued_run


class StalledStore(Store):
    """A store whose heartbeat hangs, as a call to a database behind a cut link does."""

    def tick(self, id: str, attempt: int, chunks: list, heartbeat: bool, progress=None) -> bool:
        time.sleep(30)
        return False


class UnreachableStore(Store):
    """A store whose heartbeat fails at once, as a database that refuses connections."""

    def tick(self, id: str, attempt: int, chunks: list, heartbeat: bool, progress=None) -> bool:
        raise OperationalError("UPDATE executions", {}, Exception("connection refused"))


class TakenOverStore(Store):
    """A store in which another worker declares the run lost and starts attempt 2 while
    attempt 1 still runs (attempt 1's side of a partition)."""

    def tick(self, id: str, attempt: int, chunks: list, heartbeat: bool, progress=None) -> bool:
        if attempt == 1 and self.get(id)["attempt"] == 1:
            assert self.mark_lost(id, 1, retry=True, lost_after_s=0.5)
            assert self.claim(id, 2, "the other worker")
        return super().tick(id, attempt, chunks, heartbeat, progress)


def start(store: Store, settings: Settings, params: dict, timeout: float | None = None) -> str:
    eid = new_execution_id()
    return queued_run(store, "slow_script", id=eid, parameters=params, timeout_s=timeout)


@pytest.fixture
def lease_settings(settings: Settings) -> Settings:
    return settings.with_(heartbeat_s=0.5, lost_after_s=2.0)


def test_a_stalled_database_does_not_delay_a_timeout(lease_settings: Settings, tmp_path: Path):
    store = StalledStore(f"sqlite:///{tmp_path / 's.db'}")
    executor = Executor(lease_settings, Registry(lease_settings.scripts_path), store)
    eid = start(store, lease_settings, {"seconds": 30}, timeout=1.0)
    t0 = time.monotonic()
    outcome = executor.run_attempt(eid, 1, "w")
    took = time.monotonic() - t0
    assert outcome.status is ExecutionStatus.TIMED_OUT
    assert took < 4, f"the timeout of 1 s was enforced after {took:.1f} s"
    rec = store.get(eid)
    assert 0.9 < rec["duration_s"] < 2.5, "the duration is the run's own, measured locally"


@pytest.mark.parametrize(
    "unreachable", [UnreachableStore, StalledStore], ids=["refused", "hanging"]
)
def test_an_attempt_that_cannot_renew_its_lease_stops_before_it_could_be_taken_over(
    lease_settings: Settings, tmp_path: Path, unreachable: type[Store]
):
    """Whether the database refuses the heartbeat or, as behind a cut link, the call hangs
    (found on separate hosts, tests/test_fleet_hosts.py), the deadline is kept."""
    store = unreachable(f"sqlite:///{tmp_path / 's.db'}")
    executor = Executor(lease_settings, Registry(lease_settings.scripts_path), store)
    eid = start(store, lease_settings, {"seconds": 30})
    t0 = time.monotonic()
    outcome = executor.run_attempt(eid, 1, "w")
    took = time.monotonic() - t0
    assert outcome.status is ExecutionStatus.LOST and outcome.error_type == "LeaseLost"
    [attempt] = store.attempts(eid)
    assert attempt["error_type"] == "LeaseLost" and "lease lapsed" in attempt["message"]
    assert attempt["exit_code"] is not None and attempt["exit_code"] < 0  # it was stopped
    # The lease is 2 s from the last renewal; the script's process is stopped one
    # heartbeat sooner (its own duration, measured where it ran), before anyone could
    # take the run over.
    assert 1.4 < attempt["duration_s"] < lease_settings.lost_after_s, attempt["duration_s"]
    # Then the attempt is recorded; a heartbeat stuck on a hanging connection is waited
    # for 5 ticks first (Lease.close), so the whole attempt may take that much longer.
    assert took < lease_settings.lost_after_s + 5 * TICK_S + 1.0, took


def test_heartbeat_and_lost_after_that_cannot_fence_are_refused():
    from jupyter_scriptrun.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match=r"SCRIPTRUN_LOST_AFTER .* longer than"):
        Settings.from_env({"SCRIPTRUN_HEARTBEAT": "10", "SCRIPTRUN_LOST_AFTER": "10"})


def test_an_attempt_whose_run_was_taken_over_stops_and_no_longer_speaks_for_it(
    lease_settings: Settings, tmp_path: Path
):
    store = TakenOverStore(f"sqlite:///{tmp_path / 's.db'}")
    executor = Executor(lease_settings, Registry(lease_settings.scripts_path), store)
    eid = start(store, lease_settings, {"seconds": 30})
    outcome = executor.run_attempt(eid, 1, "w")
    assert outcome.status is None, "no task state, no retry: the run is attempt 2's now"
    assert outcome.retry_in_s is None
    first, second = store.attempts(eid)
    assert first["error_type"] == "Superseded" and first["exit_code"] < 0
    assert second["status"] == "running" and store.get(eid)["attempt"] == 2
