"""The benchmark's profile (``--profile``): real py-spy on real processes, their CPU
charged to the part of the product that spends it, and a waiting process charged nothing."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from jupyter_scriptrun.bench import profile

pytestmark = pytest.mark.skipif(not profile.available(), reason="py-spy is not installed")

# A process that writes runs to a SQLite store as fast as it can.
STORE_LOOP = """
import sys
from jupyter_scriptrun.store import Store, new_execution_id
store = Store(sys.argv[1])
print("ready", flush=True)
while True:
    store.create(id=new_execution_id(), script="s", script_id=None, parameters={},
                 page_context="test", queue="q", timeout_s=None, content_hash=None)
"""
# A process that only waits: on a pipe, as a worker waits on its broker.
WAITING = "import sys; print('ready', flush=True); sys.stdin.read()"


def started(code: str, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def test_a_process_writing_runs_has_its_cpu_charged_to_the_store_and_a_waiting_one_none(
    tmp_path: Path,
):
    busy = started(STORE_LOOP, f"sqlite:///{tmp_path / 'store.db'}")
    idle = started(WAITING)
    try:
        recording = profile.Profile(
            tmp_path / "profile", "t", {"busy": (busy.pid, False), "idle": (idle.pid, False)}
        )
        time.sleep(2.0)
        recording.stop()
        summary = recording.summary(runs=1)  # "per run": ms over the whole recording
    finally:
        for proc in (busy, idle):
            proc.kill()
            proc.wait()

    store = "store (SQLAlchemy, SQLite/PostgreSQL)"
    assert max(summary["busy"], key=summary["busy"].get) == store, summary
    assert summary["busy"][store] > 300, summary  # of ~2000 ms on a shared 2-core machine
    assert sum(summary["idle"].values()) < 50, summary  # waiting is not working
    # The collapsed stacks are kept for a flame graph: "frame;frame… count" per line.
    lines = (tmp_path / "profile" / "t-busy.txt").read_text().splitlines()
    assert any("jupyter_scriptrun/store/" in line for line in lines)


def test_a_stack_is_charged_to_its_innermost_product_frame_then_to_its_library():
    worker = "celery/worker/loops.py"
    assert (
        profile.owner(
            [
                f"asynloop ({worker}:97)",
                "run_attempt (jupyter_scriptrun/execution/executor.py:121)",
                "claim (jupyter_scriptrun/store/runs.py:230)",
                "execute (sqlalchemy/engine/base.py:1416)",
            ]
        )
        == "store (SQLAlchemy, SQLite/PostgreSQL)"
    )
    assert (
        profile.owner([f"asynloop ({worker}:97)", "on_message (kombu/messaging.py:1)"])
        == "Celery and kombu (consumer, messages, results)"
    )
    parent = "serve (jupyter_scriptrun/execution/warm.py:162)"
    assert profile.owner([parent, "_fork_spare (jupyter_scriptrun/execution/warm.py:234)"]) == (
        "warm parent: fork, hand-over, reap"
    )
    assert profile.owner(
        [parent, "become_script (jupyter_scriptrun/execution/forked.py:120)", "<module> (x.py:1)"]
    ) == ("a run's child: set-up, the script, exit")
