"""Schedules: ticks in a time zone, every problem refused at once, and each tick fired
exactly once whatever races for it, with catch-up and overlap as asked.

The firing is driven here on a clock of the test's own (the store's ``db_now``), so each
policy is checked tick by tick; tests/test_schedule_fleet.py races real workers.
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from jupyter_scriptrun.config import Settings
from jupyter_scriptrun.exceptions import InvalidSchedule
from jupyter_scriptrun.fleet.scheduler import Scheduler
from jupyter_scriptrun.service.client import Client
from jupyter_scriptrun.timing.cron import CronLine
from jupyter_scriptrun.timing.timetable import Timetable, parse_every
from tests.firing import Clock, runs_of

BERLIN, NEW_YORK = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")

# -- time ----------------------------------------------------------------------------


def test_a_daily_run_across_both_2026_changes_in_berlin_is_neither_skipped_nor_doubled():
    daily = Timetable("30 2 * * *", None, "Europe/Berlin", datetime(2026, 1, 1, tzinfo=UTC))
    spring = daily.next_runs(3, datetime(2026, 3, 28, tzinfo=UTC))
    assert [t.isoformat() for t in spring] == [
        "2026-03-28T02:30:00+01:00",
        "2026-03-29T03:00:00+02:00",  # 02:30 does not exist: once, when the clock jumps
        "2026-03-30T02:30:00+02:00",
    ]
    autumn = daily.next_runs(3, datetime(2026, 10, 24, tzinfo=UTC))
    assert [t.isoformat() for t in autumn] == [
        "2026-10-24T02:30:00+02:00",
        "2026-10-25T02:30:00+02:00",  # 02:30 exists twice: the first one, once
        "2026-10-26T02:30:00+01:00",
    ]


def test_a_morning_run_in_new_york_keeps_its_wall_clock_time_across_both_changes():
    seven = Timetable("0 7 * * 1-5", None, "America/New_York", datetime(2026, 1, 1, tzinfo=UTC))
    march = seven.next_runs(2, datetime(2026, 3, 6, 13, tzinfo=UTC))  # Fri, Mon after
    assert [t.isoformat() for t in march] == [
        "2026-03-09T07:00:00-04:00",  # after the change of 2026-03-08: EDT
        "2026-03-10T07:00:00-04:00",
    ]
    assert [t.astimezone(UTC).hour for t in march] == [11, 11]
    november = seven.next_runs(2, datetime(2026, 10, 30, 10, tzinfo=UTC))
    assert [t.isoformat() for t in november] == [
        "2026-10-30T07:00:00-04:00",
        "2026-11-02T07:00:00-05:00",  # after the change of 2026-11-01: EST
    ]
    hourly = Timetable("0 * * * *", None, "America/New_York", datetime(2026, 1, 1, tzinfo=UTC))
    night = [t.isoformat() for t in hourly.next_runs(3, datetime(2026, 11, 1, 4, 30, tzinfo=UTC))]
    # An hourly line stays an hour apart: the repeated 01:00 runs at both occurrences
    # (cron's own rule for a line with * in its hour field).
    assert night == [
        "2026-11-01T01:00:00-04:00",
        "2026-11-01T01:00:00-05:00",
        "2026-11-01T02:00:00-05:00",
    ]


def cron_ticks_by_the_minute(line: str, zone: ZoneInfo, start: datetime, end: datetime):
    """The ticks of ``line`` in ``(start, end]`` as Vixie cron and cronie run it, minute by
    real minute: the wall clock's time when it matches (in a repeated hour, a fixed-time
    line only the first time; a line with * first in its minute or hour field both times);
    when the clock jumps forward, a fixed-time line with a time in the skipped span fires
    once, at the jump, and a wildcard line does not."""
    parsed = CronLine.parse(line)
    one = timedelta(minutes=1)
    ticks, seen, before = [], set(), None
    minute = start.replace(second=0, microsecond=0) - timedelta(hours=4)  # walls seen
    while minute <= end:
        wall = minute.astimezone(zone).replace(tzinfo=None)
        fire = parsed.matches(wall) and (parsed.wildcard or wall not in seen)
        if before is not None and wall > before + one and not parsed.wildcard:
            skipped = (before + k * one for k in range(1, (wall - before) // one))
            fire = fire or any(parsed.matches(w) for w in skipped)
        if fire and start < minute:
            ticks.append(minute)
        seen.add(wall)
        before, minute = wall, minute + one
    return ticks


def walked_ticks(table: Timetable, start: datetime, end: datetime) -> list[datetime]:
    """The ticks in ``(start, end]``, one after another, as the scheduler walks them."""
    walked, tick = [], table.after(start)
    while tick <= end:
        walked.append(tick)
        tick = table.after(tick)
    return walked


@pytest.mark.parametrize(
    "line",
    ["30 2 * * *", "0 * * * *", "*/15 * * * *", "*/20 2 * * *", "5,50 2,3 * * *", "0 1-3 * * *"],
)
@pytest.mark.parametrize(
    ("zone", "changes"),
    [
        (BERLIN, ["2026-03-29T01:00:00+00:00", "2026-10-25T01:00:00+00:00"]),
        (NEW_YORK, ["2026-03-08T07:00:00+00:00", "2026-11-01T06:00:00+00:00"]),
    ],
    ids=["Berlin", "New_York"],
)
def test_cron_ticks_around_each_change_are_exactly_those_of_the_definition(line, zone, changes):
    """Every tick from 6 h before to 6 h after both 2026 changes, one after another as the
    scheduler walks them, against the minute-by-minute definition."""
    table = Timetable(line, None, zone.key, datetime(2026, 1, 1, tzinfo=UTC))
    for change in changes:
        start = datetime.fromisoformat(change) - timedelta(hours=6)
        end = start + timedelta(hours=12)
        assert walked_ticks(table, start, end) == cron_ticks_by_the_minute(line, zone, start, end)


def test_intervals_count_elapsed_time_whatever_the_clocks_do():
    start = datetime(2026, 3, 29, 0, 59, 0, tzinfo=UTC)  # Berlin jumps at 01:00 UTC
    every = Timetable(None, 600.0, "Europe/Berlin", start)
    ticks = every.next_runs(3, start)
    assert [t.astimezone(UTC) - start for t in ticks] == [
        timedelta(minutes=10),
        timedelta(minutes=20),
        timedelta(minutes=30),
    ]


@pytest.mark.parametrize(
    ("value", "seconds"), [(30, 30.0), ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), (1.5, 1.5)]
)
def test_every_takes_seconds_or_a_duration(value, seconds):
    assert parse_every(value) == seconds


# -- refusals -------------------------------------------------------------------------


@pytest.fixture
def client(settings: Settings):
    """The embedded default: a schedule starts its local worker, stopped at the end."""
    client = Client(settings)
    yield client
    client.stop_local_workers()


def test_every_problem_is_named_at_once(client: Client):
    with pytest.raises(InvalidSchedule) as caught:
        client.schedule(
            "example_script",
            {"multiplier": 0, "colour": "red"},
            cron="61 * * * *",
            timezone="Mars/Olympus",
            catchup="sometimes",
        )
    text = str(caught.value)
    assert "5 problems" in text, text
    assert "minute: 61 is outside 0-59" in text
    assert "unknown time zone 'Mars/Olympus'" in text
    assert "catchup must be one of latest, none, all" in text
    assert "multiplier: 0 is less than the minimum of 1" in text
    assert "colour: unknown parameter" in text


@pytest.mark.parametrize(
    ("options", "names"),
    [
        ({"every": 0}, "every must be from 1 s to 366 days"),
        ({"every": 9.6e97}, "every must be from 1 s to 366 days"),
        ({"every": "5m", "timeout": float("nan")}, "timeout must be a positive number"),
        ({"every": "soon"}, "every must be seconds or a duration"),
        ({"cron": "* * *"}, "cron must have 5 fields"),
        ({"cron": "0 7 * * *", "every": 60}, "exactly one of cron"),
        ({}, "exactly one of cron"),
        ({"every": 60, "overlap": "never"}, "overlap must be one of skip, queue, allow"),
        ({"every": 60, "name": "has space"}, "name must be"),
    ],
)
def test_a_bad_schedule_is_refused_saying_why(client: Client, options, names):
    with pytest.raises(InvalidSchedule, match=names):
        client.schedule("example_script", **options)
    assert client.schedules().empty  # nothing half-made


def test_an_unknown_script_and_a_taken_name_are_refused(client: Client):
    with pytest.raises(InvalidSchedule, match="no script named 'nope'"):
        client.schedule("nope", every=60)
    client.schedule("example_script", every=60, name="twice")
    with pytest.raises(InvalidSchedule, match="a schedule named 'twice' exists"):
        client.schedule("example_script", every=60, name="twice")


# -- firing, on a clock of our own ----------------------------------------------------


def test_each_tick_fires_once_with_the_tick_and_schedule_on_the_run(fleet):
    client, clock, scheduler, sent = fleet
    schedule = client.schedule(
        "example_script", {"message": "tick"}, every="2s", name="two", overlap="allow"
    )
    s = scheduler()
    assert s.fire_due() == 0  # nothing due yet
    for _ in range(5):
        clock.advance(2)
        assert s.fire_due() == 1
        assert s.fire_due() == 0  # the same tick again: nothing
    runs = runs_of(client, schedule)
    assert len(runs) == 5 and sent == [r["id"] for r in runs]
    created = schedule.row["created_at"]
    assert [r["scheduled_for"] - created for r in runs] == [
        timedelta(seconds=2 * k) for k in range(1, 6)
    ]
    assert {r["page_context"] for r in runs} == {"schedule:two"}
    assert {r["schedule_id"] for r in runs} == {schedule.id}
    assert {r["parameters"]["message"] for r in runs} == {"tick"}
    listed = client.schedules().set_index("name").loc["two"]
    assert listed["runs"] == 5 and listed["spec"] == "every 2s" and listed["state"] == "active"


def test_racing_schedulers_fire_each_tick_exactly_once(
    store_client: Client, monkeypatch: pytest.MonkeyPatch
):
    """Eight schedulers (threads, each as a worker would) released together on every tick,
    on SQLite and PostgreSQL: each tick has one run, and one send."""
    client = store_client
    monkeypatch.setattr(Client, "ensure_scheduler", lambda self: None)
    clock = Clock(client.store, monkeypatch)
    sent: list[str] = []
    name = f"raced-{uuid.uuid4().hex[:6]}"
    schedule = client.schedule("example_script", every=1, name=name, overlap="allow")
    racers = [
        Scheduler(
            client.store, client.registry, client.settings, lambda i, q, s: sent.append(i), f"w{n}"
        )
        for n in range(8)
    ]
    for _ in range(10):
        clock.advance(1)
        barrier = threading.Barrier(len(racers))

        def race(s: Scheduler, barrier: threading.Barrier) -> None:
            barrier.wait()
            s.fire_due()

        threads = [threading.Thread(target=race, args=(s, barrier)) for s in racers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    runs = runs_of(client, schedule)
    ticks = [r["scheduled_for"] for r in runs]
    assert len(ticks) == 10 and len(set(ticks)) == 10 and len(sent) == 10
    assert sorted(sent) == sorted(r["id"] for r in runs)
    assert {t["worker"] for t in schedule.ticks()} <= {f"w{i}" for i in range(8)}
    schedule.delete()


def test_missed_ticks_follow_the_catchup_policy(fleet):
    client, clock, scheduler, _ = fleet
    # No worker runs the runs here: overlap="allow", so that a queued run does not count.
    options = {"every": 10, "overlap": "allow"}
    latest = client.schedule("example_script", name="latest", **options)
    none = client.schedule("example_script", catchup="none", name="none", **options)
    every_one = client.schedule("example_script", catchup="all", name="all", **options)
    s = scheduler()
    clock.advance(10)
    s.fire_due()  # each fires its first tick on time
    clock.advance(50 + 6.5)  # every worker away for five ticks; back 6.5 s after the last
    s.fire_due()
    assert len(runs_of(client, latest)) == 2  # one run stands for the five missed ticks
    assert latest.ticks()[0]["missed"] == 4
    assert len(runs_of(client, none)) == 1  # missed: skipped (a tick 6.5 s late is missed)
    created = every_one.row["created_at"]
    assert [r["scheduled_for"] - created for r in runs_of(client, every_one)] == [
        timedelta(seconds=10 * k) for k in range(1, 7)
    ]
    clock.advance(3.5)  # the next tick, on time, fires under every policy
    s.fire_due()
    assert [len(runs_of(client, x)) for x in (latest, none, every_one)] == [3, 2, 7]


def test_pause_resume_and_delete_take_effect_at_the_next_tick(fleet):
    client, clock, scheduler, _ = fleet
    schedule = client.schedule("example_script", every=2, name="paused", overlap="allow")
    s = scheduler()
    clock.advance(2)
    s.fire_due()
    schedule.pause()
    clock.advance(10)
    assert s.fire_due() == 0
    schedule.resume()  # no run for the ticks while paused
    assert s.fire_due() == 0
    clock.advance(2)
    assert s.fire_due() == 1
    assert len(runs_of(client, schedule)) == 2
    schedule.delete()
    clock.advance(10)
    assert s.fire_due() == 0
    assert client.schedules().empty and len(client.history(page_context="schedule:paused")) == 2


def test_a_tick_whose_previous_run_still_goes_is_skipped_queued_or_run(fleet):
    client, clock, scheduler, _ = fleet
    skip = client.schedule("example_script", every=2, name="skip")
    wait = client.schedule("example_script", every=2, overlap="queue", name="queue")
    allow = client.schedule("example_script", every=2, overlap="allow", name="allow")
    s = scheduler()
    clock.advance(2)
    s.fire_due()  # three runs, all still queued (no worker here)
    clock.advance(2)
    s.fire_due()
    assert [len(runs_of(client, x)) for x in (skip, wait, allow)] == [1, 1, 2]
    skipped = skip.ticks()[0]
    assert skipped["outcome"] == "skipped" and "was still going" in skipped["reason"]
    for record in runs_of(client, wait):  # the previous run ends
        client.store.request_cancel(record["id"])
    s.fire_due()  # the queued tick fires now, once
    assert len(runs_of(client, wait)) == 2


def test_a_tick_that_cannot_run_is_recorded_with_the_reason(fleet, tmp_path):
    client, clock, scheduler, _ = fleet
    schedule = client.schedule("example_script", {"multiplier": 2}, every=2, name="broken")
    client.store.engine.dispose()
    from sqlalchemy import update

    from jupyter_scriptrun.store.tables import schedules

    with client.store.engine.begin() as conn:  # as if the script's schema had changed
        conn.execute(
            update(schedules)
            .where(schedules.c.id == schedule.id)
            .values(parameters={"multiplier": "two"})
        )
    clock.advance(2)
    assert scheduler().fire_due() == 0
    tick = schedule.ticks()[0]
    assert tick["outcome"] == "skipped" and "multiplier" in tick["reason"]
    assert "multiplier" in client.schedules().set_index("name").loc["broken", "last_error"]


def test_a_worker_dying_mid_fire_leaves_the_tick_to_another(fleet, monkeypatch):
    """A fire is one transaction: dying between the tick's row and its run (here an error
    where a kill would be) rolls both back, and the next worker fires the tick."""
    import jupyter_scriptrun.store.schedules as module

    client, clock, scheduler, sent = fleet
    schedule = client.schedule("example_script", every=2, name="dies", overlap="allow")
    clock.advance(2)

    class Dying:
        def insert(self):
            raise RuntimeError("killed between the tick and its run")

    with monkeypatch.context() as m:
        m.setattr(module, "executions", Dying())
        assert scheduler("doomed").fire_due() == 0  # logged, not raised
    assert schedule.ticks() == [] and sent == []  # nothing half-written
    assert scheduler("survivor").fire_due() == 1
    (tick,) = schedule.ticks()
    assert tick["worker"] == "survivor" and len(runs_of(client, schedule)) == 1


def test_a_fire_repeated_after_a_lost_commit_answer_writes_nothing(fleet):
    """The store retries a write whose commit answer was lost by running it again with the
    same arguments: the second time the tick's row is there, so nothing is written."""
    client, clock, scheduler, _ = fleet
    schedule = client.schedule("example_script", every=2, name="retried", overlap="allow")
    clock.advance(2)
    s = scheduler()
    row = client.store.get_schedule(schedule.id)
    tick = schedule.timetable.after(row["created_at"])
    run = s._run(row, tick, clock.now)
    assert client.store.fire_tick(row, tick, run, next_fire_at=tick, worker="w")
    assert not client.store.fire_tick(row, tick, run, next_fire_at=tick, worker="w")
    assert len(runs_of(client, schedule)) == 1 and len(schedule.ticks()) == 1


