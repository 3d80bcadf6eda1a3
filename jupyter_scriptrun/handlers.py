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
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import web

from .exceptions import (
    ExecutionConflict,
    ExecutionNotFound,
    InvalidParameters,
    ScriptMetadataError,
    ScriptNotFound,
    WorkerUnavailable,
)

PREFIX = "/scriptrun/api"
ERRORS: list[tuple[type[Exception], int]] = [
    (InvalidParameters, 400),
    (ScriptMetadataError, 400),
    (ScriptNotFound, 404),
    (ExecutionNotFound, 404),
    (ExecutionConflict, 409),
    (WorkerUnavailable, 503),
    (ValueError, 400),
]


def _default(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else str(value)


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
                    if isinstance(exc, InvalidParameters):
                        body["problems"] = exc.problems
                    self.set_status(code)
                    self.finish(json.dumps(body, ensure_ascii=False))
                    return None
            raise

    return wrapper


class BaseHandler(ExtensionHandlerMixin, APIHandler):
    """Shared plumbing: the client, JSON bodies, and blocking calls off the event loop."""

    auth_resource = "scriptrun"

    @property
    def client(self) -> Any:
        """The extension's client."""
        return self.settings["scriptrun_client"]

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a blocking client call in a thread, so the server stays responsive."""
        return await asyncio.to_thread(fn, *args, **kwargs)

    def json_body(self) -> dict[str, Any]:
        """The request body as a JSON object, or a 400 naming the problem."""
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError as exc:
            raise ValueError(f"the request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise ValueError("the request body must be a JSON object")
        return body

    def send(self, value: Any, status: int = 200) -> None:
        """Answer with JSON."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(value, ensure_ascii=False, default=_default))

    def execution_view(self, execution: Any) -> dict[str, Any]:
        """An execution's record with its result, data and links."""
        record = execution.record()
        base = f"{self.base_url.rstrip('/')}{PREFIX}/executions/{execution.id}"
        return {
            **record,
            "result": execution.result,
            "data": execution.data,
            "links": {"self": base, "logs": f"{base}/logs", "cancel": f"{base}/cancel"},
        }


class ScriptsHandler(BaseHandler):
    """``GET /scripts``: every registered script with its parameter schema."""

    @web.authenticated
    @authorized
    @mapped_errors
    async def get(self) -> None:
        """List the scripts."""
        scripts = await self.call(self.client.scripts)
        self.send([s.to_dict() for s in scripts])


class ScriptHandler(BaseHandler):
    """``GET /scripts/{name}``: one script."""

    @web.authenticated
    @authorized
    @mapped_errors
    async def get(self, name: str) -> None:
        """Describe one script."""
        self.send((await self.call(self.client.script, name)).to_dict())


class ExecutionsHandler(BaseHandler):
    """``GET /executions`` (history, json or csv) and ``POST /executions`` (submit)."""

    @web.authenticated
    @authorized
    @mapped_errors
    async def get(self) -> None:
        """The history, newest first; filters: script, status, since, limit, offset."""
        since = self.get_argument("since", None)
        filters = {
            "script": self.get_arguments("script") or None,
            "status": self.get_arguments("status") or None,
            "since": datetime.fromisoformat(since) if since else None,
            "limit": int(self.get_argument("limit", "100")),
            "offset": int(self.get_argument("offset", "0")),
        }
        frame = await self.call(self.client.history, **filters)
        if self.get_argument("format", "json") == "csv":
            self.set_header("Content-Type", "text/csv; charset=utf-8")
            self.finish(frame.to_csv(index=False))
            return
        self.set_header("Content-Type", "application/json")
        self.finish(frame.to_json(orient="records", date_format="iso", force_ascii=False))

    @web.authenticated
    @authorized
    @mapped_errors
    async def post(self) -> None:
        """Submit a run: ``{"script", "parameters", "page_context", "timeout"}`` → 202."""
        body = self.json_body()
        script = body.get("script")
        if not isinstance(script, str):
            raise ValueError("'script' (a script name) is required")
        execution = await self.call(
            self.client.submit,
            script,
            body.get("parameters") or {},
            page_context=str(body.get("page_context") or "api"),
            timeout=body.get("timeout"),
        )
        self.send(await self.call(self.execution_view, execution), status=202)


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
    """``GET /executions/{id}/logs``: captured stdout and stderr of the last attempt."""

    @web.authenticated
    @authorized
    @mapped_errors
    async def get(self, execution_id: str) -> None:
        """The logs."""
        execution = await self.call(self.client.get, execution_id)
        attempts = await self.call(execution.attempts)
        last = attempts[-1] if attempts else {}
        self.send(
            {
                "id": execution.id,
                "attempt": last.get("attempt"),
                "stdout": last.get("stdout") or "",
                "stderr": last.get("stderr") or "",
                "stdout_truncated": bool(last.get("stdout_truncated")),
                "stderr_truncated": bool(last.get("stderr_truncated")),
            }
        )


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


class WorkersHandler(BaseHandler):
    """``GET /workers``: online workers with their active and reserved runs."""

    @web.authenticated
    @authorized
    @mapped_errors
    async def get(self) -> None:
        """Ask the fleet (Celery's ping/inspect, 1 s timeout)."""
        self.send(await self.call(self.client.workers))


class SeedExecuteHandler(BaseHandler):
    """The seed's ``POST /api/execute-script/``: ``{"script_id", "parameters",
    "page_context"}`` → ``{"task_id"}``; ``script_id`` is the integer id or a name."""

    @web.authenticated
    @authorized
    @mapped_errors
    async def post(self) -> None:
        """Submit by the seed's field names."""
        body = self.json_body()
        ref = body.get("script_id", body.get("script"))
        if isinstance(ref, int) and not isinstance(ref, bool):
            ids = await self.call(self.client.store.script_ids)
            names = {v: k for k, v in ids.items()}
            if ref not in names:
                raise ScriptNotFound(f"no script with id {ref}")
            ref = names[ref]
        if not isinstance(ref, str):
            raise ValueError("'script_id' (an id or a name) is required")
        execution = await self.call(
            self.client.submit,
            ref,
            body.get("parameters") or {},
            page_context=str(body.get("page_context") or "api"),
        )
        self.send({"task_id": execution.id, "status": "queued"}, status=202)


class SeedResultHandler(BaseHandler):
    """The seed's ``GET /api/script-task-result/?task_id=``."""

    @web.authenticated
    @authorized
    @mapped_errors
    async def get(self) -> None:
        """State and result of a run, by the seed's names."""
        task_id = self.get_argument("task_id", None)
        if not task_id:
            raise ValueError("the 'task_id' query parameter is required")
        execution = await self.call(self.client.get, task_id)
        view = await self.call(self.execution_view, execution)
        self.send(
            {
                "task_id": execution.id,
                "status": view["status"],
                "result": view["result"],
                "execution": view,
            }
        )


def routes() -> list[tuple[str, type[BaseHandler]]]:
    """URL patterns relative to the server's base URL."""
    ident = r"(?P<execution_id>[^/]+)"
    return [
        (rf"{PREFIX}/scripts/?", ScriptsHandler),
        (rf"{PREFIX}/scripts/(?P<name>[^/]+)/?", ScriptHandler),
        (rf"{PREFIX}/executions/?", ExecutionsHandler),
        (rf"{PREFIX}/executions/{ident}/logs/?", LogsHandler),
        (rf"{PREFIX}/executions/{ident}/cancel/?", CancelHandler),
        (rf"{PREFIX}/executions/{ident}/?", ExecutionHandler),
        (rf"{PREFIX}/workers/?", WorkersHandler),
        (rf"{PREFIX}/execute-script/?", SeedExecuteHandler),
        (rf"{PREFIX}/script-task-result/?", SeedResultHandler),
    ]
