"""Schedules for people: make one (every problem at once), list them, and a handle on one."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from jupyter_scriptrun.contract.request import RunRequest
from jupyter_scriptrun.exceptions import InvalidParameters, InvalidSchedule, ScriptrunError
from jupyter_scriptrun.store.schedules import ACTIVE_STATE, ENDED_STATE, PAUSED_STATE
from jupyter_scriptrun.timing.spec import CATCHUP, OVERLAP, ScheduleSpec, first_fire, table_of
from jupyter_scriptrun.timing.timetable import Timetable

if TYPE_CHECKING:
    import pandas as pd

    from jupyter_scriptrun.config import Settings
    from jupyter_scriptrun.contract.registry import Registry
    from jupyter_scriptrun.service.handle import Execution
    from jupyter_scriptrun.store import Store

__all__ = ["CATCHUP", "OVERLAP", "Schedule", "create", "listing", "spec"]
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$")
ID = re.compile(r"^[0-9a-f]{32}$")
"""A schedule id's form (uuid4's hex): no name may take it."""
LIST_COLUMNS = (
    "id",
    "name",
    "script",
    "spec",
    "timezone",
    "state",
    "last_fire",
    "next_fire",
    "runs",
    "failures",
    "skipped",
    "script_changed",
    "last_error",
)


class ScheduleBackend(Protocol):
    """What schedules need (the Client is one): the store that keeps them, the registry
    and settings their runs are checked against, a queue check, a way to submit a run
    now and read runs back, and to make sure something fires them (the laptop's local
    worker). Schedules know nothing else of the client."""

    @property
    def store(self) -> Store: ...

    @property
    def registry(self) -> Registry: ...

    @property
    def settings(self) -> Settings: ...

    def queue_problem(self, queue: object, script_queue: str | None = None) -> str | None: ...

    def ensure_scheduler(self) -> None: ...

    def submit(
        self,
        script: str,
        params: dict[str, Any] | None = None,
        *,
        page_context: str = "python",
        timeout: float | None = None,
        queue: str | None = None,
        idempotency_key: str | None = None,
        notify: Sequence[str] | None = None,
        notify_on: Sequence[str] | None = None,
        schedule_id: str | None = None,
    ) -> Execution: ...

    def history(self, limit: int | str | None = ..., **filters: Any) -> pd.DataFrame: ...


class Schedule:
    """A schedule in the store: ``.id``, ``.name``, its row, and what can be done to it."""

    def __init__(self, client: ScheduleBackend, row: dict[str, Any]) -> None:
        self.client = client
        self.row = row
        self.id: str = row["id"]
        self.name: str = row["name"]

    def __repr__(self) -> str:
        return f"<Schedule {self.name} [{self.id[:8]}] {spec(self.row)} {self.row['state']}>"

    def refresh(self) -> Schedule:
        """Read the row again."""
        self.row = self.client.store.get_schedule(self.id)
        self.name = self.row["name"]
        return self

    @property
    def timetable(self) -> Timetable:
        return table_of(self.row)

    @property
    def spec(self) -> ScheduleSpec:
        """The options it was made (or last edited) with."""
        return ScheduleSpec.from_row(self.row)

    def update(
        self, params: dict[str, Any] | None = None, *, also: Sequence[str] = (), **changes: Any
    ) -> Schedule:
        """Change any of its options (those of :func:`create`, and ``name``); ``params``
        replaces its parameters (checked against the script again). Every problem is
        listed at once (InvalidSchedule) and nothing changes then; otherwise the next tick
        follows the new definition (ticks of the new timing up to now never fire)."""
        name = changes.pop("name", self.name)
        merged = self.row["parameters"] if params is None else params
        spec, unknown = self.spec.changed(**changes)
        found = [*also, *name_problems(name), *unknown]
        now = self.client.store.db_now()
        script_problems, merged = _script_problems(
            self.client, self.row["script"], merged, spec.queue
        )
        found += spec.problems(now) + script_problems
        if found:
            raise InvalidSchedule(self.name, found)
        columns = {**spec.columns(), "name": name, "parameters": merged}
        following = first_fire({**columns, "created_at": self.row["created_at"]}, now, self.id)
        try:
            self.client.store.update_schedule(self.id, columns, following)
        except ValueError as exc:
            raise InvalidSchedule(self.name, [str(exc)]) from None
        return self.refresh()

    def run_now(self) -> Any:
        """One run now, outside the timetable, recorded as the schedule's (its parameters,
        queue, time limit and notifications); returns its Execution handle."""
        row = self.row
        return self.client.submit(
            row["script"],
            row["parameters"],
            page_context=f"schedule:{self.name}",
            timeout=row["timeout_s"],
            queue=row["queue"],
            notify=row.get("notify"),
            notify_on=row.get("notify_on"),
            schedule_id=self.id,
        )

    def pause(self) -> Schedule:
        """Stop firing (no tick fires while paused, nor when resumed)."""
        self.client.store.set_schedule_state(self.id, PAUSED_STATE, None)
        return self.refresh()

    def resume(self) -> Schedule:
        """Fire again from the next tick on (ticks while paused never fire); a schedule
        with no tick left (past its end, or its one ``at``) stays ended."""
        now = self.client.store.db_now()
        following = self.timetable.after(now)
        state = ACTIVE_STATE if following is not None else ENDED_STATE
        self.client.store.set_schedule_state(self.id, state, following)
        self.client.ensure_scheduler()
        return self.refresh()

    def delete(self) -> None:
        """Remove the schedule (its runs stay in the history)."""
        self.client.store.delete_schedule(self.id)

    def next_runs(self, n: int = 5) -> list[datetime]:
        """The next ``n`` fire times, aware datetimes in the schedule's time zone."""
        return self.timetable.next_runs(n, self.client.store.db_now())

    def runs(self) -> pd.DataFrame:
        """Its runs, as the history DataFrame (newest first): this schedule's, by its id,
        not those of an earlier schedule of the same name."""
        return self.client.history(schedule_id=self.id)

    def ticks(self, limit: int = 100) -> list[dict[str, Any]]:
        """Its newest ticks handled: fired (with the run) or skipped (with the reason)."""
        return self.client.store.schedule_ticks(self.id, limit)


