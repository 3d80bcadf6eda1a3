"""Schedules in the store: create, list, pause, resume, delete, and fire a tick exactly once.

A tick fires in one transaction that inserts its ``schedule_ticks`` row and its queued
run together. The row's primary key ``(schedule_id, tick_at)`` is the guarantee: workers
racing for a tick all try the insert and only one succeeds; a worker killed mid-fire rolls
back both; a retry after a commit whose answer was lost finds the row and does nothing.
What a fired run still needs (its broker message) the reaper sends if the firing worker
could not, as for any queued run.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select, text, update

from jupyter_scriptrun.exceptions import ScheduleNotFound
from jupyter_scriptrun.status import FINAL, ExecutionStatus
from jupyter_scriptrun.store import dialects
from jupyter_scriptrun.store.engine import Database, dialect_insert, retrying, utcnow
from jupyter_scriptrun.store.tables import UTCDateTime, executions, schedule_ticks, schedules

ACTIVE_STATE, PAUSED_STATE, ENDED_STATE = "active", "paused", "ended"
KEEP_TICKS = timedelta(days=7)
"""Ticks handled are kept this long (``Schedule.ticks()``); then forgotten, daily."""


class Schedules(Database):
    """The schedules' reads and writes."""

    def db_now(self) -> datetime:
        """Now on the database's clock (PostgreSQL's; SQLite lives on this host)."""
        if not dialects.has_server_clock(self.engine.dialect.name):
            return utcnow()
        with self.engine.connect() as conn:
            now: datetime = conn.execute(text("SELECT now()")).scalar_one()
        return now

    @retrying
    def create_schedule(self, values: dict[str, Any]) -> dict[str, Any]:
        """Insert an active schedule (``values``: its columns, ``created_at`` on the
        database's clock); returns its row. A taken name raises ``ValueError``."""
        row = {
            **values,
            "state": ACTIVE_STATE,
            "resumed_at": values["created_at"],
            "fired": 0,
            "skipped": 0,
        }
        with self._write() as conn:
            taken = conn.execute(
                select(schedules.c.id).where(schedules.c.name == values["name"])
            ).first()
            if taken is not None:
                raise ValueError(f"a schedule named {values['name']!r} exists")
            conn.execute(schedules.insert().values(**row))
        return self.get_schedule(values["id"])

    def get_schedule(self, key: str) -> dict[str, Any]:
        """A schedule by id or name; ScheduleNotFound when none."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(schedules).where(or_(schedules.c.id == key, schedules.c.name == key))
            ).first()
        if row is None:
            raise ScheduleNotFound(f"no schedule with the id or name {key!r}")
        return dict(row._mapping)

    def list_schedules(self) -> list[dict[str, Any]]:
        """Every schedule, by name."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(schedules).order_by(schedules.c.name)).all()
        return [dict(r._mapping) for r in rows]

    def schedule_failures(self) -> dict[str, int]:
        """Failed runs (not succeeded, once ended) per schedule id."""
        ended_badly = [
            s.value
            for s in ExecutionStatus
            if s.is_final
            and s is not ExecutionStatus.SUCCEEDED
            and s is not ExecutionStatus.CANCELLED
        ]
        query = (
            select(executions.c.schedule_id, func.count())
            .where(executions.c.schedule_id.is_not(None), executions.c.status.in_(ended_badly))
            .group_by(executions.c.schedule_id)
        )
        with self.engine.connect() as conn:
            return {sid: int(n) for sid, n in conn.execute(query).all()}

    @retrying
    def set_schedule_state(self, id: str, state: str, next_fire_at: datetime | None) -> None:
        """Pause (``next_fire_at`` None) or resume a schedule. Resuming starts afresh:
        ticks up to now never fire (``resumed_at``)."""
        values: dict[str, Any] = {"state": state, "next_fire_at": next_fire_at}
        if state == ACTIVE_STATE:
            values["resumed_at"] = self.db_now()
        with self._write() as conn:
            conn.execute(update(schedules).where(schedules.c.id == id).values(**values))

    @retrying
    def update_schedule(
        self, id: str, columns: dict[str, Any], next_fire_at: datetime | None
    ) -> None:
        """Change a schedule's definition (``columns``, checked by the caller): its next
        tick is ``next_fire_at``, and ticks of the new timing up to now never fire. An
        active schedule with no tick left ends; an ended one with ticks again is active.
        A taken name raises ``ValueError``."""
        now = self.db_now()
        with self._write() as conn:
            row = conn.execute(
                select(schedules.c.state, schedules.c.name).where(schedules.c.id == id)
            ).first()
            if row is None:
                raise ScheduleNotFound(f"no schedule with the id {id!r}")
            if columns.get("name", row.name) != row.name:
                taken = conn.execute(
                    select(schedules.c.id).where(schedules.c.name == columns["name"])
                ).first()
                if taken is not None:
                    raise ValueError(f"a schedule named {columns['name']!r} exists")
            values = {**columns, "resumed_at": now, "held_tick_at": None}
            if row.state != PAUSED_STATE:
                values |= (
                    _moved(next_fire_at)
                    if next_fire_at is None
                    else {
                        "next_fire_at": next_fire_at,
                        "state": ACTIVE_STATE,
                    }
                )
            conn.execute(update(schedules).where(schedules.c.id == id).values(**values))

    @retrying
    def delete_schedule(self, id: str) -> None:
        """Remove a schedule and its ticks (its runs stay, naming it)."""
        with self._write() as conn:
            conn.execute(delete(schedule_ticks).where(schedule_ticks.c.schedule_id == id))
            conn.execute(delete(schedules).where(schedules.c.id == id))

    def due_schedules(
        self, at: datetime | None = None
    ) -> tuple[list[dict[str, Any]], datetime | None]:
        """Active schedules whose next tick is due, and the instant they were judged at:
        ``at``, else now on the database's clock, read in the same query (every worker
        asks about once a second). The instant is None when nothing is due."""
        active = schedules.c.state == ACTIVE_STATE
        server = dialects.has_server_clock(self.engine.dialect.name)
        now = at if at is not None or server else utcnow()
        if now is None:
            clock = dialects.server_now(UTCDateTime)
            query = select(schedules, clock.label("db_now")).where(
                active, schedules.c.next_fire_at <= func.now()
            )
        else:
            query = select(schedules).where(active, schedules.c.next_fire_at <= now)
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query).all()]
        for row in rows:
            now = row.pop("db_now", now)
        return rows, now

    def seconds_to_next_fire(self) -> float | None:
        """Seconds until the soonest active schedule is due, on the database's clock (so
        a worker can wake right then); None when no schedule is active."""
        server = dialects.has_server_clock(self.engine.dialect.name)
        now = dialects.server_now(UTCDateTime) if server else None
        columns = [func.min(schedules.c.next_fire_at).label("soonest")]
        if now is not None:
            columns.append(now.label("db_now"))
        query = select(*columns).where(schedules.c.state == ACTIVE_STATE)
        with self.engine.connect() as conn:
            row = conn.execute(query).one()
        if row.soonest is None:
            return None
        soonest = row.soonest if row.soonest.tzinfo else row.soonest.replace(tzinfo=UTC)
        return (soonest - (row.db_now if now is not None else utcnow())).total_seconds()

    def has_active_schedules(self) -> bool:
        """Whether any schedule is active (the embedded default's worker stays for it)."""
        query = select(schedules.c.id).where(schedules.c.state == ACTIVE_STATE).limit(1)
        with self.engine.connect() as conn:
            return conn.execute(query).first() is not None

    def run_is_active(self, execution_id: str | None) -> bool:
        """Whether a run is queued, retrying or running (a schedule's overlap check)."""
        if execution_id is None:
            return False
        query = select(executions.c.status).where(executions.c.id == execution_id)
        with self.engine.connect() as conn:
            status = conn.execute(query).scalar_one_or_none()
        return status is not None and ExecutionStatus(status) not in FINAL

    @retrying
    def fire_tick(
        self,
        schedule: dict[str, Any],
        tick_at: datetime,
        run: dict[str, Any] | None,
        *,
        next_fire_at: datetime | None,
        worker: str,
        missed: int = 0,
        reason: str | None = None,
        error: str | None = None,
        exclusive: bool = False,
    ) -> bool:
        """Handle one tick, exactly once: with ``run`` (an execution's columns), insert
        the tick and its queued run; without, record the tick as skipped for ``reason``
        (and ``error``, when the schedule cannot run, for its listing).
        Either way the schedule moves on to ``next_fire_at`` (None: it has ended). False
        when another worker had handled this tick, or holds the schedule right now, or
        (``exclusive``: no overlap allowed) fired a run since ``schedule`` was read."""
        now = utcnow()
        tick = {
            "schedule_id": schedule["id"],
            "tick_at": tick_at,
            "outcome": "fired" if run is not None else "skipped",
            "execution_id": run["id"] if run is not None else None,
            "reason": reason,
            "missed": missed,
            "worker": worker,
            "at": now,
        }
        with self._write() as conn:
            handled = _take(conn, schedule["id"])
            if handled is None or (handled[0] is not None and handled[0] >= tick_at):
                # Deleted, or already past this tick: a worker that stalled with an old row
                # does not fire a tick whose row has since been forgotten.
                return False
            if exclusive and run is not None and handled[1] != schedule["last_execution_id"]:
                # Another worker fired a run since this one judged the overlap (on the
                # row it read before): that judgment is stale; the next look redoes it.
                return False
            # RETURNING says whether this insert made the row (rowcount is -1 on psycopg).
            inserted = conn.execute(
                dialect_insert(conn, schedule_ticks)
                .values(**tick)
                .on_conflict_do_nothing()
                .returning(schedule_ticks.c.tick_at)
            ).first()
            if inserted is None:
                return False  # another worker handled this tick: nothing was written
            changes = _moved(next_fire_at) | {"last_tick_at": tick_at, "held_tick_at": None}
            if run is not None:
                conn.execute(executions.insert().values(**run, heartbeat_at=now))
                changes.update(
                    last_execution_id=run["id"],
                    last_error=None,
                    fired=schedules.c.fired + 1,
                    skipped=schedules.c.skipped + missed,
                )
            else:
                changes["skipped"] = schedules.c.skipped + 1 + missed
                if error is not None:
                    changes["last_error"] = error
            conn.execute(
                update(schedules)
                .where(
                    schedules.c.id == schedule["id"],
                    or_(schedules.c.last_tick_at.is_(None), schedules.c.last_tick_at < tick_at),
                )
                .values(**changes)
            )
        return True

    @retrying
    def move_schedule(
        self,
        id: str,
        next_fire_at: datetime | None,
        *,
        passed: datetime | None = None,
        error: str | None = None,
    ) -> None:
        """Move a schedule on without firing: to ``next_fire_at`` (None: it has ended),
        ticks up to ``passed`` handled, ``error`` kept for its listing. Nothing when
        another worker holds it right now (it moves the schedule itself)."""
        changes = _moved(next_fire_at)
        if passed is not None:
            changes["last_tick_at"] = passed
        if error is not None:
            changes["last_error"] = error
        with self._write() as conn:
            handled = _take(conn, id)
            if handled is None or (
                passed is not None and handled[0] is not None and handled[0] >= passed
            ):
                return
            condition = [schedules.c.id == id, schedules.c.state == ACTIVE_STATE]
            conn.execute(update(schedules).where(*condition).values(**changes))

    @retrying
    def hold_tick(self, id: str, tick_at: datetime) -> None:
        """Keep ``tick_at`` waiting for the schedule's previous run to end (``overlap=
        "queue"``): it was on time, so it fires then whatever the catch-up policy."""
        with self._write() as conn:
            if _take(conn, id) is None:
                return
            conn.execute(
                update(schedules)
                .where(
                    schedules.c.id == id,
                    or_(schedules.c.held_tick_at.is_(None), schedules.c.held_tick_at < tick_at),
                )
                .values(held_tick_at=tick_at)
            )

    @retrying
    def forget_ticks(self, older_than: timedelta = KEEP_TICKS) -> int:
        """Remove the rows of ticks older than ``older_than``; how many went."""
        cutoff = self.db_now() - older_than
        with self._write() as conn:
            gone = conn.execute(delete(schedule_ticks).where(schedule_ticks.c.tick_at < cutoff))
        return int(gone.rowcount or 0)

    def schedule_ticks(self, id: str, limit: int = 100) -> list[dict[str, Any]]:
        """A schedule's newest ticks handled, fired or skipped."""
        query = (
            select(schedule_ticks)
            .where(schedule_ticks.c.schedule_id == id)
            .order_by(schedule_ticks.c.tick_at.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query).all()]


def _take(conn: Any, id: str) -> Any:
    """Lock a schedule's row for this transaction and read its newest tick handled; None
    when it is gone or another worker holds it. On PostgreSQL a held row is skipped, not
    waited for (``SKIP LOCKED``), so a stalled worker blocks no other, and a transaction
    left idle is ended by the server (``dialects.STALL_TIMEOUT``: the worker, back, finds
    the tick fired and writes nothing); SQLite has one writer at a time
    anyway (``BEGIN IMMEDIATE``)."""
    dialects.guard_stall(conn)
    query = (
        select(schedules.c.last_tick_at, schedules.c.last_execution_id)
        .where(schedules.c.id == id)
        .with_for_update(skip_locked=True)
    )
    return conn.execute(query).first()


def _moved(next_fire_at: datetime | None) -> dict[str, Any]:
    """The changes moving a schedule to ``next_fire_at``: None ends it."""
    if next_fire_at is None:
        return {"next_fire_at": None, "state": ENDED_STATE}
    return {"next_fire_at": next_fire_at}
