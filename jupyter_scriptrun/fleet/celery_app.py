"""The Celery application, configured from the settings (JSON only, late acks, no pile-up)."""

from __future__ import annotations

import os

from celery import Celery

from jupyter_scriptrun import defaults
from jupyter_scriptrun.config import Settings

TASK_NAME = "scriptrun.execute"


QUICK_RETRY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1.0}
"""Publishing and result writes give up within about 2 s: an error, not a hang."""


def shadow_name(script: str) -> str:
    """The name Celery's logs, ``inspect active`` and Flower show for a run of ``script``
    (the task itself stays ``scriptrun.execute``)."""
    return f"scriptrun:{script}"


def make_app(settings: Settings) -> Celery:
    """A Celery app for these settings.

    The choices and the traps they avoid:
    - JSON only, in and out: no pickle ever crosses the broker.
    - ``acks_late`` with ``reject_on_worker_lost`` and prefetch 1: a message is removed only
      once its run is recorded, a run whose pool process died is delivered again, and one
      worker never hoards queued runs while another is idle.
    - Redis ``visibility_timeout`` above the longest run, or long runs run twice
      (celery#5935); results expire so they do not fill Redis (celery#7801).
    - ``broker_channel_error_retry``: a channel the broker closes (RabbitMQ's
      ``consumer_timeout`` on a run longer than it) makes the worker reconnect instead of
      exiting. Runs in flight go on; the broker hands their messages out again, and the
      claim in the store ignores those copies; a busy worker hands back what it cannot
      start (fleet/slot_gate.py; tests/test_rabbitmq_consumer_timeout.py).
    - Redis results through ``NoticeBackend``: the completion notice without Celery's
      read before each write (fleet/notices.py).
    - The threads pool: the work happens in child processes, so threads wait on them at
      a fraction of the memory of prefork processes. ``--pool prefork`` works as well.
    """
    from jupyter_scriptrun.fleet.embedded import register

    register()
    backend = settings.effective_result_backend
    app = Celery("jupyter_scriptrun", broker=settings.effective_broker_url, backend=backend)
    from jupyter_scriptrun.fleet.notices import NOTICE_BACKEND

    app.loader.override_backends = {"redis": NOTICE_BACKEND, "rediss": NOTICE_BACKEND}
    transport_options = _transport_options(settings)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_default_queue=settings.queue,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_pool="threads",
        # Refuses, in one line, any message it cannot take instead of dying on its
        # headers (fleet/consumer.py).
        worker_consumer="jupyter_scriptrun.fleet.consumer:GuardedConsumer",
        worker_concurrency=os.cpu_count() or 2,
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        broker_channel_error_retry=True,
        # After a reconnection Celery lowers the prefetch and raises it again with
        # ``basic.qos`` from the thread that acknowledges a run: a pool thread in the
        # threads pool, racing the event loop on the same connection. Workers froze that
        # way after RabbitMQ's consumer_timeout; the slot gate keeps a busy worker from
        # over-fetching instead (fleet/slot_gate.py).
        worker_enable_prefetch_count_reduction=False,
        broker_connection_timeout=5,
        result_expires=defaults.RESULT_EXPIRES_S,
        task_ignore_result=backend is None,
        result_extended=False,
        # A client must get an error, not a hang, when the broker is down.
        task_publish_retry_policy=QUICK_RETRY,
        result_backend_transport_options={"retry_policy": QUICK_RETRY},
        redis_socket_connect_timeout=5,
        redis_backend_health_check_interval=30,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_hijack_root_logger=True,
        enable_utc=True,
    )
    return app


def _transport_options(settings: Settings) -> dict[str, object]:
    """The broker transport's options: the visibility timeout, what its adapter needs
    (Redis: where it keeps held messages), the embedded default's folders."""
    options: dict[str, object] = {
        "visibility_timeout": settings.visibility_timeout_s,
    }
    from jupyter_scriptrun.fleet import brokers

    transport = brokers.adapter(settings.effective_broker_url.partition("://")[0])
    if transport is not None:
        options.update(transport.transport_options())
    if settings.embedded:
        from jupyter_scriptrun.fleet.local import local_fingerprint

        # A folder per configuration: runs reach only the local worker that runs them as
        # this client would (see local_fingerprint).
        broker_dir = settings.data_dir / "broker" / local_fingerprint(settings)
        (broker_dir / "queue").mkdir(parents=True, exist_ok=True)
        (broker_dir / "control").mkdir(parents=True, exist_ok=True)
        options.update(
            data_folder_in=str(broker_dir / "queue"),
            data_folder_out=str(broker_dir / "queue"),
            control_folder=str(broker_dir / "control"),
            polling_interval=defaults.EMBEDDED_POLL_S,
        )
    return options