def name_problems(name: object) -> list[str]:
    """What is wrong with a schedule's name (empty: nothing)."""
    if isinstance(name, str) and ID.match(name):
        return [
            f"name {name!r} looks like a schedule id (32 hex digits); ids and names are "
            "looked up alike, so a name must not be one"
        ]
    if not isinstance(name, str) or not NAME.match(name):
        return [
            f"name must be 1 to 128 letters, digits or _.:@- (starting with one of the "
            f"first two), not {name!r}"
        ]
    return []


def create(
    client: ScheduleBackend,
    script: str,
    params: dict[str, Any] | None,
    *,
    name: str | None = None,
    also: Sequence[str] = (),
    **options: Any,
) -> Schedule:
    """Check everything (timing, zone, bounds, policies, notifications, script,
    parameters, queue), then store the schedule; InvalidSchedule lists every problem at
    once (``also``: problems a front end found in the same request, listed first, so
    none hides another). ``options``: those of :class:`ScheduleSpec` (exactly one of
    ``cron``, ``every``, ``at``; ``timezone="UTC"``, ``catchup="latest"``,
    ``overlap="skip"``, ``start``, ``end``, ``jitter``, ``misfire_grace``, ``queue``,
    ``timeout``, ``notify``, ``notify_on``)."""
    named = name is not None
    name = name or f"{script}-{uuid.uuid4().hex[:6]}"
    spec, unknown = ScheduleSpec().changed(**options)
    found = [*also, *name_problems(name), *unknown]
    now = client.store.db_now()
    script_problems, merged = _script_problems(client, script, params, spec.queue)
    found += spec.problems(now) + script_problems
    id = uuid.uuid4().hex
    if not found and first_fire(spec.columns(), now, id) is None:
        found.append("it would never fire (its end comes before its first tick)")
    if found:
        raise InvalidSchedule(str(name), found, None if named else str(script))
    columns = spec.columns()
    row: dict[str, Any] = {
        **columns,
        "id": id,
        "name": name,
        "script": script,
        "parameters": merged,
        "content_hash": client.registry.get(script).content_hash,
    }
    # Intervals count from the creation instant (or start): the first tick is one later.
    first = first_fire(columns, now, id)
    try:
        stored = client.store.create_schedule({**row, "created_at": now, "next_fire_at": first})
    except ValueError as exc:
        raise InvalidSchedule(str(name), [str(exc)], None if named else str(script)) from None
    client.ensure_scheduler()
    return Schedule(client, client.store.get_schedule(stored["id"]))


