"""A run executes exactly the script version that was submitted (and validated), on any
worker, or fails clearly: never silently another version (real Redis, a real worker
whose scripts folder differs from the client's)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import delete

from jupyter_scriptrun.config import Settings
from jupyter_scriptrun.contract.registry import file_hash
from jupyter_scriptrun.service.client import Client
from jupyter_scriptrun.status import ExecutionStatus
from jupyter_scriptrun.store.tables import script_versions
from tests.conftest import queued_run

VERSION = 'import json\nprint(json.dumps({{"status": "success", "data": {{"version": {n}}}}}))\n'


@pytest.fixture
def hosts(redis_settings: Settings, tmp_path: Path) -> tuple[Settings, Settings, dict[int, str]]:
    """A client host with version 1 of ``versioned.py``, a worker host with version 2."""
    folders = {}
    for n in (1, 2):
        folder = tmp_path / f"host{n}"
        folder.mkdir()
        (folder / "versioned.py").write_text(VERSION.format(n=n))
        folders[n] = folder
    hashes = {n: file_hash((folders[n] / "versioned.py").read_bytes()) for n in (1, 2)}
    client_host = redis_settings.with_(scripts_path=(folders[1],))
    worker_host = redis_settings.with_(scripts_path=(folders[2],))
    return client_host, worker_host, hashes


def test_the_submitted_version_runs_even_where_the_worker_has_another(hosts, start_worker):
    client_host, worker_host, hashes = hosts
    start_worker(worker_host)
    run = Client(client_host).run("versioned", wait_timeout=60)
    assert run.status is ExecutionStatus.SUCCEEDED and run.data == {"version": 1}
    assert run.record()["content_hash"] == hashes[1]
    assert run.attempts()[0]["content_hash"] == hashes[1], "the attempt records what ran"


def test_a_single_file_script_needs_no_copy_on_the_worker(
    redis_settings: Settings, tmp_path: Path, start_worker
):
    only_here = tmp_path / "client-only"
    only_here.mkdir()
    (only_here / "solo.py").write_text(VERSION.format(n=7))
    start_worker(redis_settings.with_(scripts_path=(tmp_path,)))  # no solo.py there
    run = Client(redis_settings.with_(scripts_path=(only_here,))).run("solo", wait_timeout=60)
    assert run.status is ExecutionStatus.SUCCEEDED and run.data == {"version": 7}


def test_without_the_submitted_version_anywhere_the_run_fails_naming_both(hosts, start_worker):
    client_host, worker_host, hashes = hosts
    client = Client(client_host)
    run = client.submit("versioned")  # queued: no worker yet
    with client.store.engine.begin() as conn:  # as if submitted by a client that kept none
        conn.execute(delete(script_versions))
    start_worker(worker_host)
    run.wait(60)
    rec = run.record()
    assert (rec["status"], rec["error_type"]) == ("failed", "ScriptVersionMismatch")
    assert hashes[1] in rec["message"] and hashes[2] in rec["message"]
    assert rec["content_hash"] == hashes[1], "the run still says what was asked for"


def test_the_reaper_reads_a_lost_runs_retry_policy_from_its_submitted_version(
    settings: Settings, tmp_path: Path
):
    """A run whose worker died is judged by the version that was submitted (here: one
    retry on ``lost``), even where this host holds another version or none at all."""
    import time

    from jupyter_scriptrun.contract.registry import Registry
    from jupyter_scriptrun.execution.executor import Executor
    from jupyter_scriptrun.store import Store, new_execution_id

    here = tmp_path / "here"
    here.mkdir()
    (here / "versioned.py").write_text(VERSION.format(n=2))
    submitted = "# /// scriptrun\n# retries = 1\n# retry_on = ['lost']\n# ///\n" + VERSION.format(
        n=1
    )
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    version = file_hash(submitted.encode())
    store.keep_version(version, "versioned", "versioned.py", submitted.encode())
    ids = {}
    for name, content_hash in (("kept", version), ("unknown", "sha256:nowhere")):
        ids[name] = new_execution_id()
        queued_run(store, "versioned", id=ids[name], content_hash=content_hash)
        store.claim(ids[name], 1, "dead-worker")
    time.sleep(0.05)
    lost = settings.with_(scripts_path=(here,), heartbeat_s=0.01, lost_after_s=0.02)
    executor = Executor(lost, Registry(lost.scripts_path), store)
    resent: list[str] = []
    executor.reap(lambda eid, *rest: resent.append(eid))
    assert store.get(ids["kept"])["status"] == "retrying" and resent == [ids["kept"]]
    assert store.get(ids["unknown"])["status"] == "lost", "no copy: the default policy"
