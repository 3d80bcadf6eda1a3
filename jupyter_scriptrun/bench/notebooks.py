"""The benchmark's notebook section: the same short notebook by the papermill CLI (a new
process and kernel per run, the way people run notebooks from cron today) and by the
product, side by side: fresh (a papermill child and a new kernel per run) and warm (a
standby child whose kernel is up before the run comes; also one per run). Warm is
measured twice: with a standby ready (runs apart, as runs come in use), and back to back,
where each run waits for the standby started behind the one before."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from jupyter_scriptrun.bench.measure import summarize

CELLS: list[tuple[str, list[str]]] = [
    ("n = 3", ["parameters"]),
    ("squares = [i * i for i in range(n)]", []),
    ("total = sum(squares)\nprint(total)", []),
]


def write_notebook(folder: Path) -> Path:
    """A three-cell notebook with a parameters cell, as ``bench_notebook.ipynb``."""
    cells: list[dict[str, Any]] = [
        {
            "cell_type": "code",
            "id": f"c{i}",
            "metadata": {"tags": tags},
            "source": source,
            "outputs": [],
            "execution_count": None,
        }
        for i, (source, tags) in enumerate(CELLS)
    ]
    notebook = {
        "cells": cells,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path = folder / "bench_notebook.ipynb"
    path.write_text(json.dumps(notebook))
    return path


def papermill_latency(path: Path, n: int) -> list[float]:
    """Seconds per ``papermill IN OUT -p n 5`` (a new process each, as from cron)."""
    out = path.with_name("bench_notebook.out.ipynb")
    argv = [sys.executable, "-m", "papermill", str(path), str(out), "-p", "n", "5"]
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run([*argv, "--no-progress-bar"], check=True, capture_output=True)
        samples.append(time.perf_counter() - t0)
    return samples


def measure(bench: Any, settings: Any, n: int) -> dict[str, Any]:
    """papermill's and the product's p50 for the notebook (``bench``: the harness, whose
    worker and latency helpers are used)."""
    from jupyter_scriptrun.service.client import Client

    path = write_notebook(bench.tmp / "scripts")
    papermill_latency(path, 1)  # the first run pays for cold caches
    results = {"papermill": summarize(papermill_latency(path, n))}
    worker = bench.start_worker(settings)
    try:
        client = Client(settings)
        bench.product_latency(client, 1, "bench_notebook")
        results["product"] = summarize(bench.product_latency(client, n, "bench_notebook"))
    finally:
        bench.stop_worker(worker)
    warm = settings.with_(default_runner="warm")
    worker = bench.start_worker(warm)
    try:
        client = Client(warm)
        bench.product_latency(client, 1, "bench_notebook")
        ready = []
        for _ in range(n):
            _wait_for_standby(worker.pid)
            ready += bench.product_latency(client, 1, "bench_notebook")
        results["warm"] = summarize(ready)
        results["warm_back_to_back"] = summarize(bench.product_latency(client, n, "bench_notebook"))
    finally:
        bench.stop_worker(worker)
    results["ratio"] = results["product"]["p50_ms"] / results["papermill"]["p50_ms"]
    results["warm_ratio"] = results["warm"]["p50_ms"] / results["papermill"]["p50_ms"]
    return results


def _wait_for_standby(worker_pid: int, settle_s: float = 1.0, timeout: float = 60) -> None:
    """Until the worker has a standby with its kernel started, then ``settle_s`` more for
    the kernel to be ready (a standby's own readiness is not visible from outside)."""
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in psutil.Process(worker_pid).children(recursive=True):
            try:
                if "--standby" in child.cmdline() and child.children():
                    time.sleep(settle_s)
                    return
            except psutil.Error:
                continue
        time.sleep(0.05)
    raise RuntimeError(f"no notebook standby after {timeout} s")


def report(r: dict[str, Any]) -> None:
    """The notebook section's lines."""
    print(f"\n{'notebook (3 cells)':<34}{'p50':>8}{'p90':>8}{'ratio':>8}")
    rows = (
        ("papermill CLI", "papermill"),
        ("product fresh", "product"),
        ("product warm (a standby ready)", "warm"),
        ("product warm, back to back", "warm_back_to_back"),
    )
    for label, key in rows:
        if key not in r:
            continue
        x = r[key]
        ratio = x["p50_ms"] / r["papermill"]["p50_ms"]
        print(f"{label:<34}{x['p50_ms']:>8.0f}{x['p90_ms']:>8.0f}{ratio:>7.2f}x")
    print(
        "(ratio: p50 / papermill's p50; every run has a kernel of its own; warm starts it"
        " before the run comes, back to back a run waits for the standby behind the last)"
    )
