"""The brokers, an adapter per transport (Redis, RabbitMQ, the embedded folder): the
transport options each needs, whether it redelivers by connection, and what it still
holds — whether a run's message is queued, who consumes a queue, how many messages wait.

The reaper asks before sending a queued run's message again, so that a message is sent
again only when it is really gone (a broker restarted without persistence), and a queue
that no worker consumes is reported instead of filled with copies.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Protocol

from jupyter_scriptrun.fleet import control

log = logging.getLogger(__name__)

MAX_SCAN = 20_000
"""Longest queue whose messages are read to find ids; a longer one is a backlog, not a
loss, and its runs are taken to be there."""


@dataclass(frozen=True)
class Probe:
    """What the broker says about some queued runs of one queue."""

    missing: frozenset[str] | None
    """Ids whose message is in none of the broker's places; None: the broker cannot tell."""
    consumers: int | None
    """Workers consuming the queue; None: the broker cannot tell."""


class Queues(Protocol):
    """One transport's view of its queues (an adapter per broker: Redis, RabbitMQ, the
    embedded folder); a new broker is one more class and its entry in ``TRANSPORTS``."""

    redelivers_on_disconnect: bool
    """Whether an unacknowledged message goes back when its channel closes (AMQP), rather
    than after a visibility timeout (Redis): such a worker must not prefetch past its
    slots (``slot_gate``)."""

    def transport_options(self) -> dict[str, object]:
        """Celery's ``broker_transport_options`` this transport needs."""
        ...

    def probe(
        self, channel: Any, queue: str, ids: Collection[str], consumed: set[str] | None
    ) -> Probe:
        """Which of ``ids`` have no message any more, and who consumes ``queue``."""
        ...

    def depth(self, channel: Any, queue: str) -> int:
        """Messages waiting in ``queue`` (0 for a queue the broker does not have)."""
        ...


class RedisQueues:
    """kombu's Redis transport: a list per queue and priority, and an unacked hash."""

    redelivers_on_disconnect = False

    def transport_options(self) -> dict[str, object]:
        from jupyter_scriptrun.queues import REDIS_UNACKED_KEYS

        return dict(REDIS_UNACKED_KEYS)

    def probe(
        self, channel: Any, queue: str, ids: Collection[str], consumed: set[str] | None
    ) -> Probe:
        present = _redis_ids(channel, queue)
        consumers = None if consumed is None else int(queue in consumed)
        return Probe(None if present is None else frozenset(set(ids) - present), consumers)

    def depth(self, channel: Any, queue: str) -> int:
        return int(channel._size(queue))


class FolderQueues(RedisQueues):
    """The embedded broker: a message file per message in one folder (its folders are
    the embedded default's, set where the app is made)."""

    def transport_options(self) -> dict[str, object]:
        return {}

    def probe(
        self, channel: Any, queue: str, ids: Collection[str], consumed: set[str] | None
    ) -> Probe:
        consumers = None if consumed is None else int(queue in consumed)
        return Probe(frozenset(set(ids) - _folder_ids(channel, queue)), consumers)


class AmqpQueues:
    """RabbitMQ: it counts a queue's messages and consumers, and names no message."""

    redelivers_on_disconnect = True

    def transport_options(self) -> dict[str, object]:
        return {}

    def probe(
        self, channel: Any, queue: str, ids: Collection[str], consumed: set[str] | None
    ) -> Probe:
        return _amqp_probe(channel, queue, ids)

    def depth(self, channel: Any, queue: str) -> int:
        try:
            return int(channel.queue_declare(queue=queue, passive=True)[1])
        except Exception as exc:
            if "NOT_FOUND" not in str(exc) and "404" not in str(exc):
                raise
            return 0


TRANSPORTS: dict[str, Queues] = {
    "redis": RedisQueues(),
    "amqp": AmqpQueues(),
    "filesystem": FolderQueues(),
}
"""The adapters by kombu's ``driver_type``; another transport is probed as unknown."""


