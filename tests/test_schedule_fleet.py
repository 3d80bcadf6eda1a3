"""Schedules on a real fleet: Celery workers on a private Redis, racing for the same ticks
on SQLite and on PostgreSQL, killed while they fire, all stopped and started again; and
the embedded default's local worker, which stays while a schedule is active."""

from __future__ import annotations

import itertools
import random
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import JupyterLabProcess, settings_env, stop_process

from jupyter_scriptrun.config import Settings
from jupyter_scriptrun.fleet.scheduler import ON_TIME_S
from jupyter_scriptrun.service.client import Client
from jupyter_scriptrun.status import ExecutionStatus

pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite", "postgres"])
def fleet_settings(request, redis_settings: Settings) -> Settings:
    if request.param == "postgres":
        return redis_settings.with_(database_url=request.getfixturevalue("postgres_url"))
    return redis_settings


def runs_of(client: Client, name: str) -> list[dict]:
    frame = client.history(page_context=f"schedule:{name}")
    records = [client.get(i).record() for i in frame["id"]]
    return sorted(records, key=lambda r: r["scheduled_for"])


def steps(records: list[dict]) -> set[timedelta]:
    ticks = [r["scheduled_for"] for r in records]
    return {b - a for a, b in itertools.pairwise(ticks)}


