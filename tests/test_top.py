"""``scriptrun workers`` and ``scriptrun top --once`` against two real workers: what an
operator sees over SSH."""

from __future__ import annotations

import json
import re
import time

from jupyter_scriptrun.cli.top import render
from jupyter_scriptrun.config import Settings
from jupyter_scriptrun.service.client import Client
from jupyter_scriptrun.status import ExecutionStatus
from tests.conftest import scriptrun_cli


def test_workers_and_top_show_the_fleet_with_its_runs(redis_settings: Settings, start_worker):
    first = start_worker(redis_settings, concurrency=2)
    second = start_worker(redis_settings, concurrency=3)
    client = Client(redis_settings)
    assert client.run("example_script", wait_timeout=60).status is ExecutionStatus.SUCCEEDED
    assert client.run("failing_script", wait_timeout=60).status is ExecutionStatus.FAILED
    slow = [client.submit("slow_script", {"seconds": 30}) for _ in range(2)]
    deadline = time.monotonic() + 30
    while not all(run.status is ExecutionStatus.RUNNING for run in slow):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    try:
        listing = json.loads(scriptrun_cli(redis_settings, "workers", "--json").stdout)
        assert len(listing) == 2
        assert sorted(w["slots"] for w in listing) == [2, 3]
        assert all(w["queues"] == [redis_settings.queue] for w in listing)
        assert all(w["tree_rss_bytes"] > 20 * 2**20 for w in listing)
        running = {r["id"]: r for w in listing for r in w["runs"]}
        assert set(running) == {run.id for run in slow}
        assert all(r["script"] == "slow_script" and r["elapsed_s"] >= 0 for r in running.values())
        assert {w["pid"] for w in listing} == {first.pid, second.pid}

        text = scriptrun_cli(redis_settings, "workers").stdout
        assert text.splitlines()[0].split() == ["WORKER", "QUEUES", "BUSY", "WAITING", "RSS", "UP"]
        assert (
            sum(line.strip().startswith(run.id[:8]) for line in text.splitlines() for run in slow)
            == 2
        )

        top = scriptrun_cli(redis_settings, "top", "--once", "--window", "15m")
        assert top.returncode == 0, top.stderr
        screen = top.stdout
        assert "\x1b[" not in screen  # --once is plain text, for logs and pipes
        assert "WORKERS: 2 online" in screen
        queue_row = next(
            line for line in screen.splitlines() if line.startswith(redis_settings.queue)
        )
        assert queue_row.split()[1:3] == ["0", "2"]  # none queued, two running
        assert re.search(r"^example_script\s+1\s+0\s+0%", screen, re.M), screen
        assert re.search(r"^failing_script\s+1\s+1\s+100%", screen, re.M), screen
        assert "RECENT FAILURES" in screen and "ValueError" in screen
    finally:
        for run in slow:
            run.cancel()


def test_a_window_with_more_runs_than_it_reads_says_so_and_keeps_the_newest(
    settings: Settings, monkeypatch
):
    from test_metrics import ended

    from jupyter_scriptrun.observe import fleetview

    client = Client(settings)
    for script in ("old", "new", "new"):
        ended(client.store, script, ExecutionStatus.SUCCEEDED, 0.1)
        time.sleep(0.01)
    monkeypatch.setattr(fleetview, "MAX_ROWS", 2)
    snap = fleetview.snapshot(client, 3600, workers_timeout=0.1, broker=False)
    assert snap.truncated
    assert [(s.script, s.runs) for s in snap.scripts] == [("new", 2)]
    assert "the newest 2 only" in render(snap)
