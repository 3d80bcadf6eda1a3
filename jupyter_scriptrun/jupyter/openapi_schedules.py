"""The schedules' part of the REST API's OpenAPI document: their paths and schemas."""

from __future__ import annotations

from typing import Any

from jupyter_scriptrun.timing import options

_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
OPTIONS: dict[str, Any] = {
    **options.json_properties(),
    "name": {"type": "string", "maxLength": 128},
    "parameters": {"type": "object"},
}
"""A schedule's options, as the request bodies name them (declared in
:mod:`jupyter_scriptrun.timing.options`), plus ``name`` and ``parameters``."""

SCHEDULE_BODY: dict[str, Any] = {
    "type": "object",
    "description": "A script on a cron line, at an interval, or once. Exactly one of "
    "``cron``, ``every`` and ``at``; every problem is listed in one 400.",
    "required": ["script"],
    "additionalProperties": False,
    "properties": {"script": {"type": "string", "minLength": 1, "maxLength": 128}, **OPTIONS},
}


def _or_null(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema``, or null (an edit's way to put an option back to its default)."""
    return {"anyOf": [schema, {"type": "null"}], "description": schema.get("description", "")}


SCHEDULE_PATCH: dict[str, Any] = {
    "type": "object",
    "description": "Pause or resume (``state``), or change any option (null puts it back "
    "to its default): the next tick follows the new definition; every problem is listed "
    "in one 400 and nothing changes.",
    "minProperties": 1,
    "additionalProperties": False,
    "properties": {
        "state": {"enum": ["active", "paused"]},
        **{k: _or_null(v) for k, v in options.json_properties().items()},
        "name": OPTIONS["name"],
        "parameters": OPTIONS["parameters"],
    },
}

SCHEDULE: dict[str, Any] = {
    "type": "object",
    "required": ["id", "name", "script", "state", "timezone", "links"],
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "script": {"type": "string"},
        "parameters": {"type": "object"},
        "cron": {"type": ["string", "null"]},
        "every_s": {"type": ["number", "null"]},
        "timezone": {"type": "string"},
        "catchup": {"enum": ["latest", "none", "all"]},
        "overlap": {"enum": ["skip", "queue", "allow"]},
        "state": {"enum": ["active", "paused", "ended"]},
        "once_at": _NULLABLE_TIME,
        "start_at": _NULLABLE_TIME,
        "end_at": _NULLABLE_TIME,
        "jitter_s": {"type": ["number", "null"]},
        "misfire_grace_s": {"type": ["number", "null"]},
        "notify": {"type": ["array", "null"], "items": {"type": "string"}},
        "notify_on": {"type": ["array", "null"], "items": {"type": "string"}},
        "created_at": {"type": "string", "format": "date-time"},
        "next_fire_at": _NULLABLE_TIME,
        "last_tick_at": _NULLABLE_TIME,
        "last_execution_id": {"type": ["string", "null"]},
        "last_error": {"type": ["string", "null"]},
        "fired": {"type": "integer"},
        "skipped": {"type": "integer"},
        "next_runs": {
            "type": "array",
            "items": {"type": "string", "format": "date-time"},
            "description": "the next fire times, in the schedule's time zone",
        },
        "links": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}

_SCHEDULE_ID = {"name": "schedule_id", "in": "path", "required": True, "schema": {"type": "string"}}


def paths(json: Any, ref: Any, errors: Any) -> dict[str, Any]:
    """The schedules' paths (``json``, ``ref`` and ``errors`` build responses as the rest
    of the document does)."""
    one = {"200": json(ref("Schedule"), "the schedule, with its next fire times")}
    return {
        "/schedules": {
            "get": {
                "summary": "Every schedule, by name",
                "operationId": "listSchedules",
                "responses": {
                    "200": json({"type": "array", "items": ref("Schedule")}, "the schedules"),
                    **errors(403),
                },
            },
            "post": {
                "summary": "Schedule a script (checked whole: timing, zone, parameters)",
                "operationId": "createSchedule",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": ref("ScheduleRequest")}},
                },
                "responses": {
                    "201": json(ref("Schedule"), "the schedule made"),
                    **errors(400, 403),
                },
            },
        },
        "/schedules/{schedule_id}": {
            "parameters": [_SCHEDULE_ID],
            "get": {
                "summary": "One schedule (by id or name)",
                "operationId": "getSchedule",
                "responses": {**one, **errors(403, 404)},
            },
            "patch": {
                "summary": "Pause, resume or edit (the next tick follows the new definition)",
                "operationId": "updateSchedule",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": ref("SchedulePatch")}},
                },
                "responses": {**one, **errors(400, 403, 404)},
            },
            "delete": {
                "summary": "Delete a schedule (its runs stay in the history)",
                "operationId": "deleteSchedule",
                "responses": {"204": {"description": "deleted"}, **errors(403, 404)},
            },
        },
        "/schedules/{schedule_id}/run": {
            "parameters": [_SCHEDULE_ID],
            "post": {
                "summary": "Run now: one run outside the timetable, recorded as the schedule's",
                "operationId": "runScheduleNow",
                "responses": {
                    "202": json(ref("Execution"), "the run, queued"),
                    **errors(400, 403, 404),
                },
            },
        },
    }


SCHEMAS = {"Schedule": SCHEDULE, "ScheduleRequest": SCHEDULE_BODY, "SchedulePatch": SCHEDULE_PATCH}
