"""The store's schema migrated on purpose: a deployment's migration job (``scriptrun
migrate``), for fleets whose processes run with ``SCRIPTRUN_AUTO_MIGRATE=false``."""

from __future__ import annotations

from jupyter_scriptrun.config import Settings
from jupyter_scriptrun.exceptions import ScriptrunError, StoreUnavailable
from jupyter_scriptrun.service.unreachable import store_problem
from jupyter_scriptrun.store import HEAD_REVISION, Store


def migrate(settings: Settings) -> tuple[str | None, str]:
    """Bring the store's schema to this version's revision; the revisions before and after
    (before: None for an empty database).

    Raises:
        StoreUnavailable: the database cannot be reached (the message says what to check).
        SchemaMismatch: it is at a revision newer than this version knows.
    """
    url = settings.effective_database_url
    try:
        store = Store(url, migrate=False)
    except Exception as exc:
        raise StoreUnavailable(store_problem(url, exc)) from None
    try:
        before = store.revision()
        store.migrate()
    except ScriptrunError:
        raise
    except Exception as exc:
        raise StoreUnavailable(store_problem(url, exc)) from None
    finally:
        store.dispose()
    return before, HEAD_REVISION
