"""The fleet's Prometheus metrics, derived from the store and the broker: what the server
extension serves at ``/scriptrun/api/metrics``.

Counters come from the store, not from this process: the first scrape totals every run
that ended (plus the runs ``prune`` removed), and each later scrape adds only the runs
that ended since (the ``finished_at`` index). A restarted server therefore starts from
the same totals, and a scrape costs a read of the last seconds' runs, not of the history.
A run whose end is committed a little after its ``finished_at`` (or stamped by a worker
whose clock is a little behind) lands behind the newest end already read: the ``OVERLAP``
behind it is counted at each scrape (one index count), read again when that count grew,
and its runs counted once by id.

What only the broker and the workers know (queue depths, workers online) is read by a
background thread every ``SLOW_EVERY_S``, so a scrape never waits on a broadcast.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from jupyter_scriptrun.fleet import control
from jupyter_scriptrun.store import utcnow
from jupyter_scriptrun.store.aggregates import ENDED

if TYPE_CHECKING:
    from prometheus_client.core import Metric

    from jupyter_scriptrun.service.client import Client

log = logging.getLogger(__name__)

DURATION_BUCKETS = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0)
"""Run durations, in seconds: from a quick script to a four-hour job."""
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)
"""Queue waits, in seconds: from an idle fleet's few ms to a long backlog."""
OVERLAP = timedelta(seconds=30)
SLOW_EVERY_S = 10.0
PING_TIMEOUT_S = 1.0
MAX_NEW_PER_SCRAPE = 200_000


@dataclass
class Histogram:
    """Counts per bucket (not cumulative; the last is above every bound), sum and count."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float | None) -> None:
        if value is None:
            return
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.n += 1

    def merge(self, counts: list[int], total: float, n: int) -> None:
        self.counts = [a + b for a, b in zip(self.counts, counts, strict=True)]
        self.total += total
        self.n += n

    def cumulative(self) -> list[tuple[str, float]]:
        """Prometheus' buckets: (upper bound, runs at or below it), ending with +Inf."""
        running, out = 0, []
        for bound, count in zip([*map(str, self.bounds), "+Inf"], self.counts, strict=True):
            running += count
            out.append((bound, float(running)))
        return out


@dataclass
class Slow:
    """What the background thread last read from the broker and the workers."""

    broker_up: bool | None = None
    depths: dict[str, int] = field(default_factory=dict)
    workers: int | None = None