def test_a_stalled_worker_with_an_old_view_fires_nothing_even_after_ticks_are_forgotten(fleet):
    """Tick rows are forgotten after a week; a worker that stalled longer, holding an old
    copy of the schedule, still cannot fire a tick the schedule has moved past."""
    client, clock, scheduler, _ = fleet
    schedule = client.schedule("example_script", every=2, name="stale", overlap="allow")
    stale_row = client.store.get_schedule(schedule.id)  # the view before any tick
    s = scheduler()
    for _ in range(3):
        clock.advance(2)
        s.fire_due()
    first_tick = schedule.timetable.after(stale_row["created_at"])
    clock.advance(1)
    assert client.store.forget_ticks(timedelta(0)) == 3 and schedule.ticks() == []
    run = s._run(stale_row, first_tick, clock.now)
    assert not client.store.fire_tick(
        stale_row, first_tick, run, next_fire_at=first_tick, worker="old"
    )
    assert len(runs_of(client, schedule)) == 3


def test_the_facade_keeps_schedule_and_schedules_after_the_module_loads():
    """``sr.schedules()`` is a function: no submodule of that name may shadow it once
    imported (a stranger's first try found one)."""
    import jupyter_scriptrun as sr
    import jupyter_scriptrun.service.scheduling  # what sr.schedule imports

    assert callable(sr.schedules) and callable(sr.schedule)
    assert sr.schedules.__module__ == "jupyter_scriptrun"


