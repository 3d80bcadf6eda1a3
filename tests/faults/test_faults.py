"""Faults and abuse against real workers, Redis and stores: the product survives them
with nothing lost, nothing left running, and the next run unaffected."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest
from conftest import pid_alive

from jupyter_scriptrun.config import Settings
from jupyter_scriptrun.service.client import Client
from jupyter_scriptrun.status import ExecutionStatus


def wait_running(run, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while run.status is not ExecutionStatus.RUNNING:
        assert time.monotonic() < deadline, f"run still {run.status.value}"
        time.sleep(0.05)


def test_a_script_forking_200_children_is_ended_whole(client: Client, tmp_path: Path):
    pidfile = tmp_path / "pids"
    run = client.submit("fork_bomb", {"children": 200, "pidfile": str(pidfile)}, timeout=4)
    rec = run.wait(60).record()
    assert rec["status"] == "timed_out"
    time.sleep(0.5)
    survivors = [p for p in map(int, pidfile.read_text().split()) if pid_alive(p)]
    assert survivors == []
    assert client.run("example_script").status is ExecutionStatus.SUCCEEDED


def test_output_that_is_not_utf8_is_stored_and_shown(client: Client):
    run = client.run("binary_output")
    assert run.status is ExecutionStatus.SUCCEEDED
    assert run.stdout == "before \ufffd\ufffd\ufffd after\n"
    assert "err \ufffd( end" in run.stderr
    assert "before" in run._repr_html_()
    chunks = "".join(c["text"] for c in run.output()["chunks"] if c["stream"] == "stdout")
    assert chunks == run.stdout


def test_shell_metacharacters_in_parameters_are_only_data(client: Client, tmp_path: Path):
    marker = tmp_path / "pwned"
    nasty = f"$(touch {marker}); `touch {marker}` && rm -rf / ; echo ${{HOME}} | cat"
    run = client.run("example_script", {"message": nasty})
    assert run.status is ExecutionStatus.SUCCEEDED
    assert run.data["original_message"] == nasty
    shell = client.run("disk_report", {"path": f"/tmp; touch {marker}"})
    assert shell.data["path"] == f"/tmp; touch {marker}"  # a (missing) folder name, no more
    assert not marker.exists()


def test_a_pickled_message_is_refused_and_the_worker_goes_on(
    redis_settings: Settings, start_worker
):
    from jupyter_scriptrun.fleet.celery_app import TASK_NAME

    worker = start_worker(redis_settings)
    client = Client(redis_settings)
    victim = client.submit("example_script")
    # The same task, sent by someone else as pickle: never executed.
    client.app.send_task(
        TASK_NAME, args=(victim.id, 1), queue=redis_settings.queue, serializer="pickle"
    )
    assert victim.wait(30).status is ExecutionStatus.SUCCEEDED  # the JSON delivery ran
    time.sleep(1)
    log = worker.log.read_text()
    assert "ContentDisallowed" in log or "disallowed" in log.lower()
    assert len(victim.attempts()) == 1
    assert client.run("plain_text").status is ExecutionStatus.SUCCEEDED


def test_a_worker_stopped_with_sigterm_finishes_the_run_in_flight(
    redis_settings: Settings, start_worker
):
    worker = start_worker(redis_settings)
    client = Client(redis_settings)
    run = client.submit("slow_script", {"seconds": 3})
    wait_running(run)
    os.kill(worker.pid, signal.SIGTERM)  # warm shutdown: documented policy is "finish"
    assert run.wait(60).status is ExecutionStatus.SUCCEEDED
    worker.proc.wait(30)
    assert worker.proc.returncode == 0


def test_a_killed_pool_process_leaves_no_run_running(redis_settings: Settings, start_worker):
    import psutil

    worker = start_worker(redis_settings, pool="prefork", concurrency=1)
    client = Client(redis_settings)
    run = client.submit("slow_script", {"seconds": 60})
    wait_running(run)

    def the_script() -> psutil.Process | None:
        # "running" is recorded as the child starts: it may not have exec'd the script yet.
        for proc in psutil.Process(worker.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if "slow_script" in " ".join(proc.cmdline()):
                    return proc
        return None

    deadline = time.monotonic() + 10
    while (script := the_script()) is None:
        assert time.monotonic() < deadline, "the script never showed in the worker's tree"
        time.sleep(0.05)
    pool_child = script.parent()
    script_pids = [script.pid]
    pool_child.kill()
    rec = run.wait(60).record()
    assert rec["status"] in ("lost", "failed"), rec
    time.sleep(0.5)
    assert not any(pid_alive(p) for p in script_pids), "the script outlived its worker"
    assert client.run("example_script", wait_timeout=60).status is ExecutionStatus.SUCCEEDED


def test_huge_and_deeply_nested_parameters_are_refused_before_queueing(client: Client):
    from jupyter_scriptrun.exceptions import InvalidParameters

    before = client.store.count()
    with pytest.raises(InvalidParameters, match="bytes of JSON; the limit is"):
        client.submit("echo_env", {"blob": "x" * 200_000})
    deep: dict = {}
    node = deep
    for _ in range(5000):
        node["a"] = {}
        node = node["a"]
    with pytest.raises(InvalidParameters):
        client.submit("echo_env", {"deep": deep})
    assert client.store.count() == before


@pytest.mark.parametrize("runner", ["fresh", "warm"])
def test_a_memory_limit_stops_a_greedy_script_and_nothing_else(
    redis_settings: Settings, start_worker, runner: str
):
    import psutil

    limited = redis_settings.with_(memory_limit_mb=300.0, default_runner=runner)
    worker = start_worker(limited)
    client = Client(limited)
    greedy = client.run("memory_hog", {"mb": 1024}, wait_timeout=60).record()
    assert (greedy["status"], greedy["error_type"]) == ("failed", "MemoryLimitExceeded")
    assert "memory limit of 300 MiB" in greedy["message"]
    modest = client.run("memory_hog", {"mb": 50}, wait_timeout=60)
    assert modest.status is ExecutionStatus.SUCCEEDED
    assert psutil.Process(worker.pid).memory_info().rss < 300 * 2**20


def test_a_gibibyte_on_stdout_leaves_the_worker_small(redis_settings: Settings, start_worker):
    import psutil

    worker = start_worker(redis_settings)
    client = Client(redis_settings)
    run = client.run("flood", {"mib": 1024}, wait_timeout=120)
    rec = run.record()
    assert rec["status"] == "succeeded" and run.data == 1024
    [attempt] = run.attempts()
    assert attempt["stdout_bytes"] >= 2**30 and attempt["stdout_truncated"]
    assert len(run.stdout) < 3 * 2**20  # the cap (2 MiB) plus the marker
    assert psutil.Process(worker.pid).memory_info().rss < 250 * 2**20
    assert client.run("example_script").status is ExecutionStatus.SUCCEEDED


@pytest.mark.parametrize("runner", ["fresh", "warm"])
def test_a_script_does_not_outlive_its_killed_worker(
    redis_settings: Settings, start_worker, tmp_path: Path, runner: str
):
    settings = redis_settings.with_(default_runner=runner)
    worker = start_worker(settings)
    client = Client(settings)
    pidfile = tmp_path / "pid"
    run = client.submit("silent_sleeper", {"pidfile": str(pidfile)})
    deadline = time.monotonic() + 30
    while not pidfile.exists() or not pidfile.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    script = int(pidfile.read_text())
    worker.kill()  # SIGKILL to the worker's main process only
    deadline = time.monotonic() + 5  # warm: the parent notices its worker within 1 s
    while pid_alive(script):
        assert time.monotonic() < deadline, "the script outlived its worker"
        time.sleep(0.05)
    assert run.status is ExecutionStatus.RUNNING  # until the reaper of a live worker
