"""Schedules over REST, against a real Jupyter server with the extension (and a worker
for the one test whose schedule must fire)."""

from __future__ import annotations

import asyncio
import json

import pytest
from test_server import conforms, error_of

from jupyter_scriptrun.config import Settings
from jupyter_scriptrun.service.client import Client


@pytest.fixture
def jp_server_config(scriptrun_server_config):
    return scriptrun_server_config


@pytest.fixture
def api(jp_fetch, jp_serverapp):
    async def call(path: str, method: str = "GET", body=None, **params):
        kw: dict = {"method": method, "params": params}
        if body is not None:
            kw["body"] = body if isinstance(body, str) else json.dumps(body)
        response = await jp_fetch("scriptrun", "api", *path.split("/"), **kw)
        return response

    return call


async def test_make_read_pause_resume_and_delete_a_schedule(api):
    made = await api(
        "schedules",
        "POST",
        {
            "script": "example_script",
            "parameters": {"message": "rest"},
            "cron": "0 7 * * 1-5",
            "timezone": "Europe/Berlin",
            "name": "mornings",
        },
    )
    assert made.code == 201
    schedule = json.loads(made.body)
    assert schedule["name"] == "mornings" and schedule["state"] == "active"
    assert len(schedule["next_runs"]) == 5
    assert all(t.endswith(("+01:00", "+02:00")) and "T07:00:00" in t for t in schedule["next_runs"])
    assert schedule["links"]["runs"].endswith("executions?page_context=schedule:mornings")

    listed = json.loads((await api("schedules")).body)
    assert [s["name"] for s in listed] == ["mornings"]
    document = json.loads((await api("openapi.json")).body)
    conforms(document, "Schedule", schedule)  # what the document promises
    conforms(document, "Schedule", listed[0])
    by_name = json.loads((await api("schedules/mornings")).body)
    assert by_name["id"] == schedule["id"]

    paused = json.loads(
        (await api(f"schedules/{schedule['id']}", "PATCH", {"state": "paused"})).body
    )
    assert paused["state"] == "paused" and paused["next_runs"] == []
    resumed = json.loads((await api("schedules/mornings", "PATCH", {"state": "active"})).body)
    assert resumed["state"] == "active" and len(resumed["next_runs"]) == 5

    gone = await api("schedules/mornings", "DELETE")
    assert gone.code == 204
    code, body = await error_of(api("schedules/mornings"))
    assert code == 404 and body["error"] == "ScheduleNotFound"


async def test_a_bad_schedule_is_one_400_listing_every_problem(api):
    code, body = await error_of(
        api(
            "schedules",
            "POST",
            {
                "script": "example_script",
                "parameters": {"multiplier": 0},
                "every": 0,
                "timezone": "Atlantis/Capital",
            },
        )
    )
    assert code == 400 and body["error"] == "InvalidSchedule"
    problems = " | ".join(body["problems"])
    assert len(body["problems"]) == 3, problems
    assert "every must be from 1 s to 366 days" in problems
    assert "unknown time zone 'Atlantis/Capital'" in problems
    assert "multiplier: 0 is less than the minimum of 1" in problems

    # A field the schema refuses hides none of the schedule's own problems: one 400.
    code, body = await error_of(
        api(
            "schedules",
            "POST",
            {
                "script": "example_script",
                "cron": "* * *",
                "catchup": "sometimes",
                "timezone": "localtime",
                "parameters": {"colour": "red"},
                "sometimes": 1,
            },
        )
    )
    problems = " | ".join(body["problems"])
    assert code == 400 and len(body["problems"]) == 5, problems
    fields = {e["field"] for e in body["errors"]}
    assert {"cron", "catchup", "timezone", "colour"} <= fields, [str(e) for e in body["errors"]]
    for words in (
        "'sometimes' was unexpected",
        "cron must have 5 fields",
        "catchup must be",
        "not 'localtime'",
        "colour: unknown parameter",
    ):
        assert words in problems, (words, problems)
    for unreadable in ({"script": 5, "every": 0}, {"every": 0}, {"script": "x", "queue": 5}):
        code, body = await error_of(api("schedules", "POST", unreadable))
        assert code == 400 and body["error"] == "InvalidRequest", unreadable  # nothing to check
    code, body = await error_of(api("schedules", "POST", "[]"))
    assert code == 400
    code, body = await error_of(api("schedules/nope", "PATCH", {"state": "asleep"}))
    assert code == 400
    code, body = await error_of(api("schedules/nope", "PATCH", {"state": "paused"}))
    assert code == 404


