"""Prometheus metrics: the fleet's, derived from the store (and served by the server
extension), and a worker's own on its metrics port."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from jupyter_scriptrun.config import Settings
from jupyter_scriptrun.observe import metrics as fleet_metrics
from jupyter_scriptrun.observe.metrics import FleetMetrics
from jupyter_scriptrun.service.client import Client
from jupyter_scriptrun.status import ExecutionStatus
from jupyter_scriptrun.store import Store, new_execution_id
from tests.conftest import queued_run


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition, parsed by prometheus-client's parser
    (which also validates it): {(name, sorted labels): value}."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: dict, name: str, **labels: str) -> float | None:
    return found.get((name, tuple(sorted(labels.items()))))


def scrape(m: FleetMetrics) -> dict:
    m.load()  # the server does it in the background before its first scrape
    body, content_type = m.render()
    assert content_type.startswith("text/plain; version=")
    return samples(body.decode())


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def client(request, settings: Settings, monkeypatch) -> Client:
    """A client (no worker: the runs are written to the store as a worker would). The
    metrics' background (broker depths, worker pings) is not started: these tests read
    the store's part."""
    monkeypatch.setattr(FleetMetrics, "start", lambda self: None)
    if request.param == "postgresql":
        settings = settings.with_(database_url=request.getfixturevalue("postgres_url"))
    c = Client(settings)
    with c.store.engine.begin() as conn:  # PostgreSQL's database is shared between tests
        conn.exec_driver_sql("DELETE FROM output_chunks")
        conn.exec_driver_sql("DELETE FROM attempts")
        conn.exec_driver_sql("DELETE FROM executions")
        conn.exec_driver_sql("DELETE FROM pruned_totals")
    yield c
    c.close()


def ended(
    store: Store,
    script: str,
    status: ExecutionStatus,
    duration: float,
    tries: int = 1,
    source: str | None = None,
):
    """A run that ended after ``tries`` attempts, the way a worker records one (an ad-hoc
    one with ``source``)."""
    eid = new_execution_id()
    queued_run(
        store,
        script,
        id=eid,
        script_id=store.ensure_script(script, "sha256:x"),
        content_hash="sha256:x",
        source=source,
        language="python" if source else None,
    )
    for attempt in range(1, tries):
        store.claim(eid, attempt, "w")
        store.finish(eid, attempt, ExecutionStatus.RETRYING, record={"exit_code": 75}, output={})
    store.claim(eid, tries, "w")
    store.finish(eid, tries, status, record={"duration_s": duration}, output={})
    return eid


def known_mix(store: Store) -> None:
    for duration in (0.05, 2.0, 20.0):
        ended(store, "a", ExecutionStatus.SUCCEEDED, duration)
    ended(store, "a", ExecutionStatus.FAILED, 0.3)
    ended(store, "a", ExecutionStatus.SUCCEEDED, 0.2, tries=3)
    ended(store, "b", ExecutionStatus.TIMED_OUT, 1.0)


@pytest.mark.parametrize("overlap_s", [0, 30], ids=["from-totals", "from-recent-runs"])
def test_counters_and_histograms_come_from_the_store(client: Client, monkeypatch, overlap_s):
    # overlap 0: the first scrape totals every run in one query; 30 s: the runs just
    # ended are read one by one. Both must say the same.
    monkeypatch.setattr(fleet_metrics, "OVERLAP", timedelta(seconds=overlap_s))
    known_mix(client.store)
    found = scrape(FleetMetrics(client))
    assert value(found, "scriptrun_runs_total", script="a", status="succeeded") == 4
    assert value(found, "scriptrun_runs_total", script="a", status="failed") == 1
    assert value(found, "scriptrun_runs_total", script="b", status="timed_out") == 1
    assert value(found, "scriptrun_retries_total", script="a") == 2
    bucket = "scriptrun_run_duration_seconds_bucket"
    assert value(found, bucket, script="a", le="0.1") == 1
    assert value(found, bucket, script="a", le="0.5") == 3
    assert value(found, bucket, script="a", le="5.0") == 4
    assert value(found, bucket, script="a", le="+Inf") == 5
    assert value(found, "scriptrun_run_duration_seconds_count", script="a") == 5
    assert value(found, "scriptrun_run_duration_seconds_sum", script="a") == pytest.approx(22.55)
    assert value(found, "scriptrun_queue_wait_seconds_count", script="b") == 1
    assert value(found, "scriptrun_store_up") == 1


def test_each_run_is_counted_once_across_scrapes_and_a_restart_gives_the_same_totals(
    client: Client,
):
    known_mix(client.store)
    m = FleetMetrics(client)
    scrape(m)
    ended(client.store, "a", ExecutionStatus.SUCCEEDED, 0.1)
    for _ in range(3):
        found = scrape(m)
    assert value(found, "scriptrun_runs_total", script="a", status="succeeded") == 5
    restarted = scrape(FleetMetrics(client))  # a new server process: derived again
    assert {k: v for k, v in restarted.items() if k[0].startswith("scriptrun_run")} == {
        k: v for k, v in found.items() if k[0].startswith("scriptrun_run")
    }


