"""A busy worker hands back the deliveries it cannot start, and stops consuming until a
slot frees (RabbitMQ).

Why: with late acks, RabbitMQ counts a worker's running runs against its prefetch, so a
busy worker is sent nothing more. That accounting is lost when the broker closes the
channel (``consumer_timeout`` on a run longer than it): the runs go on, but the new
channel owes them nothing, and Celery never lets the prefetch fall below one. The busy
worker then took one more message it could not start, which waited in its pool past
``consumer_timeout`` too, closing the channel again every few seconds, and each closure
left a stale copy queued in the threads pool (its ``flush`` does nothing). Runs waited
behind busy workers while others sat idle. Celery's own ``worker_disable_prefetch`` does
this for Redis only.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.worker import state

log = logging.getLogger(__name__)

CHECK_EVERY_S = 0.2
"""How often a paused worker looks for a free slot (on its event loop, no thread)."""


class SlotGate:
    """One connection's gate (Celery builds the strategies anew on every connection).

    Admits a delivery only while a slot is free; otherwise cancels the consumer, puts
    the message back on the queue and resumes consuming once a slot frees.

    Everything here runs on the worker's event loop (the strategy and its timer), the one
    thread allowed to touch the channel.
    """

    def __init__(self, consumer: Any) -> None:
        self.consumer = consumer
        self.task_consumer: Any = None  # the one paused; a new connection starts its own
        self.paused = False
        self._timer_entry: Any = None

    @classmethod
    def for_consumer(cls, consumer: Any) -> SlotGate | None:
        """A gate for AMQP workers on an event loop; None where it is not needed (Redis
        redelivers by visibility timeout, not by channel) or not safe (no event loop)."""
        connection = getattr(consumer, "connection", None)
        if connection is None or consumer.hub is None:
            return None
        from jupyter_scriptrun.fleet.brokers import adapter

        transport = adapter(connection.transport.driver_type)
        if transport is None or not transport.redelivers_on_disconnect:
            return None
        return cls(consumer)

    @property
    def slots(self) -> int:
        controller = getattr(self.consumer, "controller", None)
        return getattr(controller, "max_concurrency", None) or self.consumer.pool.num_processes

    def full(self) -> bool:
        """Every slot holds a run (running, or handed to the pool and waiting)."""
        return len(state.reserved_requests) >= self.slots

    def admit(self, message: Any) -> bool:
        """True to run ``message`` now; False when it went back to the queue."""
        if not self.full():
            return True
        if not self.paused:
            self._pause()
        # Cancel first, then requeue: the broker then hands the message to another worker.
        message.reject_log_error(log, self.consumer.connection_errors, requeue=True)
        return False

    def _pause(self) -> None:
        self.paused = True  # before the cancel: deliveries already in flight reach admit()
        self.task_consumer = self.consumer.task_consumer
        log.info(
            "all %d slots are busy with runs the broker no longer counts (after a channel "
            "was closed): a delivery went back to the queue; consuming again when a slot frees",
            self.slots,
        )
        self.task_consumer.cancel()
        self._timer_entry = self.consumer.timer.call_repeatedly(CHECK_EVERY_S, self._check)

    def _check(self) -> None:
        if self.consumer.task_consumer is not self.task_consumer:
            self._stop_checking()  # the connection was replaced; its consumer starts afresh
            return
        if self.full():
            return
        self._stop_checking()
        self.paused = False
        self.task_consumer.consume()
        log.info("a slot is free: consuming again")

    def _stop_checking(self) -> None:
        if self._timer_entry is not None:
            self._timer_entry.cancel()
            self._timer_entry = None
