"""Nothing a script started outlives its worker: the children of a script whose worker was
SIGKILLed are killed by the next sweep on the host (a worker restarted, or another one)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from conftest import pid_alive

from jupyter_scriptrun.config import Settings
from jupyter_scriptrun.execution.orphans import Ledger
from jupyter_scriptrun.service.client import Client


@pytest.fixture
def leftovers() -> Iterator[list[int]]:
    """Pids a test saw its script start: killed at the end should the test fail."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


def wait_for_pids(pidfile: Path, timeout: float = 30.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while not pidfile.exists() or not pidfile.read_text().strip():
        assert time.monotonic() < deadline, "the script never wrote its children's pids"
        time.sleep(0.05)
    return [int(p) for p in pidfile.read_text().split()]


def wait_gone(pids: list[int], timeout: float) -> float:
    t0 = time.monotonic()
    while any(pid_alive(p) for p in pids):
        alive = [p for p in pids if pid_alive(p)]
        assert time.monotonic() - t0 < timeout, f"still running: {alive}"
        time.sleep(0.05)
    return time.monotonic() - t0


@pytest.mark.parametrize("runner", ["fresh", "warm"])
def test_children_of_a_killed_worker_s_script_die_when_a_worker_restarts(
    redis_settings: Settings, start_worker, tmp_path: Path, runner: str, leftovers: list[int]
):
    settings = redis_settings.with_(default_runner=runner)
    worker = start_worker(settings)
    client = Client(settings)
    pidfile = tmp_path / "pids"
    run = client.submit("fork_bomb", {"children": 5, "pidfile": str(pidfile)})
    children = wait_for_pids(pidfile)
    leftovers += children
    assert len(list((settings.data_dir / "running").glob("*.json"))) == 1
    worker.kill()  # SIGKILL to the worker's main process
    time.sleep(2.0)
    assert all(pid_alive(p) for p in children)  # they ignore SIGTERM and were not told
    start_worker(settings)  # the worker comes back (systemd, supervisord, a human)
    wait_gone(children, timeout=15)
    assert list((settings.data_dir / "running").glob("*.json")) == []
    assert client.run("example_script").status.value == "succeeded"
    assert run.wait(30).status.value == "lost"  # the reaper of the new worker


def test_another_worker_on_the_host_sweeps_within_a_reap_period(
    redis_settings: Settings, start_worker, tmp_path: Path, leftovers: list[int]
):
    busy = redis_settings.with_(queue=f"{redis_settings.queue}-busy")
    worker = start_worker(busy)
    start_worker(redis_settings)  # a second worker, other queue, same host and data folder
    pidfile = tmp_path / "pids"
    Client(busy).submit("fork_bomb", {"children": 3, "pidfile": str(pidfile)})
    children = wait_for_pids(pidfile)
    leftovers += children
    worker.kill()
    took = wait_gone(children, timeout=10)
    assert took < redis_settings.reap_every_s + 5


OWNER = """
import json, subprocess, sys, time
from pathlib import Path
from jupyter_scriptrun.execution.orphans import Ledger
leader = subprocess.Popen(
    [sys.executable, "-c", "import os, time; os.fork(); time.sleep(60)"],
    start_new_session=True,
    stdout=subprocess.DEVNULL,  # not our pipe: the test reads this process's output
    stderr=subprocess.DEVNULL,
)
time.sleep(0.3)  # the leader has forked its child
Ledger(Path(sys.argv[1])).add(leader.pid, "e1", 1)
print(leader.pid, flush=True)
"""


def test_the_ledger_sweeps_only_sessions_of_dead_owners(tmp_path: Path, leftovers: list[int]):
    ledger = Ledger(tmp_path / "running")
    # an owner that records a session (a leader and its child) and exits: a dead worker
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(OWNER), str(ledger.dir)],
        capture_output=True,
        text=True,
        check=True,
    )
    sid = int(out.stdout)
    members = [sid, *_session_members(sid)]
    leftovers += members
    assert len(members) == 2
    # a session whose owner (this process) lives is left alone
    mine = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    try:
        ledger.add(mine.pid, "e2", 1)
        [entry] = ledger.sweep()
        assert entry["execution_id"] == "e1" and sorted(entry["killed"]) == sorted(members)
        wait_gone(members, timeout=5)
        assert mine.poll() is None
        assert json.loads((ledger.dir / f"{mine.pid}.json").read_text())["owner"] == os.getpid()
        ledger.remove(mine.pid)
        assert ledger.sweep() == [] and list(ledger.dir.iterdir()) == []
    finally:
        mine.kill()
        mine.wait()


def _session_members(sid: int) -> list[int]:
    """Processes of session ``sid`` other than its leader (read with psutil and getsid,
    not through the code under test)."""
    found = []
    for p in psutil.process_iter():
        try:
            if p.pid != sid and os.getsid(p.pid) == sid:
                found.append(p.pid)
        except (OSError, psutil.Error):
            continue
    return found


@pytest.mark.parametrize("runner", ["fresh", "warm"])
def test_a_daemon_that_double_forks_and_calls_setsid_ends_with_its_run(
    redis_settings: Settings, start_worker, tmp_path: Path, leftovers: list[int], runner: str
):
    """The supervising process (the worker, or the warm parent) is a child subreaper:
    the daemon comes back to it instead of PID 1 and is ended with the run, and its exit
    is collected (no zombie stays with the worker)."""
    settings = redis_settings.with_(default_runner=runner)
    worker = start_worker(settings)
    client = Client(settings)
    pidfile = tmp_path / "daemon.pid"
    run = client.run("daemonizes", {"pidfile": str(pidfile)}, wait_timeout=60)
    assert run.status.value == "succeeded" and run.data == "daemon left"
    daemon = wait_for_pids(pidfile)[0]
    leftovers.append(daemon)
    deadline = time.monotonic() + 5
    while pid_alive(daemon):
        assert time.monotonic() < deadline, f"the daemon {daemon} outlived its {runner} run"
        time.sleep(0.05)
    tree = psutil.Process(worker.pid).children(recursive=True)
    assert not [p for p in tree if p.status() == psutil.STATUS_ZOMBIE], tree


@pytest.mark.parametrize("runner", ["fresh", "warm"])
def test_a_cancelled_runs_daemon_ends_with_it(
    redis_settings: Settings, start_worker, tmp_path: Path, leftovers: list[int], runner: str
):
    settings = redis_settings.with_(default_runner=runner)
    start_worker(settings)
    client = Client(settings)
    pidfile = tmp_path / "daemon.pid"
    run = client.submit("daemonizes", {"pidfile": str(pidfile), "linger": 60})
    daemon = wait_for_pids(pidfile)[0]
    leftovers.append(daemon)
    time.sleep(0.5)  # the daemon has left: the script's tree no longer holds it
    run.cancel()
    assert run.wait(30).status.value == "cancelled"
    deadline = time.monotonic() + 5
    while pid_alive(daemon):
        assert time.monotonic() < deadline, f"the daemon {daemon} outlived its cancelled run"
        time.sleep(0.05)
