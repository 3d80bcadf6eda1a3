"""Schedules for people: make one (every problem at once), list them, and a handle on one."""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from jupyter_scriptrun.contract.protocol import encode_parameters
from jupyter_scriptrun.exceptions import InvalidParameters, InvalidSchedule, ScriptrunError
from jupyter_scriptrun.store.schedules import ACTIVE_STATE, PAUSED_STATE
from jupyter_scriptrun.timetable import Timetable, check_cron, parse_every, problems, zone

if TYPE_CHECKING:
    import pandas as pd

    from jupyter_scriptrun.client import Client

CATCHUP = ("latest", "none", "all")
OVERLAP = ("skip", "queue", "allow")
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


class Schedule:
    """A schedule in the store: ``.id``, ``.name``, its row, and what can be done to it."""

    def __init__(self, client: Client, row: dict[str, Any]) -> None:
        self.client = client
        self.row = row
        self.id: str = row["id"]
        self.name: str = row["name"]

    def __repr__(self) -> str:
        return f"<Schedule {self.name} [{self.id[:8]}] {spec(self.row)} {self.row['state']}>"

    def refresh(self) -> Schedule:
        """Read the row again."""
        self.row = self.client.store.get_schedule(self.id)
        return self

    @property
    def timetable(self) -> Timetable:
        row = self.row
        return Timetable(row["cron"], row["every_s"], row["timezone"], row["created_at"])

    def pause(self) -> Schedule:
        """Stop firing (no tick fires while paused, nor when resumed)."""
        self.client.store.set_schedule_state(self.id, PAUSED_STATE, None)
        return self.refresh()

    def resume(self) -> Schedule:
        """Fire again from the next tick on (ticks while paused never fire)."""
        now = self.client.store.db_now()
        self.client.store.set_schedule_state(self.id, ACTIVE_STATE, self.timetable.after(now))
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
    client: Client,
    script: str,
    params: dict[str, Any] | None,
    *,
    cron: str | None = None,
    every: float | str | None = None,
    timezone: str = "UTC",
    name: str | None = None,
    catchup: str = "latest",
    overlap: str = "skip",
    queue: str | None = None,
    timeout: float | None = None,
    also: Sequence[str] = (),
) -> Schedule:
    """Check everything (timing, zone, policies, script, parameters, queue), then store
    the schedule; InvalidSchedule lists every problem at once (``also``: problems a
    front end found in the same request, listed first, so none hides another)."""
    named = name is not None
    name = name or f"{script}-{uuid.uuid4().hex[:6]}"
    found_problems = [*also, *problems(cron, every, timezone), *name_problems(name)]
    if catchup not in CATCHUP:
        found_problems.append(f"catchup must be one of {', '.join(CATCHUP)}, not {catchup!r}")
    if overlap not in OVERLAP:
        found_problems.append(f"overlap must be one of {', '.join(OVERLAP)}, not {overlap!r}")
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        found_problems.append(f"timeout must be a positive number, not {timeout!r}")
    merged: dict[str, Any] = {}
    content_hash = None
    try:
        found = client.registry.get(script)
        content_hash = found.content_hash
        merged = found.meta.validate(found.name, params)
        encode_parameters(found.name, merged)
        chosen = queue or found.meta.queue or client.settings.queue
        if problem := client.queue_problem(chosen, script_queue=found.meta.queue):
            found_problems.append(problem)
    except InvalidParameters as exc:
        found_problems.extend(exc.problems)
    except ScriptrunError as exc:
        found_problems.append(str(exc))
    if found_problems:
        raise InvalidSchedule(str(name), found_problems, None if named else str(script))
    now = client.store.db_now()
    row: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "name": name,
        "script": script,
        "parameters": merged,
        "content_hash": content_hash,
        "cron": check_cron(cron) if cron is not None else None,
        "every_s": parse_every(every) if every is not None else None,
        "timezone": zone(timezone).key,
        "catchup": catchup,
        "overlap": overlap,
        "queue": queue,
        "timeout_s": float(timeout) if timeout else None,
    }
    # Intervals count from the creation instant: the first tick is one interval later.
    first = Timetable(row["cron"], row["every_s"], row["timezone"], now).after(now)
    try:
        stored = client.store.create_schedule({**row, "created_at": now, "next_fire_at": first})
    except ValueError as exc:
        raise InvalidSchedule(str(name), [str(exc)], None if named else str(script)) from None
    client.ensure_scheduler()
    return Schedule(client, client.store.get_schedule(stored["id"]))


def listing(client: Client) -> pd.DataFrame:
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
    """A schedule's timing in a few words: ``cron 0 7 * * *``, ``every 5m``."""
    if row["cron"]:
        return f"cron {row['cron']}"
    seconds = row["every_s"]
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"every {seconds / size:g}{unit}"
    return f"every {seconds:g}s"