# -- cron lines as cron reads them ----------------------------------------------------


@pytest.mark.parametrize(
    ("line", "first_three"),
    [
        # N-N is one value, not "*" (croniter >= 6 read it as every value).
        ("0 9 * * 1-1", ["Mon 06-07 09:00", "Mon 06-14 09:00", "Mon 06-21 09:00"]),
        ("5-5 3 * * *", ["Tue 06-01 03:05", "Wed 06-02 03:05", "Thu 06-03 03:05"]),
        # Day of month starting with "*" and a day of week: both must match.
        ("0 0 */2 * 1", ["Mon 06-07 00:00", "Mon 06-21 00:00", "Mon 07-05 00:00"]),
        # Two restricted day fields: either (so "1 … sun-sat" is every day, as in cron).
        ("0 0 1,15 * 1", ["Tue 06-01 00:00", "Mon 06-07 00:00", "Mon 06-14 00:00"]),
        ("30 4 1 * sun-sat", ["Tue 06-01 04:30", "Wed 06-02 04:30", "Thu 06-03 04:30"]),
        ("@weekly", ["Sun 06-06 00:00", "Sun 06-13 00:00", "Sun 06-20 00:00"]),
        ("30 4 1 jan-may/2 *", ["Sat 01-01 04:30", "Wed 03-01 04:30", "Mon 05-01 04:30"]),
    ],
)
def test_cron_lines_mean_what_cron_means(line, first_three):
    parsed, t, seen = CronLine.parse(line), datetime(2027, 5, 31, 23, 59), []
    for _ in range(3):
        t = parsed.next_after(t)
        seen.append(t.strftime("%a %m-%d %H:%M"))
    assert seen == first_three


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("R 3 * * *", "minute: 'R' is not a number"),  # random: each worker would draw its own
        ("H * * * *", "minute: 'H' is not a number"),
        ("0 0 31 2 *", "never fires"),
        ("0 0 30 2 *", "never fires"),
        ("5-3 * * * *", "the range '5-3' runs backwards"),
        ("*/0 * * * *", "bad step"),
        ("0 24 * * *", "hour: 24 is outside 0-23"),
        ("0 0 * * 8", "day of week: 8 is outside 0-7"),
        ("0 0 * *", "must have 5 fields"),
    ],
)
def test_a_line_cron_would_not_run_is_refused_naming_why(client: Client, line, problem):
    with pytest.raises(InvalidSchedule, match=problem):
        client.schedule("example_script", cron=line)


