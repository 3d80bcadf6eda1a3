"""The schedules' part of the REST API's OpenAPI document: their paths and schemas."""

from __future__ import annotations

from typing import Any

_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}

SCHEDULE_BODY: dict[str, Any] = {
    "type": "object",
    "description": "A script on a cron line or at an interval. Exactly one of ``cron`` and "
    "``every``; every problem is listed in one 400.",
    "required": ["script"],
    "additionalProperties": False,
    "properties": {
        "script": {"type": "string", "minLength": 1, "maxLength": 128},
        "parameters": {"type": "object"},
        "cron": {"type": "string", "description": 'five fields, e.g. "0 7 * * 1-5"'},
        "every": {
            "type": ["number", "string"],
            "description": 'seconds, or "30s", "5m", "1h", "1d" (1 s to 366 days)',
        },
        "timezone": {"type": "string", "default": "UTC", "description": "an IANA name"},
        "name": {"type": "string", "maxLength": 128},
        "catchup": {"enum": ["latest", "none", "all"], "default": "latest"},
        "overlap": {"enum": ["skip", "queue", "allow"], "default": "skip"},
        "queue": {"type": "string"},
        "timeout": {"type": "number", "exclusiveMinimum": 0},
    },
}

SCHEDULE_PATCH: dict[str, Any] = {
    "type": "object",
    "required": ["state"],
    "additionalProperties": False,
    "properties": {"state": {"enum": ["active", "paused"]}},
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
        "state": {"enum": ["active", "paused"]},
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
                "summary": "Pause or resume (a resumed schedule fires from its next tick on)",
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
    }


SCHEMAS = {"Schedule": SCHEDULE, "ScheduleRequest": SCHEDULE_BODY, "SchedulePatch": SCHEDULE_PATCH}
