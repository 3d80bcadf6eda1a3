"""The fleet at a glance, for ``scriptrun top`` and the dashboard: the workers (one
broadcast), the queues (the store, and the broker's depths), and per script over a
window its runs, failure rate and p50/p95 of duration and queue wait, a per-minute
series, and the recent failures."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from jupyter_scriptrun.store import utcnow

if TYPE_CHECKING:
    from jupyter_scriptrun.service.client import Client

log = logging.getLogger(__name__)

WINDOWS = {"15 min": 900, "1 h": 3600, "24 h": 86400}
BAD = ("failed", "timed_out", "lost")
MAX_ROWS = 50_000
"""Runs read for a window's figures at most (the newest; about 0.2 s on SQLite), so a
dashboard refreshing every 5 s stays cheap on a busy fleet; the figures say when cut."""


@dataclass
class ScriptFigures:
    """One script's runs that ended in the window."""

    script: str
    runs: int
    failed: int
    p50_s: float | None
    p95_s: float | None
    wait_p50_s: float | None
    wait_p95_s: float | None

    @property
    def failure_rate(self) -> float:
        return self.failed / self.runs if self.runs else 0.0


@dataclass
class Snapshot:
    """What ``snapshot`` read, at ``taken_at``."""

    taken_at: datetime
    window_s: float
    workers: list[dict[str, Any]] = field(default_factory=list)
    queues: list[dict[str, Any]] = field(default_factory=list)
    scripts: list[ScriptFigures] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    minutes: list[dict[str, Any]] = field(default_factory=list)
    """Per minute of the window: ``minute`` (aware datetime), runs by outcome
    (``succeeded``, ``failed``, ``other``) and ``p50_s``."""
    truncated: bool = False
    problems: list[str] = field(default_factory=list)
    """What could not be read (the broker, the workers), in words."""


def quantile(values: list[float], q: float) -> float | None:
    """The q-quantile of ``values`` (linear between neighbours), None for none."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def snapshot(
    client: Client, window_s: float = 3600, *, workers_timeout: float = 1.0, broker: bool = True
) -> Snapshot:
    """Read the fleet now: workers, queues, figures per script over the last ``window_s``."""
    now = utcnow()
    snap = Snapshot(taken_at=now, window_s=window_s)
    since = now - timedelta(seconds=window_s)
    if client.store.count_ended_between(since, now) > MAX_ROWS:
        # The newest MAX_ROWS only: start the read where they start.
        newest = client.store.ended_before(now, MAX_ROWS)
        since, snap.truncated = newest or since, True
    rows = client.store.ended_after(since, limit=MAX_ROWS)
    snap.scripts = _figures(rows)
    snap.minutes = _minutes(rows, since, now)
    snap.failures = client.store.recent_failures(since)
    snap.queues = _queues(client, snap, broker)
    try:
        snap.workers = client.workers(timeout=workers_timeout)
    except Exception as exc:
        log.debug("the workers could not be asked", exc_info=True)
        snap.problems.append(f"workers: {exc}")
    return snap


def _figures(rows: list[Any]) -> list[ScriptFigures]:
    by_script: dict[str, list[Any]] = {}
    for row in rows:
        by_script.setdefault(row.script, []).append(row)
    figures = []
    for script, runs in sorted(by_script.items()):
        durations = [r.duration_s for r in runs if r.duration_s is not None]
        waits = [r.queue_s for r in runs if r.queue_s is not None]
        figures.append(
            ScriptFigures(
                script=script,
                runs=len(runs),
                failed=sum(1 for r in runs if r.status in BAD),
                p50_s=quantile(durations, 0.5),
                p95_s=quantile(durations, 0.95),
                wait_p50_s=quantile(waits, 0.5),
                wait_p95_s=quantile(waits, 0.95),
            )
        )
    return figures


def _minutes(rows: list[Any], since: datetime, now: datetime) -> list[dict[str, Any]]:
    """Runs per minute (per 10 minutes beyond 6 h) by outcome, and each one's p50 duration."""
    step = 60 if (now - since).total_seconds() <= 6 * 3600 else 600
    start = since.replace(second=0, microsecond=0)
    count = int((now - start).total_seconds() // step) + 1
    buckets: list[dict[str, Any]] = [
        {"minute": start + timedelta(seconds=i * step), "succeeded": 0, "failed": 0, "other": 0}
        for i in range(count)
    ]
    durations: list[list[float]] = [[] for _ in range(count)]
    for row in rows:
        i = min(int((row.finished_at - start).total_seconds() // step), count - 1)
        if i < 0:
            continue
        outcome = (
            "succeeded" if row.status == "succeeded" else "failed" if row.status in BAD else "other"
        )
        buckets[i][outcome] += 1
        if row.duration_s is not None:
            durations[i].append(row.duration_s)
    for bucket, values in zip(buckets, durations, strict=True):
        bucket["p50_s"] = quantile(values, 0.5)
    return buckets


def _queues(client: Client, snap: Snapshot, broker: bool) -> list[dict[str, Any]]:
    per_queue: dict[str, dict[str, Any]] = {
        q: {"queue": q, "queued": 0, "running": 0, "messages": None} for q in client.queues()
    }
    for queue, status, n in client.store.active_runs():
        entry = per_queue.setdefault(
            queue, {"queue": queue, "queued": 0, "running": 0, "messages": None}
        )
        entry["running" if status == "running" else "queued"] += n
    if broker:
        from jupyter_scriptrun.fleet.brokers import BrokerProbe

        try:
            for queue, n in BrokerProbe(client.app).depths(sorted(per_queue)).items():
                per_queue[queue]["messages"] = n
        except Exception as exc:
            log.debug("the broker could not be read", exc_info=True)
            snap.problems.append(f"broker: {exc}")
    return [per_queue[q] for q in sorted(per_queue)]
