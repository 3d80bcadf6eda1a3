"""What others send: messages a plain kombu producer (or a raw Redis client) puts on a
worker's queue that no scriptrun client would. Each is refused in one log line,
acknowledged and counted; the worker never exits, never loops, and the next good run
succeeds on the same worker (real Redis and RabbitMQ, a real worker)."""

from __future__ import annotations

import base64
import json
import urllib.request
import uuid

import pytest
from conftest import wait_until
from servers import free_port

from jupyter_scriptrun.config import Settings
from jupyter_scriptrun.fleet.celery_app import TASK_NAME
from jupyter_scriptrun.service.client import Client
from jupyter_scriptrun.status import ExecutionStatus

GOOD_BODY = [["0" * 32, 1], {}, {"callbacks": None, "errbacks": None, "chain": None}]


def hex_id() -> str:
    return uuid.uuid4().hex


POISON_HEADERS = {
    "timelimit a string": {"task": TASK_NAME, "id": hex_id(), "timelimit": "abc"},
    "timelimit of three": {"task": TASK_NAME, "id": hex_id(), "timelimit": [1, 2, 3]},
    "timelimit of strings": {"task": TASK_NAME, "id": hex_id(), "timelimit": ["a", "b"]},
    "id a list": {"task": TASK_NAME, "id": ["a", "b"]},
    "id an object": {"task": TASK_NAME, "id": {"x": 1}},
    "no id": {"task": TASK_NAME},
    "empty id": {"task": TASK_NAME, "id": ""},
    "task a list": {"task": ["x"], "id": hex_id()},
    "task a number": {"task": 7, "id": hex_id()},
    "unknown task": {"task": "someone.else", "id": hex_id()},
    "eta not a time": {"task": TASK_NAME, "id": hex_id(), "eta": "tomorrow"},
    "eta a list": {"task": TASK_NAME, "id": hex_id(), "eta": [2026]},
    "expires an object": {"task": TASK_NAME, "id": hex_id(), "expires": {"a": 1}},
    "retries a string": {"task": TASK_NAME, "id": hex_id(), "retries": "x"},
    "root_id a list": {"task": TASK_NAME, "id": hex_id(), "root_id": [1]},
    "shadow a number": {"task": TASK_NAME, "id": hex_id(), "shadow": 3},
    "argsrepr a dict": {"task": TASK_NAME, "id": hex_id(), "argsrepr": {"a": 1}},
    "ignore_result a string": {"task": TASK_NAME, "id": hex_id(), "ignore_result": "yes"},
}


def refusals(worker) -> int:
    return worker.log.read_text(errors="replace").count("refused a message")


def kombu_publish(url: str, queue: str, body: object, headers: dict, **kw: object) -> None:
    """One message as a plain kombu producer sends it."""
    from kombu import Connection, Queue

    with Connection(url) as conn:
        conn.Producer().publish(
            body,
            routing_key=queue,
            headers=headers,
            serializer=kw.pop("serializer", "json"),
            declare=[Queue(queue)],
            retry=True,
            **kw,
        )


def raw_redis_push(url: str, queue: str, envelope: object) -> None:
    """A message as kombu's Redis transport stores it, written by hand (headers that are
    not an object cannot be sent through kombu's producer)."""
    import redis

    conn = redis.Redis.from_url(url)
    try:
        conn.lpush(queue, envelope if isinstance(envelope, bytes) else json.dumps(envelope))
    finally:
        conn.close()


def envelope(headers: object, body: object = GOOD_BODY) -> dict:
    return {
        "body": base64.b64encode(json.dumps(body).encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": {
            "delivery_tag": hex_id(),
            "body_encoding": "base64",
            "delivery_info": {"exchange": "", "routing_key": "x"},
            "priority": 0,
        },
    }


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def refused_metric(text: str) -> dict[str, float]:
    found = {}
    for line in text.splitlines():
        if line.startswith("scriptrun_messages_refused_total{"):
            labels, value = line.rsplit(" ", 1)
            found[labels.split('reason="')[1].split('"')[0]] = float(value)
    return found


def assert_survives(worker, settings: Settings, sent: int, before: int) -> None:
    wait_until(lambda: refusals(worker) >= before + sent, 30, f"{sent} messages refused")
    assert worker.proc.poll() is None, worker.log.read_text()[-3000:]
    run = Client(settings).run("example_script", wait_timeout=60)
    assert run.status is ExecutionStatus.SUCCEEDED
    text = worker.log.read_text(errors="replace")
    assert refusals(worker) == before + sent, "each message is refused once, not again"
    assert "Unrecoverable error" not in text and "Connection to broker lost" not in text
    assert "Traceback" not in text
    refused_lines = [line for line in text.splitlines() if "refused a message" in line]
    assert all(len(line) < 400 for line in refused_lines)


