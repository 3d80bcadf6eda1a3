"""The fleet's control channel, both ends named here: the commands clients send to workers
(stop a run, drop a queued run's message, each worker's status, ping, who consumes which
queue), and the names workers register theirs under (``fleet/worker.py``)."""

from __future__ import annotations

from typing import Any

STOP = "scriptrun_stop"
"""Stop a run this worker runs now (the store already says it is cancelled)."""
STATUS = "scriptrun_status"
"""A worker's slots, runs, memory and queues, in one reply."""


def stop_run(app: Any, execution_id: str) -> None:
    """Tell every worker to stop ``execution_id`` at its next tick, if it runs it."""
    app.control.broadcast(STOP, arguments={"execution_id": execution_id})


def drop_queued(app: Any, execution_id: str) -> None:
    """Let workers drop a cancelled run's message still in the broker (Celery's revoke)."""
    app.control.revoke(execution_id)


def statuses(app: Any, timeout: float) -> list[dict[str, Any]]:
    """Every worker's ``STATUS`` reply that came within ``timeout``, one dict per reply."""
    return list(app.control.broadcast(STATUS, reply=True, timeout=timeout) or [])


def ping(app: Any, timeout: float) -> dict[str, Any]:
    """The workers that answer a ping within ``timeout``, by name."""
    return dict(app.control.inspect(timeout=timeout).ping() or {})


def active_queues(app: Any, timeout: float) -> dict[str, Any]:
    """The queues each worker consumes, by worker name (those that answer in time)."""
    return dict(app.control.inspect(timeout=timeout).active_queues() or {})
