"""What the first command would wait for, done in the background after ``%load_ext``: the
heavy imports (Celery, jsonschema), then the caller's own follow-up (the facade opens the
store and resumes the embedded default's schedules)."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

_thread: threading.Thread | None = None


def start(then: Callable[[], object] | None = None) -> None:
    """Begin importing in a background thread, then call ``then`` there (once per
    process)."""
    global _thread
    if _thread is None:
        _thread = threading.Thread(
            target=_warm, args=(then,), name="scriptrun-warm-imports", daemon=True
        )
        _thread.start()


def wait() -> None:
    """Let the background work finish before the first call uses those modules: a
    module another thread is still importing can be seen half-initialised."""
    thread = _thread
    if thread is not None and thread is not threading.current_thread():
        thread.join()


def _warm(then: Callable[[], object] | None) -> None:
    with contextlib.suppress(Exception):
        from jupyter_scriptrun.fleet import celery_app  # noqa: F401
        from jupyter_scriptrun.schemas import load_jsonschema

        load_jsonschema()
    if then is not None:
        try:
            then()
        except Exception:  # the first command meets the same problem, and says it
            log.debug("the background follow-up failed", exc_info=True)
