"""The heavy imports (Celery, jsonschema), done in the background after ``%load_ext`` so
that the first run does not wait for them."""

from __future__ import annotations

import contextlib
import threading

_thread: threading.Thread | None = None


def start() -> None:
    """Begin importing in a background thread (once per process)."""
    global _thread
    if _thread is None:
        _thread = threading.Thread(target=_imports, name="scriptrun-warm-imports", daemon=True)
        _thread.start()


def wait() -> None:
    """Let the background imports finish before the first call uses those modules: a
    module another thread is still importing can be seen half-initialised."""
    thread = _thread
    if thread is not None and thread is not threading.current_thread():
        thread.join()


def _imports() -> None:
    with contextlib.suppress(Exception):
        from jupyter_scriptrun.fleet import celery_app  # noqa: F401
        from jupyter_scriptrun.schemas import load_jsonschema

        load_jsonschema()