async def test_a_schedule_made_over_rest_fires_and_its_runs_are_listed(
    api, redis_settings: Settings, start_worker
):
    start_worker(redis_settings)
    await api(
        "schedules",
        "POST",
        {"script": "example_script", "every": "1s", "name": "often", "overlap": "allow"},
    )
    await asyncio.sleep(4)
    await api("schedules/often", "PATCH", {"state": "paused"})
    runs = json.loads((await api("executions", page_context="schedule:often")).body)
    assert len(runs) >= 2 and {r["page_context"] for r in runs} == {"schedule:often"}
    ticks = Client(redis_settings).get_schedule("often").ticks()
    assert len(ticks) == len(runs)


async def test_edit_run_now_and_a_one_off_over_rest(api):
    made = await api(
        "schedules",
        "POST",
        {"script": "example_script", "every": "1h", "name": "hourly", "jitter": 60},
    )
    schedule = json.loads(made.body)
    assert schedule["jitter_s"] == 60.0
    edited = json.loads(
        (
            await api(
                "schedules/hourly",
                "PATCH",
                {"cron": "30 6 * * *", "timezone": "Europe/Berlin", "parameters": {"message": "e"}},
            )
        ).body
    )
    assert edited["cron"] == "30 6 * * *" and edited["every_s"] is None
    assert edited["parameters"]["message"] == "e"
    assert all("T06:30:" in t for t in edited["next_runs"]) and edited["state"] == "active"
    document = json.loads((await api("openapi.json")).body)
    conforms(document, "Schedule", edited)

    # null puts an option back to its default (the JupyterLab dialog's emptied field).
    reset = json.loads(
        (await api("schedules/hourly", "PATCH", {"catchup": "none", "jitter": None})).body
    )
    assert (reset["catchup"], reset["jitter_s"]) == ("none", None)
    reset = json.loads((await api("schedules/hourly", "PATCH", {"catchup": None})).body)
    assert reset["catchup"] == "latest" and reset["cron"] == "30 6 * * *"

    # An edit with problems: one 400 listing all of them, and nothing changes.
    code, body = await error_of(
        api("schedules/hourly", "PATCH", {"cron": "* *", "overlap": "never", "colour": 1})
    )
    problems = " | ".join(body["problems"])
    assert code == 400 and body["error"] == "InvalidSchedule", problems
    for words in ("'colour' was unexpected", "cron must have 5 fields", "overlap must be"):
        assert words in problems, (words, problems)
    again = json.loads((await api("schedules/hourly")).body)
    assert again["cron"] == "30 6 * * *" and again["overlap"] == "skip"

    ran = await api("schedules/hourly/run", "POST", {})
    assert ran.code == 202
    run = json.loads(ran.body)
    conforms(document, "Execution", run)
    assert run["page_context"] == "schedule:hourly" and run["parameters"]["message"] == "e"
    code, body = await error_of(api("schedules/nope/run", "POST", {}))
    assert code == 404

    once = json.loads(
        (
            await api(
                "schedules",
                "POST",
                {"script": "example_script", "at": "2099-01-31T09:00", "timezone": "Asia/Tokyo"},
            )
        ).body
    )
    assert once["once_at"].startswith("2099-01-31T00:00") and once["next_runs"] == [
        "2099-01-31T09:00:00+09:00"
    ]
    code, body = await error_of(
        api("schedules", "POST", {"script": "example_script", "at": "yesterday-ish"})
    )
    assert code == 400 and "at must be a date and time" in " ".join(body["problems"])
