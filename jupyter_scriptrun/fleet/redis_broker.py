"""Kombu's Redis transport with a channel that can still close once its connection is gone."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import redis
from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis

ALIAS_TARGET = f"{__name__}:Transport"


class Channel(kombu_redis.Channel):
    """Kombu's Redis channel, remembering how it connects.

    When a worker loses Redis, Celery closes the old connection and its channels, and the
    order is not fixed: the connection may let go of its parameters (``transport.client``
    set to None) before a channel's ``close`` hands its unacknowledged runs back. That
    close builds a new connection pool from those parameters and failed with
    ``AttributeError: 'NoneType' object has no attribute 'hostname'``, which Celery takes
    for an unrecoverable error: the worker exited and its runs stayed queued (seen in
    tests/faults/test_broker_restart.py; kombu#582 and #970 are the same failure). This
    channel reuses the parameters it last connected with, and without any says that the
    connection is lost, which Celery recovers from.
    """

    _last_connparams: dict[bool, dict[str, Any]] | None = None

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        transport = self.connection
        if transport is None or transport.client is None:
            saved = (self._last_connparams or {}).get(asynchronous)
            if saved is None:
                raise redis.exceptions.ConnectionError("the broker connection is closed")
            return dict(saved)
        params: dict[str, Any] = super()._connparams(asynchronous=asynchronous)
        if self._last_connparams is None:
            self._last_connparams = {}
        self._last_connparams[asynchronous] = dict(params)
        return params

    def _brpop_read(self, **options: Any) -> bool:
        """Deliver one message taken off a queue; one that is not a message at all (not
        JSON, no properties, headers that are not an object: a foreign writer's) is
        refused in one line and counted. BRPOP has already taken it off the queue and it
        is nobody's to hand back, so it is dropped; an exception here would reach the
        worker's event loop, which exits on it."""
        try:
            delivered: bool = super()._brpop_read(**options)
            return delivered
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            if isinstance(exc, OSError | redis.exceptions.RedisError):
                raise  # the connection's own trouble: Celery reconnects
            # (kombu counts KeyError as a connection error, so a message without
            # "properties" made the worker reconnect once a second, forever.)
            from jupyter_scriptrun.fleet.consumer import short
            from jupyter_scriptrun.fleet.worker_metrics import refused

            refused("bad_envelope", f"not a kombu message: {short(exc, 120)}")
            return True

    @contextlib.contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        """A client for one operation. On a closed channel (a run that was going on while
        the broker restarted acknowledges its message on the channel it came from), the
        pool made for it is closed again afterwards: kombu kept it, and each restart with
        a run in flight left three sockets open for good."""
        if client is not None or not self.closed:
            with super().conn_or_acquire(client) as acquired:
                yield acquired
            return
        try:
            yield self._create_client()
        finally:
            self._disconnect_pools()

    def close(self) -> None:
        """Close, and let go of every socket even when kombu's close fails half-way.

        kombu's close deletes the channel's fanout bindings first (the control channel
        has one): on a connection the broker dropped that raises, Celery ignores the
        error, and the pools and clients closed after it stayed open, two sockets per
        broker restart. A pool made during the close (to hand runs back) is closed too.
        """
        try:
            super().close()
        finally:
            self._disconnect_pools()
            self._close_clients()


class Transport(kombu_redis.Transport):
    """Kombu's Redis transport with :class:`Channel`."""

    Channel = Channel


def install() -> None:
    """Make ``redis://`` and ``rediss://`` URLs use this transport in this process.

    Called by the worker only (fleet/worker.py): the failure is in a consumer's reconnection,
    and a client's process keeps kombu's own table.
    """
    from kombu import transport

    for scheme in ("redis", "rediss"):
        TRANSPORT_ALIASES[scheme] = ALIAS_TARGET
        # get_transport_cls caches by name; a name resolved earlier must resolve again.
        getattr(transport, "_transport_cache", {}).pop(scheme, None)
