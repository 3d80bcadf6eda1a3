"""The REST API's OpenAPI 3.1 document; the handlers validate request bodies against it."""

from __future__ import annotations

from typing import Any

from jupyter_scriptrun._version import __version__
from jupyter_scriptrun.exceptions import Problem
from jupyter_scriptrun.jupyter import openapi_schedules, openapi_viewset
from jupyter_scriptrun.models import HISTORY_COLUMNS
from jupyter_scriptrun.status import ExecutionStatus

STATUSES = [s.value for s in ExecutionStatus]
MAX_OFFSET = 2**31 - 1
"""Largest offset accepted (the databases' integer range, with room)."""

_TIMEOUT = "the run's time limit in seconds (default: the script's, else the worker's)"
_QUEUE = "the Celery queue it goes to (default: the script's, else the default)"
SUBMIT_BODY: dict[str, Any] = {
    "type": "object",
    "description": "A run of a registered script (``script``) or of an ad-hoc source "
    "(``source``, with ``language`` and ``name``).",
    "properties": {
        "script": {"type": "string", "minLength": 1, "maxLength": 255},
        "source": {"type": "string", "minLength": 1},
        "language": {"type": "string", "default": "python"},
        "name": {"type": "string", "minLength": 1, "maxLength": 128, "default": "cell"},
        "parameters": {"type": "object", "default": {}},
        "page_context": {"type": "string", "maxLength": 1024, "default": "api"},
        "timeout": {"type": "number", "exclusiveMinimum": 0, "description": _TIMEOUT},
        "queue": {"type": "string", "minLength": 1, "maxLength": 255, "description": _QUEUE},
        "idempotency_key": {"type": "string", "minLength": 1, "maxLength": 255},
        "notify": {
            "type": "array",
            "items": {"type": "string"},
            "description": "apprise URLs told when the run ends as notify_on says",
        },
        "notify_on": {
            "type": "array",
            "items": {"enum": ["succeeded", "failed", "timed_out", "lost", "cancelled"]},
            "default": ["failed", "timed_out", "lost"],
            "description": "the outcomes that notify",
        },
    },
    "oneOf": [{"required": ["script"]}, {"required": ["source"]}],
    "additionalProperties": False,
}

CANCEL_QUEUED_BODY: dict[str, Any] = {
    "type": "object",
    "description": "Which runs not started yet to cancel: all, or only a script's, or only "
    "those on a queue (both: only that script's on that queue).",
    "properties": {
        "script": {"type": "string", "minLength": 1, "maxLength": 255},
        "queue": {"type": "string", "minLength": 1, "maxLength": 255},
    },
    "additionalProperties": False,
}

_NULLABLE_NUMBER = {"type": ["number", "null"]}
_NULLABLE_STRING = {"type": ["string", "null"]}
PROGRESS: dict[str, Any] = {
    "type": ["object", "null"],
    "description": "The latest progress the script reported (null: none); ``t`` is "
    "seconds since the script started.",
    "properties": {
        "done": {"type": "number"},
        "total": _NULLABLE_NUMBER,
        "message": _NULLABLE_STRING,
        "t": {"type": "number"},
    },
}

