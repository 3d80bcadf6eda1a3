"""REST handlers: scripts, executions, logs, cancel, and the seed's simplified aliases.

Every handler is behind Jupyter's authentication and authorization (resource
``scriptrun``); one error map turns our exceptions into 400/404/409/503 JSON answers.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import web
from tornado.httputil import responses

from jupyter_scriptrun import defaults
from jupyter_scriptrun.display import json_default
from jupyter_scriptrun.exceptions import (
    ExecutionConflict,
    ExecutionNotFound,
    FileNotKept,
    InvalidParameters,
    InvalidRequest,
    InvalidSchedule,
    Problem,
    ScheduleNotFound,
    ScriptMetadataError,
    ScriptNotFound,
    StoreUnavailable,
    WorkerUnavailable,
)
from jupyter_scriptrun.jupyter import openapi
from jupyter_scriptrun.params import nesting

if TYPE_CHECKING:
    from jupyter_scriptrun.service.client import Client

PREFIX = "/scriptrun/api"
HTTP_MESSAGES = {
    403: "no valid token (Authorization: token TOKEN or Bearer TOKEN, or ?token=), or not "
    "authorized for the scriptrun resource",
    405: "this resource does not answer that method (see Allow)",
}
RESOURCE_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
MAX_BODY_DEPTH = defaults.MAX_PARAMETERS_DEPTH + 1
"""Nesting a request body may have: its parameters, one level down, may nest as deep as
parameters may anywhere (contract/protocol.py)."""
STDERR_TAIL = 2000
"""Characters of a run's stderr shown in its record (the logs endpoint has it all)."""
ERRORS: list[tuple[type[Exception], int]] = [
    (InvalidParameters, 400),
    (InvalidRequest, 400),
    (ScriptMetadataError, 400),
    (InvalidSchedule, 400),
    (ScriptNotFound, 404),
    (ExecutionNotFound, 404),
    (ScheduleNotFound, 404),
    (FileNotKept, 404),
    (ExecutionConflict, 409),
    (WorkerUnavailable, 503),
    (StoreUnavailable, 503),
    (ValueError, 400),
]


def public(script: dict[str, Any]) -> dict[str, Any]:
    """A script's description for clients: its file's name, not the server's folders."""
    return {**script, "path": Path(str(script["path"])).name}


def mapped_errors(method: Callable[..., Any]) -> Callable[..., Any]:
    """Turn our exceptions into JSON errors with the right status (never a 500)."""

    @functools.wraps(method)
    async def wrapper(self: BaseHandler, *args: Any, **kwargs: Any) -> Any:
        try:
            return await method(self, *args, **kwargs)
        except web.HTTPError:
            raise
        except Exception as exc:
            for kind, code in ERRORS:
                if isinstance(exc, kind):
                    body: dict[str, Any] = {"error": type(exc).__name__, "message": str(exc)}
                    if isinstance(exc, InvalidParameters | InvalidRequest | InvalidSchedule):
                        body["problems"] = exc.problems
                        # The same problems with the field each is about, for forms.
                        body["errors"] = [
                            {"field": getattr(p, "field", None), "message": str(p)}
                            for p in exc.problems
                        ]
                    if execution_id := getattr(exc, "execution_id", None):
                        body["execution_id"] = execution_id
                    self.set_status(code)
                    self.finish(json.dumps(body, ensure_ascii=False))
                    return None
            raise

    return wrapper


