"""The store's state machine of a run: queued → running → final (or retrying, lost,
cancelled), each step one short transaction, written so that a retried step is harmless."""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    DateTime,
    bindparam,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from jupyter_scriptrun.exceptions import ExecutionConflict, ExecutionNotFound
from jupyter_scriptrun.models import ExecutionRecord
from jupyter_scriptrun.status import PENDING, ExecutionStatus
from jupyter_scriptrun.store import dialects
from jupyter_scriptrun.store.engine import Database, dialect_insert, retrying, utcnow
from jupyter_scriptrun.store.tables import (
    attempts,
    executions,
    output_chunks,
    script_versions,
    scripts,
)

log = logging.getLogger(__name__)

# Statements built once, their SET clause taken from the parameters' keys at execution:
# building an UPDATE's values per call coerces every value anew (a fifth of a finish's CPU).
_RUNNING_ATTEMPT = update(executions).where(
    executions.c.id == bindparam("b_id"),
    executions.c.attempt == bindparam("b_attempt"),
    executions.c.status == ExecutionStatus.RUNNING.value,
)
_ATTEMPT_ROW = update(attempts).where(
    attempts.c.execution_id == bindparam("b_id"), attempts.c.attempt == bindparam("b_attempt")
)
_RUN = update(executions).where(executions.c.id == bindparam("b_id"))
_NEW_RUN = insert(executions)
_STOP_ASKED = select(executions.c.cancel_requested).where(
    executions.c.id == bindparam("b_id"),
    executions.c.attempt == bindparam("b_attempt"),
    executions.c.status == ExecutionStatus.RUNNING.value,
)
_READ_RUN_FOR_UPDATE = (
    select(executions).where(executions.c.id == bindparam("b_id")).with_for_update()
)


@functools.cache
def _beating_now(stmt: Any) -> Any:
    """``stmt`` with ``heartbeat_at`` set to the database's ``now()``, built once per
    statement."""
    return stmt.values(heartbeat_at=func.now(type_=DateTime(timezone=True)))


def _execute_beating(conn: Connection, clock: Any, stmt: Any, params: dict[str, Any]) -> Any:
    """Execute ``stmt`` (built once, its SET taken from ``params``) with ``heartbeat_at``
    at ``clock``: a value, or the database's own ``now()`` (see ``Database._clock``)."""
    if isinstance(clock, datetime):
        return conn.execute(stmt, {**params, "heartbeat_at": clock})
    return conn.execute(_beating_now(stmt), params)


