"""The worker's Redis channel hands back unacknowledged runs even when its connection let go
of its parameters first (the close order of a reconnection that once made a worker exit)."""

from __future__ import annotations

import redis
from kombu import Connection, Exchange, Queue, transport

from jupyter_scriptrun.fleet import redis_broker


def _one_unacked_message(url: str, queue: str) -> tuple[Connection, object]:
    """A connection with our transport and a channel holding one delivered, unacked message."""
    conn = Connection(url, transport=redis_broker.Transport)
    channel = conn.channel()
    q = Queue(queue, Exchange(queue), routing_key=queue, channel=channel)
    q.declare()
    conn.Producer(channel).publish({"run": 1}, exchange=q.exchange, routing_key=queue)
    message = q.get(no_ack=False)
    assert message is not None and message.payload == {"run": 1}
    return conn, channel


def test_a_channel_closed_after_its_connection_let_go_hands_its_runs_back(redis_url: str):
    queue = "test-redis-broker-handback"
    raw = redis.Redis.from_url(redis_url)
    raw.delete(queue)
    conn, channel = _one_unacked_message(redis_url, queue)
    assert raw.llen(queue) == 0  # delivered, held unacknowledged

    # The reconnection's order: the pools go, then the connection's parameters, then the
    # channel closes (kombu's own channel raises AttributeError on 'hostname' here).
    channel._disconnect_pools()
    conn._do_close_transport()
    channel.close()

    assert raw.llen(queue) == 1, "the unacknowledged run is back in its queue"
    assert channel._pool is None, "the pool made to hand it back is not left open"
    raw.delete(queue)


def test_a_channel_that_never_connected_reports_a_lost_connection_not_a_crash():
    channel = redis_broker.Channel.__new__(redis_broker.Channel)
    channel.connection = None
    try:
        channel._connparams()
    except redis.exceptions.ConnectionError as exc:
        assert "closed" in str(exc)
    else:
        raise AssertionError("expected a connection error")


def test_install_points_redis_urls_at_the_worker_transport():
    before = dict(transport.TRANSPORT_ALIASES)
    try:
        redis_broker.install()
        assert transport.get_transport_cls("redis") is redis_broker.Transport
        assert transport.get_transport_cls("rediss") is redis_broker.Transport
        # Its URL stays the plain one that Celery's banner and Flower show.
        assert Connection("redis://127.0.0.1:1/0").as_uri().startswith("redis://")
    finally:
        transport.TRANSPORT_ALIASES.clear()
        transport.TRANSPORT_ALIASES.update(before)
        for scheme in ("redis", "rediss"):
            transport._transport_cache.pop(scheme, None)


def test_every_spelling_of_a_broker_url_finds_its_transports_adapter():
    """A broker is one adapter (fleet/brokers.py), found by the URL's scheme as kombu reads
    it: Redis's spellings keep held messages where the reaper looks, only AMQP redelivers
    on disconnect (so only it needs the slot gate), an unknown transport has none."""
    from jupyter_scriptrun.fleet import brokers

    for scheme in ("redis", "rediss", "redis+socket", "sentinel"):
        found = brokers.adapter(scheme)
        assert isinstance(found, brokers.RedisQueues), scheme
        assert "unacked_key" in found.transport_options()
        assert not found.redelivers_on_disconnect
    for scheme in ("amqp", "pyamqp", "amqps"):
        found = brokers.adapter(scheme)
        assert isinstance(found, brokers.AmqpQueues) and found.redelivers_on_disconnect
    assert isinstance(brokers.adapter("filesystem"), brokers.FolderQueues)
    assert brokers.adapter("memory") is None
    assert brokers.adapter("no-such-transport") is None