def wait_all_final(client: Client, records: list[dict], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    for rec in records:
        client.get(rec["id"]).wait(max(deadline - time.monotonic(), 0.1))


@pytest.mark.parametrize("workers", [2, 3])
def test_workers_racing_fire_each_tick_exactly_once(
    fleet_settings: Settings, start_worker, workers: int
):
    for _ in range(workers):
        start_worker(fleet_settings)
    client = Client(fleet_settings)
    name = f"race-{uuid.uuid4().hex[:6]}"  # the PostgreSQL database is the session's
    schedule = client.schedule("example_script", every="2s", name=name, overlap="allow")
    time.sleep(30.5)
    schedule.pause()
    records = runs_of(client, name)
    ticks = [r["scheduled_for"] for r in records]
    expected = 15
    print(
        f"\n{workers} workers, {fleet_settings.effective_database_url.split(':')[0]}: "
        f"ticks expected {expected}, fired {len(ticks)}, duplicated {len(ticks) - len(set(ticks))}"
    )
    assert abs(len(ticks) - expected) <= 1, ticks
    assert len(set(ticks)) == len(ticks), "a tick fired twice"
    assert steps(records) == {timedelta(seconds=2)}, "a tick was skipped"
    assert len({t["worker"] for t in schedule.ticks()}) >= 1
    wait_all_final(client, records)
    assert {client.get(r["id"]).status for r in records} == {ExecutionStatus.SUCCEEDED}


def test_workers_killed_while_firing_lose_no_tick_and_double_none(
    redis_settings: Settings, start_worker
):
    """Workers are SIGKILLed at random moments (a fire is one transaction: a kill in it
    rolls back its tick and its run together) and replaced; under catchup="all" every tick
    from the first to the last has exactly one run."""
    settings = redis_settings.with_(requeue_after_s=3.0)
    workers = [start_worker(settings) for _ in range(3)]
    client = Client(settings)
    schedule = client.schedule(
        "example_script", every=1, name="killed", catchup="all", overlap="allow"
    )
    rng = random.Random(16)
    kills = 0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        time.sleep(rng.uniform(0.5, 2.0))
        victim = workers.pop(rng.randrange(len(workers)))
        victim.kill()
        kills += 1
        workers.append(start_worker(settings))
    time.sleep(3)  # the last ticks fired by the survivors
    schedule.pause()
    records = runs_of(client, "killed")
    ticks = [r["scheduled_for"] for r in records]
    print(
        f"\n{kills} workers killed: {len(ticks)} ticks fired, "
        f"{len(ticks) - len(set(ticks))} duplicated"
    )
    assert len(ticks) >= 20 and len(set(ticks)) == len(ticks)
    assert steps(records) == {timedelta(seconds=1)}, "a tick was lost"


def test_all_workers_down_then_back_catch_up_as_each_policy_says(
    redis_settings: Settings, start_worker
):
    client = Client(redis_settings)
    options = {"every": 2, "overlap": "allow"}
    first = [start_worker(redis_settings) for _ in range(2)]
    client.schedule("example_script", name="latest", **options)
    client.schedule("example_script", name="none", catchup="none", **options)
    client.schedule("example_script", name="all", catchup="all", **options)
    time.sleep(6)
    for worker in first:
        worker.stop()
    down_at = client.store.db_now()
    time.sleep(10)
    back = [start_worker(redis_settings) for _ in range(2)]
    time.sleep(6)
    for name in ("latest", "none", "all"):
        client.get_schedule(name).pause()
    del back

    latest = client.get_schedule("latest").ticks()
    catch_ups = [t for t in latest if t["missed"] > 0]
    assert len(catch_ups) == 1 and catch_ups[0]["missed"] >= 3, latest  # one run for many
    assert steps(runs_of(client, "all")) == {timedelta(seconds=2)}  # every tick ran
    none = runs_of(client, "none")
    late = [r for r in none if (r["queued_at"] - r["scheduled_for"]).total_seconds() > ON_TIME_S]
    assert not late, late  # no missed tick ran
    # Down for 10 s: the ticks of its first 5 s were more than ON_TIME_S late when the
    # workers came back (those of the last 5 s may still have been on time).
    away = timedelta(seconds=10 - ON_TIME_S)
    assert max(steps(none)) >= timedelta(seconds=6), steps(none)
    assert all(
        r["scheduled_for"] <= down_at or r["scheduled_for"] > down_at + away for r in none
    ), [(r["scheduled_for"] - down_at).total_seconds() for r in none]
    # The missed ones are counted in the tick log, on the first tick that ran after.
    assert sum(t["missed"] for t in client.get_schedule("none").ticks()) >= 2


def test_the_local_worker_stays_while_a_schedule_is_active(settings: Settings):
    local = settings.with_(local_idle_timeout_s=3.0)
    client = Client(local)
    schedule = client.schedule("example_script", every=2, name="laptop")
    time.sleep(9)  # three idle timeouts: it stays, and fires
    assert len(runs_of(client, "laptop")) >= 3
    assert client.local_workers(), "the local worker went away"
    schedule.delete()
    deadline = time.monotonic() + 30
    while client.local_workers():  # idle, nothing scheduled: it leaves
        assert time.monotonic() < deadline
        time.sleep(0.5)


def load_the_magics(settings: Settings, root: Path) -> None:
    """``%load_ext jupyter_scriptrun`` in a new IPython, as after a reboot."""
    code = (
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "InteractiveShell.instance().run_line_magic('load_ext', 'jupyter_scriptrun')\n"
        "from jupyter_scriptrun.service import warmup; warmup.wait()\n"
    )
    subprocess.run([sys.executable, "-c", code], env=settings_env(settings), check=True, cwd=root)


def start_jupyter(settings: Settings, root: Path) -> None:
    """``jupyter lab`` started (and stopped: the local worker it started stays)."""
    lab = JupyterLabProcess(settings, root)
    deadline = time.monotonic() + 20
    while not Client(settings).local_workers() and time.monotonic() < deadline:
        time.sleep(0.2)
    stop_process(lab.proc, 20)
    assert "scriptrun: schedules are active" in lab.log.read_text()  # the operator's word


@pytest.mark.parametrize("opening", [load_the_magics, start_jupyter], ids=["magics", "jupyter"])
def test_after_a_reboot_opening_jupyter_fires_the_schedules_again(
    settings: Settings, tmp_path: Path, opening
):
    """On the embedded default the local worker fires schedules. A reboot stops it; the
    next ``%load_ext jupyter_scriptrun`` or Jupyter server start starts it again, without
    the user running anything."""
    client = Client(settings)
    schedule = client.schedule("example_script", every=1, name="rebooted")
    try:
        client.stop_local_workers()  # the reboot
        time.sleep(1.5)  # a tick fired as the worker stopped may still be recorded
        before = len(runs_of(client, "rebooted"))
        time.sleep(3)
        assert len(runs_of(client, "rebooted")) == before, "fired with no worker running"

        opening(settings, tmp_path)
        assert client.local_workers(), "opening Jupyter did not start the local worker"
        deadline = time.monotonic() + 20
        while len(runs_of(client, "rebooted")) < before + 2:
            assert time.monotonic() < deadline, "the schedule did not fire again"
            time.sleep(0.5)
    finally:
        schedule.delete()
        client.stop_local_workers()


def test_loading_the_magics_with_nothing_scheduled_starts_nothing_and_creates_nothing(
    settings: Settings, tmp_path: Path
):
    load_the_magics(settings, tmp_path)
    assert not (settings.data_dir / "scriptrun.db").exists()
    client = Client(settings)
    client.schedule("example_script", every=60, name="paused").pause()
    client.stop_local_workers()
    load_the_magics(settings, tmp_path)
    assert client.local_workers() == {}, "a paused schedule started the local worker"


def test_a_queued_overlap_runs_each_time_after_the_previous_run_ended(
    redis_settings: Settings, start_worker
):
    """``overlap="queue"``: a 2.5 s script every second on two workers never runs twice
    at once; each run starts once the previous one ended, standing for the ticks that
    waited."""
    for _ in range(2):
        start_worker(redis_settings)
    client = Client(redis_settings)
    schedule = client.schedule(
        "slow_script", {"seconds": 2.5}, every=1, name="queued", overlap="queue"
    )
    time.sleep(12)
    schedule.pause()
    records = runs_of(client, "queued")
    wait_all_final(client, records)
    records = [client.get(r["id"]).record() for r in records]
    assert 3 <= len(records) <= 5, len(records)  # 12 s of 2.5 s runs, one after another
    for previous, later in itertools.pairwise(records):
        assert later["started_at"] >= previous["finished_at"], (previous, later)
    assert {r["status"] for r in records} == {"succeeded"}


def test_a_one_second_schedule_fires_every_tick_while_a_worker_keeps_stopping(
    fleet_settings: Settings, start_worker
):
    """The smallest interval fires every tick once, none merged: two workers, one of them
    stopped (SIGSTOP) and continued every 0.7 s, also inside its firings."""
    import signal

    stopping = start_worker(fleet_settings)
    start_worker(fleet_settings)
    client = Client(fleet_settings)
    name = f"each-second-{uuid.uuid4().hex[:6]}"
    schedule = client.schedule("example_script", every=1, name=name, overlap="allow")
    stops = 0
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            stopping.kill(signal.SIGSTOP)
            stops += 1
            time.sleep(0.7)
            stopping.kill(signal.SIGCONT)
            time.sleep(0.7)
    finally:
        stopping.kill(signal.SIGCONT)
    time.sleep(2)  # the last ticks
    schedule.pause()
    records = runs_of(client, name)
    ticks = schedule.ticks(1000)
    print(
        f"\n{fleet_settings.effective_database_url.split(':')[0]}, a worker stopped {stops} "
        f"times: {len(records)} runs, {sum(t['missed'] for t in ticks)} ticks merged, "
        f"{sum(t['outcome'] != 'fired' for t in ticks)} skipped"
    )
    assert len(records) >= 20
    assert steps(records) == {timedelta(seconds=1)}, "a tick was lost"
    assert {t["outcome"] for t in ticks} == {"fired"} and {t["missed"] for t in ticks} == {0}
    wait_all_final(client, records)