def adapter(scheme_or_driver: str) -> Queues | None:
    """The adapter of a broker URL's scheme (``rediss``, ``sentinel``, ``pyamqp``…: kombu
    says which transport it is) or of a kombu ``driver_type``; None for one we have none
    of."""
    name = scheme_or_driver.partition("+")[0]  # redis+socket is kombu's redis transport
    if name in TRANSPORTS:
        return TRANSPORTS[name]
    from kombu.transport import get_transport_cls

    try:
        driver = getattr(get_transport_cls(name), "driver_type", None)
    except Exception:  # an unknown scheme: Celery says so when it connects
        return None
    return TRANSPORTS.get(driver or "")


class BrokerProbe:
    """Looks into the broker of a Celery app, through its transport's adapter."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def probe(self, queue: str, ids: Collection[str], consumed: set[str] | None) -> Probe:
        """Which of ``ids`` (queued runs sent to ``queue``) have no message any more.

        ``consumed`` is the set of queues online workers consume (from :meth:`consumed`),
        used where the broker does not count consumers itself.
        """
        with self.app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1)
            queues = TRANSPORTS.get(conn.transport.driver_type)
            if queues is None:
                return Probe(None, None)
            return queues.probe(conn.default_channel, queue, ids, consumed)

    def depths(self, queues: Collection[str]) -> dict[str, int]:
        """Messages waiting in each queue (a queue the broker does not have holds 0)."""
        found: dict[str, int] = {}
        with self.app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1)
            adapter = TRANSPORTS.get(conn.transport.driver_type, RedisQueues())
            for queue in queues:
                channel = conn.channel()  # RabbitMQ closes a channel on NOT_FOUND
                try:
                    found[queue] = adapter.depth(channel, queue)
                finally:
                    try:
                        channel.close()
                    except Exception:
                        log.debug("closing a probe channel failed", exc_info=True)
        return found

    def consumed(self, timeout: float = 1.0) -> set[str] | None:
        """The queues that online workers consume (Celery's ``inspect active_queues``);
        None when no worker answered."""
        replies = control.active_queues(self.app, timeout)
        if not replies:
            return None
        return {q["name"] for queues in replies.values() for q in queues or ()}


def _message_id(raw: bytes | str) -> str | None:
    try:
        message = json.loads(raw)
        if isinstance(message, list):  # the unacked hash: [message, exchange, routing key]
            message = message[0]
        return message["headers"]["id"]
    except (ValueError, KeyError, TypeError, IndexError):
        return None


def _redis_ids(channel: Any, queue: str) -> set[str] | None:
    """Ids of the messages in ``queue`` (every priority) and in the unacked hash (taken by
    a worker, not yet acknowledged); None for a queue too long to read."""
    client = channel.client
    # kombu keeps one list per priority step; _q_for_pri is its own naming of those keys.
    keys = [channel._q_for_pri(queue, pri) for pri in channel.priority_steps]
    keys = list(dict.fromkeys(keys))
    if sum(client.llen(k) for k in keys) > MAX_SCAN:
        return None
    ids: set[str] = set()
    for key in keys:
        ids.update(filter(None, map(_message_id, client.lrange(key, 0, -1))))
    ids.update(filter(None, map(_message_id, client.hvals(channel.unacked_key))))
    return ids


def _amqp_probe(channel: Any, queue: str, ids: Collection[str]) -> Probe:
    """RabbitMQ counts a queue's ready messages and consumers but names no message: an
    empty queue has lost them all; one holding messages is taken to hold these."""
    try:
        _name, ready, consumers = channel.queue_declare(queue=queue, passive=True)
    except Exception as exc:  # NOT_FOUND: the queue (and its messages) is gone
        if "NOT_FOUND" not in str(exc) and "404" not in str(exc):
            raise
        return Probe(frozenset(ids), 0)
    return Probe(frozenset(ids) if ready == 0 else frozenset(), consumers)


def _folder_ids(channel: Any, queue: str) -> set[str]:
    """Ids of the embedded broker's message files for ``queue``."""
    folder = channel.data_folder_in
    ids: set[str] = set()
    suffix = f".{queue}.msg"
    for name in os.listdir(folder):
        if name.endswith(suffix) and not name.startswith("."):
            try:
                with open(os.path.join(folder, name), "rb") as f:
                    if found := _message_id(f.read()):
                        ids.add(found)
            except OSError:
                continue  # taken by a worker meanwhile
    return ids
