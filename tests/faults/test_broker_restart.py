"""Redis (a private instance, started and stopped by the test) dies and comes back while
runs are queued and running (500): every run ends in a final state, none disappears."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import free_port

from jupyter_scriptrun.client import Client
from jupyter_scriptrun.config import Settings
from jupyter_scriptrun.exceptions import WorkerUnavailable
from jupyter_scriptrun.status import FINAL, ExecutionStatus


class PrivateRedis:
    """redis-server on a free loopback port, without persistence (a restart loses all)."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.folder = folder
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while (
            subprocess.run(
                ["redis-cli", "-p", str(self.port), "ping"], capture_output=True
            ).stdout.strip()
            != b"PONG"
        ):
            assert time.monotonic() < deadline, "private redis did not start"
            time.sleep(0.05)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def redis(tmp_path: Path):
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is needed (Debian's redis-server package)")
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    if server.proc is not None and server.proc.poll() is None:
        server.kill()


def test_runs_survive_a_redis_crash_and_restart(
    settings: Settings, redis: PrivateRedis, start_worker
):
    fleet = settings.with_(broker_url=redis.url, requeue_after_s=3.0)
    start_worker(fleet)
    client = Client(fleet)
    runs = [client.submit("example_script") for _ in range(500)]
    deadline = time.monotonic() + 60
    while client.store.count("succeeded") < 20:
        assert time.monotonic() < deadline
        time.sleep(0.05)

    redis.kill()  # queued messages are gone with it
    t0 = time.monotonic()
    with pytest.raises(WorkerUnavailable):
        client.submit("example_script")
    assert time.monotonic() - t0 < 10, "a client must get an error, not a hang"
    time.sleep(2)
    redis.start()  # same port, empty

    final = {s.value for s in FINAL}
    deadline = time.monotonic() + 300
    while True:
        statuses = [r.status.value for r in runs]
        if all(s in final for s in statuses):
            break
        assert time.monotonic() < deadline, {s: statuses.count(s) for s in set(statuses)}
        time.sleep(0.5)
    counts = {s: statuses.count(s) for s in set(statuses)}
    # Every run ended; those in flight during the crash may be lost, none is left waiting.
    assert counts.get("succeeded", 0) >= 490, counts
    assert set(counts) <= {"succeeded", "lost", "failed"}, counts
    assert client.store.count("queued") == 0 and client.store.count("running") == 0
    assert client.run("example_script", wait_timeout=60).status is ExecutionStatus.SUCCEEDED
