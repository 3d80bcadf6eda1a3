"""A worker's own state: its slots, the runs it holds and finished, its memory and its
warm parent's, and whether its broker and store answer. Served as Prometheus metrics on
``--metrics-port``, and as the ``scriptrun_status`` reply (``scriptrun workers``, ``top``,
the dashboard)."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client.core import Metric

    from jupyter_scriptrun.execution.executor import Executor

log = logging.getLogger(__name__)

STORE_CHECK_EVERY_S = 5.0
"""A scrape reuses the store check for this long: scrapers never queue on a database."""

_outcomes: Counter[str] = Counter()
_outcomes_lock = threading.Lock()


_refusals: Counter[str] = Counter()


def count_outcome(status: str) -> None:
    """Count one attempt this worker finished, by the status it recorded."""
    with _outcomes_lock:
        _outcomes[status] += 1


def refused(reason: str, detail: str, task_id: str = "None") -> None:
    """One message this worker refused (fleet/consumer.py, the transports): one log line,
    counted by reason."""
    log.warning("refused a message (%s, task id %s): %s", reason, task_id, detail)
    with _outcomes_lock:
        _refusals[reason] += 1


class WorkerMetrics:
    """The collector: everything is read at scrape time from the worker's own state."""

    def __init__(
        self,
        executor: Executor,
        slots: int,
        broker_connected: Callable[[], bool | None],
        queues: Callable[[], list[str]] = list,
    ) -> None:
        self.executor = executor
        self.slots = slots
        self.broker_connected = broker_connected
        self.queues = queues
        self.started_at = time.time()
        self._store_ok: tuple[float, bool] | None = None

    def snapshot(self) -> dict[str, Any]:
        """The worker now, as plain JSON (the ``scriptrun_status`` control reply)."""
        from celery.worker import state

        now = time.time()
        runs = [
            {
                "id": r.id,
                "script": str(r.name).removeprefix("scriptrun:"),
                "started_at": r.time_start,
                "elapsed_s": None if not r.time_start else max(now - r.time_start, 0.0),
                "progress": self.executor.progress_of(r.id),
            }
            for r in list(state.active_requests)
        ]
        active = {r["id"] for r in runs}
        waiting = [r.id for r in list(state.reserved_requests) if r.id not in active]
        tree, warm = self._rss()
        return {
            "pid": os.getpid(),
            "started_at": self.started_at,
            "queues": self.queues(),
            "slots": self.slots,
            "busy": len(runs),
            "waiting": waiting,
            "runs": sorted(runs, key=lambda r: -(r["elapsed_s"] or 0)),
            "tree_rss_bytes": tree,
            "warm_parent_rss_bytes": warm,
            "broker_up": self.broker_connected(),
            "finished": dict(_outcomes),
            "refused": dict(_refusals),
            "time": now,
        }

    def _rss(self) -> tuple[int, int | None]:
        """Resident bytes of the worker's whole tree, and of its warm parent (if any)."""
        import psutil

        me = psutil.Process(os.getpid())
        tree = me.memory_info().rss
        for child in me.children(recursive=True):
            try:
                tree += child.memory_info().rss
            except psutil.Error:
                continue  # ended meanwhile
        pid = self.executor.warm_parent_pid()
        warm = None
        if pid:
            with contextlib.suppress(psutil.Error):
                warm = psutil.Process(pid).memory_info().rss
        return tree, warm

    def _store_up(self) -> bool:
        now = time.monotonic()
        if self._store_ok is None or now - self._store_ok[0] > STORE_CHECK_EVERY_S:
            try:
                self.executor.store.revision()
                ok = True
            except Exception:
                log.debug("the store did not answer the metrics' check", exc_info=True)
                ok = False
            self._store_ok = (now, ok)
        return self._store_ok[1]

    def collect(self) -> Iterator[Metric]:
        from celery.worker import state
        from prometheus_client.core import GaugeMetricFamily

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, doc)
            family.add_metric([], value)
            return family

        yield gauge("scriptrun_worker_slots", "Runs this worker may run at once.", self.slots)
        yield gauge(
            "scriptrun_worker_slots_busy",
            "Runs this worker is running now.",
            len(state.active_requests),
        )
        yield gauge(
            "scriptrun_worker_runs_reserved",
            "Runs this worker holds, running or about to.",
            len(state.reserved_requests),
        )
        yield _counter(
            "scriptrun_worker_runs",
            "Attempts this worker finished since it started, by recorded status.",
            "status",
            _outcomes,
        )
        yield _counter(
            "scriptrun_messages_refused",
            "Messages this worker refused and acknowledged since it started (a foreign,"
            " corrupt or hostile message it cannot take), by reason.",
            "reason",
            _refusals,
        )
        yield from self._memory()
        connected = self.broker_connected()
        if connected is not None:
            yield gauge("scriptrun_worker_broker_up", "Whether the broker link is up.", connected)
        yield gauge("scriptrun_worker_store_up", "Whether the store answers.", self._store_up())

    def _memory(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        tree, warm = self._rss()
        family = GaugeMetricFamily(
            "scriptrun_worker_tree_resident_memory_bytes",
            "Resident memory of the worker and every process under it (runs included).",
        )
        family.add_metric([], tree)
        yield family
        alive = GaugeMetricFamily(
            "scriptrun_worker_warm_parent_up", "Whether the warm parent is alive."
        )
        alive.add_metric([], 1.0 if warm is not None else 0.0)
        yield alive
        if warm is not None:
            family = GaugeMetricFamily(
                "scriptrun_worker_warm_parent_resident_memory_bytes",
                "Resident memory of the warm parent.",
            )
            family.add_metric([], warm)
            yield family


def _counter(name: str, doc: str, label: str, counts: Counter[str]) -> Metric:
    """A counter family with one sample per key of ``counts``."""
    from prometheus_client.core import CounterMetricFamily

    family = CounterMetricFamily(name, doc, labels=[label])
    with _outcomes_lock:
        for key, n in sorted(counts.items()):
            family.add_metric([key], n)
    return family


def serve(metrics: WorkerMetrics, port: int, address: str) -> Any:
    """Serve ``metrics`` (and the process' own) on ``address:port`` in a thread."""
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.process_collector import ProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics)
    ProcessCollector(registry=registry)
    return start_http_server(port, addr=address, registry=registry)
