"""The store's engine: connections per backend, migrations, and retrying while the
database is briefly away."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    wait_exponential,
)

from jupyter_scriptrun.exceptions import SchemaMismatch
from jupyter_scriptrun.store import dialects

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])

HEAD_REVISION = "0010"
"""The newest migration; a test checks it against the migrations folder."""
MIGRATIONS = Path(__file__).resolve().parent / "migrations"

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


def transient(exc: BaseException) -> bool:
    """Whether a database error is worth retrying (the database away, not a bad query)."""
    if not isinstance(exc, OperationalError | InterfaceError):
        return False
    text = str(exc).lower()
    if any(p in text for p in PERMANENT):
        return False
    return bool(exc.connection_invalidated) or any(t in text for t in TRANSIENT)


def retrying(method: F) -> F:
    """Retry a store operation while the database is briefly unavailable.

    Each operation is one transaction, so a retry repeats it whole; writes are written to
    be harmless when repeated after a commit whose answer was lost.
    """

    @functools.wraps(method)
    def wrapper(self: Database, *args: Any, **kwargs: Any) -> Any:
        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning(
                "store: %s failed (%s); retrying in %.1f s",
                method.__name__,
                str(exc).splitlines()[0][:200],
                state.upcoming_sleep,
            )
            self.engine.dispose()  # the pool's connections are dead with the server

        for attempt in Retrying(
            retry=retry_if_exception(transient),
            wait=wait_exponential(multiplier=0.1, max=2.0),
            stop=stop_after_delay(self.retry_for_s),
            before_sleep=before_sleep,
            reraise=True,
        ):
            with attempt:
                return method(self, *args, **kwargs)
        raise AssertionError("unreachable: Retrying either returns or raises")

    return wrapper  # type: ignore[return-value]


def utcnow() -> datetime:
    """Now, timezone-aware UTC."""
    return datetime.now(UTC)


def aware(value: datetime) -> datetime:
    """A datetime with UTC filled in when it has no time zone."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def dialect_insert(conn: Connection, table: Any) -> Any:
    """The dialect's INSERT (for ``on_conflict_do_nothing``)."""
    return dialects.insert(conn.dialect.name, table)


def make_engine(url: str) -> Engine:
    """An engine with the settings each backend needs for many concurrent workers."""
    dialects.check(make_url(url).get_backend_name())
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
    # No pre-ping (a round trip per checkout): a connection the server dropped fails its
    # first statement, SQLAlchemy invalidates the pool, and the store's retry runs the
    # operation again on a new one. TCP keepalives end a dead peer's connection in about
    # a minute on both sides (the OS default is two hours), so a killed worker's backends
    # do not linger on the server.
    parsed = make_url(url)
    connect_args: dict[str, Any] = dict(POSTGRES_KEEPALIVES) if url.startswith("postgres") else {}
    if PREPARE_OPTION in parsed.query:
        threshold = prepare_threshold(str(parsed.query[PREPARE_OPTION]))
        if parsed.get_driver_name() == "psycopg":  # psycopg2 never prepares on the server
            connect_args[PREPARE_OPTION] = threshold
        parsed = parsed.difference_update_query([PREPARE_OPTION])
    return create_engine(
        parsed, pool_size=5, max_overflow=10, pool_recycle=3600, connect_args=connect_args
    )


PREPARE_OPTION = "prepare_threshold"
"""psycopg's option in a store URL (not libpq's, so the engine takes it out of the URL).
psycopg prepares a statement on the server after its fifth use (about 0.35 ms less per run
here); behind PgBouncer in transaction mode (before 1.21) the next transaction may run on
another server connection that never saw it, so such URLs end in
``?prepare_threshold=none`` (docs/deploy.md)."""


def prepare_threshold(value: str) -> int | None:
    """The URL's ``prepare_threshold``: a count, or none/off for never."""
    if value.strip().lower() in ("", "none", "off", "never"):
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(
            f"prepare_threshold={value!r} in the store URL is neither a number nor 'none'"
        ) from None


POSTGRES_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 60_000,
}
"""libpq's TCP settings: a peer gone silent is noticed within about a minute."""


def known_revisions() -> set[str]:
    """The schema revisions this version has migrations for (``0001`` … HEAD)."""
    return {path.name[:4] for path in (MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py")}


_ALEMBIC = threading.Lock()
"""Alembic keeps its running migration in module globals (``alembic.context``), so two
threads migrating at once, even two different databases, corrupt each other's run
(``KeyError: 'config'``): in one process, one migration at a time."""


class Database:
    """One database: its engine, its schema's revision, and write transactions."""

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

    def migrate(self) -> None:
        """Bring the schema to the newest revision (cheap when it is already there).

        Raises:
            SchemaMismatch: the database is at a revision newer than this version knows.
        """
        current = self.revision()
        if current == HEAD_REVISION:
            return
        self._refuse_newer(current)
        from alembic import command
        from alembic.config import Config

        with _ALEMBIC, self._migration_lock() as conn:
            cfg = Config()
            cfg.set_main_option("script_location", str(MIGRATIONS))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            conn.commit()
        log.info("store %s migrated to %s", self.engine.url.render_as_string(), HEAD_REVISION)

    def require_head(self) -> None:
        """Check, without migrating, that the schema is this version's (a process told
        not to migrate: ``SCRIPTRUN_AUTO_MIGRATE=false``, the migration job's to do).

        Raises:
            SchemaMismatch: behind (run ``scriptrun migrate``) or ahead (upgrade this host).
        """
        current = self.revision()
        if current == HEAD_REVISION:
            return
        self._refuse_newer(current)
        raise SchemaMismatch(
            f"the database {self._shown_url()} is at schema revision {current or 'none (empty)'}"
            f", and this version of jupyter_scriptrun needs {HEAD_REVISION}: run the migration"
            " (`scriptrun migrate`, the deployment's migration job) first. This process does"
            " not migrate it itself because SCRIPTRUN_AUTO_MIGRATE is false."
        )

    def _refuse_newer(self, current: str | None) -> None:
        if current is not None and current not in known_revisions():
            raise SchemaMismatch(
                f"the database {self._shown_url()} is at schema revision {current}, newer than"
                f" this version of jupyter_scriptrun knows (its newest is {HEAD_REVISION}):"
                " another host has been upgraded; upgrade jupyter_scriptrun here too"
            )

    def _shown_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def revision(self) -> str | None:
        """The schema revision the database is at (None for an empty database)."""
        try:
            with self.engine.connect() as conn:
                return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
        except DBAPIError as exc:  # SQLite's "no such table", psycopg's UndefinedTable
            if "alembic_version" in str(exc):
                return None
            raise  # not there: the database is away, which is not an empty one

    @contextlib.contextmanager
    def _migration_lock(self) -> Iterator[Connection]:
        """Only one process migrates at a time (others wait, then find nothing to do)."""
        with self.engine.connect() as conn, dialects.migration_lock(conn):
            yield conn

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        """One write transaction (on SQLite it takes the lock up front)."""
        with self.engine.connect().execution_options(scriptrun_write=True) as conn, conn.begin():
            yield conn

    @staticmethod
    def _clock(conn: Connection) -> Any:
        """Now on the database's clock, as heartbeats are written and compared: every
        host's leases then run on one clock, and a worker whose own clock is off can
        neither look silent nor outlive its lease. PostgreSQL's ``now()`` (an SQL
        expression, no round trip); SQLite lives on one host, whose clock it is."""
        if dialects.has_server_clock(conn.dialect.name):
            return dialects.server_now()
        return utcnow()

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
