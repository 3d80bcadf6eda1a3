"""The store's tables (SQLAlchemy Core); Alembic migrations in ``migrations/`` create them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.types import TypeDecorator

from jupyter_scriptrun.store import dialects

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class JSONText(TypeDecorator[Any]):
    """A JSON value stored as compact UTF-8 text, encoded on write and decoded on read.

    Text rather than the JSON type: the history's bulk path reads the text as it is and
    parses a whole column at once (see ``frames``), and the columns stay plain TEXT on
    both databases (no migration).
    """

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        if value is None:
            return None
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        return None if value is None else json.loads(value)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware (SQLite keeps none)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use UTC-aware datetimes")
        value = value.astimezone(UTC)
        return value if dialects.keeps_zones(dialect.name) else value.replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


scripts = Table(
    "scripts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("content_hash", String(80)),
    Column("first_seen_at", UTCDateTime, nullable=False),
    Column("last_seen_at", UTCDateTime, nullable=False),
)

executions = Table(
    "executions",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("script", String(128), nullable=False),
    Column("script_id", Integer, ForeignKey("scripts.id")),
    Column("status", String(16), nullable=False),
    Column("page_context", String(1024), nullable=False, default=""),
    Column("parameters", JSONText, nullable=False, default={}),
    Column("queue", String(255)),
    Column("timeout_s", Float),
    Column("queued_at", UTCDateTime, nullable=False),
    Column("started_at", UTCDateTime),
    Column("finished_at", UTCDateTime),
    Column("queue_s", Float),
    Column("duration_s", Float),
    Column("cpu_user_s", Float),
    Column("cpu_system_s", Float),
    Column("peak_rss_mb", Float),
    Column("exit_code", Integer),
    Column("attempt", Integer, nullable=False, default=0),
    Column("worker", String(255)),
    Column("error_type", String(255)),
    Column("message", Text),
    Column("content_hash", String(80)),
    Column("heartbeat_at", UTCDateTime),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("idempotency_key", String(255)),
    Column("source", Text),
    Column("language", String(32)),
    Column("progress", JSONText),
    Column("schedule_id", String(32)),
    Column("scheduled_for", UTCDateTime),
    Column("notify", JSONText),
    Column("notify_on", JSONText),
    Column("notified", JSONText),
    Index(None, "status"),
    Index(None, "script", "queued_at"),
    Index(None, "idempotency_key", unique=True),
)
# The history's order (newest first, ties by id) straight from an index: reading a million
# runs in that order costs no sort, and slices of it are cut on queued_at (history.py).
Index("ix_executions_newest_first", executions.c.queued_at.desc(), executions.c.id)
# The metrics read the runs that ended since their last scrape (store/aggregates.py).
Index("ix_executions_finished_at", executions.c.finished_at)
# A schedule's runs (Schedule.runs(), the panel's Schedules tab).
Index("ix_executions_schedule_id", executions.c.schedule_id)


def _execution_key() -> Column[str]:
    """The execution a row belongs to: part of the primary key, deleted with it."""
    return Column(
        "execution_id",
        String(32),
        ForeignKey("executions.id", ondelete="CASCADE"),
        primary_key=True,
    )


attempts = Table(
    "attempts",
    metadata,
    _execution_key(),
    Column("attempt", Integer, primary_key=True),
    Column("status", String(16), nullable=False),
    Column("worker", String(255)),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    Column("duration_s", Float),
    Column("cpu_user_s", Float),
    Column("cpu_system_s", Float),
    Column("peak_rss_mb", Float),
    Column("exit_code", Integer),
    Column("error_type", String(255)),
    Column("message", Text),
    Column("content_hash", String(80)),
    Column("stdout", Text),
    Column("stderr", Text),
    Column("stdout_bytes", BigInteger),
    Column("stderr_bytes", BigInteger),
    Column("stdout_truncated", Boolean),
    Column("stderr_truncated", Boolean),
    Column("traceback", Text),
    Column("result", JSONText),
    Column("data", JSONText),
    Column("progress", JSONText),
)

script_versions = Table(
    "script_versions",
    metadata,
    Column("content_hash", String(80), primary_key=True),
    Column("script", String(128), nullable=False),
    Column("file_name", String(255), nullable=False),
    Column("source", LargeBinary, nullable=False),
    Column("stored_at", UTCDateTime, nullable=False),
)
"""Every submitted version of a registered script, by content hash: what a run names is
what any worker runs, whatever its own folder holds (see ``Executor._script``)."""

pruned_totals = Table(
    "pruned_totals",
    metadata,
    Column("script", String(128), primary_key=True),
    Column("status", String(16), primary_key=True),
    Column("runs", BigInteger, nullable=False),
)
"""Runs removed by ``prune``, by script and status: counts over all time stay monotonic."""

output_chunks = Table(
    "output_chunks",
    metadata,
    _execution_key(),
    Column("attempt", Integer, primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("stream", String(8), nullable=False),
    Column("text", Text, nullable=False),
    Column("at", UTCDateTime, nullable=False),
)
"""Output as it arrives, for live views (``logs?offset=``); the attempt row keeps the
final capped streams."""

run_files = Table(
    "run_files",
    metadata,
    _execution_key(),
    Column("name", String(1024), primary_key=True),
    Column("attempt", Integer, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("media_type", String(255), nullable=False),
    Column("sha256", String(64)),
    Column("note", Text),
    Column("location", Text),
    Column("created_at", UTCDateTime, nullable=False),
)
"""The files a run left in its output folder (those of its last attempt): kept (``note``
None; content in ``file_chunks``, or at ``location`` in object storage) or listed with
why not (a link, over a limit)."""

file_chunks = Table(
    "file_chunks",
    metadata,
    _execution_key(),
    Column("name", String(1024), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("data", LargeBinary, nullable=False),
)
"""A kept file's bytes in the store, in pieces of ``defaults.FILE_CHUNK_BYTES``: no
side writes or reads a whole file at once."""

schedules = Table(
    "schedules",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("script", String(128), nullable=False),
    Column("parameters", JSONText, nullable=False, default={}),
    Column("content_hash", String(80)),
    Column("cron", String(255)),
    Column("every_s", Float),
    Column("timezone", String(64), nullable=False),
    Column("catchup", String(8), nullable=False),
    Column("overlap", String(8), nullable=False),
    Column("queue", String(255)),
    Column("timeout_s", Float),
    Column("state", String(8), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("resumed_at", UTCDateTime, nullable=False),
    Column("next_fire_at", UTCDateTime, index=True),
    Column("last_tick_at", UTCDateTime),
    Column("last_execution_id", String(32)),
    Column("last_error", Text),
    Column("fired", Integer, nullable=False, default=0),
    Column("skipped", Integer, nullable=False, default=0),
    Column("once_at", UTCDateTime),
    Column("start_at", UTCDateTime),
    Column("end_at", UTCDateTime),
    Column("jitter_s", Float),
    Column("misfire_grace_s", Float),
    Column("held_tick_at", UTCDateTime),
    Column("notify", JSONText),
    Column("notify_on", JSONText),
)
"""Scripts run on cron lines, intervals or once. ``resumed_at``: no tick at or before it
fires; ``next_fire_at``: when workers next look at it (None once it has ended);
``last_tick_at``: the newest tick handled; ``held_tick_at``: the newest tick an
``overlap="queue"`` schedule holds until its previous run ends."""

schedule_ticks = Table(
    "schedule_ticks",
    metadata,
    Column(
        "schedule_id",
        String(32),
        ForeignKey("schedules.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("tick_at", UTCDateTime, primary_key=True),
    Column("outcome", String(8), nullable=False),
    Column("execution_id", String(32)),
    Column("reason", Text),
    Column("missed", Integer, nullable=False, default=0),
    Column("worker", String(255)),
    Column("at", UTCDateTime, nullable=False),
)
"""One row per tick handled, fired or skipped: its primary key is what makes a tick fire
exactly once however many workers race for it (the loser's insert does nothing)."""
