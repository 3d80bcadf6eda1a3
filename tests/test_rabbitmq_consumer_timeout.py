"""Runs longer than RabbitMQ's ``consumer_timeout``, on busy workers.

RabbitMQ closes a channel whose delivery stays unacknowledged past ``consumer_timeout``;
with late acks that is every run longer than it. The worker reconnects and its runs go
on, but the broker no longer counts them against the worker's prefetch. What must hold
then: a busy worker takes nothing it cannot start (each long run costs its worker one
reconnection, not one every few seconds), the waiting runs go to whichever worker frees
a slot first, and the workers keep working afterwards (they once froze: Celery restored
the prefetch from a pool thread, racing the event loop on the same connection).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_until
from servers import PrivateRabbitMQ, ServerMissing

from jupyter_scriptrun.config import Settings
from jupyter_scriptrun.service.client import Client
from jupyter_scriptrun.status import ExecutionStatus

pytestmark = [pytest.mark.slow, pytest.mark.rabbitmq]

CONSUMER_TIMEOUT_S = 2
LONG_S = 12  # six consumer timeouts

SLEEPER = '''"""Sleeps for `seconds`."""
# /// scriptrun
# [parameters.seconds]
# type = "number"
# ///
import json
import os
import time

time.sleep(json.loads(os.environ["SCRIPT_PARAMETERS"])["seconds"])
print(json.dumps({"status": "success", "data": {}}))
'''


@pytest.fixture(scope="module")
def rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRabbitMQ]:
    """A node of this module's own, with a short consumer timeout."""
    try:
        server = PrivateRabbitMQ.with_consumer_timeout(
            tmp_path_factory.mktemp("rabbit"), CONSUMER_TIMEOUT_S
        )
    except ServerMissing as exc:
        pytest.skip(str(exc))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def rabbit(settings: Settings, rabbitmq: PrivateRabbitMQ, tmp_path: Path) -> Settings:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "sleeper.py").write_text(SLEEPER)
    return settings.with_(broker_url=rabbitmq.url, scripts_path=(scripts,))


def reconnections(log: Path) -> int:
    return log.read_text().count("Connection to broker lost")


def start_long_runs(client: Client, n: int, where: str) -> list[Any]:
    """``n`` runs of ``LONG_S``, once all of them run."""
    long = [client.submit("sleeper", {"seconds": LONG_S}) for _ in range(n)]
    wait_until(
        lambda: all(run.status is ExecutionStatus.RUNNING for run in long),
        30,
        f"the long runs running {where}",
    )
    return long


def test_workers_busy_past_the_timeout_hold_nothing_and_reconnect_once(rabbit, start_worker):
    w1 = start_worker(rabbit, concurrency=1)
    w2 = start_worker(rabbit, concurrency=1)
    client = Client(rabbit)
    long = start_long_runs(client, 2, "one on each worker")
    # Queued while every slot is busy: they wait in the queue, not in a busy worker.
    waiting = [client.submit("sleeper", {"seconds": 0}) for _ in range(2)]

    for run in long:
        rec = run.wait(LONG_S + 60).record()
        assert (rec["status"], rec["attempt"]) == ("succeeded", 1)
        assert len(run.attempts()) == 1, "a long run ran twice"
    for run in waiting:
        assert run.wait(30).status is ExecutionStatus.SUCCEEDED

    # One reconnection per worker for the channel the broker closed. A busy worker that
    # took a delivery it could not start had its channel closed again every few seconds
    # (four times each in 12 s, before the slot gate).
    assert [reconnections(w.log) for w in (w1, w2)] == [1, 1]
    assert any("went back to the queue" in w.log.read_text() for w in (w1, w2))


def test_busy_workers_take_nothing_they_cannot_start_and_keep_working(rabbit, start_worker):
    busy = start_worker(rabbit, concurrency=2)
    client = Client(rabbit)
    long = start_long_runs(client, 2, "both on the first worker")
    idle = start_worker(rabbit, concurrency=1)
    # Queued while the first worker's slots are busy: the idle worker runs them.
    waiting = [client.submit("sleeper", {"seconds": 0}) for _ in range(3)]
    for run in waiting:
        rec = run.wait(30).record()
        assert rec["status"] == "succeeded"
        assert rec["worker"].startswith(idle.hostname.split("@")[0]), rec["worker"]

    for run in long:
        rec = run.wait(LONG_S + 60).record()
        assert (rec["status"], rec["attempt"]) == ("succeeded", 1)
        assert len(run.attempts()) == 1, "a long run ran twice"

    # One reconnection for the channel the broker closed, where a busy worker that took
    # a delivery it could not start had its channel closed again every few seconds.
    assert (reconnections(busy.log), reconnections(idle.log)) == (1, 0)

    # Both workers still run what comes (the first once froze here), and neither exited.
    ran_on: set[str] = set()

    def both_run_quick_runs() -> bool:
        quick = [client.submit("sleeper", {"seconds": 0.3}) for _ in range(6)]
        ran_on.update(run.wait(30).record()["worker"].split("@")[0] for run in quick)
        return len(ran_on) == 2

    wait_until(both_run_quick_runs, 60, "both workers run quick runs")
    assert busy.proc.poll() is None and idle.proc.poll() is None
