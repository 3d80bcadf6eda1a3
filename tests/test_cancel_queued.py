"""Dropping queued runs: ``scriptrun cancel --queued`` (and ``sr.cancel_queued``) ends
them ``cancelled`` with the reason, and no worker runs them afterwards; ``celery purge``
does not, since the store is the truth and the reaper sends a queued run again (real
Redis, real workers, the CLIs as an operator types them)."""

from __future__ import annotations

import time

from conftest import celery_cli, scriptrun_cli, wait_until

from jupyter_scriptrun.config import Settings
from jupyter_scriptrun.service.client import Client
from jupyter_scriptrun.status import ExecutionStatus


def test_cancel_queued_drops_runs_that_no_worker_then_runs(redis_settings: Settings, start_worker):
    settings = redis_settings.with_(requeue_after_s=0.5)
    client = Client(settings)
    slow = [client.submit("slow_script", {"seconds": 1}) for _ in range(3)]
    examples = [client.submit("example_script") for _ in range(2)]

    out = scriptrun_cli(settings, "cancel", "--queued", "--script", "slow_script")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("cancelled 3 queued runs")
    for run in slow:
        record = run.record()
        assert record["status"] == "cancelled" and record["started_at"] is None
        assert record["message"] == (
            "dropped from the queue by request (every queued run of script 'slow_script')"
        )
    assert all(run.status is ExecutionStatus.QUEUED for run in examples)

    # Their messages are still in Redis: a worker takes them and runs none of them, and
    # the reaper sends nothing again.
    start_worker(settings)
    for run in examples:
        assert run.wait(60).status is ExecutionStatus.SUCCEEDED
    time.sleep(2)
    assert all(run.record()["started_at"] is None for run in slow)
    assert client.store.count("succeeded") == 2 and client.store.count("cancelled") == 3


def test_cancel_queued_by_queue_and_in_python(redis_settings: Settings):
    import jupyter_scriptrun as sr

    client = Client(redis_settings)
    run = client.submit("example_script")
    assert client.cancel_queued(queue="elsewhere") == []
    assert client.cancel_queued(queue=redis_settings.queue) == [run.id]
    assert run.status is ExecutionStatus.CANCELLED
    assert client.cancel_queued() == []  # nothing left; an ended run is never touched
    assert sr.cancel_queued.__doc__ and "celery purge" in sr.cancel_queued.__doc__


def test_cancel_needs_an_id_or_queued_not_both(redis_settings: Settings):
    for args in ((), ("abc", "--queued"), ("--script", "x")):
        out = scriptrun_cli(redis_settings, "cancel", *args)
        assert out.returncode == 2 and "cancel takes a run's id, or --queued" in out.stderr


def test_celery_purge_is_undone_by_the_reaper_so_the_readme_says_use_cancel_queued(
    redis_settings: Settings, start_worker
):
    """What a purge does, pinned: the queued run's message is gone, the store still says
    queued, and the reaper sends it again, so it runs."""
    settings = redis_settings.with_(requeue_after_s=0.5)
    run = Client(settings).submit("example_script")
    out = celery_cli(settings, "purge", "-f", "-Q", settings.queue)
    assert out.returncode == 0 and "Purged 1 message" in out.stdout, out.stdout + out.stderr
    start_worker(settings)
    wait_until(lambda: run.status is ExecutionStatus.SUCCEEDED, 60, "the purged run runs")