def _script_problems(
    client: ScheduleBackend, script: str, params: dict[str, Any] | None, queue: str | None
) -> tuple[list[str], dict[str, Any]]:
    """What is wrong with a schedule's script, parameters and queue (checked as each
    tick's run will be), and the parameters with the script's defaults merged in."""
    try:
        found = client.registry.get(script)
        columns = RunRequest(params, queue=queue).prepare(
            found, client.settings, client.queue_problem
        )
    except InvalidParameters as exc:
        return list(exc.problems), {}
    except ScriptrunError as exc:
        return [str(exc)], {}
    return [], columns["parameters"]


def every_schedule(client: ScheduleBackend) -> list[Schedule]:
    """Every schedule, by name, each a handle (one read for all of them)."""
    return [Schedule(client, row) for row in client.store.list_schedules()]


def listing(client: ScheduleBackend) -> pd.DataFrame:
    """Every schedule as a DataFrame: script, spec, zone, state, last and next fire, runs,
    failures, skipped ticks, whether the script changed since, the last error."""
    import pandas as pd

    failures = client.store.schedule_failures()
    rows = []
    for row in client.store.list_schedules():
        try:
            changed = client.registry.get(row["script"]).content_hash != row["content_hash"]
        except ScriptrunError:
            changed = None  # the script is gone
        rows.append(
            {
                "id": row["id"],
                "name": row["name"],
                "script": row["script"],
                "spec": spec(row),
                "timezone": row["timezone"],
                "state": row["state"],
                "last_fire": row["last_tick_at"],
                "next_fire": row["next_fire_at"] if row["state"] == ACTIVE_STATE else None,
                "runs": row["fired"],
                "failures": failures.get(row["id"], 0),
                "skipped": row["skipped"],
                "script_changed": changed,
                "last_error": row["last_error"],
            }
        )
    if any(r["state"] == ACTIVE_STATE for r in rows):
        client.ensure_scheduler()  # after a reboot, looking at schedules starts the firing
    frame = pd.DataFrame(rows, columns=list(LIST_COLUMNS))
    for column in ("last_fire", "next_fire"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def spec(row: dict[str, Any]) -> str:
    """A schedule's timing in a few words: ``cron 0 7 * * *``, ``every 5m``, ``once at
    2027-01-31 09:00 UTC``, with its bounds (``from …``, ``until …``) and jitter."""
    if row.get("once_at"):
        return f"once at {_when(row['once_at'])}"
    words = f"cron {row['cron']}" if row["cron"] else f"every {_duration(row['every_s'])}"
    if row.get("start_at"):
        words += f" from {_when(row['start_at'])}"
    if row.get("end_at"):
        words += f" until {_when(row['end_at'])}"
    if row.get("jitter_s"):
        words += f" ±{_duration(row['jitter_s'])}"
    return words


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _when(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%d %H:%M UTC")