class BaseHandler(ExtensionHandlerMixin, APIHandler):
    """Shared plumbing: the client, JSON bodies, and blocking calls off the event loop."""

    auth_resource = "scriptrun"

    async def prepare(self) -> None:  # type: ignore[override]
        """Jupyter's checks, then a 405 (with ``Allow``) for a method the resource lacks."""
        await super().prepare()
        method = self.request.method
        if method in RESOURCE_METHODS and method not in self.allowed_methods():
            raise web.HTTPError(405)  # OPTIONS stays Jupyter's (CORS preflight)

    @classmethod
    def allowed_methods(cls) -> list[str]:
        """The HTTP methods this resource answers."""
        return [
            m
            for m in RESOURCE_METHODS
            if getattr(cls, m.lower()) is not getattr(web.RequestHandler, m.lower())
        ]

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Every error in one shape, ``{"error", "message"}``, Jupyter's own refusals (a
        missing token, XSRF) and Tornado's (405, which also says what is allowed, RFC
        9110) included; an unexpected error says no more than that."""
        if status_code == 405:
            self.set_header("Allow", ", ".join(self.allowed_methods()))
        phrase = responses.get(status_code, "Error")
        exc = (kwargs.get("exc_info") or (None, None, None))[1]
        if isinstance(exc, web.HTTPError):
            message = exc.log_message or HTTP_MESSAGES.get(status_code, phrase)
        else:
            message = "unexpected error; the server's log has the details"
        self.log.warning("scriptrun API: %s %s", status_code, message)
        self.set_header("Content-Type", "application/json")
        error = "".join(word.capitalize() for word in phrase.split())
        self.finish(json.dumps({"error": error, "message": message}))

    @property
    def client(self) -> Client:
        """The extension's client."""
        return self.settings["scriptrun_client"]

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a blocking client call in a thread, so the server stays responsive."""
        return await asyncio.to_thread(fn, *args, **kwargs)

    def json_body(self, schema: dict[str, Any] | None = None) -> dict[str, Any]:
        """The request body as a JSON object (checked against ``schema``), or a 400
        listing every problem."""
        too_deep = f"the request body is nested more than {MAX_BODY_DEPTH} levels deep"
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError as exc:
            raise InvalidRequest([f"the request body is not valid JSON: {exc}"]) from None
        except RecursionError:  # 100,000 "[": the decoder's own limit
            raise InvalidRequest([too_deep]) from None
        if not isinstance(body, dict):
            raise InvalidRequest(["the request body must be a JSON object"])
        if nesting(body, MAX_BODY_DEPTH) > MAX_BODY_DEPTH:
            raise InvalidRequest([too_deep])  # before jsonschema recurses into it
        if schema is not None and (problems := openapi.body_problems(schema, body)):
            raise InvalidRequest(problems)
        return body

    def int_argument(
        self, name: str, default: int, maximum: int, problems: list[str] | None = None
    ) -> int:
        """A non-negative integer query argument. A malformed one is added to ``problems``
        (so that one 400 lists them all), or raised as a 400 when none is given."""
        raw = self.get_argument(name, str(default))
        problem = None
        try:
            value = int(raw)
        except ValueError:
            value, problem = default, Problem(f"{name}: {raw!r} is not an integer", name)
        if problem is None and not 0 <= value <= maximum:
            problem = Problem(f"{name}: {value} is not between 0 and {maximum}", name)
            value = default
        if problem is not None:
            if problems is None:
                raise InvalidRequest([problem])
            problems.append(problem)
        return value

    def send(self, value: Any, status: int = 200) -> None:
        """Answer with JSON."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(value, ensure_ascii=False, default=json_default))

    def execution_view(
        self, execution: Any, created: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """An execution's record with its result, data and links (``created``: the
        record as submitted, which has none yet)."""
        base = f"{self.base_url.rstrip('/')}{PREFIX}/executions/{execution.id}"
        links = {
            "self": base,
            "logs": f"{base}/logs",
            "cancel": f"{base}/cancel",
            "files": f"{base}/files",
        }
        if created is not None:
            empty = {"traceback": None, "stderr_tail": "", "result": None, "data": None}
            return {**created, **empty, "links": links}
        return {
            **execution.record(),
            "traceback": execution.traceback,
            "stderr_tail": execution.stderr[-STDERR_TAIL:],
            "result": execution.result,
            "data": execution.data,
            "links": links,
        }


class ScriptsHandler(BaseHandler):
    """``GET /scripts``: every registered script with its parameter schema;
    ``?path=`` (a path under the server's root, as the file browser names it) keeps the
    script that is that file, if one is (an empty list: not in the scripts path)."""

    @web.authenticated
    @authorized
    @mapped_errors
    async def get(self) -> None:
        """List the scripts, each with its stable id."""
        scripts = await self.call(self.client.scripts)
        if (path := self.get_argument("path", None)) is not None:
            root = Path(self.settings.get("server_root_dir") or ".").expanduser()
            wanted = (root / path.lstrip("/")).resolve()
            scripts = [s for s in scripts if s.path.resolve() == wanted]
        ids = await self.call(self.client.script_ids)
        self.send([{"id": ids.get(s.name), **public(s.to_dict())} for s in scripts])


class ScriptHandler(BaseHandler):
    """``GET /scripts/{name}``: one script."""

    @web.authenticated
    @authorized
    @mapped_errors
    async def get(self, name: str) -> None:
        """Describe one script."""
        script = await self.call(self.client.script, name)
        ids = await self.call(self.client.script_ids)
        self.send({"id": ids.get(script.name), **public(script.to_dict())})


class ExecutionsHandler(BaseHandler):
    """``GET /executions`` (history, json or csv) and ``POST /executions`` (submit)."""

    @web.authenticated
    @authorized
    @mapped_errors
    async def get(self) -> None:
        """The history, newest first; filters: script, status, since, limit, offset."""
        problems: list[str] = []
        since = self.get_argument("since", None)
        since_at = None
        if since is not None:
            try:
                since_at = datetime.fromisoformat(since)
            except ValueError:
                problems.append(Problem(f"since: {since!r} is not an ISO 8601 date-time", "since"))
        statuses = self.get_arguments("status")
        for bad in [s for s in statuses if s not in openapi.STATUSES]:
            problems.append(
                Problem(f"status: {bad!r} is not one of {', '.join(openapi.STATUSES)}", "status")
            )
        fmt = self.get_argument("format", "json")
        if fmt not in ("json", "csv"):
            problems.append(Problem(f"format: {fmt!r} is not 'json' or 'csv'", "format"))
        limit: int | None = None
        if self.get_argument("limit", None) != "all":
            limit = self.int_argument("limit", defaults.HISTORY_LIMIT, 1_000_000, problems)
        offset = self.int_argument("offset", 0, openapi.MAX_OFFSET, problems)
        if problems:
            raise InvalidRequest(problems)
        filters = {
            "script": self.get_arguments("script") or None,
            "status": statuses or None,
            "since": since_at,
            "page_context": self.get_argument("page_context", None),
            "limit": limit,
            "offset": offset,
        }
        if fmt == "csv":
            from jupyter_scriptrun.service.frames import history_csv

            frame = await self.call(self.client.history, **filters)
            # APIHandler.finish sets its own Content-Type unless told which.
            self.finish(history_csv(frame), set_content_type="text/csv; charset=utf-8")
            return
        # Without pandas: the extension's sidebars poll this (1 ms of CPU, not 11).
        records = await self.call(self.client.history_records, **filters)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(records, ensure_ascii=False, allow_nan=False))

    @web.authenticated
    @authorized
    @mapped_errors
    async def post(self) -> None:
        """Submit a run (see ``SubmitRequest`` in the OpenAPI document) → 202."""
        body = self.json_body(openapi.SUBMIT_BODY)
        options = {
            "page_context": body.get("page_context") or "api",
            "timeout": body.get("timeout"),
            "queue": body.get("queue"),
            "idempotency_key": body.get("idempotency_key"),
            "notify": body.get("notify"),
            "notify_on": body.get("notify_on"),
        }
        params = body.get("parameters") or {}
        if "source" in body:
            execution = await self.call(
                self.client.submit_source,
                body["source"],
                params,
                name=body.get("name", "cell"),
                language=body.get("language", "python"),
                **options,
            )
        else:
            execution = await self.call(self.client.submit, body["script"], params, **options)
        # The run as accepted (queued): a worker may have taken it by now, and the 202
        # says what was accepted, not a race's winner. Its links give the news.
        view = self.execution_view(execution, execution.created)
        self.set_header("Location", view["links"]["self"])
        self.send(view, status=202)


