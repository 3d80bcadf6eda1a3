"""Measurements of the benchmark: a process tree's memory and CPU, percentiles."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any


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