EXECUTION: dict[str, Any] = {
    "type": "object",
    "required": ["id", "script", "status", "queued_at", "parameters", "links"],
    "properties": {
        "id": {"type": "string"},
        "script": {"type": "string"},
        "script_id": {"type": ["integer", "null"]},
        "status": {"enum": STATUSES},
        "page_context": {"type": "string"},
        "parameters": {"type": "object"},
        "queued_at": {"type": "string", "format": "date-time"},
        "started_at": _NULLABLE_STRING,
        "finished_at": _NULLABLE_STRING,
        "queue_s": _NULLABLE_NUMBER,
        "duration_s": _NULLABLE_NUMBER,
        "cpu_user_s": _NULLABLE_NUMBER,
        "cpu_system_s": _NULLABLE_NUMBER,
        "peak_rss_mb": _NULLABLE_NUMBER,
        "exit_code": {"type": ["integer", "null"]},
        "attempt": {"type": "integer"},
        "worker": _NULLABLE_STRING,
        "error_type": _NULLABLE_STRING,
        "message": _NULLABLE_STRING,
        "idempotency_key": _NULLABLE_STRING,
        "progress": PROGRESS,
        "traceback": {
            "type": ["string", "null"],
            "description": "The traceback a failed last attempt printed, if any.",
        },
        "stderr_tail": {
            "type": "string",
            "description": "The end of the last attempt's stderr (at most 2000 characters).",
        },
        "result": {},
        "data": {},
        "links": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}

HISTORY_ROW: dict[str, Any] = {
    "type": "object",
    "required": list(HISTORY_COLUMNS),
    "properties": {c: EXECUTION["properties"].get(c, {}) for c in HISTORY_COLUMNS},
}

SCRIPT: dict[str, Any] = {
    "type": "object",
    "required": ["id", "name", "language", "parameters"],
    "properties": {
        "id": {"type": "integer", "description": "Stable id (the seed's ``script_id``)."},
        "name": {"type": "string"},
        "path": {"type": "string"},
        "language": {"type": "string"},
        "description": {"type": "string"},
        "timeout": _NULLABLE_NUMBER,
        "parameters": {"type": "object", "description": "JSON Schema of the parameters"},
    },
}

LOGS: dict[str, Any] = {
    "type": "object",
    "required": ["id", "status", "attempt"],
    "properties": {
        "id": {"type": "string"},
        "status": {"enum": STATUSES},
        "attempt": {"type": ["integer", "null"]},
        "stdout": {"type": "string"},
        "stderr": {"type": "string"},
        "stdout_truncated": {"type": "boolean"},
        "stderr_truncated": {"type": "boolean"},
        "progress": PROGRESS,
        "chunks": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["seq", "stream", "text"],
                "properties": {
                    "seq": {"type": "integer"},
                    "stream": {
                        "enum": ["stdout", "stderr", "progress"],
                        "description": "A progress chunk is one update: ``progress`` "
                        "holds it as an object (and ``text`` as its JSON text).",
                    },
                    "text": {"type": "string"},
                    "progress": PROGRESS,
                },
            },
        },
        "next_offset": {"type": "integer"},
        "done": {"type": "boolean"},
    },
}

ERROR: dict[str, Any] = {
    "type": "object",
    "description": "Every error answer, jupyter-server's own refusals (a missing token, "
    "XSRF) included.",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string"},
        "message": {"type": "string"},
        "problems": {"type": "array", "items": {"type": "string"}},
        "errors": {
            "type": "array",
            "description": "The problems again, each with the field it is about (a "
            "parameter's name, a body member such as 'timeout', or null for the request).",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {
                    "field": {"type": ["string", "null"]},
                    "message": {"type": "string"},
                },
            },
        },
        "execution_id": {"type": "string"},
    },
}

WORKER: dict[str, Any] = {
    "type": "object",
    "required": ["name", "active", "reserved"],
    "properties": {
        "name": {"type": "string"},
        "active": {"type": "array", "items": {"type": "string"}, "description": "runs running"},
        "reserved": {
            "type": "array",
            "items": {"type": "string"},
            "description": "runs received, not started yet",
        },
        "queues": {"type": "array", "items": {"type": "string"}},
        "slots": {"type": "integer"},
        "busy": {"type": "integer"},
        "runs": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "script": {"type": "string"},
                    "started_at": {"type": ["string", "null"], "format": "date-time"},
                    "elapsed_s": {"type": ["number", "null"]},
                    "progress": PROGRESS,
                },
            },
        },
        "tree_rss_bytes": {"type": "integer", "description": "the worker and its runs"},
        "warm_parent_rss_bytes": {"type": ["integer", "null"]},
        "broker_up": {"type": ["boolean", "null"]},
        "pid": {"type": "integer"},
        "started_at": {"type": "string", "format": "date-time"},
        "finished": {
            "type": "object",
            "additionalProperties": {"type": "integer"},
            "description": "attempts finished since it started, by status",
        },
        "time": {"type": "string", "format": "date-time", "description": "of the answer"},
    },
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "malformed input; every problem is listed",
        403: "no valid token, or not authorized for the scriptrun resource",
        404: "no such script, execution or schedule",
        409: "conflicts with the run's state, or the idempotency key was used before",
        503: "the broker or the store is unreachable (a run is then recorded as failed)",
    }
    return {str(c): _json(_ref("Error"), text[c]) for c in codes}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_ID = {"name": "execution_id", "in": "path", "required": True, "schema": {"type": "string"}}


