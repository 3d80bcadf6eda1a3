"""REST handlers for schedules: ``GET/POST schedules``, ``GET/PATCH/DELETE schedules/{id}``,
``POST schedules/{id}/run``."""

from __future__ import annotations

from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web

from jupyter_scriptrun.exceptions import InvalidRequest, Problem
from jupyter_scriptrun.jupyter import openapi
from jupyter_scriptrun.jupyter.handlers import PREFIX, BaseHandler, mapped_errors
from jupyter_scriptrun.jupyter.openapi_schedules import SCHEDULE_BODY, SCHEDULE_PATCH
from jupyter_scriptrun.service.scheduling import every_schedule
from jupyter_scriptrun.timing.spec import ScheduleSpec

NEXT_RUNS = 5
CHECKED_BY_SCHEDULING = (*(n for n in ScheduleSpec.names() if n != "queue"), "name")
"""Body fields that scheduling checks itself (create, update), in the words of every
front end."""


def checked(schema: dict[str, Any], body: dict[str, Any]) -> list[Problem]:
    """The schema's problems with ``body`` that scheduling does not check itself (those
    it lists in its own words, so one bad field hides none of the others); raises
    InvalidRequest when the body cannot even be read."""
    shape = [
        p
        for p in openapi.body_problems(schema, body)
        if p.split(":")[0] not in CHECKED_BY_SCHEDULING
    ]
    if "script" in schema["properties"] and not isinstance(body.get("script"), str):
        raise InvalidRequest(shape or [Problem("script: a script's name is required", "script")])
    if any(p.startswith(("script:", "parameters:", "queue:", "state:")) for p in shape):
        raise InvalidRequest(shape)
    return shape


def options(body: dict[str, Any]) -> dict[str, Any]:
    """The schedule options a body gives."""
    return {k: body[k] for k in ScheduleSpec.names() if k in body}


class ScheduleView(BaseHandler):
    """A schedule as the API shows it: its row, its next fire times and its links."""

    def view(self, schedule: Any) -> dict[str, Any]:
        row = dict(schedule.row)
        row.pop("content_hash", None)
        row.pop("resumed_at", None)
        row.pop("held_tick_at", None)
        base = f"{self.base_url.rstrip('/')}{PREFIX}/schedules/{schedule.id}"
        runs = (
            f"{self.base_url.rstrip('/')}{PREFIX}/executions?page_context=schedule:{schedule.name}"
        )
        active = row["state"] == "active"
        row["next_runs"] = [t.isoformat() for t in schedule.next_runs(NEXT_RUNS)] if active else []
        return {**row, "links": {"self": base, "runs": runs}}


class SchedulesHandler(ScheduleView):
    """``GET /schedules`` (every one) and ``POST /schedules`` (make one)."""

    @web.authenticated
    @authorized
    @mapped_errors
    async def get(self) -> None:
        """Every schedule, by name."""

        def listing() -> list[dict[str, Any]]:
            # One read for all of them: each row is already the schedule's whole state.
            return [self.view(schedule) for schedule in every_schedule(self.client)]

        self.send(await self.call(listing))

    @web.authenticated
    @authorized
    @mapped_errors
    async def post(self) -> None:
        """Make a schedule; 400 lists every problem once (timing, zone, policies,
        parameters): the schema's, and the schedule's own checks of the same body."""
        body = self.json_body()
        shape = checked(SCHEDULE_BODY, body)

        def create() -> dict[str, Any]:
            made = self.client.schedule(
                body["script"],
                body.get("parameters"),
                name=body.get("name"),
                also=shape,  # one 400 (InvalidSchedule) lists them with its own
                **options(body),
            )
            return self.view(made)

        self.send(await self.call(create), status=201)


class ScheduleHandler(ScheduleView):
    """``GET``, ``PATCH`` (pause or resume) and ``DELETE /schedules/{id or name}``."""

    @web.authenticated
    @authorized
    @mapped_errors
    async def get(self, schedule_id: str) -> None:
        """One schedule."""
        self.send(await self.call(lambda: self.view(self.client.get_schedule(schedule_id))))

    @web.authenticated
    @authorized
    @mapped_errors
    async def patch(self, schedule_id: str) -> None:
        """``{"state": "paused"}`` or ``{"state": "active"}``, and any option to change."""
        body = self.json_body()
        shape = checked(SCHEDULE_PATCH, body)
        edits = options(body) | ({"name": body["name"]} if "name" in body else {})

        def change() -> dict[str, Any]:
            schedule = self.client.get_schedule(schedule_id)
            if edits or shape or "parameters" in body:
                # One 400 (InvalidSchedule) lists the schema's problems with its own.
                schedule.update(body.get("parameters"), also=shape, **edits)
            if body.get("state") == "paused":
                schedule.pause()
            elif body.get("state") == "active":
                schedule.resume()
            return self.view(schedule)

        self.send(await self.call(change))

    @web.authenticated
    @authorized
    @mapped_errors
    async def delete(self, schedule_id: str) -> None:
        """Remove it; its runs stay in the history."""
        await self.call(lambda: self.client.get_schedule(schedule_id).delete())
        self.set_status(204)
        self.finish()


class RunNowHandler(BaseHandler):
    """``POST /schedules/{id or name}/run``: one run now, recorded as the schedule's."""

    @web.authenticated
    @authorized
    @mapped_errors
    async def post(self, schedule_id: str) -> None:
        """Queue the run → 202 with it (as ``POST executions``)."""
        execution = await self.call(lambda: self.client.get_schedule(schedule_id).run_now())
        view = self.execution_view(execution, execution.created)
        self.set_header("Location", view["links"]["self"])
        self.send(view, status=202)


def routes() -> list[tuple[str, type[BaseHandler]]]:
    """The schedules' URL patterns (before the API's catch-all)."""
    return [
        (rf"{PREFIX}/schedules/?", SchedulesHandler),
        (rf"{PREFIX}/schedules/(?P<schedule_id>[^/]+)/run/?", RunNowHandler),
        (rf"{PREFIX}/schedules/(?P<schedule_id>[^/]+)/?", ScheduleHandler),
    ]
