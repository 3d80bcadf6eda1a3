"""Firing, policy by policy: every catch-up and overlap combination does what the scheduler's
docstring says and leaves each tick in the tick log; catching up costs the ticks fired, not
the time missed; and a worker stalled inside a firing holds up no other worker.

Driven on a clock of the test's own (tests/firing.py); the stall uses a real second
process stopped by SIGSTOP inside its firing transaction, on the private PostgreSQL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import timedelta

import psutil
import pytest

from jupyter_scriptrun.fleet.scheduler import Scheduler
from jupyter_scriptrun.service.client import Client
from jupyter_scriptrun.timing.cron import CronLine
from tests.conftest import settings_env
from tests.firing import runs_of

EXPECTED = {
    # (catchup, overlap): the tick log, oldest first: (tick k, outcome, missed, reason)
    ("latest", "allow"): [(1, "fired", 0, None), (6, "fired", 4, None)],
    ("none", "allow"): [(1, "fired", 0, None), (6, "skipped", 4, "missed")],
    ("all", "allow"): [(k, "fired", 0, None) for k in range(1, 7)],
    ("latest", "skip"): [(1, "fired", 0, None), (6, "skipped", 4, "overlap")],
    ("none", "skip"): [(1, "fired", 0, None), (6, "skipped", 4, "missed")],
    ("all", "skip"): [(1, "fired", 0, None), (6, "skipped", 4, "overlap")],
    ("latest", "queue"): [(1, "fired", 0, None), (6, "fired", 4, None)],
    ("none", "queue"): [(1, "fired", 0, None), (6, "skipped", 4, "missed")],
    ("all", "queue"): [(k, "fired", 0, None) for k in range(1, 7)],
}


def end_runs(client: Client, schedule) -> None:
    """The schedule's runs end (no worker here: they are cancelled while queued)."""
    for record in runs_of(client, schedule):
        client.store.request_cancel(record["id"])


def tick_log(schedule) -> list[tuple]:
    created = schedule.row["created_at"]
    return [
        (
            round((t["tick_at"] - created).total_seconds() / 10),
            t["outcome"],
            t["missed"],
            t["reason"].split(":")[0] if t["reason"] else None,
        )
        for t in reversed(schedule.ticks())
    ]


@pytest.mark.parametrize(("catchup", "overlap"), sorted(EXPECTED))
def test_each_catchup_and_overlap_pair_does_what_it_says_and_logs_every_tick(
    fleet, catchup: str, overlap: str
):
    """A 10 s schedule fires its first tick; its run goes on while every worker is away
    for five ticks (back 6.5 s after the last: all five missed); then the run ends."""
    client, clock, scheduler, _ = fleet
    schedule = client.schedule(
        "example_script", every=10, name=f"{catchup}-{overlap}", catchup=catchup, overlap=overlap
    )
    s = scheduler()
    clock.advance(10)
    assert s.fire_due() == 1
    clock.advance(50 + 6.5)
    s.fire_due()
    most_at_once = 0
    for _ in range(8):  # the run ends; looks follow, each run ending before the next look
        end_runs(client, schedule)
        clock.advance(0.4)  # (tick 7 is not due before the last look)
        most_at_once = max(most_at_once, s.fire_due())
    assert tick_log(schedule) == EXPECTED[catchup, overlap]
    if overlap != "allow":
        assert most_at_once <= 1, "without overlap, no two runs of the schedule at once"
    listed = client.schedules().set_index("name").loc[schedule.name]
    fired = sum(1 for _, outcome, _, _ in EXPECTED[catchup, overlap] if outcome == "fired")
    assert listed["runs"] == fired == len(runs_of(client, schedule))
    # Every tick that came due is accounted for: fired, or skipped, or counted as missed.
    assert listed["runs"] + listed["skipped"] == 6


@pytest.mark.parametrize("catchup", ["none", "latest"])
def test_a_tick_held_by_queue_fires_when_the_run_ends_standing_for_those_that_waited(
    fleet, catchup: str
):
    """Ticks that came due on time while the previous run went on are not missed, even
    under catchup="none": the newest fires when the run ends, counting the others."""
    client, clock, scheduler, _ = fleet
    schedule = client.schedule(
        "example_script", every=10, name=f"held-{catchup}", catchup=catchup, overlap="queue"
    )
    s = scheduler()
    clock.advance(10)
    assert s.fire_due() == 1
    for _ in range(4):  # ticks 2-5 come due, each seen on time, while run 1 goes on
        clock.advance(10)
        assert s.fire_due() == 0
    clock.advance(9)  # run 1 ends 9 s after tick 5: long after its grace
    end_runs(client, schedule)
    assert s.fire_due() == 1
    assert tick_log(schedule) == [(1, "fired", 0, None), (5, "fired", 3, None)]


def test_ticks_due_together_on_time_each_fire_as_their_own_run(fleet):
    """A look that comes late (a busy worker) finds several ticks on time: each is a run
    of its own, not merged into one."""
    client, clock, scheduler, _ = fleet
    schedule = client.schedule("example_script", every=1, name="every-second", overlap="allow")
    clock.advance(3.2)  # ticks 1, 2 and 3 are all within the 5 s grace
    assert scheduler().fire_due() == 3
    assert [t["missed"] for t in schedule.ticks()] == [0, 0, 0]


def test_misfire_grace_decides_what_is_on_time(fleet):
    client, clock, scheduler, _ = fleet
    strict = client.schedule(
        "example_script", every=60, name="strict", catchup="none", misfire_grace=1
    )
    lenient = client.schedule(
        "example_script", every=60, name="lenient", catchup="none", misfire_grace=30
    )
    clock.advance(60 + 20)  # the first tick, 20 s late
    scheduler().fire_due()
    assert tick_log_outcomes(strict) == [("skipped", "missed")]
    assert tick_log_outcomes(lenient) == [("fired", None)]


