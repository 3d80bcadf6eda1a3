"""Celery's own tools agree with the store: its CLI, its result backend and its control
commands, driven as an operator would (real Redis, real workers, ``celery`` as a process)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import celery_cli, queued_run, settings_env, stop_process, wait_until

from jupyter_scriptrun.config import Settings
from jupyter_scriptrun.exceptions import InvalidParameters
from jupyter_scriptrun.service.client import Client
from jupyter_scriptrun.status import ExecutionStatus


def celery_state(settings: Settings, execution_id: str) -> tuple[str, object]:
    """The task's state and result as Celery's result backend has them."""
    from celery.result import AsyncResult

    from jupyter_scriptrun.fleet.celery_app import make_app

    result = AsyncResult(execution_id, app=make_app(settings))
    return result.state, result.result


def final_state(settings: Settings, execution_id: str) -> tuple[str, object]:
    """The task's state once Celery has stored it (just after the run's record is final)."""
    return wait_until(
        lambda: (s := celery_state(settings, execution_id))[0] not in ("PENDING", "STARTED") and s,
        15,
        f"Celery stores the state of {execution_id}",
    )


def inspect_json(settings: Settings, what: str) -> dict:
    out = celery_cli(settings, "inspect", what, "--json", "--timeout", "3")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def script_processes(execution_id: str) -> list[psutil.Process]:
    """Processes running with this execution's id in their environment."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("EXECUTION_ID") == execution_id:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def test_a_failed_run_is_a_failed_task_and_a_good_one_a_successful_task(client: Client):
    failed = client.run("failing_script", {"mode": "json"}, wait_timeout=60)
    good = client.run("example_script", wait_timeout=60)
    timed_out = client.run("slow_script", {"seconds": 30}, timeout=0.5, wait_timeout=60)
    settings = client.settings
    state, result = final_state(settings, failed.id)
    assert state == "FAILURE"
    assert type(result).__name__ == "RunFailed" and "ValueError" in str(result)
    assert final_state(settings, good.id)[0] == "SUCCESS"
    state, result = final_state(settings, timed_out.id)
    assert state == "FAILURE" and "timed_out" in str(result)


def test_failures_are_expected_errors_logged_in_one_line(redis_settings: Settings, start_worker):
    worker = start_worker(redis_settings)
    client = Client(redis_settings)
    for _ in range(3):
        client.run("failing_script", {"mode": "crash"}, wait_timeout=60)
    # Celery logs the task's end just after the run's record is final.
    wait_until(
        lambda: worker.log.read_text().count("raised expected: RunFailed") == 3,
        10,
        "one 'raised expected' line per failed run",
    )
    assert "Traceback" not in worker.log.read_text()


def test_inspect_active_names_the_script_a_task_runs(client: Client):
    run = client.submit("slow_script", {"seconds": 20})
    wait_until(lambda: run.status is ExecutionStatus.RUNNING, 30, "the run starts")
    active = inspect_json(client.settings, "active")
    names = {t["id"]: t["name"] for tasks in active.values() for t in tasks}
    assert names[run.id] == "scriptrun:slow_script"
    run.cancel()


def test_revoke_through_celery_cancels_a_queued_run(redis_settings: Settings, start_worker):
    start_worker(redis_settings, concurrency=1)
    client = Client(redis_settings)
    busy = client.submit("slow_script", {"seconds": 20})
    wait_until(lambda: busy.status is ExecutionStatus.RUNNING, 30, "the first run starts")
    waiting = client.submit("example_script")
    out = celery_cli(redis_settings, "control", "revoke", waiting.id)
    assert out.returncode == 0, out.stderr
    wait_until(lambda: waiting.status is ExecutionStatus.CANCELLED, 10, "the run is cancelled")
    record = waiting.record()
    assert record["message"] == "revoked through Celery" and record["started_at"] is None
    assert final_state(redis_settings, waiting.id)[0] == "REVOKED"
    busy.cancel()


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_terminate_through_celery_ends_the_run_and_its_tree(
    redis_settings: Settings, start_worker, pool: str, tmp_path: Path
):
    start_worker(redis_settings, pool=pool)
    client = Client(redis_settings)
    # A tree whose members ignore SIGTERM: they end only by the SIGKILL after the grace.
    run = client.submit("tree_ignores_term", {"pidfile": str(tmp_path / "pids")})
    wait_until(lambda: len(script_processes(run.id)) >= 3, 30, "the script's tree runs")
    out = celery_cli(redis_settings, "control", "terminate", "SIGTERM", run.id)
    assert out.returncode == 0, out.stderr
    assert "NotImplementedError" not in out.stdout + out.stderr
    assert run.wait(30).status is ExecutionStatus.CANCELLED
    assert run.record()["message"] == "cancelled by request"
    wait_until(lambda: not script_processes(run.id), 10, "no process of the tree is left")
    assert final_state(redis_settings, run.id)[0] == "REVOKED"