class RunStates(Database):
    """Writes of the run's life: scripts' ids, create, claim, beat, finish, cancel, lost."""

    _kept: set[str]
    """Script versions this process has stored (``keep_version``)."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        super().__init__(url, migrate=migrate)
        self._kept = set()

    @retrying
    def ensure_script(self, name: str, content_hash: str | None) -> int:
        """The stable integer id of a script name, registering it on first sight."""
        now = utcnow()
        with self._write() as conn:
            row = conn.execute(select(scripts.c.id).where(scripts.c.name == name)).first()
            if row is not None:
                conn.execute(
                    update(scripts)
                    .where(scripts.c.id == row.id)
                    .values(last_seen_at=now, content_hash=content_hash)
                )
                return int(row.id)
            return _register(conn, {name: content_hash})[name]

    @retrying
    def ensure_scripts(self, hashes: dict[str, str | None]) -> dict[str, int]:
        """Register the scripts not yet known (name → content hash), in name order, and
        return every registered name's id: ids are given at discovery and never change."""
        known = self.script_ids()
        if set(hashes) <= set(known):
            return known  # the usual case: a read, no write lock
        with self._write() as conn:
            return _register(conn, hashes)

    def kept(self, content_hash: str) -> bool:
        """Whether this process already stored that version (no query)."""
        return content_hash in self._kept

    def keep_version(self, content_hash: str, script: str, file_name: str, source: bytes) -> None:
        """Keep a script version's source by its content hash (once: later calls for a
        hash this process stored are free)."""
        if content_hash in self._kept:
            return
        with self._write() as conn:
            conn.execute(
                dialect_insert(conn, script_versions).on_conflict_do_nothing(),
                {
                    "content_hash": content_hash,
                    "script": script,
                    "file_name": file_name,
                    "source": source,
                    "stored_at": utcnow(),
                },
            )
        self._kept.add(content_hash)

    def script_ids(self) -> dict[str, int]:
        """Registered names and their ids."""
        with self.engine.connect() as conn:
            return {r.name: r.id for r in conn.execute(select(scripts.c.name, scripts.c.id))}

    # -- the life of an execution ---------------------------------------------

    def create(
        self,
        *,
        id: str,
        script: str,
        script_id: int | None,
        parameters: dict[str, Any],
        page_context: str,
        queue: str | None,
        timeout_s: float | None,
        content_hash: str | None,
        idempotency_key: str | None = None,
        source: str | None = None,
        language: str | None = None,
        **more: Any,
    ) -> ExecutionRecord:
        """Insert a ``queued`` execution (before anything is sent to a broker); returns
        its record as inserted.

        ``source``/``language`` carry an ad-hoc script's text for the worker; ``more``:
        other columns (``notify``, ``notify_on``, ``schedule_id``).

        Raises:
            ExecutionConflict: ``idempotency_key`` was used before (its ``execution_id``
                names that run).
        """
        now = utcnow()
        values = {
            "id": id,
            "script": script,
            "script_id": script_id,
            "status": ExecutionStatus.QUEUED.value,
            "page_context": page_context,
            "parameters": parameters,
            "queue": queue,
            "timeout_s": timeout_s,
            "queued_at": now,
            # For a queued run, heartbeat_at is when its message was last sent.
            "heartbeat_at": now,
            "attempt": 0,
            "content_hash": content_hash,
            "cancel_requested": False,
            "idempotency_key": idempotency_key,
            "source": source,
            "language": language,
            **more,
        }
        try:
            self._insert_execution(**values)  # heartbeat_at: the database's clock, below
            return cast(ExecutionRecord, {**dict.fromkeys(executions.c.keys()), **values})
        except IntegrityError:
            if idempotency_key is None:
                raise
            with self.engine.connect() as conn:
                existing = conn.execute(
                    select(executions.c.id).where(executions.c.idempotency_key == idempotency_key)
                ).scalar()
            if existing is None:
                raise
            raise ExecutionConflict(
                f"idempotency key {idempotency_key!r} was already used by execution {existing}",
                execution_id=existing,
            ) from None

    @retrying
    def _insert_execution(self, **values: Any) -> None:
        with self._write() as conn:
            _execute_beating(conn, self._clock(conn), _NEW_RUN, values)

    @retrying
    def fail_pending(self, id: str, error_type: str, message: str) -> None:
        """Mark a pending run that could not be (re)queued as failed, keeping the reason."""
        now = utcnow()
        with self._write() as conn:
            conn.execute(
                update(executions)
                .where(executions.c.id == id, executions.c.status.in_([s.value for s in PENDING]))
                .values(
                    status=ExecutionStatus.FAILED.value,
                    finished_at=now,
                    error_type=error_type,
                    message=message,
                )
            )

    def claim(self, id: str, attempt: int, worker: str) -> ExecutionRecord | None:
        """Move a pending execution to ``running`` as ``attempt``; None when it is not
        this delivery's to run (already running, final, cancelled, or another attempt)."""
        # The claim's instant, fixed before any retry, tells this claim's own commit (whose
        # answer a dropped connection lost) from another delivery's.
        return self._claim(id, attempt, worker, utcnow())

    @retrying
    def _claim(self, id: str, attempt: int, worker: str, now: datetime) -> ExecutionRecord | None:
        with self._write() as conn:
            row = conn.execute(_READ_RUN_FOR_UPDATE, {"b_id": id}).first()
            if row is None:
                return None
            r = row._mapping
            mine = (ExecutionStatus.RUNNING.value, attempt, worker, now)
            if (r["status"], r["attempt"], r["worker"], r["started_at"]) == mine:
                return cast(ExecutionRecord, dict(r))  # this very claim, before the retry
            if r["status"] not in {s.value for s in PENDING} or r["attempt"] != attempt - 1:
                return None
            if r["cancel_requested"]:
                conn.execute(
                    update(executions)
                    .where(executions.c.id == id)
                    .values(
                        status=ExecutionStatus.CANCELLED.value,
                        finished_at=now,
                        error_type="Cancelled",
                        message="cancelled before it started",
                    )
                )
                return None
            values: dict[str, Any] = {
                "status": ExecutionStatus.RUNNING.value,
                "attempt": attempt,
                "worker": worker,
                "started_at": now,
                # The previous attempt's end (WorkerLost, …) is in its own row now.
                "error_type": None,
                "message": None,
                "progress": None,
            }
            if attempt == 1:
                values["queue_s"] = (now - r["queued_at"]).total_seconds()
            _execute_beating(conn, self._clock(conn), _RUN, {**values, "b_id": id})
            values["heartbeat_at"] = now
            conn.execute(
                insert(attempts),
                {
                    "execution_id": id,
                    "attempt": attempt,
                    "status": ExecutionStatus.RUNNING.value,
                    "worker": worker,
                    "started_at": now,
                },
            )
            return cast(ExecutionRecord, {**r, **values})

    @retrying
    def record_notified(self, id: str, outcome: dict[str, Any]) -> None:
        """Keep how a run's notification went (``notify.Notifier``)."""
        with self._write() as conn:
            conn.execute(update(executions).where(executions.c.id == id).values(notified=outcome))

    @retrying
    def finish(
        self,
        id: str,
        attempt: int,
        status: ExecutionStatus,
        *,
        record: dict[str, Any],
        output: dict[str, Any],
        chunks: Sequence[tuple[int, str, str]] = (),
        ended_as: ExecutionStatus | None = None,
    ) -> bool:
        """Record the end of an attempt; ``status`` is final, or ``retrying``.

        ``record`` holds the metric and error columns shared by both tables, ``output``
        the attempt's captured streams, result and traceback; ``chunks`` the live output
        not yet written (see :meth:`tick`), written in the same transaction. ``ended_as``
        is the attempt's own end when ``status`` is ``retrying``.

        Returns False when the run had moved on without this attempt (declared lost,
        maybe run again): then only the attempt's own row is written, with its own end,
        and the caller must not queue a retry (the reaper did what the run needed).
        """
        now = utcnow()
        with self._write() as conn:
            self._insert_chunks(conn, id, attempt, chunks, now)
            values = {**record, "status": status.value, "heartbeat_at": None}
            if status.is_final:
                values["finished_at"] = now
            keys = {"b_id": id, "b_attempt": attempt}
            res = conn.execute(_RUNNING_ATTEMPT, {**values, **keys})
            own = {**record, **output, "status": status.value, "finished_at": now}
            counted = res.rowcount > 0 or self._ended_as(conn, id, attempt, status)
            if not counted:
                # Declared lost (and maybe run again) meanwhile: this attempt's end is
                # recorded in its own row, truthfully, but it no longer speaks for the run.
                log.warning(
                    "execution %s attempt %s ended after the run had moved on; recorded in "
                    "its attempt row only",
                    id,
                    attempt,
                )
                own_end = ended_as or status
                own["status"] = own_end.value
                own["error_type"] = "Superseded"
                own["message"] = (
                    f"ended {own_end.value} after it had been declared lost; the run had "
                    "moved on, so this result does not count"
                    + (f" ({record['message']})" if record.get("message") else "")
                )
            conn.execute(_ATTEMPT_ROW, {**own, **keys})
        return counted

    def tick(
        self,
        id: str,
        attempt: int,
        chunks: Sequence[tuple[int, str, str]],
        heartbeat: bool,
        progress: dict[str, Any] | None = None,
    ) -> bool:
        """A running attempt's meeting with the store, in one transaction: write its new
        live output and latest ``progress``, renew its lease (when ``heartbeat``), and say
        whether it must stop (a cancel was asked, or the run moved on without it). Not
        retried: the next tick tries again."""
        keys = {"b_id": id, "b_attempt": attempt}
        if chunks or heartbeat or progress is not None:
            with self._write() as conn:
                self._insert_chunks(conn, id, attempt, chunks, utcnow())
                if heartbeat:
                    values = {**keys, "progress": progress} if progress is not None else keys
                    _execute_beating(conn, self._clock(conn), _RUNNING_ATTEMPT, values)
                elif progress is not None:
                    conn.execute(_RUNNING_ATTEMPT, {**keys, "progress": progress})
                row = conn.execute(_STOP_ASKED, keys).first()
        else:
            with self.engine.connect() as conn:
                row = conn.execute(_STOP_ASKED, keys).first()
        return row is None or bool(row.cancel_requested)

    @staticmethod
    def _ended_as(conn: Connection, id: str, attempt: int, status: ExecutionStatus) -> bool:
        """Whether the run already shows this attempt's end (a retried ``finish`` whose
        first commit went through), rather than a run that moved on without it."""
        row = conn.execute(
            select(executions.c.attempt, executions.c.status).where(executions.c.id == id)
        ).first()
        return row is not None and (row.attempt, row.status) == (attempt, status.value)

    @staticmethod
    def _insert_chunks(
        conn: Connection,
        id: str,
        attempt: int,
        chunks: Sequence[tuple[int, str, str]],
        now: datetime,
    ) -> None:
        if chunks:
            # Idempotent: a retried write after a lost commit answer repeats no chunk.
            conn.execute(
                dialect_insert(conn, output_chunks).on_conflict_do_nothing(),
                [
                    {
                        "execution_id": id,
                        "attempt": attempt,
                        "seq": seq,
                        "stream": stream,
                        "text": text,
                        "at": now,
                    }
                    for seq, stream, text in chunks
                ],
            )

    @retrying
    def cancel_pending(
        self, reason: str, *, script: str | None = None, queue: str | None = None
    ) -> list[str]:
        """Cancel every run not started yet (queued, or waiting for a retry), only those
        of ``script`` and on ``queue`` when given; ``reason`` is their message. Their
        messages may still be in the broker: a worker's claim refuses them. Returns the
        ids cancelled, in one statement (a run queued meanwhile is in it or untouched)."""
        where: list[ColumnElement[bool]] = [executions.c.status.in_([s.value for s in PENDING])]
        if script is not None:
            where.append(executions.c.script == script)
        if queue is not None:
            where.append(executions.c.queue == queue)
        values = {
            "status": ExecutionStatus.CANCELLED.value,
            "cancel_requested": True,
            "finished_at": utcnow(),
            "error_type": "Cancelled",
            "message": reason,
        }
        with self._write() as conn:
            rows = conn.execute(
                update(executions).where(*where).values(**values).returning(executions.c.id)
            )
            return [row.id for row in rows]

    @retrying
    def request_cancel(
        self, id: str, reason: str = "cancelled before it started"
    ) -> ExecutionStatus:
        """Cancel: a pending run ends at once (``reason`` is its message), a running one
        is flagged for its worker.

        Raises:
            ExecutionConflict: the run already ended (other than by cancellation).
        """
        now = utcnow()
        with self._write() as conn:
            row = conn.execute(
                select(executions.c.status).where(executions.c.id == id).with_for_update()
            ).first()
            if row is None:
                raise ExecutionNotFound(f"no execution {id!r}")
            status = ExecutionStatus(row.status)
            if status is ExecutionStatus.CANCELLED:
                return status
            if status.is_final:
                raise ExecutionConflict(f"execution {id} already ended: {status.value}")
            values: dict[str, Any] = {"cancel_requested": True}
            if status in PENDING:
                values.update(
                    status=ExecutionStatus.CANCELLED.value,
                    finished_at=now,
                    error_type="Cancelled",
                    message=reason,
                )
            conn.execute(update(executions).where(executions.c.id == id).values(**values))
            return ExecutionStatus(values.get("status", status.value))

    @retrying
    def stale_running(self, lost_after_s: float) -> list[ExecutionRecord]:
        """Running executions whose heartbeat stopped ``lost_after_s`` ago or more."""
        with self.engine.connect() as conn:
            limit = self._clock(conn) - timedelta(seconds=lost_after_s)
            rows = conn.execute(select(executions).where(*_silent(ExecutionStatus.RUNNING, limit)))
            return [cast(ExecutionRecord, dict(r._mapping)) for r in rows]

    @retrying
    def unclaimed(self, sent_before_s: float, limit: int = 1000) -> list[dict[str, Any]]:
        """Queued runs whose message was sent ``sent_before_s`` ago or more and that no
        worker has claimed: their message may have been lost (a broker restarted without
        persistence). Marks them as sent again now, so each is re-sent once per period."""
        with self._write() as conn:
            now = self._clock(conn)
            cutoff = now - timedelta(seconds=sent_before_s)
            rows = conn.execute(
                select(executions.c.id, executions.c.queue, executions.c.script)
                .where(*_silent(ExecutionStatus.QUEUED, cutoff))
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
            if rows:
                conn.execute(
                    update(executions)
                    .where(executions.c.id.in_([r.id for r in rows]))
                    .values(heartbeat_at=now)
                )
        return [dict(r._mapping) for r in rows]

    @retrying
    def note_pending(self, ids: Sequence[str], message: str) -> None:
        """Say in still-queued runs' records why they wait (e.g. no worker consumes
        their queue); the run's own end overwrites it."""
        with self._write() as conn:
            conn.execute(
                update(executions)
                .where(
                    executions.c.id.in_(list(ids)),
                    executions.c.status == ExecutionStatus.QUEUED.value,
                )
                .values(message=message)
            )

    @retrying
    def mark_lost(self, id: str, attempt: int, retry: bool, lost_after_s: float) -> bool:
        """Declare a silent running attempt lost: pending again (``retry``) or final.

        A cancel request turns it into ``cancelled``. Returns False when the run moved on
        in the meantime (its heartbeat came back, or it finished).
        """
        now = utcnow()
        with self._write() as conn:
            limit = self._clock(conn) - timedelta(seconds=lost_after_s)
            row = conn.execute(
                select(executions.c.cancel_requested, executions.c.worker)
                .where(
                    executions.c.id == id,
                    executions.c.attempt == attempt,
                    *_silent(ExecutionStatus.RUNNING, limit),
                )
                .with_for_update()
            ).first()
            if row is None:
                return False
            cancelled = bool(row.cancel_requested)
            status = (
                ExecutionStatus.CANCELLED
                if cancelled
                else ExecutionStatus.RETRYING
                if retry
                else ExecutionStatus.LOST
            )
            message = (
                f"worker {row.worker} stopped responding (no heartbeat for {lost_after_s:g} s)"
            )
            conn.execute(
                update(attempts)
                .where(attempts.c.execution_id == id, attempts.c.attempt == attempt)
                .values(
                    status=ExecutionStatus.LOST.value,
                    finished_at=now,
                    error_type="WorkerLost",
                    message=message,
                )
            )
            values: dict[str, Any] = {
                "status": status.value,
                "heartbeat_at": None,
                "error_type": "WorkerLost",
                "message": message,
            }
            if status.is_final:
                values["finished_at"] = now
            conn.execute(update(executions).where(executions.c.id == id).values(**values))
            return True


def _silent(status: ExecutionStatus, since: datetime) -> tuple[Any, Any]:
    """Conditions: in ``status`` with no heartbeat (running) or send (queued) since."""
    return executions.c.status == status.value, executions.c.heartbeat_at < since


FIXED_IDS = {"example_script": 1, "print_test_script": 2}
"""The seed's ids for its examples (its curl examples say ``"script_id": 1``): theirs
whenever free; every other script takes the next id above them."""


def _register(conn: Connection, hashes: dict[str, str | None]) -> dict[str, int]:
    """Give each name not yet registered its id (in name order), in the caller's write
    transaction; every registered name's id. Ids are chosen here, not by the database's
    sequence, so that the seed's ids can be kept; PostgreSQL's writers take turns by an
    advisory lock (SQLite's write transaction already holds the database)."""
    dialects.take_turns(conn, 734912)
    known = {r.name: int(r.id) for r in conn.execute(select(scripts.c.name, scripts.c.id))}
    used = set(known.values())
    next_id = max(used | set(FIXED_IDS.values())) + 1
    rows, now = [], utcnow()
    for name in sorted(set(hashes) - set(known)):
        if FIXED_IDS.get(name) not in (None, *used):
            known[name] = FIXED_IDS[name]
        else:
            known[name], next_id = next_id, next_id + 1
        used.add(known[name])
        times = {"first_seen_at": now, "last_seen_at": now}
        rows.append({"id": known[name], "name": name, "content_hash": hashes[name], **times})
    if rows:
        conn.execute(insert(scripts), rows)
    return known
