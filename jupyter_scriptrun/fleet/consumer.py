"""The worker's consumer: a message it cannot take is refused in one log line,
acknowledged and counted, and the worker goes on.

Celery's own consumer trusts a message's headers. A foreign or corrupt one with a
``timelimit`` that is not a pair, an ``id`` that is a list or missing, a ``task`` that is
not a string, or headers that are not an object raises from the consumer's callback, and
Celery takes that for a broken connection or an unrecoverable error: the worker exits
(and the message, never acknowledged, comes back to kill the next one) or reconnects once
a second forever, leaking a connection each time. Here every delivery's headers are
checked before Celery reads them, and anything Celery would still raise on refuses the
message instead of reaching the connection.

A refused message is gone from the queue (acknowledged, as Celery's own decode errors
are): it cannot run, and keeping it would only repeat the refusal. Celery's result
backend records the refusal when the message has a usable id, and the count is
``scriptrun_messages_refused_total{reason}``. The store stays the truth: a real run whose
message was refused is queued again by the reaper like any lost message.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import datetime
from typing import Any

from celery.worker.consumer import Consumer

from jupyter_scriptrun.exceptions import MalformedTask
from jupyter_scriptrun.fleet.celery_app import TASK_NAME
from jupyter_scriptrun.fleet.worker_metrics import refused

log = logging.getLogger(__name__)

MAX_ID_CHARS = 255
"""Celery's ids are UUIDs, ours 32 hex characters: anything longer is not an id."""

_OPTIONAL_STRINGS = ("root_id", "parent_id", "group", "shadow", "argsrepr", "kwargsrepr")


def short(value: object, limit: int = 40) -> str:
    """``repr(value)`` cut to ``limit`` characters, without copying a huge value first
    (repr escapes NUL and control characters, so a log line stays one line)."""
    if isinstance(value, str | bytes | list | tuple):
        value = value[: limit + 1]
    elif isinstance(value, dict):
        value = dict(list(value.items())[:4])
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def header_problem(headers: object) -> tuple[str, str] | None:
    """Why Celery could not take a message with these headers, as ``(reason, detail)``
    (the reason is the metric's label), or None.

    Protocol 1 messages carry no ``task`` header (their body has it); Celery reads those
    itself and they pass here untouched.
    """
    if not isinstance(headers, dict):
        return "bad_headers", f"the headers are {type(headers).__name__}, not an object"
    if "task" not in headers:
        return None  # protocol 1
    task = headers["task"]
    if not isinstance(task, str):
        return "bad_headers", f"task {short(task)} is not a string"
    if task != TASK_NAME:
        return "unknown_task", f"task {short(task)} is not {TASK_NAME}"
    task_id = headers.get("id")
    if not isinstance(task_id, str) or not 0 < len(task_id) <= MAX_ID_CHARS:
        return "bad_headers", f"id {short(task_id)} is not a string of 1 to 255 characters"
    for name in _OPTIONAL_STRINGS:
        if headers.get(name) is not None and not isinstance(headers[name], str):
            return "bad_headers", f"{name} {short(headers[name])} is not a string"
    if (problem := _timelimit_problem(headers.get("timelimit"))) is not None:
        return "bad_headers", problem
    for name in ("eta", "expires"):
        if (problem := _time_problem(name, headers.get(name))) is not None:
            return "bad_headers", problem
    retries = headers.get("retries")
    if retries is not None and (isinstance(retries, bool) or not isinstance(retries, int)):
        return "bad_headers", f"retries {short(retries)} is not an integer"
    if not isinstance(headers.get("ignore_result", False), bool | None):
        return "bad_headers", f"ignore_result {short(headers['ignore_result'])} is not a boolean"
    return None


def _number(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def _timelimit_problem(value: object) -> str | None:
    if value is None:
        return None
    if (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(v is None or _number(v) for v in value)
    ):
        return None
    return f"timelimit {short(value)} is not [soft, hard] seconds"


def _time_problem(name: str, value: object) -> str | None:
    if value is None:
        return None
    if name == "expires" and _number(value):
        return None
    if isinstance(value, str):
        try:
            datetime.fromisoformat(value)
            return None
        except ValueError:
            pass
    return f"{name} {short(value)} is not an ISO 8601 time"


def refuse(consumer: Any, message: Any, reason: str, detail: str, task_id: object = None) -> None:
    """Refuse ``message``: one log line, acknowledged, counted, and recorded as failed in
    Celery's result backend when it has a usable id."""
    refused(reason, detail, short(task_id))
    if not getattr(message, "acknowledged", False):
        message.ack_log_error(log, consumer.connection_errors)
    if isinstance(task_id, str) and 0 < len(task_id) <= MAX_ID_CHARS:
        try:
            consumer.app.backend.mark_as_failure(task_id, MalformedTask(detail))
        except Exception:
            log.debug("could not record the refusal of %s", task_id, exc_info=True)


def _task_id(message: Any) -> object:
    headers = getattr(message, "headers", None)
    return headers.get("id") if isinstance(headers, dict) else None


class GuardedConsumer(Consumer):
    """Celery's consumer, refusing what it cannot take (see the module's doc)."""

    def create_task_handler(self, *args: Any, **kwargs: Any) -> Callable[[Any], Any]:
        celery_handler = super().create_task_handler(*args, **kwargs)
        # kombu's Redis transport counts KeyError as a connection error: a message's own
        # KeyError (no "id") made the worker reconnect once a second, forever.
        errors = tuple(
            e for e in (*self.connection_errors, *self.channel_errors) if e is not KeyError
        )

        def on_task_received(message: Any) -> Any:
            try:
                headers = message.headers
            except Exception as exc:  # a transport that could not make sense of them
                return refuse(self, message, "bad_headers", f"unreadable headers: {exc!r}")
            problem = header_problem(headers)
            if problem is not None:
                return refuse(self, message, *problem, task_id=_task_id(message))
            try:
                return celery_handler(message)
            except errors:
                raise  # a real connection problem: Celery reconnects
            except Exception as exc:  # anything else is this message's fault
                detail = f"Celery could not take it: {short(exc, 120)}"
                return refuse(self, message, "bad_message", detail, _task_id(message))

        return on_task_received

    # Celery's own refusals, in one line each and counted like ours.

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        refuse(self, message, "undecodable", f"the body could not be decoded: {short(exc, 120)}")

    def on_unknown_message(self, body: Any, message: Any) -> None:
        refuse(self, message, "bad_headers", "neither headers nor body name a task")

    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        refuse(self, message, "unknown_task", f"unknown task {short(exc)}", _task_id(message))

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        refuse(self, message, "bad_message", short(exc, 120), _task_id(message))