class ExecutionHandler(BaseHandler):
    """``GET /executions/{id}``: one execution with its result."""

    @web.authenticated
    @authorized
    @mapped_errors
    async def get(self, execution_id: str) -> None:
        """One execution."""
        execution = await self.call(self.client.get, execution_id)
        self.send(await self.call(self.execution_view, execution))


class LogsHandler(BaseHandler):
    """``GET /executions/{id}/logs[?offset=N]``: the output of the last attempt, whole or
    from a chunk offset on (while it runs, too)."""

    @web.authenticated
    @authorized
    @mapped_errors
    async def get(self, execution_id: str) -> None:
        """The logs."""
        execution = await self.call(self.client.get, execution_id)
        if self.get_argument("offset", None) is not None:
            offset = self.int_argument("offset", 0, maximum=openapi.MAX_OFFSET)
            self.send(await self.call(self._incremental, execution, offset))
        else:
            self.send(await self.call(self._whole, execution))

    @staticmethod
    def _incremental(execution: Any, offset: int) -> dict[str, Any]:
        status = execution.status  # first: a final status means every chunk is written
        page = execution.output(offset)
        # A progress update also as an object, so that a client need not parse JSON found
        # inside a JSON string (``text`` stays, for clients that read it).
        chunks = [
            {**c, "progress": json.loads(c["text"])} if c["stream"] == "progress" else c
            for c in page["chunks"]
        ]
        return {
            "id": execution.id,
            "status": status.value,
            **page,
            "chunks": chunks,
            "done": status.is_final,
        }

    @staticmethod
    def _whole(execution: Any) -> dict[str, Any]:
        status = execution.status
        view: dict[str, Any] = {"id": execution.id, "status": status.value}
        if status.is_final:
            attempts = execution.attempts()
            last = attempts[-1] if attempts else {}
            return {
                **view,
                "attempt": last.get("attempt"),
                "stdout": last.get("stdout") or "",
                "stderr": last.get("stderr") or "",
                "stdout_truncated": bool(last.get("stdout_truncated")),
                "stderr_truncated": bool(last.get("stderr_truncated")),
                "progress": last.get("progress"),
            }
        page = execution.output(0)  # still running: what arrived so far
        text = {"stdout": "", "stderr": ""}
        progress = None
        for chunk in page["chunks"]:
            if chunk["stream"] == "progress":
                progress = json.loads(chunk["text"])
            else:
                text[chunk["stream"]] += chunk["text"]
        return {**view, "attempt": page["attempt"], **text, "progress": progress}