@pytest.mark.parametrize("overlap_s", [0, 30], ids=["from-totals", "from-recent-runs"])
def test_ad_hoc_runs_share_one_script_label(client: Client, monkeypatch, overlap_s):
    """30 cells with 30 names add one label value, not 30 sets of series."""
    monkeypatch.setattr(fleet_metrics, "OVERLAP", timedelta(seconds=overlap_s))
    ended(client.store, "a", ExecutionStatus.SUCCEEDED, 0.1)
    for i in range(30):
        ended(client.store, f"cell_{i}", ExecutionStatus.SUCCEEDED, 0.1, source="print(1)")
    found = scrape(FleetMetrics(client))
    scripts = {dict(labels).get("script") for _, labels in found} - {None}
    assert scripts == {"a", "(ad-hoc)"}
    assert value(found, "scriptrun_runs_total", script="(ad-hoc)", status="succeeded") == 30
    assert len(found) < 100, len(found)


def test_a_run_whose_end_is_committed_late_is_counted_once(client: Client):
    from sqlalchemy import update

    from jupyter_scriptrun.store.tables import executions

    first = ended(client.store, "a", ExecutionStatus.SUCCEEDED, 0.1)
    m = FleetMetrics(client)
    scrape(m)  # the newest end read is first's
    late = ended(client.store, "a", ExecutionStatus.SUCCEEDED, 0.1)
    with client.store.engine.begin() as conn:  # stamped 5 s before first's, committed after
        at = client.store.get(first)["finished_at"] - timedelta(seconds=5)
        conn.execute(update(executions).where(executions.c.id == late).values(finished_at=at))
    for _ in range(3):
        found = scrape(m)
        assert value(found, "scriptrun_runs_total", script="a", status="succeeded") == 2


def test_pruned_runs_stay_counted(client: Client):
    known_mix(client.store)
    assert client.prune(timedelta(0)) == 6
    found = scrape(FleetMetrics(client))
    assert value(found, "scriptrun_runs_total", script="a", status="succeeded") == 4
    assert value(found, "scriptrun_runs_total", script="b", status="timed_out") == 1


def test_queued_and_running_runs_per_queue(client: Client):
    queued = new_execution_id()
    running = new_execution_id()
    for eid in (queued, running):
        client.store.create(
            id=eid,
            script="a",
            script_id=None,
            parameters={},
            page_context="test",
            queue="q",
            timeout_s=None,
            content_hash=None,
        )
    client.store.claim(running, 1, "w")
    found = scrape(FleetMetrics(client))
    assert value(found, "scriptrun_runs_queued", queue="q") == 1
    assert value(found, "scriptrun_runs_running", queue="q") == 1
    # The default queue is always there, at zero, so a dashboard never loses its series.
    assert value(found, "scriptrun_runs_queued", queue=client.settings.queue) == 0


# -- the server's endpoint ----------------------------------------------------------------


@pytest.fixture
def jp_server_config(scriptrun_server_config):
    return scriptrun_server_config


async def test_the_servers_endpoint_wants_a_token_and_speaks_prometheus(
    jp_fetch, jp_serverapp, jp_base_url, jp_http_port, redis_settings: Settings
):
    known_mix(Client(redis_settings).store)
    url = f"http://127.0.0.1:{jp_http_port}{jp_base_url}scriptrun/api/metrics"
    with pytest.raises(HTTPClientError) as refused:
        await AsyncHTTPClient().fetch(url)
    assert refused.value.code == 403
    token = jp_serverapp.identity_provider.token
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + 30
    while True:  # the totals are read in the background when the server starts
        response = await AsyncHTTPClient().fetch(url, headers=headers)
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        found = samples(response.body.decode())
        assert value(found, "scriptrun_store_up") == 1
        if value(found, "scriptrun_runs_total", script="a", status="succeeded") == 4:
            break
        assert time.monotonic() < deadline, found
        await asyncio.sleep(0.2)


# -- a worker's own -----------------------------------------------------------------------


def test_a_worker_serves_its_slots_runs_memory_and_links(
    redis_settings: Settings, start_worker, tmp_path: Path
):
    from servers import free_port

    port = free_port()
    warm = redis_settings.with_(default_runner="warm")
    start_worker(
        warm,
        concurrency=3,
        extra_env={"SCRIPTRUN_METRICS_PORT": str(port), "SCRIPTRUN_METRICS_ADDRESS": "127.0.0.1"},
    )
    client = Client(warm)
    assert client.run("example_script", wait_timeout=60).status is ExecutionStatus.SUCCEEDED
    assert client.run("failing_script", wait_timeout=60).status is ExecutionStatus.FAILED
    # The client learns a run's end from the store, a moment before Celery's task returns
    # and frees its slot: read until the slot is free (or fail after 10 s).
    deadline = time.monotonic() + 10
    while True:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            found = samples(response.read().decode())
        if value(found, "scriptrun_worker_slots_busy") == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert value(found, "scriptrun_worker_slots") == 3
    assert value(found, "scriptrun_worker_slots_busy") == 0
    assert value(found, "scriptrun_worker_runs_total", status="succeeded") == 1
    assert value(found, "scriptrun_worker_runs_total", status="failed") == 1
    assert value(found, "scriptrun_worker_broker_up") == 1
    assert value(found, "scriptrun_worker_store_up") == 1
    assert value(found, "scriptrun_worker_warm_parent_up") == 1
    assert value(found, "scriptrun_worker_warm_parent_resident_memory_bytes") > 10e6
    tree = value(found, "scriptrun_worker_tree_resident_memory_bytes")
    assert tree > value(found, "scriptrun_worker_warm_parent_resident_memory_bytes")
    assert value(found, "process_resident_memory_bytes") > 10e6  # prometheus-client's own
