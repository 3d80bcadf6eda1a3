"""``scriptrun workers`` and ``scriptrun top``: the fleet in a terminal, as plain text
(usable over SSH, piped, or in a log), redrawn in place by ``top``."""

from __future__ import annotations

import shutil
import sys
import time
from datetime import UTC
from typing import TYPE_CHECKING, Any, TextIO

from jupyter_scriptrun.display import human_bytes, human_seconds
from jupyter_scriptrun.observe import fleetview

if TYPE_CHECKING:
    from jupyter_scriptrun.observe.fleetview import Snapshot
    from jupyter_scriptrun.service.client import Client

CLEAR = "\x1b[H\x1b[2J"


def table(headers: list[str], rows: list[list[str]], width: int) -> list[str]:
    """Left-aligned columns, each as wide as its widest cell; lines cut at ``width``."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = []
    for cells in [headers, *rows]:
        line = "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
        lines.append(line if len(line) <= width else line[: width - 1] + "…")
    return lines


def worker_lines(workers: list[dict[str, Any]], width: int) -> list[str]:
    """One row per worker, then one indented line per run it runs."""
    if not workers:
        return ["no worker answered; start one with 'scriptrun worker'"]
    rows = []
    now = time.time()
    for w in workers:
        slots = f"{w.get('busy', len(w['active']))}/{w['slots']}" if "slots" in w else "?"
        up = human_seconds(now - w["started_at"].timestamp()) if w.get("started_at") else "?"
        rows.append(
            [
                w["name"],
                ",".join(w.get("queues", [])) or "?",
                slots,
                str(len(w["reserved"])),
                human_bytes(w.get("tree_rss_bytes")),
                up,
            ]
        )
    lines = table(["WORKER", "QUEUES", "BUSY", "WAITING", "RSS", "UP"], rows, width)
    out = [lines[0]]
    for w, line in zip(workers, lines[1:], strict=True):
        out.append(line)
        for run in w.get("runs", []):
            out.append(
                f"    {run['id'][:8]}  {run['script']}  {human_seconds(run.get('elapsed_s'))}"
            )
    return out


def render(snap: Snapshot, width: int = 100) -> str:
    """The whole screen of ``top`` as text."""
    window = human_seconds(snap.window_s)
    taken = snap.taken_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    out = [f"scriptrun top · {taken} · figures over the last {window}", ""]
    out.append(f"WORKERS: {len(snap.workers)} online")
    out += worker_lines(snap.workers, width)
    out += ["", "QUEUES"]
    rows = [
        [
            q["queue"],
            str(q["queued"]),
            str(q["running"]),
            "?" if q["messages"] is None else str(q["messages"]),
        ]
        for q in snap.queues
    ]
    out += table(["QUEUE", "QUEUED", "RUNNING", "IN BROKER"], rows, width)
    scope = f"; the newest {fleetview.MAX_ROWS:,} only" if snap.truncated else ""
    out += ["", f"SCRIPTS (runs that ended in the last {window}{scope})"]
    if snap.scripts:
        rows = [
            [
                s.script,
                str(s.runs),
                str(s.failed),
                f"{s.failure_rate:.0%}",
                human_seconds(s.p50_s),
                human_seconds(s.p95_s),
                human_seconds(s.wait_p50_s),
                human_seconds(s.wait_p95_s),
            ]
            for s in snap.scripts
        ]
        headers = ["SCRIPT", "RUNS", "FAILED", "FAIL", "P50", "P95", "WAIT P50", "WAIT P95"]
        out += table(headers, rows, width)
    else:
        out.append("no run ended in the window")
    if snap.failures:
        out += ["", "RECENT FAILURES"]
        for f in snap.failures:
            at = f["finished_at"].astimezone(UTC).strftime("%H:%M:%S")
            what = f"{f.get('error_type') or f['status']}: {f.get('message') or ''}".strip(": ")
            line = f"{at}  {f['id'][:8]}  {f['script']}  {f['status']}  {what}"
            out.append(line if len(line) <= width else line[: width - 1] + "…")
    for problem in snap.problems:
        out.append(f"(could not read {problem})")
    return "\n".join(out)


def run_top(
    client: Client,
    *,
    window_s: float,
    interval_s: float,
    once: bool,
    out: TextIO = sys.stdout,
) -> None:
    """Draw the fleet every ``interval_s`` until interrupted (``once``: one plain frame)."""
    from jupyter_scriptrun.observe.fleetview import snapshot

    while True:
        width = shutil.get_terminal_size((100, 40)).columns
        frame = render(snapshot(client, window_s), width)
        if once:
            print(frame, file=out)
            return
        # Clear-screen codes only for a terminal: piped, the frames follow one another.
        out.write((CLEAR if out.isatty() else "\n") + frame + "\n")
        out.flush()
        time.sleep(interval_s)