def random_lines(n: int, seed: int) -> list[str]:
    """Cron lines that fire around clock changes, in every form the grammar has."""
    import random

    rng = random.Random(seed)
    minutes = ["*", "*/15", "0", "30", "0,30", "5-10", "*/7", "45", "10-50/20", "59"]
    hours = ["*", "1-3", "2", "*/2", "0-4", "3", "1", "2,3", "1/2", "0-23/3"]
    days = ["*", "*", "*/2", "1-31", "1,15,28", "28-31", "*/3"]
    months = ["*", "*", "3", "10", "3,10,4", "mar-apr", "*/2"]
    weekdays = ["*", "*", "0", "1-5", "*/2", "sun", "6,0", "mon-fri"]
    return [
        " ".join(rng.choice(f) for f in (minutes, hours, days, months, weekdays)) for _ in range(n)
    ]


LORD_HOWE = ZoneInfo("Australia/Lord_Howe")  # a half-hour change


@pytest.mark.parametrize(
    ("zone", "changes"),
    [
        (BERLIN, ["2027-03-28T01:00:00+00:00", "2027-10-31T01:00:00+00:00"]),
        (NEW_YORK, ["2027-03-14T07:00:00+00:00", "2027-11-07T06:00:00+00:00"]),
        (LORD_HOWE, ["2027-04-03T15:00:00+00:00", "2027-10-02T15:30:00+00:00"]),
    ],
    ids=["Berlin", "New_York", "Lord_Howe"],
)
def test_random_lines_across_both_2027_changes_tick_as_cron_runs_them(zone, changes):
    """Hundreds of random lines, every tick from 5 h before to 5 h after each change,
    walked as the scheduler walks them, against cron's minute-by-minute behaviour."""
    for line in random_lines(120, seed=sum(map(ord, zone.key))):
        table = Timetable(line, None, zone.key, datetime(2027, 1, 1, tzinfo=UTC))
        try:
            assert table.line.text == line
        except ValueError:
            continue  # a line that never fires (e.g. the 30th in a February-only month)
        for change in changes:
            start = datetime.fromisoformat(change) - timedelta(hours=5)
            end = start + timedelta(hours=10)
            expected = cron_ticks_by_the_minute(line, zone, start, end)
            assert walked_ticks(table, start, end) == expected, (line, change)


def test_a_recreated_schedule_has_only_its_own_runs_and_no_name_is_an_id(fleet):
    """Runs belong to a schedule's id: one deleted and made again under its name starts
    with none. A name cannot look like an id (ids and names are looked up alike), and a
    zone must be an IANA name (``localtime`` is each host's own)."""
    client, clock, scheduler, _ = fleet
    first = client.schedule("example_script", every=10, name="reused", overlap="allow")
    clock.advance(10)
    scheduler().fire_due()
    assert len(runs_of(client, first)) == 1
    first.delete()
    again = client.schedule("example_script", every=10, name="reused", overlap="allow")
    assert runs_of(client, again) == []
    with pytest.raises(InvalidSchedule, match="looks like a schedule id"):
        client.schedule("example_script", every=10, name=again.id)
    with pytest.raises(InvalidSchedule, match=r"must be an IANA name .* not 'localtime'"):
        client.schedule("example_script", every=10, timezone="localtime")