@pytest.mark.parametrize("how", ["SIGKILL", "KILL", "9"])
def test_terminate_with_sigkill_sends_sigkill_at_once(
    redis_settings: Settings, start_worker, tmp_path: Path, how: str
):
    """The asked signal is the one sent: with a grace of 20 s, a tree that ignores SIGTERM
    ends at once (before, SIGTERM was sent and SIGKILL only after the grace)."""
    settings = redis_settings.with_(kill_grace_s=20.0)
    start_worker(settings)
    client = Client(settings)
    run = client.submit("tree_ignores_term", {"pidfile": str(tmp_path / "pids")})
    wait_until(lambda: len(script_processes(run.id)) >= 3, 30, "the script's tree runs")
    t0 = time.monotonic()
    out = celery_cli(settings, "control", "terminate", how, run.id)
    assert out.returncode == 0, out.stderr
    assert run.wait(15).status is ExecutionStatus.CANCELLED
    wait_until(lambda: not script_processes(run.id), 10, "no process of the tree is left")
    assert time.monotonic() - t0 < 5, "SIGKILL, not SIGTERM and the 20 s grace"
    assert run.record()["message"] == "cancelled by request"


def test_terminate_with_another_signal_sends_that_signal_first(
    redis_settings: Settings, start_worker, tmp_path: Path
):
    mark = tmp_path / "got-usr1"
    script = tmp_path / "scripts" / "traps_usr1.sh"
    script.parent.mkdir()
    script.write_text(
        "#!/usr/bin/env bash\n"
        f"trap 'touch {mark}; exit 3' USR1\n"
        "echo waiting\n"
        "while true; do sleep 0.1; done\n"
    )
    settings = redis_settings.with_(scripts_path=(script.parent, *redis_settings.scripts_path))
    start_worker(settings)
    client = Client(settings)
    run = client.submit("traps_usr1")
    wait_until(
        lambda: any("waiting" in c["text"] for c in run.output()["chunks"]),
        30,
        "the script traps USR1",
    )
    out = celery_cli(settings, "control", "terminate", "SIGUSR1", run.id)
    assert out.returncode == 0, out.stderr
    assert run.wait(15).status is ExecutionStatus.CANCELLED
    assert mark.exists(), "the script got SIGUSR1"


def test_two_workers_started_without_a_name_are_two_nodes(redis_settings: Settings, tmp_path):
    env = settings_env(redis_settings)
    procs = []
    for i in range(2):
        log = open(tmp_path / f"w{i}.log", "wb")  # noqa: SIM115 - closed with the process
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "jupyter_scriptrun", "worker", "-c", "1"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    try:
        wait_until(
            lambda: all(b" ready." in (tmp_path / f"w{i}.log").read_bytes() for i in range(2)),
            60,
            "both workers are ready",
        )
        out = celery_cli(redis_settings, "inspect", "ping", "--timeout", "3")
        assert "2 nodes online" in out.stdout, out.stdout + out.stderr
        assert "DuplicateNodenameWarning" not in out.stderr
        nodes = {line.split()[1].rstrip(":") for line in out.stdout.splitlines() if "->" in line}
        assert {n.split("@")[0] for n in nodes} == {f"scriptrun-{p.pid}" for p in procs}
    finally:
        for proc in procs:
            stop_process(proc, 20)


def test_celery_tools_need_no_database(client: Client, tmp_path: Path):
    fresh = tmp_path / "never-created"
    away = client.settings.with_(
        data_dir=fresh, database_url="postgresql+psycopg://nobody@127.0.0.1:1/none"
    )
    out = celery_cli(away, "inspect", "ping", "--timeout", "3")
    assert out.returncode == 0, out.stderr
    assert "pong" in out.stdout
    unset = client.settings.with_(data_dir=fresh, database_url=None)
    assert celery_cli(unset, "inspect", "ping", "--timeout", "3").returncode == 0
    assert not (fresh / "scriptrun.db").exists()


