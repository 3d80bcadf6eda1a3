"""The benchmark's fleet-metrics timings over a large store (``--history-rows``)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from jupyter_scriptrun.service.client import Client


def metrics_scrapes(client: Client, store: Any, new_runs: int = 1500) -> dict[str, float]:
    """Seconds to total the store's runs (once, in the server's background), then per
    scrape of the fleet's metrics: the first, one with nothing new, and one after
    ``new_runs`` more runs ended (15 s of a fleet ending 100 runs a second). The store's
    part only: the broker's is read in the background."""
    from sqlalchemy import insert

    from jupyter_scriptrun.observe.metrics import FleetMetrics
    from jupyter_scriptrun.store import utcnow
    from jupyter_scriptrun.store.tables import executions

    metrics = FleetMetrics(client)
    metrics.start = lambda: None  # type: ignore[method-assign]  # the store's part only
    t0 = time.perf_counter()
    metrics.load()
    timings = {"totals_s": time.perf_counter() - t0}
    for name in ("scrape_first_s", "scrape_idle_s"):
        t0 = time.perf_counter()
        metrics.render()
        timings[name] = time.perf_counter() - t0
    now = utcnow()
    fresh = [
        {
            "id": uuid.uuid4().hex,
            "script": f"script_{i % 20}",
            "status": "succeeded",
            "page_context": "bench",
            "parameters": {},
            "queued_at": now,
            "started_at": now,
            "finished_at": now,
            "queue_s": 0.002,
            "duration_s": 0.05,
            "attempt": 1,
            "cancel_requested": False,
        }
        for i in range(new_runs)
    ]
    with store.engine.begin() as conn:
        conn.execute(insert(executions), fresh)
    t0 = time.perf_counter()
    metrics.render()
    timings["scrape_busy_s"] = time.perf_counter() - t0
    return timings