def tick_log_outcomes(schedule) -> list[tuple]:
    return [
        (t["outcome"], t["reason"].split(":")[0] if t["reason"] else None) for t in schedule.ticks()
    ]


def cron_steps(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the wall-clock times the cron line is asked for (the walk's steps)."""
    steps = [0]
    real = CronLine.next_after

    def counted(self, wall):
        steps[0] += 1
        return real(self, wall)

    monkeypatch.setattr(CronLine, "next_after", counted)
    return steps


@pytest.mark.parametrize("catchup", ["latest", "none"])
def test_catching_up_costs_the_same_after_a_day_or_ninety_and_counts_every_missed_tick(
    fleet, monkeypatch: pytest.MonkeyPatch, catchup: str
):
    """`* * * * *` in Berlin, every worker away: one day, then 90 days across the spring
    change. The walk does not grow with the downtime, and ``missed`` is the true count,
    not a cap."""
    client, clock, scheduler, _ = fleet
    options = {"cron": "* * * * *", "timezone": "Europe/Berlin", "catchup": catchup}
    clock.now = clock.now.replace(
        year=2027, month=1, day=10, hour=0, minute=0, second=30, microsecond=0
    )
    day = client.schedule("example_script", name="away-a-day", **options)
    long = client.schedule("example_script", name="away-90-days", **options)
    steps = cron_steps(monkeypatch)
    long.pause()  # away-a-day is looked at alone first
    clock.advance(86400)
    scheduler().fire_due()
    after_a_day = steps[0]
    long.resume()
    resumed = clock.now
    day.pause()
    clock.advance(90 * 86400)
    steps[0] = 0
    scheduler().fire_due()
    assert steps[0] < 2 * after_a_day + 5000, (after_a_day, steps[0])
    (tick,) = long.ticks()
    ticks = 90 * 1440  # every real minute: the spring change skips wall-clock times only
    assert tick["missed"] == ticks - 1
    assert tick["tick_at"] == resumed + timedelta(days=90) - timedelta(seconds=30)
    assert (tick["outcome"], tick_log_outcomes(long)[0][1]) == (
        ("fired", None) if catchup == "latest" else ("skipped", "missed")
    )


STALLING = textwrap.dedent(
    """
    import os, signal, sys
    from sqlalchemy import event
    from jupyter_scriptrun.service.client import Client
    from jupyter_scriptrun.config import Settings
    from jupyter_scriptrun.fleet.scheduler import Scheduler

    client = Client(Settings.from_env())
    stalled_id = sys.argv[1]

    @event.listens_for(client.store.engine, "after_cursor_execute")
    def stop_inside(conn, cursor, statement, parameters, context, executemany):
        # Stopped right after writing the tick's row, inside the firing transaction.
        if "INSERT INTO schedule_ticks" in statement and stalled_id in repr(parameters):
            event.remove(client.store.engine, "after_cursor_execute", stop_inside)
            os.kill(os.getpid(), signal.SIGSTOP)

    scheduler = Scheduler(
        client.store, client.registry, client.settings, lambda *a: None, "stalled"
    )
    while scheduler.fire_due() == 0:
        pass
    print("fired after the stall:", scheduler.fire_due())
    """
)


@pytest.mark.postgres
def test_a_worker_stalled_inside_a_firing_holds_up_no_other_worker(
    settings, postgres_url: str, monkeypatch: pytest.MonkeyPatch
):
    """A worker stopped (SIGSTOP) inside its firing transaction: another worker's look
    returns at once and fires the unrelated schedule; PostgreSQL ends the stalled
    transaction after STALL_TIMEOUT, the stalled tick then fires once (on time) from the
    live worker; the stalled worker, continued, writes nothing."""
    settings = settings.with_(database_url=postgres_url)
    client = Client(settings)
    monkeypatch.setattr(Client, "ensure_scheduler", lambda self: None)
    suffix = os.urandom(3).hex()
    stalled = client.schedule("example_script", every=2, name=f"stalled-{suffix}")
    other = client.schedule("example_script", every=2, name=f"other-{suffix}")
    other.pause()  # it fires only from the live worker, below
    child = subprocess.Popen(
        [sys.executable, "-c", STALLING, stalled.id],
        env=settings_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while psutil.Process(child.pid).status() != psutil.STATUS_STOPPED:
            assert time.monotonic() < deadline and child.poll() is None, child.stdout.read()
            time.sleep(0.05)
        other.resume()
        time.sleep(2.1)  # the other schedule's first tick
        live = Scheduler(client.store, client.registry, client.settings, lambda *a: None, "live")
        started = time.monotonic()
        live.fire_due()
        assert time.monotonic() - started < 1.0, "the live worker waited for the stalled one"
        assert len(runs_of(client, other)) == 1
        run = client.submit("example_script")  # a run's own writes go on meanwhile too
        client.cancel(run.id)
        # The server ends the stalled transaction; the live worker then fires its tick.
        deadline = time.monotonic() + 15
        while not runs_of(client, stalled):
            assert time.monotonic() < deadline, "the stalled schedule's tick never fired"
            live.fire_due()
            time.sleep(0.2)
        (fired,) = runs_of(client, stalled)
        assert fired["scheduled_for"] == stalled.timetable.after(stalled.row["created_at"])
        assert stalled.ticks()[-1]["worker"] == "live"
    finally:
        os.kill(child.pid, signal.SIGCONT)
        output, _ = child.communicate(timeout=60)
    assert child.returncode == 0, output
    ticks = [r["scheduled_for"] for r in runs_of(client, stalled)]
    assert len(ticks) == len(set(ticks)), "a tick fired twice"
    stalled.delete()
    other.delete()
