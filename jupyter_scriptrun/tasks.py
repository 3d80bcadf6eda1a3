"""The Celery task: thin. Delivery in, one attempt through the executor, retries out."""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery, Task
from celery.exceptions import Retry

from .celery_app import TASK_NAME
from .executor import Executor

log = logging.getLogger(__name__)


def define_tasks(app: Celery, executor: Executor) -> Task:
    """Register ``scriptrun.execute`` on ``app``; returns the task."""

    @app.task(bind=True, name=TASK_NAME, acks_late=True, reject_on_worker_lost=True)
    def execute(self: Task, execution_id: str, attempt: int = 1) -> dict[str, Any]:
        """Run attempt ``attempt`` of execution ``execution_id`` (its record says what)."""
        worker = f"{self.request.hostname}/{os.getpid()}"
        outcome = executor.run_attempt(execution_id, attempt, worker)
        if outcome.retry_in_s is not None:
            try:
                self.retry(
                    args=(execution_id, attempt + 1),
                    countdown=outcome.retry_in_s,
                    max_retries=None,
                )
            except Retry:
                raise  # the normal way out: Celery re-queues the task
            except Exception as exc:
                log.exception("could not queue the retry of %s", execution_id)
                executor.store.fail_pending(execution_id, "BrokerUnavailable", str(exc))
        return {
            "execution_id": execution_id,
            "attempt": attempt,
            "status": outcome.status.value if outcome.status else None,
        }

    return execute
