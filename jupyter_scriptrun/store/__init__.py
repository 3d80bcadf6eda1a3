"""The store: the one truth about every run, in SQLite or PostgreSQL.

:class:`Store` is one database seen through its two roles: the run's state machine
(:mod:`.runs`, the worker's and the client's writes), the read path (:mod:`.history`),
the removal of old runs (:mod:`.retention`), the metrics' reads (:mod:`.aggregates`),
the schedules (:mod:`.schedules`) and the files runs write (:mod:`.files`).
The engine, migrations and retry policy are in :mod:`.engine`.
"""

from __future__ import annotations

import threading
import uuid

from jupyter_scriptrun.store.aggregates import Aggregates
from jupyter_scriptrun.store.engine import HEAD_REVISION, utcnow
from jupyter_scriptrun.store.files import RunFiles
from jupyter_scriptrun.store.history import MIN_ID_PREFIX, HistoryReads
from jupyter_scriptrun.store.retention import Retention
from jupyter_scriptrun.store.runs import RunStates
from jupyter_scriptrun.store.schedules import Schedules

__all__ = ["HEAD_REVISION", "MIN_ID_PREFIX", "Store", "get_store", "new_execution_id", "utcnow"]


class Store(RunStates, HistoryReads, Retention, Aggregates, Schedules, RunFiles):
    """Reads and writes execution records. Safe to share between threads.

    Every write is one short transaction; on SQLite writes take the lock up front
    (``BEGIN IMMEDIATE``) and wait for it, so concurrent workers never see
    "database is locked".
    """


def new_execution_id() -> str:
    """A fresh execution id (also the Celery task id)."""
    return uuid.uuid4().hex


_stores: dict[str, Store] = {}
_opening = threading.Lock()


def get_store(url: str, *, migrate: bool = True) -> Store:
    """A shared Store per URL in this process (engines are costly to build).

    Threads asking at once (a server's handlers and its metrics thread) get the one Store:
    it is built, and its database migrated, once. With ``migrate=False`` the schema must
    already be this version's (``SCRIPTRUN_AUTO_MIGRATE=false``).

    Raises:
        SchemaMismatch: the schema is newer than this version, or (``migrate=False``) not
            this version's.
    """
    store = _stores.get(url)
    if store is None:
        with _opening:
            store = _stores.get(url)
            if store is None:
                store = Store(url, migrate=migrate)
                if not migrate:
                    try:
                        store.require_head()
                    except Exception:
                        store.dispose()
                        raise
                _stores[url] = store
    return store
