"""The worker process: ``celery -A jupyter_scriptrun.worker worker`` (or ``scriptrun worker``).

Builds the app from the environment's settings, registers the task, and runs the
housekeeping thread: the sweep of processes that scripts of dead workers on this host left
behind, the reaper of lost runs and lost messages, cancels asked for through Celery's own
tools, and, for the embedded local worker, the idle exit.

Importing this module touches neither the store nor the scripts: Celery's own tools
(``celery -A jupyter_scriptrun.worker inspect ping``) import it too, and must work while
the database is away. The store is opened and migrated when a worker starts.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from celery.signals import (
    worker_init,
    worker_process_init,
    worker_ready,
    worker_shutdown,
    worker_shutting_down,
)
from celery.utils.nodenames import host_format
from celery.worker.control import Panel, control_command, inspect_command

from jupyter_scriptrun.config import get_settings
from jupyter_scriptrun.contract.registry import Registry
from jupyter_scriptrun.exceptions import (
    ExecutionConflict,
    ExecutionNotFound,
    RunFailed,
    SchemaMismatch,
)
from jupyter_scriptrun.execution import subreaper
from jupyter_scriptrun.execution.executor import Executor
from jupyter_scriptrun.execution.lease import request_stop
from jupyter_scriptrun.fleet import control, redis_broker
from jupyter_scriptrun.fleet.celery_app import TASK_NAME, make_app, shadow_name
from jupyter_scriptrun.fleet.embedded import WAKE_LISTENER
from jupyter_scriptrun.fleet.housekeeping import Duty, Housekeeping
from jupyter_scriptrun.fleet.tasks import EXECUTION_ID_RE, define_tasks
from jupyter_scriptrun.fleet.worker_metrics import WorkerMetrics

log = logging.getLogger(__name__)

EXIT_SCHEMA = 2
"""A worker's exit status when the store's schema is not its version's (as the CLI's)."""


def explicit_option(argv: Sequence[str], short: str, long: str) -> str | None:
    """The value of an option given on the command line (``--long X``, ``--long=X``,
    ``-s X``, ``-sX``), if any."""
    for i, arg in enumerate(argv):
        if arg.startswith(f"{long}="):
            return arg.split("=", 1)[1]
        if arg.startswith(short) and len(arg) > 2 and not arg.startswith("--"):
            return arg[2:]
        if arg in (long, short) and i + 1 < len(argv):
            return argv[i + 1]
    return None


def explicit_pool(argv: Sequence[str]) -> str | None:
    """The pool named on the command line (``--pool X``, ``--pool=X``, ``-P X``), if any."""
    return explicit_option(argv, "-P", "--pool")


def unique_nodename(pid: int | None = None) -> str:
    """The default node name: ``scriptrun-<pid>@<host>``, so that two workers started on
    one host without ``-n`` are two nodes (Celery's own default, ``celery@<host>``, is the
    same for both, and ``inspect ping`` shows one of them)."""
    return host_format(f"scriptrun-{pid or os.getpid()}@%h")


# Before any connection: the worker's Redis channels survive a reconnection's close order.
redis_broker.install()
settings = get_settings()
app = make_app(settings)
if settings.embedded:
    # This process consumes the embedded folder: it listens for the folder's wake-ups.
    app.conf.broker_transport_options = {
        **app.conf.broker_transport_options,
        WAKE_LISTENER: True,
    }
if pool := explicit_pool(sys.argv):
    # Celery prefers the app's worker_pool ("threads" here) over a --pool equal to its own
    # default, so an explicit "--pool prefork" would be ignored without this (celery#6711).
    app.conf.worker_pool = pool
executor = Executor(settings, Registry(settings.scripts_path))
execute = define_tasks(app, executor)


class _Worker(app.Worker):  # type: ignore[name-defined]
    """Celery's worker with a node name unique to the process when ``-n`` is not given
    (Celery's CLI then passes its own default, the same for every worker on a host)."""

    def __init__(self, hostname: str | None = None, **kwargs: Any) -> None:
        if not hostname or explicit_option(sys.argv, "-n", "--hostname") is None:
            hostname = unique_nodename()
        super().__init__(hostname=hostname, **kwargs)


app.Worker = _Worker

_stop = threading.Event()
_to_cancel: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
"""Runs revoked or terminated through Celery's control commands, for the housekeeping
thread to cancel in the store (the consumer thread must not wait on the database)."""

# -- revoke and terminate through Celery (its CLI, Flower) cancel the run ---------------

_celery_revoke = Panel.data["revoke"]


@control_command(variadic="task_id", signature="[id1 [id2 [... [idN]]]]")
def revoke(state: Any, task_id: Any, terminate: bool = False, signal: Any = None, **kw: Any) -> Any:
    """Revoke runs by id: Celery's revoke, and each run is cancelled in the store, which
    ends a running one's process tree on every pool, like ``scriptrun cancel``."""
    ids = [task_id] if isinstance(task_id, str) else list(task_id or ())
    how = "terminated" if terminate else "revoked"
    signum = _asked_signal(signal) if terminate else None
    for one in ids:
        request_stop(str(one), signum)  # a run of this process stops within a tick
        _to_cancel.put((str(one), how))
    # Celery's own bookkeeping (its revoked set, the result backend), without its
    # terminate: that kills a pool process, or raises NotImplementedError on threads.
    return _celery_revoke(state, task_id, terminate=False, signal=signal, **kw)


def _asked_signal(name: Any) -> signal.Signals | None:
    """The signal ``terminate`` asked for ("SIGKILL", "KILL", "9"); None for SIGTERM (the
    usual end: SIGTERM, then SIGKILL after the grace) or a name that is no signal."""
    from celery.platforms import signals as celery_signals

    if name is None:
        return None
    try:
        if isinstance(name, str):
            name = int(name) if name.strip().isdigit() else name.strip().upper()
        asked = signal.Signals(celery_signals.signum(name))
    except (TypeError, ValueError, AttributeError):
        log.warning("terminate: %r is not a signal; the run ends as by a cancel", name)
        return None
    return None if asked is signal.SIGTERM else asked


@control_command(name=control.STOP, args=[("execution_id", str)], signature="<execution_id>")
def scriptrun_stop(state: Any, execution_id: str, **kwargs: Any) -> dict[str, str]:
    """Stop a run this worker runs now, at its next tick (``scriptrun cancel``: the store
    already says the run is cancelled; this only saves waiting for the store's tick)."""
    request_stop(str(execution_id))
    return {"ok": f"stopping {execution_id} if it runs here"}


@control_command(
    variadic="task_id", args=[("signal", str)], signature="<signal> [id1 [id2 [... [idN]]]]"
)
def terminate(state: Any, signal: Any, task_id: Any, **kw: Any) -> Any:
    """Terminate runs by id: cancelled in the store, their process trees ended."""
    return revoke(state, task_id, terminate=True, signal=signal)


def _cancel_revoked(first: tuple[str, str]) -> None:
    pending = [first]
    while True:
        try:
            pending.append(_to_cancel.get_nowait())
        except queue.Empty:
            break
    for execution_id, how in pending:
        if not EXECUTION_ID_RE.match(execution_id):
            continue  # not one of ours
        try:
            status = executor.store.request_cancel(execution_id, f"{how} through Celery")
        except (ExecutionNotFound, ExecutionConflict):
            continue  # another store's task, or the run already ended
        log.info("execution %s %s through Celery: %s", execution_id, how, status.value)


# -- housekeeping -------------------------------------------------------------------------


def resend(execution_id: str, attempt: int, queue_name: str, countdown: float, script: str) -> None:
    """Queue attempt ``attempt`` of an execution (used by the reaper)."""
    app.send_task(
        TASK_NAME,
        args=(execution_id, attempt),
        task_id=execution_id,
        queue=queue_name,
        countdown=countdown,
        shadow=shadow_name(script),
    )


def _mark_failed(execution_id: str, message: str) -> None:
    """A run declared lost is a failed task in Celery's result backend too."""
    try:
        app.backend.mark_as_failure(execution_id, RunFailed(f"lost: WorkerLost: {message}"))
    except Exception:
        log.debug("could not record %s as failed in Celery", execution_id, exc_info=True)


def _reap() -> None:
    from jupyter_scriptrun.fleet.brokers import BrokerProbe

    broker = BrokerProbe(app)
    consumed: list[set[str] | None] = []

    def probe(queue_name: str, ids: list[str]) -> Any:
        if not consumed:  # one broadcast per reap, and only when some run waits
            consumed.append(broker.consumed())
        return broker.probe(queue_name, ids, consumed[0])

    executor.reap(resend, probe=probe, on_lost=_mark_failed)


PRUNE_FIRST_AFTER_S = 600.0
"""A worker's first pruning waits: a fleet restarting at once does not prune at once."""
PRUNE_EVERY_S = 86_400.0


def _forget_ticks() -> None:
    executor.store.forget_ticks()


def _prune() -> None:
    from datetime import timedelta

    days = settings.retain_days
    if days and (removed := executor.store.prune(timedelta(days=days))):
        log.info("removed %d run(s) that ended more than %g days ago", removed, days)


def _fire_schedules(scheduler: Any) -> float:
    """Fire what is due; the seconds until the soonest schedule is due next (at most 1:
    another worker's new or edited schedule is seen within a second; 1 when one is still
    due, held for its previous run or held by another worker)."""
    scheduler.fire_due()
    soonest = executor.store.seconds_to_next_fire()
    return 1.0 if soonest is None or soonest <= 0 else min(1.0, soonest + 0.002)


class _IdleExit:
    """The embedded default's local worker exits after ``idle_s`` with nothing to do (no
    run held, no schedule active)."""

    def __init__(self, idle_s: float) -> None:
        self.idle_s = idle_s
        self.since = time.monotonic()

    def __call__(self) -> None:
        from celery.worker import state

        now = time.monotonic()
        if state.active_requests or state.reserved_requests or _has_schedules():
            self.since = now
        elif now - self.since >= self.idle_s:
            log.info("idle for %.0f s: local worker exiting", self.idle_s)
            _stop.set()
            os.kill(os.getpid(), signal.SIGTERM)


def _duties(idle_exit_s: float | None, scheduler: Any) -> list[Duty]:
    """What a worker's housekeeping does, each on its own timer."""
    duties = [
        # Woken when a schedule is due, not on a 1 s poll: a tick is judged within
        # milliseconds of its time, so a 1 s interval fires every tick on its own.
        Duty("firing due schedules", 1.0, lambda: _fire_schedules(scheduler)),
        # First the sweep: a crashed worker's leftovers on this host, then lost runs.
        Duty("sweeping orphaned script processes", settings.reap_every_s, _sweep),
        Duty("reaping lost runs", settings.reap_every_s, _reap),
        Duty("forgetting old schedule ticks", PRUNE_EVERY_S, _forget_ticks, PRUNE_FIRST_AFTER_S),
        Duty("removing old runs", PRUNE_EVERY_S, _prune, PRUNE_FIRST_AFTER_S),
    ]
    if scheduler is None:
        duties.pop(0)
    if idle_exit_s is not None:
        duties.append(Duty("checking for idleness", 1.0, _IdleExit(idle_exit_s)))
    return duties


def _sweep() -> None:
    executor.sweep_orphans()


def _housekeeping(idle_exit_s: float | None, scheduler: Any = None) -> None:
    Housekeeping(_duties(idle_exit_s, scheduler), _stop, _to_cancel, _cancel_revoked).run()


@worker_process_init.connect
def _on_pool_process_init(**_: object) -> None:
    """A prefork pool process runs scripts itself: it adopts their daemons too (the
    subreaper flag is not inherited through fork)."""
    subreaper.become()


@worker_init.connect
def _on_init(**_: object) -> None:
    """Open (and migrate) the store now, so that a worker whose database is away says so
    at once; import jsonschema now, not during the first run. The worker becomes a child
    subreaper: a script's daemon (double fork, setsid) comes back to it and ends with its
    run (execution/subreaper.py)."""
    from jupyter_scriptrun.schemas import load_jsonschema

    subreaper.become()

    load_jsonschema()
    try:
        executor.store  # noqa: B018 - opens and migrates
    except SchemaMismatch as exc:
        # Serving a schema this version does not match would fail every run it takes:
        # refuse to start instead (a container's restart policy tries again later,
        # by when the migration job, or this host's upgrade, may have happened).
        log.critical("scriptrun worker not started: %s", exc)
        raise SystemExit(EXIT_SCHEMA) from None


_status: WorkerMetrics | None = None
"""This worker's state, once it is ready (metrics and the ``scriptrun_status`` reply)."""


@inspect_command(name=control.STATUS)
def scriptrun_status(state: Any, **kwargs: Any) -> dict[str, Any]:
    """This worker's slots, runs, memory and queues, for ``scriptrun workers``, ``top`` and
    the dashboard (one broadcast instead of ping, active, reserved and stats)."""
    return _status.snapshot() if _status is not None else {"starting": True}


def _track(consumer: Any) -> WorkerMetrics:
    """The worker's state, read from the consumer Celery started."""

    def broker_connected() -> bool | None:
        connection = getattr(consumer, "connection", None)
        return None if connection is None else bool(connection.connected)

    def queues() -> list[str]:
        task_consumer = getattr(consumer, "task_consumer", None)
        return sorted(q.name for q in getattr(task_consumer, "queues", None) or ())

    slots = getattr(getattr(consumer, "controller", None), "concurrency", None)
    return WorkerMetrics(executor, slots or app.conf.worker_concurrency, broker_connected, queues)


def _serve_metrics(metrics: WorkerMetrics) -> None:
    """The worker's Prometheus metrics on ``SCRIPTRUN_METRICS_PORT`` (``--metrics-port``)."""
    from jupyter_scriptrun.fleet.worker_metrics import serve

    try:
        serve(metrics, settings.metrics_port or 0, settings.metrics_address)
    except OSError as exc:  # the port is taken: say so, and run without metrics
        log.error(
            "metrics: cannot listen on %s:%s (%s); this worker serves none",
            settings.metrics_address,
            settings.metrics_port,
            exc,
        )
        return
    log.info("metrics on http://%s:%s/metrics", settings.metrics_address, settings.metrics_port)


def _has_schedules() -> bool:
    """An idle local worker stays while a schedule is active: it is the one that fires."""
    try:
        return executor.store.has_active_schedules()
    except Exception:
        return False


def _send_first(execution_id: str, queue_name: str, script: str) -> None:
    resend(execution_id, 1, queue_name, 0, script)


@worker_ready.connect
def _on_ready(sender: Any = None, **_: object) -> None:
    from jupyter_scriptrun.fleet.scheduler import Scheduler

    global _status
    _status = _track(sender)
    if settings.metrics_port:
        _serve_metrics(_status)
    name = str(getattr(sender, "hostname", None) or unique_nodename())
    scheduler = Scheduler(executor.store, executor.registry, settings, _send_first, name)
    thread = threading.Thread(
        target=_housekeeping,
        args=(settings.worker_idle_exit_s, scheduler),
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
