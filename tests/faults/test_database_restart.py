"""PostgreSQL (a private cluster, started and restarted by the test) goes away for a
moment while runs are queued and running: workers and clients retry their store
operations; every run is recorded once, nothing is lost or duplicated."""

from __future__ import annotations

import time

import pytest
from servers import PrivatePostgres

from jupyter_scriptrun.config import Settings
from jupyter_scriptrun.service.client import Client
from jupyter_scriptrun.status import ExecutionStatus


@pytest.fixture
def private_postgres():
    """A PostgreSQL cluster of this test's own, which it restarts."""
    server = PrivatePostgres()
    server.start()
    try:
        yield server.url, server.ctl
    finally:
        server.stop()


def test_runs_survive_a_postgres_restart(redis_settings: Settings, private_postgres, start_worker):
    url, ctl = private_postgres
    # Silent runs are lost after 30 s here (60 s by default): longer than the outage.
    fleet = redis_settings.with_(database_url=url, lost_after_s=30.0)
    start_worker(fleet, concurrency=2)
    client = Client(fleet)
    runs = [client.submit("example_script", {"delay": 0.2}) for _ in range(30)]
    deadline = time.monotonic() + 60
    while client.store.count("succeeded") < 5:
        assert time.monotonic() < deadline
        time.sleep(0.05)

    ctl("stop")  # connections drop; workers are mid-run
    time.sleep(2)
    ctl("start")

    for run in runs:
        assert run.wait(120).status is ExecutionStatus.SUCCEEDED, run.record()
    frame = client.history()
    assert len(frame) == 30 and (frame["attempt"] == 1).all()
    assert all(len(run.attempts()) == 1 for run in runs)  # none ran twice
