"""The zero-config default: no broker, no server; a local worker started on first use."""

from __future__ import annotations

import time

import pytest

from jupyter_scriptrun.config import Settings
from jupyter_scriptrun.fleet.local import LocalWorker
from jupyter_scriptrun.service.client import Client
from jupyter_scriptrun.status import ExecutionStatus


@pytest.fixture
def embedded(settings: Settings):
    assert settings.embedded
    yield settings
    LocalWorker(settings).stop()


def test_runs_work_with_nothing_configured(embedded: Settings):
    client = Client(embedded)
    assert LocalWorker(embedded).pid() is None
    run = client.run("example_script", {"message": "zero config"}, wait_timeout=60)
    assert run.status is ExecutionStatus.SUCCEEDED
    assert run.data["multiplied_message"] == "zero config zero config"
    assert (embedded.data_dir / "scriptrun.db").exists()
    assert LocalWorker(embedded).pid() is not None
    assert len(client.history()) == 1


def test_the_local_worker_is_shared_not_started_twice(embedded: Settings):
    a, b = Client(embedded), Client(embedded)
    first = a.run("plain_text", wait_timeout=60)
    pid = LocalWorker(embedded).pid()
    second = b.run("plain_text", wait_timeout=60)
    assert first.status is second.status is ExecutionStatus.SUCCEEDED
    assert LocalWorker(embedded).pid() == pid


def test_the_local_worker_exits_when_idle_and_comes_back(embedded: Settings):
    quick = embedded.with_(local_idle_timeout_s=1.0)
    client = Client(quick)
    client.run("plain_text", wait_timeout=60)
    local = LocalWorker(quick)
    deadline = time.monotonic() + 20
    while local.pid() is not None:
        assert time.monotonic() < deadline, "the idle local worker did not exit"
        time.sleep(0.2)
    assert client.run("plain_text", wait_timeout=60).status is ExecutionStatus.SUCCEEDED


def test_embedded_cancel_and_several_runs_at_once(embedded: Settings):
    client = Client(embedded)
    slow = client.submit("slow_script", {"seconds": 30})
    quick = [client.submit("example_script", {"multiplier": n}) for n in (1, 2, 3)]
    deadline = time.monotonic() + 30
    while slow.status is not ExecutionStatus.RUNNING:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    slow.cancel()
    assert slow.wait(15).status is ExecutionStatus.CANCELLED
    assert all(q.wait(60).status is ExecutionStatus.SUCCEEDED for q in quick)


def test_files_that_are_no_message_in_the_queue_folder_are_refused_and_runs_go_on(
    embedded: Settings,
):
    """A foreign writer (or a torn copy) leaves files in the embedded queue folder: each is
    refused in one line of the local worker's log, and the worker runs on."""
    import json
    import uuid

    from jupyter_scriptrun.fleet.local import local_fingerprint

    client = Client(embedded)
    assert client.run("example_script", wait_timeout=60).status is ExecutionStatus.SUCCEEDED
    folder = embedded.data_dir / "broker" / local_fingerprint(embedded) / "queue"
    bad = [
        b"not json",
        b"\xff\xfe",
        json.dumps(["a", "list"]).encode(),
        json.dumps({"body": "e30=", "headers": {}}).encode(),
        json.dumps({"properties": {"delivery_tag": "x"}, "headers": ["x"]}).encode(),
    ]
    for payload in bad:
        name = f"{0:015d}_{uuid.uuid4().hex}.{embedded.queue}.msg"
        (folder / name).write_bytes(payload)
    run = client.run("example_script", {"message": "after"}, wait_timeout=60)
    assert run.status is ExecutionStatus.SUCCEEDED
    log = LocalWorker(embedded).logfile.read_text(errors="replace")
    assert log.count("refused a message (bad_envelope") == len(bad)
    assert "Unrecoverable error" not in log and not list(folder.glob("*.msg"))
