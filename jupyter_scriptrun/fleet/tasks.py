"""The Celery task: thin. Delivery in, one attempt through the executor, retries out.

Celery's view agrees with the store's: a run that succeeded is a successful task, one that
failed, timed out or was lost is a failed task (``RunFailed``, declared in ``throws`` so
the worker logs one line, not a traceback), a cancelled run is a revoked task, and a
delivery that was not ours to run (a duplicate) leaves Celery's record of the run alone.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

from celery import Celery, Task
from celery.exceptions import Ignore, Retry

from jupyter_scriptrun.exceptions import MalformedTask, RunFailed
from jupyter_scriptrun.execution.executor import Executor
from jupyter_scriptrun.fleet import wakeups
from jupyter_scriptrun.fleet.celery_app import TASK_NAME
from jupyter_scriptrun.fleet.consumer import refuse, short
from jupyter_scriptrun.fleet.worker_metrics import count_outcome
from jupyter_scriptrun.status import ExecutionStatus

log = logging.getLogger(__name__)

EXECUTION_ID_RE = re.compile(r"^[0-9a-f]{32}$")
MAX_ATTEMPT = 1000
"""Far above any retry policy (``retries`` is at most 100): a larger number is corrupt."""


def task_problem(execution_id: object, attempt: object) -> str | None:
    """Why a message's arguments are not ``(execution id, attempt)``, or None. The
    reason quotes at most 40 characters of what was sent, so logs stay short."""
    if not isinstance(execution_id, str) or not EXECUTION_ID_RE.match(execution_id):
        return f"execution id {short(execution_id)} is not 32 lowercase hex characters"
    if isinstance(attempt, bool) or not isinstance(attempt, int):
        return f"attempt {short(attempt)} is not an integer"
    if not 1 <= attempt <= MAX_ATTEMPT:
        return f"attempt {attempt} is not between 1 and {MAX_ATTEMPT}"
    return None


def message_problem(message: Any, body: Any) -> str | None:
    """Why a ``scriptrun.execute`` message is malformed, or None (protocol 1 or 2)."""
    payload = body if body is not None else message.payload
    if isinstance(payload, dict):  # protocol 1
        args, kwargs = payload.get("args"), payload.get("kwargs")
    elif isinstance(payload, list | tuple) and len(payload) >= 2:
        args, kwargs = payload[0], payload[1]
    else:
        return "the message body is not [args, kwargs, …]"
    if not isinstance(args, list | tuple) or not isinstance(kwargs, dict | None):
        return "the message's args are not a list (or its kwargs not an object)"
    kwargs = kwargs or {}
    if unknown := set(kwargs) - {"execution_id", "attempt"}:
        return f"unknown arguments {short(sorted(unknown))}"
    if not 1 <= len(args) + len(kwargs) <= 2:
        return f"{len(args) + len(kwargs)} arguments, not (execution id, attempt)"
    named = dict(zip(("execution_id", "attempt"), args, strict=False)) | kwargs
    return task_problem(named.get("execution_id"), named.get("attempt", 1))


def refusing_strategy(task: Task, app: Celery, consumer: Any, **kwargs: Any) -> Any:
    """Celery's default strategy, behind a free slot (``SlotGate``) and a check of each
    message's arguments.

    A malformed message (a foreign client, a corrupt or hostile one) is acknowledged,
    recorded as a failed task and logged in one short line, before Celery builds a
    request for it: raising from the task instead keeps the message alive in memory
    with the traceback's frames (celery#8882), and a worker fed 10 MB ids only grew.
    """
    from celery.worker.strategy import default

    from jupyter_scriptrun.fleet.slot_gate import SlotGate

    handle = default(task, app, consumer, **kwargs)
    gate = SlotGate.for_consumer(consumer)  # built anew on every (re)connection

    def task_message_handler(
        message: Any, body: Any, ack: Any, reject: Any, callbacks: Any, **kw: Any
    ) -> Any:
        if gate is not None and not gate.admit(message):
            return None  # back on the queue: every slot is busy
        problem = message_problem(message, body)
        if problem is None:
            return handle(message, body, ack, reject, callbacks, **kw)
        refuse(consumer, message, "bad_arguments", problem, message.headers.get("id"))
        _release_memory()
        return None

    return task_message_handler


def _release_memory() -> None:
    """Give freed heap back to the system: after a huge message was decoded and dropped,
    glibc would otherwise keep the pages, and a worker fed such messages only grows."""
    import contextlib
    import ctypes

    with contextlib.suppress(OSError, AttributeError):  # AttributeError: not glibc
        ctypes.CDLL(None).malloc_trim(0)


def define_tasks(app: Celery, executor: Executor) -> Task:
    """Register ``scriptrun.execute`` on ``app``; returns the task."""

    @app.task(
        bind=True,
        name=TASK_NAME,
        acks_late=True,
        reject_on_worker_lost=True,
        throws=(RunFailed, MalformedTask),
        Strategy=f"{__name__}:refusing_strategy",
    )
    def execute(self: Task, execution_id: str, attempt: int = 1) -> dict[str, Any]:
        """Run attempt ``attempt`` of execution ``execution_id`` (its record says what)."""
        if problem := task_problem(execution_id, attempt):
            log.warning("refused a malformed %s message: %s", TASK_NAME, problem)
            raise MalformedTask(problem)  # called directly; messages stop in the strategy
        worker = f"{self.request.hostname}/{os.getpid()}"
        outcome = executor.run_attempt(execution_id, attempt, worker)
        # The store has the outcome: a client on this host waiting without a result
        # backend (the embedded default) reads it now, not at its next poll.
        wakeups.ring(wakeups.run_name(execution_id))
        if outcome.status is not None:
            count_outcome(outcome.status.value)
        if outcome.status is None:
            raise Ignore()  # a duplicate delivery: the run's own task state stands
        if outcome.retry_in_s is not None:
            try:
                self.retry(
                    args=(execution_id, attempt + 1),
                    countdown=outcome.retry_in_s,
                    max_retries=None,
                    shadow=getattr(self.request, "shadow", None),
                )
            except Retry:
                raise  # the normal way out: Celery re-queues the task
            except Exception as exc:
                log.exception("could not queue the retry of %s", execution_id)
                executor.store.fail_pending(execution_id, "BrokerUnavailable", str(exc))
                reason = f"BrokerUnavailable: the retry could not be queued: {exc}"
                raise RunFailed(reason) from None
        if outcome.status is ExecutionStatus.CANCELLED:
            _record_revoked(self, "cancelled")
            raise Ignore()
        if outcome.status is not ExecutionStatus.SUCCEEDED:
            what = f"{outcome.error_type}: {outcome.message}" if outcome.error_type else ""
            raise RunFailed(f"{outcome.status.value}: {what or outcome.message or ''}".strip())
        return {"execution_id": execution_id, "attempt": attempt, "status": "succeeded"}

    return execute


def _record_revoked(task: Task, reason: str) -> None:
    """Tell Celery's result backend and event stream (Flower) that the task was revoked."""
    try:
        task.backend.mark_as_revoked(task.request.id, reason, request=task.request)
    except Exception:
        log.debug("could not record %s as revoked", task.request.id, exc_info=True)
    try:  # one small message, only for cancelled runs; monitors that listen see it
        task.send_event("task-revoked", terminated=True, signum=None, expired=False, retry=False)
    except Exception:
        log.debug("could not send the revoked event of %s", task.request.id, exc_info=True)
