"""REST handlers for schedules: ``GET/POST schedules``, ``GET/PATCH/DELETE schedules/{id}``."""

from __future__ import annotations

from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web

from jupyter_scriptrun.exceptions import InvalidRequest
from jupyter_scriptrun.jupyter import openapi
from jupyter_scriptrun.jupyter.handlers import PREFIX, BaseHandler, mapped_errors
from jupyter_scriptrun.jupyter.openapi_schedules import SCHEDULE_BODY, SCHEDULE_PATCH
from jupyter_scriptrun.scheduling import Schedule

NEXT_RUNS = 5
CHECKED_BY_CREATE = ("cron", "every", "timezone", "name", "catchup", "overlap", "timeout")
"""Body fields that scheduling.create checks itself, in the words of every front end."""


class ScheduleView(BaseHandler):
    """A schedule as the API shows it: its row, its next fire times and its links."""

    def view(self, schedule: Any) -> dict[str, Any]:
        row = dict(schedule.row)
        row.pop("content_hash", None)
        row.pop("resumed_at", None)
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
            return [
                self.view(Schedule(self.client, row)) for row in self.client.store.list_schedules()
            ]

        self.send(await self.call(listing))

    @web.authenticated
    @authorized
    @mapped_errors
    async def post(self) -> None:
        """Make a schedule; 400 lists every problem once (timing, zone, policies,
        parameters): the schema's, and the schedule's own checks of the same body."""
        body = self.json_body()
        # The fields scheduling.create checks itself (with the same words as in Python
        # and the CLI) are left to it, so that one bad field hides none of the others.
        shape = [
            p
            for p in openapi.body_problems(SCHEDULE_BODY, body)
            if p.split(":")[0] not in CHECKED_BY_CREATE
        ]
        unreadable = not isinstance(body.get("script"), str) or any(
            p.startswith(("script:", "parameters:", "queue:")) for p in shape
        )
        if unreadable:
            raise InvalidRequest(shape)  # what create cannot even read

        def create() -> dict[str, Any]:
            made = self.client.schedule(
                body["script"],
                body.get("parameters"),
                cron=body.get("cron"),
                every=body.get("every"),
                timezone=body.get("timezone", "UTC"),
                name=body.get("name"),
                catchup=body.get("catchup", "latest"),
                overlap=body.get("overlap", "skip"),
                queue=body.get("queue"),
                timeout=body.get("timeout"),
                also=shape,  # one 400 (InvalidSchedule) lists them with its own
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
        """``{"state": "paused"}`` or ``{"state": "active"}``."""
        body = self.json_body(SCHEDULE_PATCH)

        def change() -> dict[str, Any]:
            schedule = self.client.get_schedule(schedule_id)
            schedule.pause() if body["state"] == "paused" else schedule.resume()
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


def routes() -> list[tuple[str, type[BaseHandler]]]:
    """The schedules' URL patterns (before the API's catch-all)."""
    return [
        (rf"{PREFIX}/schedules/?", SchedulesHandler),
        (rf"{PREFIX}/schedules/(?P<schedule_id>[^/]+)/?", ScheduleHandler),
    ]
