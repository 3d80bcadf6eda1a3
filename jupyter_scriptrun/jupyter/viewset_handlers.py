"""The seed's REST API, as the seed wrote it: its DRF viewset (``task-executions/``, with
``execute_script/`` and ``task_status/``) and its simplified pair (``execute-script/``,
``script-task-result/``), under ``/scriptrun/api/``.

The seed's clients read its status words (``pending``, ``running``, ``success``,
``failure``, ``revoked``) in ``status``; ours stand beside them in ``scriptrun_status``.
Lists have DRF's page shape: ``count``, ``next``, ``previous``, ``results``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from jupyter_server.auth.decorator import authorized
from tornado import web

from jupyter_scriptrun.exceptions import InvalidRequest, ScriptNotFound
from jupyter_scriptrun.jupyter import openapi_viewset
from jupyter_scriptrun.jupyter.handlers import PREFIX, BaseHandler, mapped_errors

SEED_STATUS = {
    "queued": "pending",
    "retrying": "pending",
    "running": "running",
    "succeeded": "success",
    "failed": "failure",
    "timed_out": "failure",
    "lost": "failure",
    "cancelled": "revoked",
}
"""Our states in the seed's words (Celery's, lower-cased)."""
PAGE_SIZE, MAX_PAGE_SIZE = 20, 100


def seed_view(record: dict[str, Any], result: Any = None) -> dict[str, Any]:
    """A run as the seed's ``TaskExecution`` serializer shows it, with ours beside."""
    status = str(record["status"])
    attempt = int(record.get("attempt") or 0)
    return {
        "id": record["id"],
        "task_id": record["id"],
        "script_id": record.get("script_id"),
        "script_name": record["script"],
        "status": SEED_STATUS.get(status, status),
        "scriptrun_status": status,
        "parameters": record.get("parameters"),
        "page_context": record.get("page_context"),
        "result": result,
        "error_type": record.get("error_type"),
        "error_message": record.get("message") if status != "succeeded" else None,
        "retries": max(attempt - 1, 0),
        "created_at": record.get("queued_at"),
        "started_at": record.get("started_at"),
        "completed_at": record.get("finished_at"),
        "duration": record.get("duration_s"),
        "memory_usage": record.get("peak_rss_mb"),
    }


class ExecuteScriptHandler(BaseHandler):
    """``POST task-executions/execute_script/`` (the seed's viewset action) and the seed's
    simplified ``POST execute-script/``: one request, one answer."""

    @web.authenticated
    @authorized
    @mapped_errors
    async def post(self) -> None:
        """Submit by the seed's field names → 202 ``{"task_id"}``, its address in
        ``Location``."""
        body = self.json_body(openapi_viewset.VIEWSET_SUBMIT_BODY)
        execution = await self.call(
            self.client.submit,
            await self.script_name(body),
            body.get("parameters") or {},
            page_context=body.get("page_context") or "api",
        )
        where = f"{self.base_url.rstrip('/')}{PREFIX}/task-executions/{execution.id}/"
        self.set_header("Location", where)
        answer = {"task_id": execution.id, "status": "pending", "scriptrun_status": "queued"}
        self.send({**answer, "links": {"self": where}}, status=202)

    async def script_name(self, body: dict[str, Any]) -> str:
        """The script a seed body names: ``script_id`` (an integer id, or a name, as the
        seed's clients send either), ``script_name`` or ``script``."""
        ref = next((body[k] for k in ("script_id", "script_name", "script") if k in body), None)
        if isinstance(ref, float):
            if not ref.is_integer():
                raise InvalidRequest([f"script_id: {ref!r} is not a whole number"])
            ref = int(ref)  # JSON's 1.0 is the id 1
        if isinstance(ref, int) and not isinstance(ref, bool):
            names = {v: k for k, v in (await self.call(self.client.script_ids)).items()}
            if ref not in names:
                raise ScriptNotFound(f"no script with id {ref} (GET scripts lists the ids)")
            return names[ref]
        if not isinstance(ref, str) or not ref:
            raise InvalidRequest(["script_id: an integer id or a script name is required"])
        return ref


class TaskExecutionsHandler(ExecuteScriptHandler):
    """``GET task-executions/``: the runs, newest first, a DRF page at a time; ``POST``
    is DRF's create, the same as ``execute_script/``."""

    @web.authenticated
    @authorized
    @mapped_errors
    async def get(self) -> None:
        """``?page=&page_size=`` (DRF's names), ``script``, ``status`` (ours)."""
        problems: list[str] = []
        page = self.int_argument("page", 1, 10_000_000, problems)
        size = self.int_argument("page_size", PAGE_SIZE, MAX_PAGE_SIZE, problems)
        if page < 1 or size < 1:
            problems.append("page and page_size must be at least 1")
        statuses = self.get_arguments("status")
        problems += [f"status: {s!r} is not one of ours" for s in statuses if s not in SEED_STATUS]
        if problems:
            raise InvalidRequest(problems)
        filters = {"script": self.get_arguments("script") or None, "status": statuses or None}
        rows, count = await self.call(
            self.client.history_page, limit=size, offset=(page - 1) * size, **filters
        )
        self.send(
            {
                "count": count,
                "next": self._page_url(page + 1) if page * size < count else None,
                "previous": self._page_url(page - 1) if page > 1 else None,
                "results": [seed_view(r) for r in rows],
            }
        )

    def _page_url(self, page: int) -> str:
        query = {k: self.get_arguments(k) for k in self.request.arguments}
        query["page"] = [str(page)]
        return f"{self.request.full_url().split('?')[0]}?{urlencode(query, doseq=True)}"


class TaskExecutionHandler(BaseHandler):
    """``GET task-executions/{id}/``: one run, with its result."""

    @web.authenticated
    @authorized
    @mapped_errors
    async def get(self, execution_id: str) -> None:
        """One run, in the seed's shape (its whole record under ``execution``)."""
        execution = await self.call(self.client.get, execution_id)
        view = await self.call(self.execution_view, execution)
        self.send({**seed_view(view, view["result"]), "execution": view})


class TaskStatusHandler(BaseHandler):
    """``GET task-executions/task_status/?task_id=`` (the seed's viewset action) and the
    seed's simplified ``GET script-task-result/?task_id=``."""

    @web.authenticated
    @authorized
    @mapped_errors
    async def get(self) -> None:
        """State and result of a run, in the seed's words (its record under
        ``execution``)."""
        task_id = self.get_argument("task_id", None)
        if not task_id:
            raise InvalidRequest(["task_id: the query parameter is required and not empty"])
        execution = await self.call(self.client.get, task_id)
        view = await self.call(self.execution_view, execution)
        seed = seed_view(view, view["result"])
        fields = ("task_id", "status", "scriptrun_status", "result", "retries")
        self.send({**{k: seed[k] for k in fields}, "execution": view})


def routes() -> list[tuple[str, type[BaseHandler]]]:
    """The seed's URL patterns (before the API's catch-all)."""
    base = f"{PREFIX}/task-executions"
    return [
        (rf"{base}/?", TaskExecutionsHandler),
        (rf"{base}/execute_script/?", ExecuteScriptHandler),
        (rf"{base}/task_status/?", TaskStatusHandler),
        (rf"{base}/(?P<execution_id>[^/]+)/?", TaskExecutionHandler),
        (rf"{PREFIX}/execute-script/?", ExecuteScriptHandler),
        (rf"{PREFIX}/script-task-result/?", TaskStatusHandler),
    ]
