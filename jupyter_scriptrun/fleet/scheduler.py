"""Firing due schedule ticks, from every live worker: catch-up, overlap, and the run itself.

Each worker's housekeeping calls ``Scheduler.fire_due`` when the soonest tick is due (and
at least once a second). Any number may do so at once: the store fires each tick exactly
once (``store/schedules.py``), so there is no beat process to run, to fail over, or to
run twice; a worker stalled inside a firing holds up no other. A tick is judged on the
database's clock.

A tick that came due within ``misfire_grace`` (5 s) is *on time*: each fires, as its own
run. Older ones came due while no worker was firing; ``catchup`` says what they get:
``latest`` one run for them when no tick is on time, ``none`` nothing (recorded as missed
in the tick log), ``all`` each its run (the newest 100). Then ``overlap``, when the
schedule's previous run is still going: ``allow`` fires anyway; ``skip`` records the tick
as skipped; ``queue`` holds it until that run ends (it fires then, even under
``catchup="none"``: it was on time). Without overlap, ticks due together fire one at a
time: under ``queue`` each after the previous run ended (with ``all``: every one, oldest
first; otherwise the newest, standing for the ones that waited), under ``skip`` the first,
the others skipped while it runs. Every tick ends as a row of the tick log: fired, or
skipped with its reason, and the ticks it stands for counted in ``missed``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from jupyter_scriptrun.config import Settings
from jupyter_scriptrun.contract.registry import Registry, keep_version
from jupyter_scriptrun.contract.request import RunRequest
from jupyter_scriptrun.exceptions import ScriptrunError
from jupyter_scriptrun.status import ExecutionStatus
from jupyter_scriptrun.store import Store, new_execution_id
from jupyter_scriptrun.timing.spec import ON_TIME_S, table_of
from jupyter_scriptrun.timing.timetable import EPSILON, Timetable

log = logging.getLogger(__name__)

CATCHUP_MAX = 100
"""Under ``catchup="all"``, at most this many missed ticks run (the newest ones)."""


@dataclass
class Due:
    """What a schedule owes at one look: the ticks to fire now (oldest first) and how many
    others came due that will not fire (missed: no worker was firing; or coalesced)."""

    ticks: list[datetime]
    missed: int
    newest: datetime


class Scheduler:
    """Fires the ticks that are due.

    Args:
        send: queues a run's first attempt: ``send(execution_id, queue, script)``.
        worker: this worker's name, recorded with each tick it handles.
    """

    def __init__(
        self,
        store: Store,
        registry: Registry,
        settings: Settings,
        send: Callable[[str, str, str], None],
        worker: str,
    ) -> None:
        self.store = store
        self.registry = registry
        self.settings = settings
        self.send = send
        self.worker = worker

    def fire_due(self) -> int:
        """Handle every due schedule once; returns how many runs this worker fired."""
        due, now = self.store.due_schedules()
        fired = 0
        for schedule in due:
            assert now is not None  # given with every due schedule
            try:
                fired += self._handle(schedule, now)
            except Exception:  # one broken schedule must not stop the others
                log.exception("schedule %s: firing failed (will try again)", schedule["name"])
        return fired

    def next_fire(self, table: Timetable, schedule: dict[str, Any], after: datetime) -> Any:
        """When the first tick after ``after`` fires (jitter included); None: none left."""
        tick = table.after(after)
        if tick is None:
            return None
        return table.fire_at(tick, schedule["id"], schedule.get("jitter_s"))

    def due(self, table: Timetable, schedule: dict[str, Any], now: datetime) -> Due | None:
        """The ticks a schedule owes at ``now`` by its catch-up policy (module docstring);
        None when none has come due. Costs the ticks fired, not the time missed."""
        since = max(schedule["last_tick_at"] or schedule["resumed_at"], schedule["resumed_at"])
        key, jitter = schedule["id"], schedule.get("jitter_s")
        newest = table.latest(since, now)
        while newest is not None and table.fire_at(newest, key, jitter) > now:
            newest = table.latest(since, newest - EPSILON)  # drawn later than now: not yet
        if newest is None:
            return None
        grace = timedelta(seconds=schedule.get("misfire_grace_s") or ON_TIME_S)
        held = schedule.get("held_tick_at")  # seen on time, then held by overlap="queue"
        low = now - grace - timedelta(seconds=jitter or 0)
        if held is not None:
            low = min(low, held - EPSILON)
        on_time = [
            t
            for t in table.between(max(since, low), newest, CATCHUP_MAX)
            if now - table.fire_at(t, key, jitter) <= grace or (held is not None and t <= held)
        ]
        total = table.count(since, newest)
        policy = schedule["catchup"]
        if policy == "all":
            chosen = table.between(since, newest, CATCHUP_MAX)
        elif policy == "latest" and not on_time:
            chosen = [newest]
        else:
            chosen = on_time
        if schedule["overlap"] == "queue" and policy != "all":
            chosen = chosen[-1:]  # one tick waits for its turn; it stands for the others
        return Due(chosen, total - len(chosen), newest)

    def _handle(self, schedule: dict[str, Any], now: datetime) -> int:
        table = table_of(schedule)
        due = self.due(table, schedule, now)
        if due is None:  # looked at early (just resumed, jitter, a clock step): wait
            self.store.move_schedule(schedule["id"], self.next_fire(table, schedule, now))
            return 0
        if not due.ticks:  # every tick due was missed (catchup="none"): say so, once
            self.store.fire_tick(
                schedule,
                due.newest,
                None,
                next_fire_at=self.next_fire(table, schedule, due.newest),
                worker=self.worker,
                missed=due.missed - 1,
                reason=f"missed: {due.missed} tick(s) came due while no worker was firing",
            )
            return 0
        if schedule["overlap"] != "allow" and self.store.run_is_active(
            schedule["last_execution_id"]
        ):
            if schedule["overlap"] == "queue":
                self.store.hold_tick(schedule["id"], due.ticks[-1])
                return 0  # stays due: fires when that run ends
            previous = schedule["last_execution_id"][:8]
            self.store.fire_tick(
                schedule,
                due.ticks[-1],
                None,
                next_fire_at=self.next_fire(table, schedule, due.ticks[-1]),
                worker=self.worker,
                missed=due.missed + len(due.ticks) - 1,
                reason=f"overlap: the previous run {previous} was still going",
            )
            return 0
        # Without overlap one tick fires per look: the next finds its run going.
        chosen = due.ticks if schedule["overlap"] == "allow" else due.ticks[:1]
        fired = 0
        for tick in chosen:
            missed = due.missed if tick == chosen[0] else 0
            fired += self._fire(schedule, table, tick, now, missed)
        return fired

    def _fire(
        self, schedule: dict[str, Any], table: Timetable, tick: datetime, now: datetime, missed: int
    ) -> int:
        try:
            run = self._run(schedule, tick, now)
        except ScriptrunError as exc:
            # The script went away or its parameters no longer fit it: the tick is
            # recorded as skipped with the reason, and the schedule shows it.
            self.store.fire_tick(
                schedule,
                tick,
                None,
                next_fire_at=self.next_fire(table, schedule, tick),
                worker=self.worker,
                missed=missed,
                reason=f"not run: {exc}",
                error=str(exc),
            )
            return 0
        if not self.store.fire_tick(
            schedule,
            tick,
            run,
            next_fire_at=self.next_fire(table, schedule, tick),
            worker=self.worker,
            missed=missed,
            exclusive=schedule["overlap"] != "allow",
        ):
            return 0  # another worker fired it, or a run since
        try:
            self.send(run["id"], run["queue"], run["script"])
        except Exception as exc:  # recorded and queued: the reaper sends it again
            log.warning("schedule %s: run %s not sent yet (%s)", schedule["name"], run["id"], exc)
        log.info("schedule %s: fired %s for %s", schedule["name"], run["id"][:8], tick.isoformat())
        return 1

    def _run(self, schedule: dict[str, Any], tick: datetime, now: datetime) -> dict[str, Any]:
        """The queued run of a tick: the script as it is now, its parameters checked again."""
        script = self.registry.get(schedule["script"])
        request = RunRequest(
            schedule["parameters"],
            page_context=f"schedule:{schedule['name']}",
            timeout=schedule["timeout_s"],
            queue=schedule["queue"],
            notify=schedule.get("notify"),
            notify_on=schedule.get("notify_on"),
        )
        columns = request.prepare(script, self.settings)
        keep_version(self.store, script)
        return {
            **columns,
            "id": new_execution_id(),
            "script_id": self.store.ensure_script(script.name, script.content_hash),
            "status": ExecutionStatus.QUEUED.value,
            "queued_at": now,
            "attempt": 0,
            "cancel_requested": False,
            "schedule_id": schedule["id"],
            "scheduled_for": tick,
        }