class CancelHandler(BaseHandler):
    """``POST /executions/{id}/cancel``."""

    @web.authenticated
    @authorized
    @mapped_errors
    async def post(self, execution_id: str) -> None:
        """Cancel a run (409 when it already ended)."""
        execution = await self.call(self.client.get, execution_id)
        status = await self.call(execution.cancel)
        self.send({"id": execution.id, "status": status.value})


class CancelQueuedHandler(BaseHandler):
    """``POST /executions/cancel-queued``."""

    @web.authenticated
    @authorized
    @mapped_errors
    async def post(self) -> None:
        """Cancel every run not started yet, or only a script's or a queue's."""
        body = self.json_body(openapi.CANCEL_QUEUED_BODY)
        ids = await self.call(self.client.cancel_queued, body.get("script"), body.get("queue"))
        self.send({"cancelled": ids, "count": len(ids)})


class WorkersHandler(BaseHandler):
    """``GET /workers``: online workers with their active and reserved runs."""

    @web.authenticated
    @authorized
    @mapped_errors
    async def get(self) -> None:
        """Ask the fleet (Celery's ping/inspect, 1 s timeout)."""
        self.send(await self.call(self.client.workers))


class MetricsHandler(BaseHandler):
    """``GET /metrics``: the fleet's metrics in Prometheus' text format (a scraper sends
    a token: ``Authorization: token …`` or ``Bearer …``)."""

    @web.authenticated
    @authorized
    @mapped_errors
    async def get(self) -> None:
        """Read the store's new runs and the background's broker figures; never blocks
        on the broker."""
        body, content_type = await self.call(self.settings["scriptrun_metrics"].render)
        self.finish(body, set_content_type=content_type)  # APIHandler's default is JSON


class AttemptsHandler(BaseHandler):
    """``GET /executions/{id}/attempts``: every attempt, oldest first."""

    @web.authenticated
    @authorized
    @mapped_errors
    async def get(self, execution_id: str) -> None:
        """Each attempt's record, result and metrics (output: the logs endpoint)."""
        execution = await self.call(self.client.get, execution_id)
        tried = await self.call(execution.attempts)
        self.send([{k: v for k, v in a.items() if k not in ("stdout", "stderr")} for a in tried])


class OpenAPIHandler(BaseHandler):
    """``GET /openapi.json``: the API's OpenAPI 3.1 document."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        """The document, with this server's base URL."""
        self.send(openapi.document(self.base_url))


class NotFoundHandler(BaseHandler):
    """Any other path under the API: a JSON 404, whatever the method."""

    @web.authenticated
    @authorized
    async def get(self, *_: Any) -> None:
        """No such resource."""
        path = self.request.path
        self.send({"error": "NotFound", "message": f"no such resource: {path}"}, status=404)

    post = put = patch = delete = get


def routes() -> list[tuple[str, type[BaseHandler]]]:
    """URL patterns relative to the server's base URL (the schedules' and the seed's are
    added before them by the extension: see ``schedule_handlers`` and ``viewset_handlers``)."""

    ident = r"(?P<execution_id>[^/]+)"
    return [
        (rf"{PREFIX}/scripts/?", ScriptsHandler),
        (rf"{PREFIX}/scripts/(?P<name>[^/]+)/?", ScriptHandler),
        (rf"{PREFIX}/executions/?", ExecutionsHandler),
        (rf"{PREFIX}/executions/cancel-queued/?", CancelQueuedHandler),
        (rf"{PREFIX}/executions/{ident}/logs/?", LogsHandler),
        (rf"{PREFIX}/executions/{ident}/cancel/?", CancelHandler),
        (rf"{PREFIX}/executions/{ident}/attempts/?", AttemptsHandler),
        (rf"{PREFIX}/executions/{ident}/?", ExecutionHandler),
        (rf"{PREFIX}/workers/?", WorkersHandler),
        (rf"{PREFIX}/metrics/?", MetricsHandler),
        (rf"{PREFIX}/openapi.json", OpenAPIHandler),
        (rf"{PREFIX}(/.*)?", NotFoundHandler),
    ]
