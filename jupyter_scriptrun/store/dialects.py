"""What differs between the store's databases, in one place: SQLite (one host, one writer
at a time, the host's clock) and PostgreSQL (a fleet's server, row locks, the server's
clock). Adding a backend is a branch in each function here, its engine settings in
``engine.make_engine``, and the store's tests run on it (they run on both: the contract).
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from typing import Any

from sqlalchemy import DateTime, String, func

SUPPORTED = ("sqlite", "postgresql")
STALL_TIMEOUT = "2s"
"""On PostgreSQL, a locking transaction left idle this long (its worker stopped, frozen or
cut off inside it) is ended by the server: what it held is free for the other workers."""


def check(name: str) -> str:
    """``name`` if the store supports that dialect; ValueError saying which it does."""
    if name not in SUPPORTED:
        raise ValueError(
            f"the store runs on {' or '.join(SUPPORTED)}, not {name!r} "
            "(SCRIPTRUN_DATABASE_URL: sqlite:///path or postgresql+psycopg://…)"
        )
    return name


def keeps_zones(name: str) -> bool:
    """Whether a timestamp column keeps its offset (SQLite's keeps none: UTC is stored
    naive and read back as UTC)."""
    return name == "postgresql"


@contextlib.contextmanager
def migration_lock(conn: Any) -> Iterator[None]:
    """Only one process migrates a database at a time; the others wait, then find nothing
    to do. PostgreSQL: a lock of the migration's own transaction, released by its commit
    (a session lock would stay behind on a pooled server connection, PgBouncer in
    transaction mode, and its unlock could run on another one). SQLite: a lock file
    beside the database (an in-memory one has a single process)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(734911)")
        yield
    elif conn.dialect.name == "sqlite" and conn.engine.url.database not in (None, "", ":memory:"):
        with open(f"{conn.engine.url.database}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield
    else:
        yield


def has_server_clock(name: str) -> bool:
    """Whether times are read on the database server's clock (one clock for every host)."""
    return name == "postgresql"


def server_now(type_: Any = None) -> Any:
    """The server's ``now()`` as an SQL expression (no round trip of its own)."""
    return func.now(type_=type_ if type_ is not None else DateTime(timezone=True))


def insert(name: str, table: Any) -> Any:
    """The dialect's INSERT, which has ``on_conflict_do_nothing``."""
    if check(name) == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


def guard_stall(conn: Any) -> None:
    """In a transaction about to lock rows others wait for, have the server end it if its
    process stalls inside (SQLite: nothing to do, its one writer holds the file)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SET LOCAL idle_in_transaction_session_timeout = '{STALL_TIMEOUT}'")


def take_turns(conn: Any, key: int) -> None:
    """Writers of one kind take turns for the rest of this transaction (PostgreSQL's
    advisory lock ``key``; SQLite's write transaction already holds the database)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({int(key)})")


def raw_time_type(name: str) -> Any:
    """How timestamps are read for a fast DataFrame build: as the driver gives them (text
    on SQLite, datetimes on PostgreSQL)."""
    return String() if name == "sqlite" else DateTime(timezone=True)


def literal_dialect(engine_dialect: Any) -> Any:
    """The dialect to write SQL with values inlined. For PostgreSQL, not psycopg's: its
    ``%s`` style doubles every ``%`` in inlined text, which another client (ADBC) would
    then take literally."""
    if engine_dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql.base import PGDialect

        return PGDialect(paramstyle="named")
    return engine_dialect
