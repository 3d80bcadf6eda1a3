"""Measurements of the benchmark: a process tree's memory and CPU, percentiles."""

from __future__ import annotations

import statistics
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any

STAGES = ("submit", "to the worker", "start + script", "recording", "notice")
"""A run's way on one clock (this host's), each stage owned by one part: the client's
submit up to handing the message to Celery (validate, record); from there to the worker's
claim (publish, broker, Celery, the claim's transaction); the script's process
(interpreter start and the script, as the runner measures it); the worker's work around
the process (spawn preparation, measuring, the finish transaction); and from the finish
to the client seeing it (the completion notice, the status read). The stages add up to
the run's whole time; the rest of the submit call runs beside the worker's pickup."""


def _tree(pid: int) -> list[Any] | None:
    """A process and all its descendants (psutil), None if it is gone."""
    import psutil

    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return None


def _tree_sum(pid: int, measure: Callable[[Any], float]) -> float:
    """The sum of ``measure(process)`` over a process tree (NaN if it is gone)."""
    import psutil

    procs = _tree(pid)
    if procs is None:
        return float("nan")
    total = 0.0
    for proc in procs:
        try:
            total += measure(proc)
        except psutil.NoSuchProcess:
            continue  # ended meanwhile
    return total


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MiB."""
    return _tree_sum(pid, lambda p: p.memory_info().rss) / 2**20


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process tree, its reaped children included."""

    def cpu(proc: Any) -> float:
        t = proc.cpu_times()
        return t.user + t.system + t.children_user + t.children_system

    return _tree_sum(pid, cpu)


def own_cpu_s() -> float:
    """CPU seconds of this process and its reaped children."""
    import resource

    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summarize(samples: list[float]) -> dict[str, Any]:
    """p50/p90/p99/mean in milliseconds."""
    return {
        "p50_ms": percentile(samples, 50) * 1000,
        "p90_ms": percentile(samples, 90) * 1000,
        "p99_ms": percentile(samples, 99) * 1000,
        "mean_ms": statistics.fmean(samples) * 1000,
        "n": len(samples),
        "samples_ms": [round(x * 1000, 3) for x in samples],
    }


def interpreter_start(executable: str = sys.executable, n: int = 15) -> dict[str, Any]:
    """How fast a bare interpreter starts here: the p50 wall time of ``python -c pass`` and
    the cumulative time of ``site`` from ``-X importtime``. A site ``.pth`` that imports
    modules into every interpreter slows the baseline and flatters any overhead measured
    against it, so the benchmark states both beside its ratios."""
    import time

    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run([executable, "-c", "pass"], check=True)
        samples.append(time.perf_counter() - t0)
    out = subprocess.run(
        [executable, "-X", "importtime", "-c", "pass"], capture_output=True, text=True
    ).stderr
    site_us = next(
        (int(line.split("|")[1]) for line in out.splitlines() if line.rstrip().endswith("| site")),
        None,
    )
    return {
        "executable": executable,
        "start_ms": percentile(samples, 50) * 1000,
        "site_ms": None if site_us is None else site_us / 1000,
    }


def stages_of(
    record: dict[str, Any], submitted_at: float, sent_at: float, total_s: float, call_s: float
) -> dict[str, float]:
    """One run's time split into :data:`STAGES` (seconds) on one clock: ``submitted_at``
    (wall time when submit began), ``sent_at`` (when the client handed the message to
    Celery: ``Execution.sent_at``), the record's start and finish (the worker's stamps,
    this host's clock) and ``total_s`` (submit to seeing the end); and the whole submit
    call (``call_s``) as ``"submit call"``."""

    def at(value: datetime) -> float:
        return value.timestamp()

    started, finished = at(record["started_at"]), at(record["finished_at"])
    process = record["duration_s"] or 0.0
    return {
        "submit": sent_at - submitted_at,
        "to the worker": started - sent_at,
        "start + script": process,
        "recording": finished - started - process,
        "notice": total_s - (finished - submitted_at),
        "submit call": call_s,
    }


def submit_p50_ms(runs: list[dict[str, float]]) -> float:
    """The median of the whole submit call over ``runs`` (their ``"submit call"``)."""
    return statistics.median(r["submit call"] for r in runs) * 1000


def mean_stages(runs: list[dict[str, float]]) -> dict[str, float]:
    """Mean milliseconds per stage over ``runs``."""
    return {k: statistics.fmean(r[k] for r in runs) * 1000 for k in STAGES}
