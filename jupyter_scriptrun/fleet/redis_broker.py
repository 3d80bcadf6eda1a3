"""Kombu's Redis transport with a channel that can still close once its connection is gone."""

from __future__ import annotations

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

    def close(self) -> None:
        super().close()
        # A pool made during the close (to hand runs back) is not left open.
        self._disconnect_pools()


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
