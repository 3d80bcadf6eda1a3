"""PostgreSQL (a private cluster, started and restarted by the test) goes away for a
moment while runs are queued and running: workers and clients retry their store
operations; every run is recorded once, nothing is lost or duplicated."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from conftest import free_port

from jupyter_scriptrun.client import Client
from jupyter_scriptrun.config import Settings
from jupyter_scriptrun.status import ExecutionStatus

BINDIR = next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin"))), None)


def as_postgres(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL tool as the postgres user (initdb refuses root)."""
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run([*prefix, *argv], capture_output=True, text=True, timeout=120)


@pytest.fixture
def private_postgres():
    if BINDIR is None:
        pytest.fail("PostgreSQL server binaries are needed (/usr/lib/postgresql/*/bin)")
    # Not under pytest's tmp_path: its parents are private to root, and postgres must
    # reach its data folder.
    tmp_path = Path(tempfile.mkdtemp(prefix="scriptrun-pg-"))
    data = tmp_path / "pgdata"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(tmp_path, "postgres")
        shutil.chown(data, "postgres")
    init = as_postgres(f"{BINDIR}/initdb", "-D", str(data), "-A", "trust", "-U", "postgres")
    assert init.returncode == 0, init.stderr
    port = free_port()
    options = f"-p {port} -k {tmp_path} -c listen_addresses=127.0.0.1 -c fsync=off"

    def ctl(action: str) -> None:
        out = as_postgres(
            f"{BINDIR}/pg_ctl",
            "-D",
            str(data),
            "-l",  # the server's output to a file, not to our pipe (run() would wait on it)
            str(tmp_path / "server.log"),
            "-o",
            options,
            "-w",
            "-m",
            "fast",
            action,
        )
        assert out.returncode == 0, out.stderr + out.stdout

    ctl("start")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", ctl
    finally:
        as_postgres(f"{BINDIR}/pg_ctl", "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(tmp_path, ignore_errors=True)


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