class FleetMetrics:
    """A prometheus-client collector for one client's store and broker."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._lock = threading.Lock()
        self._load_lock = threading.Lock()
        self._loaded = False
        self._runs: dict[tuple[str, str], int] = {}
        self._retries: dict[str, int] = {}
        self._duration: dict[str, Histogram] = {}
        self._wait: dict[str, Histogram] = {}
        self._loaded_until: datetime | None = None
        self._watermark: datetime | None = None
        self._recent: dict[str, datetime] = {}
        self._slow = Slow()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_collect_s: float | None = None

    # -- the store's part ----------------------------------------------------------------

    def _histograms(self, script: str) -> tuple[Histogram, Histogram]:
        if script not in self._duration:
            self._duration[script] = Histogram(DURATION_BUCKETS)
            self._wait[script] = Histogram(WAIT_BUCKETS)
        return self._duration[script], self._wait[script]

    def load(self) -> None:
        """Total every run that ended up to a little before now, and the pruned ones (once;
        about 2 s at a million runs, so the server does it in the background)."""
        with self._load_lock:
            if self._loaded:
                return
            store = self.client.store
            until = utcnow() - OVERLAP
            runs: dict[tuple[str, str], int] = dict(store.pruned_runs())
            retries: dict[str, int] = {}
            duration: dict[str, Histogram] = {}
            wait: dict[str, Histogram] = {}
            for t in store.ended_totals(until, DURATION_BUCKETS, WAIT_BUCKETS):
                runs[(t.script, t.status)] = runs.get((t.script, t.status), 0) + t.runs
                retries[t.script] = retries.get(t.script, 0) + t.retries
                d = duration.setdefault(t.script, Histogram(DURATION_BUCKETS))
                d.merge(t.duration, t.duration_sum, t.duration_count)
                w = wait.setdefault(t.script, Histogram(WAIT_BUCKETS))
                w.merge(t.wait, t.wait_sum, t.wait_count)
            with self._lock:
                self._runs, self._retries = runs, retries
                self._duration, self._wait = duration, wait
                self._loaded_until = self._watermark = until
                self._loaded = True

    def _advance(self) -> None:
        """Count the runs that ended since the last scrape, each once."""
        assert self._watermark is not None and self._loaded_until is not None
        store = self.client.store
        since = window = max(self._watermark - OVERLAP, self._loaded_until)
        # The window behind the watermark is read again only when it holds a run not
        # counted yet (committed late); else one count over the index says so.
        known = sum(1 for at in self._recent.values() if at > window)
        if window < self._watermark and store.count_ended_between(window, self._watermark) == known:
            since = self._watermark
        rows = store.ended_after(since, limit=MAX_NEW_PER_SCRAPE)
        for row in rows:
            if row.id in self._recent:
                continue  # counted at an earlier scrape
            if row.status not in ENDED:
                continue  # not expected (only an end sets finished_at); never counted
            self._recent[row.id] = row.finished_at
            key = (row.script, row.status)
            self._runs[key] = self._runs.get(key, 0) + 1
            if (row.attempt or 0) > 1:
                self._retries[row.script] = self._retries.get(row.script, 0) + row.attempt - 1
            duration, wait = self._histograms(row.script)
            duration.observe(row.duration_s)
            wait.observe(row.queue_s)
        if rows:
            self._watermark = max(self._watermark, rows[-1].finished_at)
        horizon = self._watermark - OVERLAP
        self._recent = {k: v for k, v in self._recent.items() if v > horizon}

    # -- the broker's and the workers' part, in the background ----------------------------

    def _refresh_slow(self) -> None:
        from jupyter_scriptrun.fleet.brokers import BrokerProbe

        slow = Slow()
        queues = set(self.client.queues())
        try:
            queues |= {q for q, _, _ in self.client.store.active_runs() if q}
            slow.depths = BrokerProbe(self.client.app).depths(sorted(queues))
            slow.broker_up = True
        except Exception:
            log.debug("the broker could not be read for the metrics", exc_info=True)
            slow.broker_up = False
        if slow.broker_up:
            try:
                slow.workers = len(control.ping(self.client.app, PING_TIMEOUT_S))
            except Exception:
                log.debug("the workers could not be pinged for the metrics", exc_info=True)
        self._slow = slow

    def _background(self) -> None:
        while not self._stop.is_set():
            if not self._loaded:
                try:
                    self.load()
                except Exception:
                    log.warning("the metrics' totals could not be read (will retry)", exc_info=True)
            self._refresh_slow()
            self._stop.wait(SLOW_EVERY_S)

    def start(self) -> None:
        """Start the background: the totals (first), then the broker and the workers every
        ``SLOW_EVERY_S`` (once; the server calls it when it starts)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._background, name="scriptrun-metrics", daemon=True
                )
                self._thread.start()

    def close(self, wait_s: float = PING_TIMEOUT_S + 2.0) -> None:
        """Stop the background, waiting up to ``wait_s`` for a read it is in (a ping
        lasts at most ``PING_TIMEOUT_S``) so that nothing reads a store being closed."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(wait_s)

    # -- prometheus-client's collector protocol -------------------------------------------

    def collect(self) -> Iterator[Metric]:
        """The metrics now: the store's counters, then what is active, then the slow part."""
        from prometheus_client.core import GaugeMetricFamily

        started = time.perf_counter()
        store_up = GaugeMetricFamily(
            "scriptrun_store_up", "Whether the store answered this scrape (1) or not (0)."
        )
        self.start()
        try:
            with self._lock:
                if self._loaded:  # until then no counters: absent, never wrong
                    self._advance()
                    yield from self._counters()
            active = self.client.store.active_runs()
        except Exception:
            log.warning("the store could not be read for the metrics", exc_info=True)
            store_up.add_metric([], 0.0)
            yield store_up
            return
        store_up.add_metric([], 1.0)
        yield store_up
        yield from self._active(active)
        yield from self._slow_metrics()
        self.last_collect_s = time.perf_counter() - started
        took = GaugeMetricFamily(
            "scriptrun_metrics_collect_seconds", "Time this scrape took to read the store."
        )
        took.add_metric([], self.last_collect_s)
        yield took

    def _counters(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        runs = CounterMetricFamily(
            "scriptrun_runs",
            "Runs that ended, by script and final status.",
            labels=["script", "status"],
        )
        for (script, status), n in sorted(self._runs.items()):
            runs.add_metric([script, status], n)
        yield runs
        retries = CounterMetricFamily(
            "scriptrun_retries",
            "Attempts beyond the first, of runs that ended.",
            labels=["script"],
        )
        for script, n in sorted(self._retries.items()):
            retries.add_metric([script], n)
        yield retries
        for name, doc, hists in (
            ("scriptrun_run_duration_seconds", "How long runs ran.", self._duration),
            ("scriptrun_queue_wait_seconds", "How long runs waited to start.", self._wait),
        ):
            family = HistogramMetricFamily(name, doc, labels=["script"])
            for script, h in sorted(hists.items()):
                family.add_metric([script], h.cumulative(), sum_value=h.total)
            yield family

    def _active(self, active: list[tuple[str, str, int]]) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        queued = GaugeMetricFamily(
            "scriptrun_runs_queued", "Runs waiting to start (queued or retrying).", labels=["queue"]
        )
        running = GaugeMetricFamily("scriptrun_runs_running", "Runs running now.", labels=["queue"])
        per_queue = {q: [0, 0] for q in self.client.queues()}
        for queue, status, n in active:
            per_queue.setdefault(queue, [0, 0])[status == "running"] += n
        for queue, (waiting, going) in sorted(per_queue.items()):
            queued.add_metric([queue], waiting)
            running.add_metric([queue], going)
        yield queued
        yield running

    def _slow_metrics(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        slow = self._slow
        if slow.broker_up is None:
            return  # not read yet: no value is better than a wrong one
        up = GaugeMetricFamily("scriptrun_broker_up", "Whether the broker answered (1) or not.")
        up.add_metric([], 1.0 if slow.broker_up else 0.0)
        yield up
        depth = GaugeMetricFamily(
            "scriptrun_queue_messages",
            "Messages waiting in the broker, per queue.",
            labels=["queue"],
        )
        for queue, n in sorted(slow.depths.items()):
            depth.add_metric([queue], n)
        yield depth
        if slow.workers is not None:
            workers = GaugeMetricFamily("scriptrun_workers_online", "Workers that answered a ping.")
            workers.add_metric([], slow.workers)
            yield workers

    def render(self) -> tuple[bytes, str]:
        """The metrics in Prometheus' text format, and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        return generate_latest(registry), CONTENT_TYPE_LATEST
