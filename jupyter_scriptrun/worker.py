"""The worker process: ``celery -A jupyter_scriptrun.worker worker`` (or ``scriptrun worker``).

Builds the app from the environment's settings, registers the task, and runs the
housekeeping thread: the sweep of processes that scripts of dead workers on this host left
behind, the reaper of lost runs and, for the embedded local worker, the idle exit.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence

from celery.signals import worker_ready, worker_shutdown, worker_shutting_down

from .celery_app import TASK_NAME, make_app
from .config import get_settings
from .executor import Executor
from .metadata import load_jsonschema
from .registry import Registry
from .store import get_store
from .tasks import define_tasks

log = logging.getLogger(__name__)


def explicit_pool(argv: Sequence[str]) -> str | None:
    """The pool named on the command line (``--pool X``, ``--pool=X``, ``-P X``), if any."""
    for i, arg in enumerate(argv):
        if arg.startswith("--pool="):
            return arg.split("=", 1)[1]
        if arg.startswith("-P") and len(arg) > 2 and not arg.startswith("--"):
            return arg[2:]
        if arg in ("--pool", "-P") and i + 1 < len(argv):
            return argv[i + 1]
    return None


load_jsonschema()  # now, not during the first run
settings = get_settings()
app = make_app(settings)
if pool := explicit_pool(sys.argv):
    # Celery prefers the app's worker_pool ("threads" here) over a --pool equal to its own
    # default, so an explicit "--pool prefork" would be ignored without this (celery#6711).
    app.conf.worker_pool = pool
executor = Executor(
    settings, get_store(settings.effective_database_url), Registry(settings.scripts_path)
)
execute = define_tasks(app, executor)

IDLE_EXIT_ENV = "SCRIPTRUN_WORKER_IDLE_EXIT"
"""Set by the local-worker launcher: seconds of idleness after which the worker exits."""

_stop = threading.Event()


def resend(execution_id: str, attempt: int, queue: str | None, countdown: float) -> None:
    """Queue attempt ``attempt`` of an execution (used by the reaper)."""
    app.send_task(
        TASK_NAME,
        args=(execution_id, attempt),
        task_id=execution_id,
        queue=queue or settings.queue,
        countdown=countdown,
    )


def _housekeeping(idle_exit_s: float | None) -> None:
    from celery.worker import state

    idle_since = time.monotonic()
    next_reap = 0.0
    while not _stop.wait(min(1.0, settings.reap_every_s)):
        now = time.monotonic()
        if now >= next_reap:
            next_reap = now + settings.reap_every_s
            try:
                executor.sweep_orphans()  # first: a crashed worker's leftovers on this host
            except Exception:
                log.exception("sweeping orphaned script processes failed (will try again)")
            try:
                executor.reap(resend)
            except Exception:
                log.exception("reaping lost runs failed (will try again)")
        if idle_exit_s is None:
            continue
        if state.active_requests or state.reserved_requests:
            idle_since = now
        elif now - idle_since >= idle_exit_s:
            log.info("idle for %.0f s: local worker exiting", idle_exit_s)
            os.kill(os.getpid(), signal.SIGTERM)
            return


@worker_ready.connect
def _on_ready(**_: object) -> None:
    idle = os.environ.get(IDLE_EXIT_ENV)
    thread = threading.Thread(
        target=_housekeeping,
        args=(float(idle) if idle else None,),
        name="scriptrun-housekeeping",
        daemon=True,
    )
    thread.start()
    log.info(
        "scriptrun worker ready: store %s, scripts %s",
        executor.store.engine.url.render_as_string(hide_password=True),
        os.pathsep.join(str(p) for p in settings.scripts_path),
    )


@worker_shutting_down.connect
def _on_shutdown(**_: object) -> None:
    _stop.set()


@worker_shutdown.connect
def _on_worker_shutdown(**_: object) -> None:
    executor.close()  # the warm parent, if one was started
