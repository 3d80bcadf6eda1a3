"""``sr.dashboard()`` driven through its widget models, over a real worker and Redis: the
values after a known mix of runs, a failure's logs, refreshing in the background, and no
growth while it stays open."""

from __future__ import annotations

import signal
import time

import pytest
from ipywidgets.widgets.widget import _instances  # every live widget

from jupyter_scriptrun.config import Settings
from jupyter_scriptrun.jupyter.dashboard import Dashboard
from jupyter_scriptrun.jupyter.panel import Panel
from jupyter_scriptrun.service.client import Client
from jupyter_scriptrun.status import ExecutionStatus


@pytest.fixture
def fleet(redis_settings: Settings, start_worker):
    """A worker (2 slots) that ran two successes and a failure, and runs a slow script."""
    worker = start_worker(redis_settings, concurrency=2)
    client = Client(redis_settings)
    for n in (1, 2):
        run = client.run("example_script", {"multiplier": n}, wait_timeout=60)
        assert run.status is ExecutionStatus.SUCCEEDED
    assert client.run("failing_script", wait_timeout=60).status is ExecutionStatus.FAILED
    slow = client.submit("slow_script", {"seconds": 60})
    deadline = time.monotonic() + 30
    while slow.status is not ExecutionStatus.RUNNING:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    yield client, worker
    slow.cancel()


def test_the_dashboard_shows_workers_queues_scripts_charts_and_failures(fleet):
    client, _ = fleet
    board = Dashboard(client, start=False)
    board.refresh()
    assert "1 worker(s)" in board.title.value
    assert "test-" in board.workers.value and "1/2" in board.workers.value
    assert "slow_script" in board.workers.value  # the run it runs, with its elapsed time
    assert client.settings.queue in board.queues.value
    scripts = board.scripts.value
    assert "example_script" in scripts and "failing_script" in scripts
    example = next(s for s in board.snapshot.scripts if s.script == "example_script")
    assert (example.runs, example.failed) == (2, 0) and example.p50_s is not None
    # The charts' arrays: runs per minute by outcome over the last hour.
    succeeded, failed, other = (sum(series) for series in board.runs_chart.y)
    assert (succeeded, failed, other) == (2, 1, 0)
    assert len(board.runs_chart.x) >= 60
    # The median: a point (and the line) only at the minutes that had runs, no NaN.
    assert 1 <= len(board.latency_chart.y) == len(board.latency_points.y) <= 2
    assert board.latency_figure.marks == [board.latency_chart, board.latency_points]
    # The recent failure, and its logs and traceback a click away.
    row, label, button = board.failure_rows[0]
    assert row.layout.display == "flex" and "failing_script" in label.value
    assert board.failure_rows[1][0].layout.display == "none"
    button.click()
    assert "ValueError" in board.detail.value and "failed" in board.detail.value


def test_a_worker_that_stops_answering_stays_listed_as_silent(fleet):
    client, worker = fleet
    board = Dashboard(client, start=False, workers_timeout=0.3)
    board.refresh()
    worker.kill(signal.SIGSTOP)  # alive but silent: a hung or cut-off host
    try:
        board.refresh()
        assert "no answer for" in board.workers.value and "test-" in board.workers.value
        assert "0 worker(s)" in board.title.value
    finally:
        worker.kill(signal.SIGCONT)


def test_it_refreshes_in_the_background_and_does_not_grow(fleet):
    client, _ = fleet
    board = Dashboard(client, refresh_s=0.2, start=False, workers_timeout=0.2)
    board.refresh()
    widgets = len(_instances)
    for _ in range(30):
        board.refresh()
    assert len(_instances) == widgets  # values change; no widget is made
    board.start()
    seen = board.refreshes
    board.window.value = "15 min"  # a new window is read at once
    deadline = time.monotonic() + 20
    while board.refreshes < seen + 3:
        assert time.monotonic() < deadline, "the dashboard stopped refreshing"
        time.sleep(0.05)
    assert board.snapshot.window_s == 900
    board.close()
    stopped = board.refreshes
    time.sleep(0.6)
    assert board.refreshes <= stopped + 1  # at most the refresh under way


def test_the_panels_fleet_tab_reads_the_fleet_only_while_open(fleet):
    client, _ = fleet
    panel = Panel(client)
    assert panel.dashboard is None  # nothing is read until the tab is opened
    panel.tabs.selected_index = 3
    assert panel.dashboard is not None and panel.fleet_tab.children == (panel.dashboard.widget,)
    deadline = time.monotonic() + 20
    while panel.dashboard.refreshes < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    panel.tabs.selected_index = 0
    assert panel.dashboard._stop.is_set()
    panel.dashboard.close()


def test_a_run_that_reports_progress_shows_a_bar_on_its_worker(fleet):
    client, _ = fleet
    run = client.submit("stepper", {"steps": 40, "pause": 0.25})
    board = Dashboard(client, start=False)
    try:
        deadline = time.monotonic() + 30
        while "role='progressbar'" not in board.workers.value:
            assert time.monotonic() < deadline, board.workers.value
            time.sleep(0.3)
            board.refresh()
        assert "stepper" in board.workers.value and "/40 (" in board.workers.value
    finally:
        board.close()
        run.cancel()
