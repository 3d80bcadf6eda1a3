"""The controls people expect of a scheduler, from Python: edit a schedule, run it now,
one-off and bounded schedules, jitter a fleet agrees on, a misfire grace. Fired on a
clock of the test's own (tests/firing.py); the front ends' spellings are tested with
them (tests/test_schedule_api.py, tests/test_cli.py, tests/test_magics.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from jupyter_scriptrun.exceptions import InvalidSchedule
from jupyter_scriptrun.status import ExecutionStatus
from tests.firing import runs_of


def test_an_edit_takes_effect_at_the_next_tick(fleet):
    client, clock, scheduler, _ = fleet
    schedule = client.schedule("example_script", {"message": "a"}, every=10, name="edited")
    s = scheduler()
    clock.advance(10)
    assert s.fire_due() == 1
    schedule.update({"message": "b"}, every=3, overlap="allow", name="renamed")
    assert (schedule.name, schedule.row["every_s"], schedule.row["overlap"]) == (
        "renamed",
        3.0,
        "allow",
    )
    clock.advance(3)
    assert s.fire_due() == 1
    runs = runs_of(client, schedule)
    assert [r["parameters"]["message"] for r in runs] == ["a", "b"]
    assert runs[1]["page_context"] == "schedule:renamed"
    schedule.update(cron="0 9 * * *", timezone="Europe/Berlin")  # from interval to cron
    assert schedule.row["every_s"] is None and schedule.next_runs(1)[0].hour == 9


def test_an_edit_with_problems_lists_them_all_and_changes_nothing(fleet):
    client, _, _, _ = fleet
    schedule = client.schedule("example_script", every=60, name="kept")
    client.schedule("example_script", every=60, name="taken")
    before = dict(schedule.refresh().row)
    with pytest.raises(InvalidSchedule) as caught:
        schedule.update(
            {"multiplier": "two"}, cron="61 * * * *", catchup="sometimes", jitter=-1, colour="red"
        )
    problems = caught.value.problems
    for expected in ("colour", "minute", "catchup", "jitter", "multiplier"):
        assert any(expected in p for p in problems), (expected, problems)
    with pytest.raises(InvalidSchedule, match="taken"):
        schedule.update(name="taken")
    assert schedule.refresh().row == before


def test_run_now_is_one_run_outside_the_timetable_recorded_as_the_schedules(fleet):
    client, _, scheduler, _ = fleet
    schedule = client.schedule(
        "example_script", {"message": "now"}, cron="0 9 * * *", name="on-demand"
    )
    run = schedule.run_now()
    record = run.record()
    assert record["schedule_id"] == schedule.id and record["scheduled_for"] is None
    assert record["page_context"] == "schedule:on-demand"
    assert record["parameters"]["message"] == "now"
    assert list(schedule.runs()["id"]) == [run.id]
    assert scheduler().fire_due() == 0, "the timetable is untouched"
    assert run.wait(60).status is ExecutionStatus.SUCCEEDED


def test_a_one_off_schedule_fires_once_then_ends(fleet):
    client, clock, scheduler, _ = fleet
    when = clock.now + timedelta(seconds=30)
    schedule = client.schedule("example_script", at=when, name="once")
    assert schedule.next_runs(3) == [when]
    assert client.schedules().set_index("name").loc["once", "spec"].startswith("once at ")
    s = scheduler()
    clock.advance(29)
    assert s.fire_due() == 0
    clock.advance(1)
    assert s.fire_due() == 1
    clock.advance(3600)
    assert s.fire_due() == 0
    assert schedule.refresh().row["state"] == "ended" and schedule.next_runs() == []
    assert schedule.resume().row["state"] == "ended", "nothing is left to fire"
    with pytest.raises(InvalidSchedule, match="in the past"):
        client.schedule("example_script", at=clock.now - timedelta(seconds=1))
    with pytest.raises(InvalidSchedule, match="exactly one"):
        client.schedule("example_script", at=when, every=5)


def test_start_and_end_bound_the_ticks(fleet):
    client, clock, scheduler, _ = fleet
    start = clock.now + timedelta(seconds=100)
    schedule = client.schedule(
        "example_script",
        every=10,
        start=start,
        end=(start + timedelta(seconds=30)).isoformat(),
        name="bounded",
        overlap="allow",
    )
    assert schedule.next_runs(5) == [start + timedelta(seconds=10 * k) for k in (1, 2, 3)]
    s = scheduler()
    for _ in range(20):
        clock.advance(10)
        s.fire_due()
    ticks = [r["scheduled_for"] for r in runs_of(client, schedule)]
    assert ticks == [start + timedelta(seconds=10 * k) for k in (1, 2, 3)]
    assert schedule.refresh().row["state"] == "ended"
    with pytest.raises(InvalidSchedule, match="end must be after start"):
        client.schedule("example_script", every=10, start=start, end=start)
    with pytest.raises(InvalidSchedule, match="date and time"):
        client.schedule("example_script", every=10, start="next tuesday")


def test_jitter_delays_each_tick_the_same_on_every_worker(fleet):
    """Each tick fires up to ``jitter`` late, by an amount drawn from the schedule and the
    tick: two workers (two Schedulers) agree, and no tick fires before its instant."""
    client, clock, scheduler, _ = fleet
    schedule = client.schedule(
        "example_script", every=60, jitter=30, name="spread", overlap="allow"
    )
    table, key = schedule.timetable, schedule.id
    first = table.after(schedule.row["created_at"])
    delays = [
        (table.fire_at(first + timedelta(minutes=k), key, 30) - first - timedelta(minutes=k))
        for k in range(20)
    ]
    assert all(timedelta(0) <= d < timedelta(seconds=30) for d in delays)
    assert len(set(delays)) > 10, "the delays are spread"
    fires_at = table.fire_at(first, key, 30)
    assert schedule.row["next_fire_at"] == fires_at
    a, b = scheduler("a"), scheduler("b")
    clock.now = fires_at - timedelta(milliseconds=1)
    assert a.fire_due() + b.fire_due() == 0
    clock.now = fires_at
    assert a.fire_due() + b.fire_due() == 1
    with pytest.raises(InvalidSchedule, match="shorter than the interval"):
        client.schedule("example_script", every=60, jitter=60)


def test_every_front_end_names_exactly_the_options_of_the_spec():
    """The options are declared once (ScheduleSpec); the REST body, the CLI and the magics
    each give all of them, in the spec's words, and no other."""
    from argparse import Namespace

    from jupyter_scriptrun.cli.schedules import _given
    from jupyter_scriptrun.jupyter.magics import schedule_options
    from jupyter_scriptrun.jupyter.openapi_schedules import OPTIONS
    from jupyter_scriptrun.timing.spec import ScheduleSpec

    spec = set(ScheduleSpec.names())
    assert set(OPTIONS) == spec | {"name", "parameters"}
    everything = Namespace(
        **{
            name: "x"
            for name in (
                *("cron", "every", "at", "start", "end", "timezone", "catchup", "overlap"),
                "queue",
                *("timeout", "jitter", "misfire_grace", "notify", "notify_on"),
            )
        }
    )
    assert set(_given(everything)) == spec
    assert set(schedule_options(everything)) == spec
