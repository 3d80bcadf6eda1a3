"""Celery's Redis result backend as the product uses it: a completion notice per run,
written without reading first."""

from __future__ import annotations

from typing import Any

from celery.backends.redis import RedisBackend
from celery.exceptions import BackendStoreError
from kombu.utils.encoding import bytes_to_str

NOTICE_BACKEND = f"{__name__}:NoticeBackend"


class NoticeBackend(RedisBackend):
    """Celery's Redis backend without its read before every write, and without its
    subscription at every send.

    Celery reads a task's stored state before writing a new one, so that a lost duplicate
    cannot overwrite a success. Here the store decides which attempt
    speaks for a run, and a delivery that does not (a duplicate, a superseded attempt)
    writes no state at all (it raises ``Ignore``): the read was a Redis round trip per
    run for nothing.

    Celery also subscribes to a task's result channel as the task is sent, so that a
    caller who waits finds it subscribed. Here most submitters never wait (a notebook's
    ``submit``, the REST API, schedules), and one who does subscribes when it starts to
    wait: Celery's wait subscribes first, then reads the stored result, so a notice that
    came before is not missed. The subscribe round trip leaves the submit, where it cost
    every run, for the wait, where it overlaps the run. Everything else, reading
    included, is Celery's.
    """

    def on_task_call(self, producer: Any, task_id: str) -> None:
        """Nothing at send time (see the class)."""

    def _store_result(
        self,
        task_id: Any,
        result: Any,
        state: str,
        traceback: Any = None,
        request: Any = None,
        **kwargs: Any,
    ) -> Any:
        meta = self._get_result_meta(
            result=result, state=state, traceback=traceback, request=request
        )
        meta["task_id"] = bytes_to_str(task_id)
        try:
            self._set_with_state(self.get_key_for_task(task_id), self.encode(meta), state)
        except BackendStoreError as exc:
            raise BackendStoreError(str(exc), state=state, task_id=task_id) from exc
        return result
