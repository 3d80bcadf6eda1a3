"""A real Prometheus scraping the server's metrics (with its token) and two workers' every
second: PromQL over its HTTP API sees the runs a known mix produced."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from servers import PrivatePrometheus, ServerMissing, free_port

from jupyter_scriptrun.config import Settings
from jupyter_scriptrun.service.client import Client
from jupyter_scriptrun.status import ExecutionStatus


@pytest.fixture
def jp_base_url() -> str:
    return "/"  # a plain metrics path for Prometheus' configuration


@pytest.fixture
def jp_server_config(scriptrun_server_config):
    return scriptrun_server_config


@pytest.fixture
def workers(redis_settings: Settings, start_worker):
    """Two workers, each serving its metrics on a port of its own."""
    started = []
    for _ in range(2):
        port = free_port()
        env = {"SCRIPTRUN_METRICS_PORT": str(port), "SCRIPTRUN_METRICS_ADDRESS": "127.0.0.1"}
        started.append((start_worker(redis_settings, extra_env=env), f"127.0.0.1:{port}"))
    return started


@pytest.fixture
def prometheus(jp_fetch, jp_serverapp, jp_http_port, workers, tmp_path: Path):
    # jp_fetch: pytest-jupyter listens on jp_http_port only for tests that fetch.
    token = jp_serverapp.identity_provider.token
    scrape_configs = [
        {
            "job_name": "scriptrun-server",
            "metrics_path": "/scriptrun/api/metrics",
            "authorization": {"type": "Bearer", "credentials": token},
            "static_configs": [{"targets": [f"127.0.0.1:{jp_http_port}"]}],
        },
        {
            "job_name": "scriptrun-workers",
            "static_configs": [{"targets": [address for _, address in workers]}],
        },
    ]
    try:
        server = PrivatePrometheus(tmp_path / "prometheus", scrape_configs)
    except ServerMissing as exc:
        pytest.fail(str(exc))
    server.start()
    yield server
    server.stop()


async def eventually(prometheus: PrivatePrometheus, promql: str, check, timeout: float = 40):
    """Query until ``check(result)`` holds; the server under test keeps serving meanwhile
    (it runs on this event loop, so the test never blocks it)."""
    deadline = time.monotonic() + timeout
    while True:
        result = await asyncio.to_thread(prometheus.query, promql)
        if check(result):
            return result
        assert time.monotonic() < deadline, f"{promql}: {result}; targets: {prometheus.targets()}"
        await asyncio.sleep(0.5)


def by(result: list[dict], label: str) -> dict[str, float]:
    return {r["metric"].get(label, ""): float(r["value"][1]) for r in result}


async def test_prometheus_sees_the_fleet(prometheus, workers, redis_settings: Settings):
    client = Client(redis_settings)

    def known_mix() -> list[ExecutionStatus]:
        runs = [client.submit("example_script", {"multiplier": n}) for n in (1, 2, 3)]
        runs.append(client.submit("failing_script"))
        runs.append(client.submit("slow_script", {"seconds": 30}, timeout=1))
        return [run.wait(60).status for run in runs]

    statuses = await asyncio.to_thread(known_mix)
    assert statuses[-2:] == [ExecutionStatus.FAILED, ExecutionStatus.TIMED_OUT]

    result = await eventually(
        prometheus,
        "sum by (status) (scriptrun_runs_total)",
        lambda r: sum(by(r, "status").values()) == 5,
    )
    assert by(result, "status") == {"succeeded": 3, "failed": 1, "timed_out": 1}
    median = await asyncio.to_thread(
        prometheus.query,
        "histogram_quantile(0.5, sum by (le) (scriptrun_run_duration_seconds_bucket))",
    )
    assert 0 < float(median[0]["value"][1]) <= 0.5  # three quick runs of five
    slowest = await asyncio.to_thread(
        prometheus.query,
        "histogram_quantile(0.99, sum by (le) (scriptrun_run_duration_seconds_bucket))",
    )
    assert 0.5 < float(slowest[0]["value"][1]) <= 5  # the run stopped at its 1 s timeout
    # The workers count the same attempts from their side.
    await eventually(
        prometheus, "sum(scriptrun_worker_runs_total)", lambda r: r and r[0]["value"][1] == "5"
    )
    await eventually(
        prometheus, "scriptrun_workers_online", lambda r: r and r[0]["value"][1] == "2"
    )
    up = await eventually(prometheus, "up", lambda r: len(r) == 3)
    assert all(value == 1 for value in by(up, "instance").values()), up

    killed, address = workers[0]
    killed.kill()
    up = await eventually(
        prometheus, "up", lambda r: by(r, "instance").get(address) == 0, timeout=20
    )
    assert sum(by(up, "instance").values()) == 2  # the server and the other worker
