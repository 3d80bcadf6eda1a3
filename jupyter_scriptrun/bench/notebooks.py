"""The benchmark's notebook section: the same short notebook by the papermill CLI (a new
process and kernel per run, the way people run notebooks from cron today) and by the
product (fresh: a papermill child and a new kernel per run), side by side."""

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
    results["ratio"] = results["product"]["p50_ms"] / results["papermill"]["p50_ms"]
    return results


def report(r: dict[str, Any]) -> None:
    """The notebook section's lines."""
    print(f"\n{'notebook (3 cells)':<34}{'p50':>8}{'p90':>8}{'ratio':>8}")
    for label, key in (("papermill CLI", "papermill"), ("product fresh", "product")):
        x = r[key]
        ratio = x["p50_ms"] / r["papermill"]["p50_ms"]
        print(f"{label:<34}{x['p50_ms']:>8.0f}{x['p90_ms']:>8.0f}{ratio:>7.2f}x")
    print("(ratio: p50 / papermill's p50; both start a new kernel per run)")
