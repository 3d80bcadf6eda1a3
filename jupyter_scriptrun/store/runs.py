"""The store: the one truth about every run, in SQLite or PostgreSQL."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    Connection,
    DateTime,
    Engine,
    String,
    create_engine,
    event,
    func,
    insert,
    select,
    type_coerce,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError

from jupyter_scriptrun.exceptions import ExecutionConflict, ExecutionNotFound
from jupyter_scriptrun.models import HISTORY_COLUMNS, TIME_COLUMNS
from jupyter_scriptrun.status import PENDING, ExecutionStatus
from jupyter_scriptrun.store.tables import (
    attempts,
    executions,
    output_chunks,
    scripts,
)

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Any)

HEAD_REVISION = "0003"
"""The newest migration; a test checks it against the migrations folder."""
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
MIN_ID_PREFIX = 4


RETRY_FOR_S = 60.0
"""How long a store operation keeps retrying while the database is unreachable (a
PostgreSQL restart, a failover): long enough to ride one out, short of the lost timeout."""
TRANSIENT = (
    "connection",
    "server closed",
    "terminating",
    "shutting down",
    "starting up",
    "the database system is",
    "database is locked",
)


PERMANENT = ("does not exist", "authentication failed", "password", "no such table")
"""Errors that waiting will not mend (a wrong URL, credentials), though they arrive as
connection failures."""


def _transient(exc: DBAPIError) -> bool:
    """Whether a database error is worth retrying (the database away, not a bad query)."""
    text = str(exc).lower()
    if any(p in text for p in PERMANENT):
        return False
    return bool(exc.connection_invalidated) or any(t in text for t in TRANSIENT)


def _retrying(method: F) -> F:
    """Retry a store operation while the database is briefly unavailable.

    Each operation is one transaction, so a retry repeats it whole; writes are written to
    be harmless when repeated after a commit whose answer was lost.
    """

    @functools.wraps(method)
    def wrapper(self: Store, *args: Any, **kwargs: Any) -> Any:
        delay = 0.1
        deadline = time.monotonic() + self.retry_for_s
        while True:
            try:
                return method(self, *args, **kwargs)
            except (OperationalError, InterfaceError) as exc:
                if not _transient(exc) or time.monotonic() + delay > deadline:
                    raise
                log.warning(
                    "store: %s failed (%s); retrying in %.1f s",
                    method.__name__,
                    str(exc).splitlines()[0][:200],
                    delay,
                )
                self.engine.dispose()
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    return wrapper  # type: ignore[return-value]


def utcnow() -> datetime:
    """Now, timezone-aware UTC."""
    return datetime.now(UTC)


def new_execution_id() -> str:
    """A fresh execution id (also the Celery task id)."""
    import uuid

    return uuid.uuid4().hex


class Store:
    """Reads and writes execution records. Safe to share between threads.

    Every write is one short transaction; on SQLite writes take the lock up front
    (``BEGIN IMMEDIATE``) and wait for it, so concurrent workers never see
    "database is locked".
    """

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        self.retry_for_s = RETRY_FOR_S
        self.engine = make_engine(url)
        if migrate:
            self.migrate()
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        # Connections are not shared across fork: a child opens its own.
        self.engine.dispose(close=False)

    # -- schema ---------------------------------------------------------------

    def migrate(self) -> None:
        """Bring the schema to the newest revision (cheap when it is already there)."""
        if self.revision() == HEAD_REVISION:
            return
        from alembic import command
        from alembic.config import Config

        with self._migration_lock() as conn:
            cfg = Config()
            cfg.set_main_option("script_location", str(MIGRATIONS))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            conn.commit()
        log.info("store %s migrated to %s", self.engine.url.render_as_string(), HEAD_REVISION)

    def revision(self) -> str | None:
        """The schema revision the database is at (None for an empty database)."""
        try:
            with self.engine.connect() as conn:
                return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
        except OperationalError:
            return None
        except Exception as exc:  # e.g. psycopg's UndefinedTable
            if "alembic_version" in str(exc):
                return None
            raise

    @contextlib.contextmanager
    def _migration_lock(self) -> Iterator[Connection]:
        """Only one process migrates at a time (others wait, then find nothing to do)."""
        with self.engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql("SELECT pg_advisory_lock(734911)")
                conn.commit()
                try:
                    yield conn
                finally:
                    conn.exec_driver_sql("SELECT pg_advisory_unlock(734911)")
                    conn.commit()
            elif conn.dialect.name == "sqlite" and self.engine.url.database:
                with open(f"{self.engine.url.database}.lock", "a") as lock:
                    fcntl.flock(lock, fcntl.LOCK_EX)
                    yield conn
            else:
                yield conn

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.engine.connect().execution_options(scriptrun_write=True) as conn, conn.begin():
            yield conn

    # -- scripts --------------------------------------------------------------

    @_retrying
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
            try:
                with conn.begin_nested():
                    res = conn.execute(
                        insert(scripts).values(
                            name=name,
                            content_hash=content_hash,
                            first_seen_at=now,
                            last_seen_at=now,
                        )
                    )
                return int(res.inserted_primary_key[0])
            except IntegrityError:  # another process registered it a moment ago
                return int(
                    conn.execute(select(scripts.c.id).where(scripts.c.name == name)).scalar_one()
                )

    @_retrying
    def ensure_scripts(self, hashes: dict[str, str | None]) -> dict[str, int]:
        """Register the scripts not yet known (name → content hash), in name order, and
        return every registered name's id: ids are given at discovery and never change."""
        known = self.script_ids()
        if set(hashes) <= set(known):
            return known  # the usual case: a read, no write lock
        with self._write() as conn:
            known = {r.name: r.id for r in conn.execute(select(scripts.c.name, scripts.c.id))}
            new = sorted(set(hashes) - set(known))
            if new:
                now = utcnow()
                conn.execute(
                    _dialect_insert(conn, scripts).on_conflict_do_nothing(),  # a racing peer
                    [
                        {
                            "name": n,
                            "content_hash": hashes[n],
                            "first_seen_at": now,
                            "last_seen_at": now,
                        }
                        for n in new
                    ],
                )
                known = {r.name: r.id for r in conn.execute(select(scripts.c.name, scripts.c.id))}
        return known

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
        parameters: str,
        page_context: str,
        queue: str | None,
        timeout_s: float | None,
        content_hash: str | None,
        idempotency_key: str | None = None,
        source: str | None = None,
        language: str | None = None,
    ) -> None:
        """Insert a ``queued`` execution (before anything is sent to a broker).

        ``source``/``language`` carry an ad-hoc script's text for the worker.

        Raises:
            ExecutionConflict: ``idempotency_key`` was used before (its ``execution_id``
                names that run).
        """
        try:
            self._insert_execution(
                id=id,
                script=script,
                script_id=script_id,
                status=ExecutionStatus.QUEUED.value,
                page_context=page_context,
                parameters=parameters,
                queue=queue,
                timeout_s=timeout_s,
                queued_at=utcnow(),
                # For a queued run, heartbeat_at is when its message was last sent.
                heartbeat_at=utcnow(),
                attempt=0,
                content_hash=content_hash,
                cancel_requested=False,
                idempotency_key=idempotency_key,
                source=source,
                language=language,
            )
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

    @_retrying
    def _insert_execution(self, **values: Any) -> None:
        with self._write() as conn:
            conn.execute(insert(executions).values(**values))

    @_retrying
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

    def claim(self, id: str, attempt: int, worker: str) -> dict[str, Any] | None:
        """Move a pending execution to ``running`` as ``attempt``; None when it is not
        this delivery's to run (already running, final, cancelled, or another attempt)."""
        # The claim's instant, fixed before any retry, tells this claim's own commit (whose
        # answer a dropped connection lost) from another delivery's.
        return self._claim(id, attempt, worker, utcnow())

    @_retrying
    def _claim(self, id: str, attempt: int, worker: str, now: datetime) -> dict[str, Any] | None:
        with self._write() as conn:
            row = conn.execute(
                select(executions).where(executions.c.id == id).with_for_update()
            ).first()
            if row is None:
                return None
            r = row._mapping
            mine = (ExecutionStatus.RUNNING.value, attempt, worker, now)
            if (r["status"], r["attempt"], r["worker"], r["started_at"]) == mine:
                return dict(r)  # committed by this very claim before the retry
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
                "heartbeat_at": now,
                "started_at": now,
            }
            if attempt == 1:
                values["queue_s"] = (now - r["queued_at"]).total_seconds()
            conn.execute(update(executions).where(executions.c.id == id).values(**values))
            conn.execute(
                insert(attempts).values(
                    execution_id=id,
                    attempt=attempt,
                    status=ExecutionStatus.RUNNING.value,
                    worker=worker,
                    started_at=now,
                )
            )
            return {**r, **values}

    def beat(self, id: str, heartbeat: bool) -> bool:
        """Refresh the heartbeat (when ``heartbeat``) and say whether cancel was asked.

        Not retried: it runs every tick of a run, and a run must not stall on it while the
        database is away; the next tick tries again."""
        if heartbeat:
            with self._write() as conn:
                conn.execute(
                    update(executions).where(executions.c.id == id).values(heartbeat_at=utcnow())
                )
        with self.engine.connect() as conn:
            return bool(
                conn.execute(
                    select(executions.c.cancel_requested).where(executions.c.id == id)
                ).scalar()
            )

    @_retrying
    def finish(
        self,
        id: str,
        attempt: int,
        status: ExecutionStatus,
        *,
        record: dict[str, Any],
        output: dict[str, Any],
        chunks: Sequence[tuple[int, str, str]] = (),
    ) -> None:
        """Record the end of an attempt; ``status`` is final, or ``retrying``.

        ``record`` holds the metric and error columns shared by both tables, ``output``
        the attempt's captured streams, result and traceback; ``chunks`` the live output
        not yet written (see :meth:`append_output`), written in the same transaction.
        """
        now = utcnow()
        with self._write() as conn:
            self._insert_chunks(conn, id, attempt, chunks, now)
            conn.execute(
                update(attempts)
                .where(attempts.c.execution_id == id, attempts.c.attempt == attempt)
                .values(status=status.value, finished_at=now, **record, **output)
            )
            values = {**record, "status": status.value, "heartbeat_at": None}
            if status.is_final:
                values["finished_at"] = now
            res = conn.execute(
                update(executions)
                .where(
                    executions.c.id == id,
                    executions.c.attempt == attempt,
                    executions.c.status == ExecutionStatus.RUNNING.value,
                )
                .values(**values)
            )
            if res.rowcount == 0:
                log.warning(
                    "execution %s attempt %s was no longer running when it ended "
                    "(declared lost meanwhile?); its attempt row is kept",
                    id,
                    attempt,
                )

    def append_output(self, id: str, attempt: int, chunks: Sequence[tuple[int, str, str]]) -> None:
        """Add live output: ``(seq, stream, text)`` chunks, ``seq`` counting from 0 per
        attempt (the attempt's single writer, its worker, numbers them)."""
        if chunks:
            with self._write() as conn:
                self._insert_chunks(conn, id, attempt, chunks, utcnow())

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
                _dialect_insert(conn, output_chunks).on_conflict_do_nothing(),
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

    @_retrying
    def output(self, id: str, offset: int = 0, attempt: int | None = None) -> dict[str, Any]:
        """Live output of an attempt (the latest by default) from chunk ``offset`` on.

        Returns ``{"attempt", "chunks": [{"seq", "stream", "text"}], "next_offset"}``;
        pass ``next_offset`` back to read only what is new.
        """
        with self.engine.connect() as conn:
            if attempt is None:
                attempt = conn.execute(
                    select(executions.c.attempt).where(executions.c.id == id)
                ).scalar()
                if attempt is None:
                    raise ExecutionNotFound(f"no execution {id!r}")
            rows = conn.execute(
                select(output_chunks.c.seq, output_chunks.c.stream, output_chunks.c.text)
                .where(
                    output_chunks.c.execution_id == id,
                    output_chunks.c.attempt == attempt,
                    output_chunks.c.seq >= max(0, offset),
                )
                .order_by(output_chunks.c.seq)
            ).all()
        chunks = [{"seq": r.seq, "stream": r.stream, "text": r.text} for r in rows]
        return {
            "attempt": attempt,
            "chunks": chunks,
            "next_offset": chunks[-1]["seq"] + 1 if chunks else max(0, offset),
        }

    @_retrying
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

    @_retrying
    def stale_running(self, lost_after_s: float) -> list[dict[str, Any]]:
        """Running executions whose heartbeat stopped ``lost_after_s`` ago or more."""
        limit = utcnow() - timedelta(seconds=lost_after_s)
        with self.engine.connect() as conn:
            rows = conn.execute(select(executions).where(*_silent(ExecutionStatus.RUNNING, limit)))
            return [dict(r._mapping) for r in rows]

    @_retrying
    def unclaimed(self, sent_before_s: float, limit: int = 1000) -> list[dict[str, Any]]:
        """Queued runs whose message was sent ``sent_before_s`` ago or more and that no
        worker has claimed: their message may have been lost (a broker restarted without
        persistence). Marks them as sent again now, so each is re-sent once per period."""
        now = utcnow()
        cutoff = now - timedelta(seconds=sent_before_s)
        with self._write() as conn:
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

    @_retrying
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

    @_retrying
    def mark_lost(self, id: str, attempt: int, retry: bool, lost_after_s: float) -> bool:
        """Declare a silent running attempt lost: pending again (``retry``) or final.

        A cancel request turns it into ``cancelled``. Returns False when the run moved on
        in the meantime (its heartbeat came back, or it finished).
        """
        now = utcnow()
        limit = now - timedelta(seconds=lost_after_s)
        with self._write() as conn:
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

    # -- reading --------------------------------------------------------------

    @_retrying
    def resolve(self, id_or_prefix: str) -> str:
        """A full execution id from an id or a unique prefix of at least 4 characters."""
        key = str(id_or_prefix).strip().lower()
        if not key or not all(c in "0123456789abcdef" for c in key):
            raise ExecutionNotFound(f"{id_or_prefix!r} is not an execution id")
        with self.engine.connect() as conn:
            if len(key) == 32:
                if conn.execute(select(executions.c.id).where(executions.c.id == key)).first():
                    return key
                raise ExecutionNotFound(f"no execution {key}")
            if len(key) < MIN_ID_PREFIX:
                raise ExecutionNotFound(
                    f"{key!r}: give at least {MIN_ID_PREFIX} characters of the id"
                )
            ids = (
                conn.execute(
                    select(executions.c.id).where(executions.c.id.like(f"{key}%")).limit(2)
                )
                .scalars()
                .all()
            )
        if not ids:
            raise ExecutionNotFound(f"no execution id starts with {key!r}")
        if len(ids) > 1:
            raise ExecutionNotFound(f"{key!r} matches several executions; give more of the id")
        return ids[0]

    @_retrying
    def get(self, id: str) -> dict[str, Any]:
        """One execution's record (the history columns and more)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(executions).where(executions.c.id == id)).first()
        if row is None:
            raise ExecutionNotFound(f"no execution {id!r}")
        return dict(row._mapping)

    @_retrying
    def status(self, id: str) -> ExecutionStatus:
        """The current status of one execution (one narrow query)."""
        with self.engine.connect() as conn:
            value = conn.execute(select(executions.c.status).where(executions.c.id == id)).scalar()
        if value is None:
            raise ExecutionNotFound(f"no execution {id!r}")
        return ExecutionStatus(value)

    @_retrying
    def attempts(self, id: str) -> list[dict[str, Any]]:
        """Every attempt of an execution, oldest first, with output and result."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(attempts).where(attempts.c.execution_id == id).order_by(attempts.c.attempt)
            )
            out = [dict(r._mapping) for r in rows]
        for a in out:
            for key in ("result", "data"):
                a[key] = json.loads(a[key]) if a[key] is not None else None
        return out

    def history_query(
        self,
        *,
        script: str | Sequence[str] | None = None,
        status: str | Sequence[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        page_context: str | None = None,
        limit: int | None = None,
        offset: int = 0,
        raw_times: bool = False,
    ) -> Any:
        """The SELECT behind the history, newest first (for frames and the REST API)."""
        cols = [executions.c[c] for c in HISTORY_COLUMNS]
        if raw_times:
            # Timestamps as the driver gives them (text on SQLite, datetimes on PostgreSQL):
            # a vectorized parse in pandas beats a Python conversion per value by far.
            plain = String() if self.engine.dialect.name == "sqlite" else DateTime(timezone=True)
            cols = [
                type_coerce(c, plain).label(c.name) if c.name in TIME_COLUMNS else c for c in cols
            ]
        conds = _history_conditions(script, status, since, until, page_context)
        query = select(*cols).where(*conds).order_by(*_NEWEST_FIRST)
        if limit is not None:
            query = query.limit(limit)
        if offset:
            query = query.offset(offset)
        return query

    def history_count(self, **filters: Any) -> int:
        """How many runs the history filters match (``limit``/``offset`` not applied)."""
        conds = _history_conditions(**filters)
        with self.engine.connect() as conn:
            return conn.execute(
                select(func.count()).select_from(executions).where(*conds)
            ).scalar_one()

    def history_slices(self, parts: int, rows: int, **filters: Any) -> list[str]:
        """The history query cut into up to ``parts`` consecutive slices, newest first, as
        SQL texts with the values inlined: for readers that run the slices in parallel on
        connections of their own (``columnar``). ``rows`` is ``history_count(**filters)``.

        Slices are cut at ``queued_at`` values, so runs queued at the same instant stay
        together and each slice comes ordered from the database (the history's index).
        """
        queued_at = executions.c.queued_at
        cuts: list[datetime] = []
        if parts > 1 and filters.get("limit") is None and not filters.get("offset"):
            conds = _history_conditions(**filters)
            at = select(queued_at).where(*conds).order_by(queued_at.desc()).limit(1)
            offsets = sorted({rows * k // parts for k in range(1, parts)} - {0})
            with self.engine.connect() as conn:
                cuts = sorted({conn.execute(at.offset(o)).scalar_one() for o in offsets})[::-1]
        base = self.history_query(raw_times=True, **filters)
        slices = []
        for k in range(len(cuts) + 1):
            query = base
            if k < len(cuts):
                query = query.where(queued_at > cuts[k])
            if k > 0:
                query = query.where(queued_at <= cuts[k - 1])
            sql = query.compile(dialect=self.engine.dialect, compile_kwargs={"literal_binds": True})
            slices.append(str(sql))
        return slices

    def history_columns(self, **filters: Any) -> dict[str, list[Any]]:
        """History as columns of driver values (timestamps unparsed): the fast path to a
        DataFrame (see ``frames.history_frame``)."""
        with self.engine.connect() as conn:
            rows = conn.execute(self.history_query(raw_times=True, **filters)).all()
        values = list(zip(*rows, strict=True)) if rows else [() for _ in HISTORY_COLUMNS]
        return {name: list(col) for name, col in zip(HISTORY_COLUMNS, values, strict=True)}

    def history_rows(self, **filters: Any) -> list[dict[str, Any]]:
        """History as a list of dicts (no pandas needed)."""
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(self.history_query(**filters))]

    def count(self, status: str | None = None) -> int:
        """How many executions there are (with that status)."""
        query = select(func.count()).select_from(executions)
        if status:
            query = query.where(executions.c.status == status)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


_NEWEST_FIRST = (executions.c.queued_at.desc(), executions.c.id)


def _history_conditions(
    script: str | Sequence[str] | None = None,
    status: str | Sequence[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    page_context: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[Any]:
    """WHERE conditions of the history filters (``limit``/``offset`` are not conditions)."""
    conds: list[Any] = []
    if script:
        names = [script] if isinstance(script, str) else list(script)
        conds.append(executions.c.script.in_(names))
    if status:
        values = [status] if isinstance(status, str) else list(status)
        conds.append(executions.c.status.in_([ExecutionStatus(v).value for v in values]))
    if since is not None:
        conds.append(executions.c.queued_at >= _aware(since))
    if until is not None:
        conds.append(executions.c.queued_at < _aware(until))
    if page_context is not None:
        conds.append(executions.c.page_context == page_context)
    return conds


def _dialect_insert(conn: Connection, table: Any) -> Any:
    """The dialect's INSERT (for ``on_conflict_do_nothing``)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    return dialect_insert(table)


def _silent(status: ExecutionStatus, since: datetime) -> tuple[Any, Any]:
    """Conditions: in ``status`` with no heartbeat (running) or send (queued) since."""
    return executions.c.status == status.value, executions.c.heartbeat_at < since


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def make_engine(url: str) -> Engine:
    """An engine with the settings each backend needs for many concurrent workers."""
    if url.startswith("sqlite"):
        database = url.split(":///", 1)[1] if ":///" in url else ""
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 60})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # SQLAlchemy then emits BEGIN itself (below), so that writes can take the lock
            # up front: a deferred transaction that upgrades to a writer fails at once.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            immediate = conn.get_execution_options().get("scriptrun_write")
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


_stores: dict[str, Store] = {}


def get_store(url: str) -> Store:
    """A shared Store per URL in this process (engines are costly to build)."""
    store = _stores.get(url)
    if store is None:
        store = _stores[url] = Store(url)
    return store
