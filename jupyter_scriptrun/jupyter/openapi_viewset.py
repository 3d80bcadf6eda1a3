"""The seed's part of the REST API's OpenAPI document: its viewset and simplified routes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jupyter_scriptrun.status import ExecutionStatus

VIEWSET_STATUSES = ["pending", "running", "success", "failure", "revoked"]
STATUSES = [s.value for s in ExecutionStatus]

VIEWSET_SUBMIT_BODY: dict[str, Any] = {
    "type": "object",
    "description": "The seed's request: ``script_id`` is the integer id (see GET scripts) "
    "or the name; ``script_name`` or ``script`` name it too.",
    "properties": {
        "script_id": {"type": ["integer", "number", "string"]},
        "script_name": {"type": "string", "minLength": 1},
        "script": {"type": "string", "minLength": 1},
        "parameters": {"type": "object"},
        "page_context": {"type": "string", "maxLength": 1024},
    },
    "anyOf": [
        {"required": ["script_id"]},
        {"required": ["script_name"]},
        {"required": ["script"]},
    ],
}

_TIME = {"type": ["string", "null"], "format": "date-time"}
_NUMBER = {"type": ["number", "null"]}
TASK_EXECUTION: dict[str, Any] = {
    "type": "object",
    "description": "A run as the seed's TaskExecution serializer shows it: ``status`` in "
    "the seed's words, ours in ``scriptrun_status``.",
    "required": ["id", "task_id", "script_name", "status", "scriptrun_status", "retries"],
    "properties": {
        "id": {"type": "string"},
        "task_id": {"type": "string"},
        "script_id": {"type": ["integer", "null"]},
        "script_name": {"type": "string"},
        "status": {"enum": VIEWSET_STATUSES},
        "scriptrun_status": {"enum": STATUSES},
        "parameters": {},
        "page_context": {"type": ["string", "null"]},
        "result": {},
        "error_type": {"type": ["string", "null"]},
        "error_message": {"type": ["string", "null"]},
        "retries": {"type": "integer", "minimum": 0},
        "created_at": _TIME,
        "started_at": _TIME,
        "completed_at": _TIME,
        "duration": _NUMBER,
        "memory_usage": _NUMBER,
        "execution": {"$ref": "#/components/schemas/Execution"},
    },
}
ACCEPTED: dict[str, Any] = {
    "type": "object",
    "required": ["task_id", "status"],
    "properties": {
        "task_id": {"type": "string"},
        "status": {"const": "pending"},
        "scriptrun_status": {"const": "queued"},
        "links": {"type": "object"},
    },
}
TASK_STATUS: dict[str, Any] = {
    "type": "object",
    "required": ["task_id", "status", "scriptrun_status", "result", "retries"],
    "properties": {
        "task_id": {"type": "string"},
        "status": {"enum": VIEWSET_STATUSES},
        "scriptrun_status": {"enum": STATUSES},
        "result": {},
        "retries": {"type": "integer", "minimum": 0},
        "execution": {"$ref": "#/components/schemas/Execution"},
    },
}
SCHEMAS = {
    "SeedSubmitRequest": VIEWSET_SUBMIT_BODY,
    "TaskExecution": TASK_EXECUTION,
    "SeedAccepted": ACCEPTED,
    "SeedTaskStatus": TASK_STATUS,
}

_TASK_ID = {
    "name": "task_id",
    "in": "query",
    "required": True,
    "description": "The execution id (or a unique prefix of 4 or more characters); "
    "missing or empty: 400.",
    "schema": {"type": "string", "minLength": 1},
}
_LOCATION = {"Location": {"schema": {"type": "string"}, "description": "the run's address"}}

PAGE: dict[str, Any] = {
    "type": "object",
    "required": ["count", "next", "previous", "results"],
    "properties": {
        "count": {"type": "integer", "minimum": 0},
        "next": {"type": ["string", "null"]},
        "previous": {"type": ["string", "null"]},
        "results": {"type": "array", "items": {"$ref": "#/components/schemas/TaskExecution"}},
    },
}
LISTING_PARAMETERS: list[dict[str, Any]] = [
    {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1}},
    {
        "name": "page_size",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
    },
    {"name": "script", "in": "query", "schema": {"type": "string"}},
    {"name": "status", "in": "query", "schema": {"enum": STATUSES}},
]

Helper = Callable[..., dict[str, Any]]


def paths(json: Helper, ref: Helper, errors: Helper) -> dict[str, Any]:
    """The seed's paths, built with the main document's helpers."""

    def submit(operation: str, summary: str) -> dict[str, Any]:
        accepted = {**json(ref("SeedAccepted"), "queued"), "headers": _LOCATION}
        return {
            "post": {
                "summary": summary,
                "operationId": operation,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": ref("SeedSubmitRequest")}},
                },
                "responses": {"202": accepted, **errors(400, 403, 404, 503)},
            }
        }

    def status(operation: str, summary: str) -> dict[str, Any]:
        return {
            "get": {
                "summary": summary,
                "operationId": operation,
                "parameters": [_TASK_ID],
                "responses": {
                    "200": json(ref("SeedTaskStatus"), "state and result"),
                    **errors(400, 403, 404),
                },
            }
        }

    return {
        "/task-executions": {
            "get": {
                "summary": "The seed's viewset: the runs, newest first, a DRF page at a time",
                "operationId": "seedListTaskExecutions",
                "parameters": LISTING_PARAMETERS,
                "responses": {"200": json(PAGE, "one page"), **errors(400, 403)},
            },
            **submit("seedCreateTaskExecution", "The seed's viewset: create (submit)"),
        },
        "/task-executions/{execution_id}": {
            "get": {
                "summary": "The seed's viewset: one run",
                "operationId": "seedGetTaskExecution",
                "parameters": [
                    {
                        "name": "execution_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {
                    "200": json(ref("TaskExecution"), "the run"),
                    **errors(403, 404),
                },
            }
        },
        "/task-executions/execute_script": submit(
            "seedViewsetExecuteScript", "The seed's viewset action: run a script"
        ),
        "/task-executions/task_status": status(
            "seedViewsetTaskStatus", "The seed's viewset action: a run's state and result"
        ),
        "/execute-script": submit("seedExecuteScript", "The seed's simplified submit"),
        "/script-task-result": status("seedScriptTaskResult", "The seed's simplified result"),
    }
