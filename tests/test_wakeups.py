"""Same-host wake-ups: the embedded worker sees a new run at once, and a waiting client
sees the run's end at once, instead of at their next poll."""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time
import uuid

import pytest

from jupyter_scriptrun import defaults
from jupyter_scriptrun.config import Settings
from jupyter_scriptrun.fleet import wakeups
from jupyter_scriptrun.fleet.local import LocalWorker
from jupyter_scriptrun.service.client import Client
from jupyter_scriptrun.status import ExecutionStatus

pytestmark = pytest.mark.skipif(
    wakeups.address("x") is None, reason="wake-ups need Linux's abstract sockets"
)


def test_a_ring_from_another_process_wakes_the_listener_at_once():
    name = f"test:{uuid.uuid4().hex}"
    with wakeups.Listener(name) as listener:
        assert listener.listening
        ring = f"from jupyter_scriptrun.fleet import wakeups; wakeups.ring({name!r})"
        threading.Timer(0.2, subprocess.run, ([sys.executable, "-c", ring],)).start()
        started = time.monotonic()
        assert listener.wait(60) is True
        assert time.monotonic() - started < 30  # woken, not timed out
        # The wake-up was consumed: the next wait sleeps its time out.
        assert listener.wait(0.05) is False


def test_a_second_listener_on_a_name_only_sleeps_and_nobody_listening_is_fine():
    name = f"test:{uuid.uuid4().hex}"
    wakeups.ring(name)  # nobody listens: no error
    with wakeups.Listener(name) as first, wakeups.Listener(name) as second:
        assert first.listening and not second.listening
        wakeups.ring(name)
        assert second.wait(0.01) is False
        assert first.wait(5) is True
    assert wakeups.Listener(None).listening is False


@pytest.fixture
def embedded(settings: Settings):
    yield settings
    LocalWorker(settings).stop()


def test_the_embedded_worker_takes_a_run_when_woken_not_at_its_poll(embedded: Settings):
    # With wake-ups the worker polls only every EMBEDDED_WOKEN_POLL_S (250 ms), so a
    # queue wait well under half of it can only come from the wake-up.
    client = Client(embedded)
    client.run("plain_text", wait_timeout=60)  # the local worker is up and idle
    waits = []
    for _ in range(7):
        time.sleep(0.05)  # the worker is back in its wait
        run = client.run("plain_text", wait_timeout=60)
        assert run.status is ExecutionStatus.SUCCEEDED
        record = run.record()
        waits.append((record["started_at"] - record["queued_at"]).total_seconds())
    assert statistics.median(waits) < defaults.EMBEDDED_WOKEN_POLL_S / 3, waits


def test_the_worker_rings_a_runs_end_after_recording_it(embedded: Settings):
    client = Client(embedded)
    client.run("plain_text", wait_timeout=60)  # the local worker is up
    run = client.submit("slow_script", {"seconds": 1})  # cannot end before we listen
    with wakeups.Listener(wakeups.run_name(run.id)) as listener:
        assert listener.listening
        deadline = time.monotonic() + 60
        while not listener.wait(1):
            assert time.monotonic() < deadline, "the run's end was never rung"
        # Rung after the finish was committed: the store already has the end.
        assert client.store.status(run.id) is ExecutionStatus.SUCCEEDED
