"""Firing due schedule ticks, from every live worker: catch-up, overlap, and the run itself.

Each worker's housekeeping calls ``Scheduler.fire_due`` about once a second. Any number
may do so at once: the store fires each tick exactly once (``store/schedules.py``), so
there is no beat process to run, to fail over, or to run twice. A tick is judged on the
database's clock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from jupyter_scriptrun.config import Settings
from jupyter_scriptrun.contract.protocol import encode_parameters
from jupyter_scriptrun.contract.registry import Registry, unchanged_source
from jupyter_scriptrun.exceptions import ScriptrunError
from jupyter_scriptrun.status import ExecutionStatus
from jupyter_scriptrun.store import Store, new_execution_id
from jupyter_scriptrun.timetable import Timetable

log = logging.getLogger(__name__)

ON_TIME_S = 5.0
"""Under ``catchup="none"``, a tick this late still fires (a worker's loop, a slow start);
an older one was missed and is skipped."""
CATCHUP_MAX = 100
"""Under ``catchup="all"``, at most this many missed ticks run (the newest ones)."""


def timetable(schedule: dict[str, Any]) -> Timetable:
    """The ticks of a schedule's row (intervals count from its creation)."""
    return Timetable(
        schedule["cron"], schedule["every_s"], schedule["timezone"], schedule["created_at"]
    )


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

    def _handle(self, schedule: dict[str, Any], now: datetime) -> int:
        table = timetable(schedule)
        since = max(schedule["last_tick_at"] or schedule["resumed_at"], schedule["resumed_at"])
        due = table.between(since, now, CATCHUP_MAX)
        if not due:  # looked at early (just resumed, or a clock step): wait for the next
            self.store.move_schedule(schedule["id"], table.after(now))
            return 0
        if self.store.run_is_active(schedule["last_execution_id"]):
            if schedule["overlap"] == "queue":
                return 0  # stays due: fires (once, for the newest tick) when that run ends
            if schedule["overlap"] == "skip":
                previous = schedule["last_execution_id"][:8]
                self.store.fire_tick(
                    schedule,
                    due[-1],
                    None,
                    next_fire_at=table.after(due[-1]),
                    worker=self.worker,
                    missed=len(due) - 1,
                    reason=f"overlap: the previous run {previous} was still going",
                )
                return 0
        if schedule["catchup"] == "all":
            chosen = due
        elif schedule["catchup"] == "none":
            chosen = [t for t in due[-1:] if (now - t).total_seconds() <= ON_TIME_S]
            if not chosen:
                self.store.move_schedule(schedule["id"], table.after(now), passed=due[-1])
                return 0
        else:
            chosen = due[-1:]
        missed = len(due) - len(chosen)
        fired = 0
        for tick in chosen:
            fired += self._fire(schedule, table, tick, now, missed if tick == chosen[0] else 0)
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
                next_fire_at=table.after(tick),
                worker=self.worker,
                missed=missed,
                reason=f"not run: {exc}",
                error=str(exc),
            )
            return 0
        if not self.store.fire_tick(
            schedule, tick, run, next_fire_at=table.after(tick), worker=self.worker, missed=missed
        ):
            return 0  # another worker fired it
        try:
            self.send(run["id"], run["queue"], run["script"])
        except Exception as exc:  # recorded and queued: the reaper sends it again
            log.warning("schedule %s: run %s not sent yet (%s)", schedule["name"], run["id"], exc)
        log.info("schedule %s: fired %s for %s", schedule["name"], run["id"][:8], tick.isoformat())
        return 1

    def _run(self, schedule: dict[str, Any], tick: datetime, now: datetime) -> dict[str, Any]:
        """The queued run of a tick: the script as it is now, its parameters checked again."""
        script = self.registry.get(schedule["script"])
        params = script.meta.validate(script.name, schedule["parameters"])
        encode_parameters(script.name, params)
        self._keep_version(script)
        queue = schedule["queue"] or script.meta.queue or self.settings.queue
        if self.settings.embedded:
            queue = self.settings.queue
        return {
            "id": new_execution_id(),
            "script": script.name,
            "script_id": self.store.ensure_script(script.name, script.content_hash),
            "status": ExecutionStatus.QUEUED.value,
            "page_context": f"schedule:{schedule['name']}"[:1024],
            "parameters": params,
            "queue": queue,
            "timeout_s": schedule["timeout_s"]
            or script.meta.timeout
            or self.settings.default_timeout_s,
            "queued_at": now,
            "attempt": 0,
            "content_hash": script.content_hash,
            "cancel_requested": False,
            "schedule_id": schedule["id"],
            "scheduled_for": tick,
        }

    def _keep_version(self, script: Any) -> None:
        """Store the version that runs, so that any worker runs exactly it."""
        if self.store.kept(script.content_hash):
            return
        if (data := unchanged_source(script)) is not None:
            self.store.keep_version(script.content_hash, script.name, script.path.name, data)