@pytest.mark.parametrize("name", list(POISON_HEADERS))
def test_each_odd_header_is_named_before_celery_reads_it(name: str):
    from jupyter_scriptrun.fleet.consumer import header_problem

    reason, detail = header_problem(POISON_HEADERS[name])
    assert reason in ("bad_headers", "unknown_task") and len(detail) < 120


def test_celerys_own_headers_pass():
    from celery import Celery

    from jupyter_scriptrun.fleet.consumer import header_problem

    app = Celery(broker="memory://")
    message = app.amqp.as_task_v2(
        hex_id(),
        TASK_NAME,
        args=["0" * 32, 1],
        countdown=5,
        expires=60,
        time_limit=10,
        soft_time_limit=5,
        shadow="scriptrun:x",
    )
    assert header_problem(message.headers) is None
    assert header_problem({"lang": "py"}) is None  # protocol 1: Celery reads the body


def test_every_odd_message_at_once_on_redis_leaves_one_worker_running(
    redis_settings: Settings, start_worker
):
    port = free_port()
    worker = start_worker(redis_settings.with_(metrics_port=port), concurrency=1)
    url, queue = redis_settings.broker_url, redis_settings.queue
    for headers in POISON_HEADERS.values():
        kombu_publish(url, queue, GOOD_BODY, headers)
    raw = [
        envelope(["not", "an", "object"]),
        envelope("a string"),
        envelope(None),
        envelope(7),
        envelope({"task": TASK_NAME, "id": hex_id()}, body="not a list"),
        envelope({"task": TASK_NAME, "id": hex_id()}, body=[["x" * 40, 1], {}, {}]),
        b"not json at all",
        {"body": "e30=", "headers": {}},  # no properties
        ["a", "list"],
    ]
    for message in raw:
        raw_redis_push(url, queue, message)
    # Not JSON in the body, and a pickle, which the worker never accepts.
    kombu_publish(
        url,
        queue,
        "{not json",
        {"task": TASK_NAME, "id": hex_id()},
        serializer=None,
        content_type="application/json",
        content_encoding="utf-8",
    )
    kombu_publish(
        url,
        queue,
        b"\x80\x04K\x01.",
        {"task": TASK_NAME, "id": hex_id()},
        serializer=None,
        content_type="application/x-python-serialize",
        content_encoding="binary",
    )
    sent = len(POISON_HEADERS) + len(raw) + 2
    assert_survives(worker, redis_settings, sent, 0)
    counted = refused_metric(scrape(port))
    assert sum(counted.values()) == sent, counted
    assert {"bad_headers", "unknown_task", "bad_arguments"} <= set(counted)


def test_odd_headers_from_kombu_are_refused_on_rabbitmq(
    settings: Settings, rabbitmq_url: str, start_worker
):
    amqp = settings.with_(broker_url=rabbitmq_url)
    worker = start_worker(amqp, concurrency=1)
    for headers in POISON_HEADERS.values():
        kombu_publish(rabbitmq_url, amqp.queue, GOOD_BODY, headers)
    assert_survives(worker, amqp, len(POISON_HEADERS), 0)


@pytest.fixture
def own_redis(tmp_path):
    """A Redis of this test's own: what it leaves at kombu's key names would break any
    plain Celery worker (the benchmark's in-process baseline) that shares the session's Redis."""
    from servers import PrivateRedis

    server = PrivateRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def test_a_foreign_message_to_kombus_unacked_names_is_just_an_unconsumed_queue(
    settings: Settings, own_redis, start_worker
):
    """Runs held by a worker are kept under names no queue can have; a foreign client
    sending to ``unacked`` or ``unacked_index`` (kombu's own key names) breaks nothing."""
    import redis

    redis_settings = settings.with_(broker_url=own_redis.url)
    worker = start_worker(redis_settings, concurrency=1)
    client = Client(redis_settings)
    url = redis_settings.broker_url
    for queue in ("unacked", "unacked_index", "unacked_mutex"):
        kombu_publish(url, queue, GOOD_BODY, {"task": TASK_NAME, "id": hex_id()})
    held = client.submit("slow_script", {"seconds": 2})
    wait_until(lambda: held.status is ExecutionStatus.RUNNING, 30, "the run starts")
    conn = redis.Redis.from_url(url)
    try:
        held_there = [v for v in conn.hvals("_scriptrun:unacked") if held.id.encode() in v]
        assert held_there, "the worker holds its message there"
        assert held.wait(30).status is ExecutionStatus.SUCCEEDED
        for _ in range(3):
            assert client.run("example_script", wait_timeout=60).status.value == "succeeded"
        assert conn.llen("unacked") == 1 and conn.llen("unacked_index") == 1
    finally:
        conn.close()
    text = worker.log.read_text(errors="replace")
    assert "WRONGTYPE" not in text and "Connection to broker lost" not in text