def document(base_url: str = "/") -> dict[str, Any]:
    """The OpenAPI document for a server mounted at ``base_url``."""
    prefix = base_url.rstrip("/") + "/scriptrun/api"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "jupyter_scriptrun",
            "version": __version__,
            "description": "Run registered scripts on a Celery worker fleet and read every "
            "run's record. Authenticate as for Jupyter: `Authorization: token <token>`.",
        },
        "servers": [{"url": prefix}],
        "security": [{"token": []}, {"bearer": []}, {"query": []}],
        "paths": {
            "/scripts": {
                "get": {
                    "summary": "Every registered script with its parameter schema",
                    "operationId": "listScripts",
                    "parameters": [
                        {
                            "name": "path",
                            "in": "query",
                            "required": False,
                            "description": "Keep only the script that is this file (a path "
                            "under the server's root, as the file browser names it); an "
                            "empty list: the file is not in the scripts path.",
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {
                        "200": _json({"type": "array", "items": _ref("Script")}, "scripts"),
                        **_errors(403),
                    },
                }
            },
            "/scripts/{name}": {
                "get": {
                    "summary": "One script",
                    "operationId": "getScript",
                    "parameters": [
                        {
                            "name": "name",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {"200": _json(_ref("Script"), "the script"), **_errors(403, 404)},
                }
            },
            "/executions": {
                "get": {
                    "summary": "The history, newest first (JSON records or CSV)",
                    "operationId": "listExecutions",
                    "parameters": [
                        {"name": "script", "in": "query", "schema": {"type": "string"}},
                        {"name": "status", "in": "query", "schema": {"enum": STATUSES}},
                        {
                            "name": "since",
                            "in": "query",
                            "description": "Runs queued at or after this ISO 8601 time "
                            "(empty: 400). Every malformed query argument is listed in "
                            "one 400 answer.",
                            "schema": {"type": "string", "format": "date-time", "minLength": 1},
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 0, "maximum": 1000000},
                        },
                        {
                            "name": "offset",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET},
                        },
                        {"name": "format", "in": "query", "schema": {"enum": ["json", "csv"]}},
                        {
                            "name": "page_context",
                            "in": "query",
                            "description": "where runs were started: a notebook, cli, "
                            "schedule:NAME (a schedule's runs)…",
                            "schema": {"type": "string", "maxLength": 1024},
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "history rows",
                            "content": {
                                "application/json": {
                                    "schema": {"type": "array", "items": _ref("HistoryRow")}
                                },
                                "text/csv": {"schema": {"type": "string"}},
                            },
                        },
                        **_errors(400, 403),
                    },
                },
                "post": {
                    "summary": "Queue a run",
                    "operationId": "submitExecution",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("SubmitRequest")}},
                    },
                    "responses": {
                        "202": _json(_ref("Execution"), "queued"),
                        **_errors(400, 403, 404, 409, 503),
                    },
                },
            },
            "/executions/{execution_id}": {
                "get": {
                    "summary": "One execution with its result (an id or a unique prefix)",
                    "operationId": "getExecution",
                    "parameters": [_ID],
                    "responses": {
                        "200": _json(_ref("Execution"), "the execution"),
                        **_errors(403, 404),
                    },
                }
            },
            "/executions/{execution_id}/logs": {
                "get": {
                    "summary": "Output: whole (no offset) or incremental from a chunk offset",
                    "operationId": "getLogs",
                    "parameters": [
                        _ID,
                        {
                            "name": "offset",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET},
                            "description": "return live chunks from this one on; pass back "
                            "`next_offset` to read only what is new",
                        },
                    ],
                    "responses": {"200": _json(_ref("Logs"), "output"), **_errors(400, 403, 404)},
                }
            },
            "/executions/{execution_id}/cancel": {
                "post": {
                    "summary": "Cancel a queued or running run (its process tree is ended)",
                    "operationId": "cancelExecution",
                    "parameters": [_ID],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["id", "status"],
                                "properties": {
                                    "id": {"type": "string"},
                                    "status": {"enum": STATUSES},
                                },
                            },
                            "the status after the request",
                        ),
                        **_errors(403, 404, 409),
                    },
                }
            },
            "/executions/{execution_id}/attempts": {
                "get": {
                    "summary": "Every attempt of a run, oldest first (its output: logs)",
                    "operationId": "listAttempts",
                    "parameters": [_ID],
                    "responses": {
                        "200": _json(
                            {"type": "array", "items": {"type": "object"}},
                            "each attempt's record, result, error and metrics",
                        ),
                        **_errors(403, 404),
                    },
                }
            },
            "/executions/{execution_id}/files": {
                "get": {
                    "summary": "The files a run wrote to SCRIPTRUN_OUTPUT_DIR, by name",
                    "description": "Each with size, media type and sha256; one not kept "
                    "(a link, a FIFO, over a limit) has `kept: false` and the reason in `note`.",
                    "operationId": "listFiles",
                    "parameters": [_ID],
                    "responses": {
                        "200": _json(
                            {"type": "array", "items": {"type": "object"}},
                            "name, size, media_type, sha256, note, attempt, kept, url",
                        ),
                        **_errors(403, 404),
                    },
                }
            },
            "/executions/{execution_id}/files/{name}": {
                "get": {
                    "summary": "One kept file's bytes, with its media type",
                    "description": "`Content-Disposition` names the file (attachment unless "
                    "it is an image or plain text, or with `download=1`); the ETag is its "
                    "sha256. `name` is the path below the output folder (`tables/out.csv`).",
                    "operationId": "getFile",
                    "parameters": [
                        _ID,
                        {
                            "name": "name",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "download",
                            "in": "query",
                            "schema": {"type": "string", "enum": ["0", "1", "true", "false"]},
                        },
                        {
                            "name": "as",
                            "in": "query",
                            "description": "html: an executed notebook rendered as a page",
                            "schema": {"type": "string", "enum": ["html"]},
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "the file's bytes",
                            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
                        },
                        **_errors(403, 404),
                    },
                }
            },
            "/executions/cancel-queued": {
                "post": {
                    "summary": "Cancel every run not started yet (queued or waiting to retry)",
                    "description": "Drops queued runs, each ended `cancelled` with the reason "
                    "as its message. Use this rather than `celery purge`: the store is the "
                    "truth, and the reaper sends a purged queued run's message again.",
                    "operationId": "cancelQueued",
                    "requestBody": {
                        "required": False,
                        "content": {"application/json": {"schema": _ref("CancelQueuedRequest")}},
                    },
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["cancelled", "count"],
                                "properties": {
                                    "cancelled": {"type": "array", "items": {"type": "string"}},
                                    "count": {"type": "integer", "minimum": 0},
                                },
                            },
                            "the ids of the runs cancelled",
                        ),
                        **_errors(400, 403, 503),
                    },
                }
            },
            "/workers": {
                "get": {
                    "summary": "Online workers and the runs they hold",
                    "operationId": "listWorkers",
                    "responses": {
                        "200": _json({"type": "array", "items": _ref("Worker")}, "workers"),
                        **_errors(403, 503),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "The fleet's metrics in Prometheus' text format",
                    "description": "Counters from the store (correct across restarts), "
                    "runs queued and running per queue, queue depths and workers online "
                    "(read in the background every 10 s). docs/monitoring.md names them.",
                    "operationId": "getMetrics",
                    "responses": {
                        "200": {
                            "description": "the metrics",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        **_errors(403, 503),
                    },
                }
            },
            **openapi_viewset.paths(_json, _ref, _errors),
            **openapi_schedules.paths(_json, _ref, _errors),
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "operationId": "openapi",
                    "responses": {"200": _json({"type": "object"}, "the OpenAPI document")},
                }
            },
        },
        "components": {
            "securitySchemes": {
                "token": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "`token <the Jupyter server's token>`",
                },
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "`Bearer <the Jupyter server's token>`",
                },
                "query": {
                    "type": "apiKey",
                    "in": "query",
                    "name": "token",
                    "description": "`?token=<the Jupyter server's token>`",
                },
            },
            "schemas": {
                "SubmitRequest": SUBMIT_BODY,
                **openapi_viewset.SCHEMAS,
                "CancelQueuedRequest": CANCEL_QUEUED_BODY,
                "Execution": EXECUTION,
                "HistoryRow": HISTORY_ROW,
                "Script": SCRIPT,
                "Logs": LOGS,
                "Worker": WORKER,
                "Error": ERROR,
                **openapi_schedules.SCHEMAS,
            },
        },
    }


def body_problems(schema: dict[str, Any], body: Any) -> list[Problem]:
    """Every way ``body`` breaks ``schema``, as readable lines (empty when it is fine)."""
    from jupyter_scriptrun.schemas import load_jsonschema

    Draft202012Validator = load_jsonschema().Draft202012Validator

    problems = []
    for error in sorted(Draft202012Validator(schema).iter_errors(body), key=lambda e: e.path):
        where = ".".join(str(p) for p in error.path)
        if error.validator == "oneOf" and isinstance(body, dict):
            message = "give exactly one of 'script' (a registered name) or 'source'"
        elif error.validator == "additionalProperties":
            message = f"{error.message} (allowed: {', '.join(schema['properties'])})"
        else:
            message = error.message
        problems.append(Problem(f"{where}: {message}", where) if where else Problem(message))
    return problems
