"""What a click in the history table costs over a big history, against the alternatives.

``python -m jupyter_scriptrun.bench.table --rows 10000`` fills a scratch SQLite store and
prints, per action, the milliseconds in the kernel and the bytes a browser is sent:

- the panel's ``HistoryTable`` (one page, sorted and counted by the store; reused rows);
- the whole history as one HTML table (``DataFrame.to_html``, what the panel showed before);
- ipydatagrid's ``DataGrid`` over the whole history frame, where it is installed (it sends
  every row to the browser and sorts there).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any


def synthetic_runs(rows: int, now: datetime) -> list[dict[str, Any]]:
    """``rows`` ended runs, one a minute back from ``now``: every 10th failed with a
    message naming a disk, every 50th lost (no duration), seven scripts in turn."""
    runs = []
    for i in range(rows):
        lost = i % 50 == 0
        failed = i % 10 == 0 and not lost
        queued = now - timedelta(minutes=i)
        runs.append(
            {
                "id": uuid.uuid4().hex,
                "script": f"script_{i % 7}",
                "status": "lost" if lost else "failed" if failed else "succeeded",
                "page_context": "bench",
                "parameters": {"n": i},
                "queued_at": queued,
                "started_at": queued,
                "finished_at": None if lost else queued + timedelta(seconds=1),
                "queue_s": 0.01,
                "duration_s": None if lost else (i % 97) / 10,
                "peak_rss_mb": 10 + i % 13,
                "exit_code": None if lost else 1 if failed else 0,
                "attempt": 1,
                "worker": "w@host",
                "message": f"disk {i} is full" if failed else None,
                "cancel_requested": False,
            }
        )
    return runs


def fill(client: Any, rows: int) -> None:
    """Write ``synthetic_runs`` into the client's store."""
    from sqlalchemy import insert

    from jupyter_scriptrun.store import utcnow
    from jupyter_scriptrun.store.tables import executions

    runs = synthetic_runs(rows, utcnow())
    with client.store.engine.begin() as conn:
        for start in range(0, rows, 20_000):
            conn.execute(insert(executions), runs[start : start + 20_000])


def timed(action: Callable[[], Any], repeat: int = 5) -> float:
    """Median milliseconds of ``action``."""
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        action()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def measure(rows: int, folder: Path) -> dict[str, Any]:
    """The figures for one history size."""
    from jupyter_scriptrun.config import Settings
    from jupyter_scriptrun.jupyter.history_table import HistoryTable
    from jupyter_scriptrun.service.client import Client

    client = Client(Settings(data_dir=folder / "data", queue="bench-table"))
    fill(client, rows)
    table = HistoryTable(client, [f"script_{i}" for i in range(7)])
    figures: dict[str, Any] = {"rows": rows}
    figures["table_refresh_ms"] = timed(table.refresh)
    figures["table_sort_ms"] = timed(lambda: table.sort("duration_s"))
    figures["table_next_page_ms"] = timed(lambda: table.turn(1))
    figures["table_filter_ms"] = timed(lambda: table.refresh(first_page=True))
    figures["table_page_bytes"] = sum(len(cells.value) for _, cells, _ in table.rows)

    frame = client.history(limit=rows)
    t0 = time.perf_counter()
    page = frame.to_html(index=False)
    figures["whole_html_ms"] = (time.perf_counter() - t0) * 1000
    figures["whole_html_bytes"] = len(page)
    try:
        from ipydatagrid import DataGrid  # type: ignore[import-not-found]
    except ImportError:
        figures["datagrid"] = "not installed"
    else:
        shown = frame.drop(columns=["parameters"])
        t0 = time.perf_counter()
        grid = DataGrid(shown)
        figures["datagrid_ms"] = (time.perf_counter() - t0) * 1000
        figures["datagrid_bytes"] = len(json.dumps(grid.get_state()["_data"], default=str))
    client.store.dispose()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jupyter_scriptrun.bench.table")
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000])
    args = parser.parse_args(argv)
    for rows in args.rows:
        with tempfile.TemporaryDirectory() as folder:
            figures = measure(rows, Path(folder))
        print(json.dumps(figures, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