def test_malformed_task_messages_are_refused_in_one_short_line(
    redis_settings: Settings, start_worker
):
    worker = start_worker(redis_settings, concurrency=1)
    from jupyter_scriptrun.fleet.celery_app import TASK_NAME, make_app

    app = make_app(redis_settings)
    queue = redis_settings.queue
    small = [[{"id": 1}, 1], ["abc\x00def", 1], ["0" * 32, True], ["0" * 32, 1, "extra"]]
    results = [app.send_task(TASK_NAME, args=args, queue=queue) for args in small]
    for result in results:  # Celery's own record says why
        assert result.get(propagate=False, timeout=30) is not None
        assert result.state == "FAILURE" and type(result.result).__name__ == "MalformedTask"

    def send_huge(n: int) -> float:
        before = worker.log.read_text().count("refused a message")
        for _ in range(n):
            app.send_task(TASK_NAME, args=["A" * 10_000_000, 1], queue=queue)
        wait_until(
            lambda: worker.log.read_text().count("refused a message") == before + n,
            60,
            "every malformed message is refused",
        )
        # The log line comes before the worker drops the message and trims its heap:
        # read the memory once it has settled, not in the middle of that.
        process = psutil.Process(worker.pid)
        rss = process.memory_info().rss / 2**20
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            time.sleep(0.3)
            now = process.memory_info().rss / 2**20
            if abs(now - rss) < 1:
                break
            rss = now
        return now

    first = send_huge(5)
    second = send_huge(10)  # memory is given back or reused: no growth per message
    # Ten more 10 MB messages: a leak of each would add about 100 MiB; the allocator's
    # own slack on a busy machine reached 35 MiB once (CI).
    assert second - first < 50, f"{first:.0f} MiB after 5 huge messages, {second:.0f} after 15"
    text = worker.log.read_text()
    assert max(len(line) for line in text.splitlines()) < 400
    assert "\x00" not in text and "Traceback" not in text
    # It still runs real work.
    run = Client(redis_settings).run("example_script", wait_timeout=60)
    assert run.status is ExecutionStatus.SUCCEEDED


def test_a_queue_named_like_a_broker_key_is_refused_before_anything_is_recorded(
    redis_settings: Settings,
):
    client = Client(redis_settings)
    for queue in ("unacked", "_kombu.binding.scriptrun", "celery-task-meta-x", "a b", " "):
        with pytest.raises(InvalidParameters, match="queue"):
            client.submit("example_script", queue=queue)
    assert client.store.count() == 0


def test_only_the_operators_queues_are_allowed(redis_settings: Settings, tmp_path: Path):
    folder = tmp_path / "scripts"
    folder.mkdir()
    (folder / "on_gpu.py").write_text('# /// scriptrun\n# queue = "gpu"\n# ///\nprint(1)\n')
    settings = redis_settings.with_(scripts_path=(folder, *redis_settings.scripts_path))
    client = Client(settings)
    assert client.queues() == (settings.queue, "gpu")
    assert client.queue_problem("gpu") is None
    assert "not one of the allowed queues" in client.queue_problem("elsewhere")
    operator = Client(settings.with_(queues=("batch",)))
    assert operator.queues() == (settings.queue, "batch")
    assert operator.queue_problem("gpu") is not None
    with pytest.raises(InvalidParameters, match="allowed queues"):
        client.submit("example_script", queue="elsewhere")


def test_a_run_recorded_with_an_unsafe_queue_is_never_sent_there(
    redis_settings: Settings, start_worker
):
    """A store written before queue names were checked: the reaper fails such a run instead
    of sending it to the broker's own key (which took every Redis worker down)."""
    import redis as redis_lib

    from jupyter_scriptrun.store import new_execution_id

    settings = redis_settings.with_(requeue_after_s=0.5)
    worker = start_worker(settings)
    client = Client(settings)
    execution_id = new_execution_id()
    queued_run(client.store, "example_script", id=execution_id, queue="unacked", timeout_s=10)
    run = client.get(execution_id)
    assert run.wait(30).status is ExecutionStatus.FAILED
    assert run.record()["error_type"] == "InvalidQueue"
    assert worker.proc.poll() is None
    conn = redis_lib.Redis.from_url(settings.broker_url)
    assert conn.type("unacked") in (b"hash", b"none")
    assert client.run("example_script", wait_timeout=60).status is ExecutionStatus.SUCCEEDED
