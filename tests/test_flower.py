"""Flower, Celery's monitor, sees runs as they are: a failed script is a FAILURE, a
cancelled one REVOKED, and each task is named after its script."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import pytest
from conftest import free_port, settings_env, stop_process, wait_until

from jupyter_scriptrun.config import Settings
from jupyter_scriptrun.service.client import Client
from jupyter_scriptrun.status import ExecutionStatus


@pytest.fixture
def flower(redis_settings: Settings, tmp_path):
    port = free_port()
    log = open(tmp_path / "flower.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "jupyter_scriptrun.worker",
            "flower",
            "--address=127.0.0.1",
            f"--port={port}",
            f"--db={tmp_path / 'flower.db'}",
        ],
        env=settings_env(redis_settings, FLOWER_UNAUTHENTICATED_API="true"),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"

    def get(path: str, method: str = "GET"):
        request = urllib.request.Request(
            base + path, method=method, data=b"" if method == "POST" else None
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())

    def up() -> bool:
        try:
            get("/api/workers?refresh=1")
            return True
        except OSError:
            return False

    try:
        wait_until(up, 60, f"Flower answers on {base}")
        yield get
    finally:
        stop_process(proc, 10)
        log.close()


def test_flower_shows_a_failed_script_as_failure(redis_settings, start_worker, flower):
    start_worker(redis_settings, extra_args=("-E",))  # task events, as Flower's docs advise
    client = Client(redis_settings)
    failed = client.run("failing_script", {"mode": "json"}, wait_timeout=60)
    good = client.run("example_script", wait_timeout=60)
    assert failed.status is ExecutionStatus.FAILED and good.status is ExecutionStatus.SUCCEEDED

    def seen() -> dict | None:
        tasks = flower("/api/tasks")
        states = {tasks.get(i, {}).get("state") for i in (failed.id, good.id)}
        return tasks if states <= {"FAILURE", "SUCCESS"} else None

    tasks = wait_until(seen, 30, "Flower's task list shows both runs ended")
    assert tasks[failed.id]["state"] == "FAILURE" and tasks[good.id]["state"] == "SUCCESS"
    assert tasks[failed.id]["name"] == "scriptrun:failing_script"
    assert "ValueError" in tasks[failed.id]["exception"]
    result = flower(f"/api/task/result/{failed.id}")
    assert result["state"] == "FAILURE"


def test_flowers_terminate_cancels_the_run_and_ends_its_tree(redis_settings, start_worker, flower):
    start_worker(redis_settings, extra_args=("-E",))
    client = Client(redis_settings)
    run = client.submit("slow_script", {"seconds": 60})
    wait_until(lambda: run.status is ExecutionStatus.RUNNING, 30, "the run starts")
    answer = flower(f"/api/task/revoke/{run.id}?terminate=true&signal=SIGTERM", method="POST")
    assert "revoked" in answer["message"].lower()
    assert run.wait(30).status is ExecutionStatus.CANCELLED
    assert run.record()["duration_s"] < 30
