"""``sr.dashboard()``: the fleet live in a notebook (also the panel's Fleet tab).

Workers with their runs, queues, figures per script over a chosen window, two charts
(runs per minute by outcome, median duration per minute) and the recent failures, each
opening its logs and traceback. A background thread reads the fleet every few seconds
(fleetview.snapshot) and updates the widgets in place: the kernel stays free, and an open
dashboard does not grow (the same widgets are reused; no output is appended).

The charts are bqplot's: an update sends the new arrays (a few KiB) and costs 0.14 ms of
the kernel's CPU, where a matplotlib figure re-rendered into an Output costs about 120 ms
and a 50 KiB PNG per refresh (measured; see docs/monitoring.md).
"""

from __future__ import annotations

import html
import logging
import threading
from datetime import UTC
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from jupyter_scriptrun.display import (
    BORDER,
    COLOURS,
    ERROR,
    MUTED,
    execution_html,
    human_bytes,
    human_seconds,
    progress_html,
)
from jupyter_scriptrun.observe import fleetview
from jupyter_scriptrun.observe.fleetview import WINDOWS, Snapshot, snapshot

if TYPE_CHECKING:
    from jupyter_scriptrun.service.client import Client

log = logging.getLogger(__name__)

REFRESH_S = 5.0
SILENT_KEPT_S = 600.0
FAILURE_ROWS = 8
TABLE = "border-collapse:collapse;width:100%;font-size:90%"
TIME_TICKS = "%H:%M"
"""One time format on both charts (d3's default mixed "05:45" with "06 PM")."""
TIME_LABEL = "time (your browser's zone)"
"""bqplot draws dates in the browser's zone, which the header's UTC clock may not be."""
CELL = f"padding:2px 8px;border-bottom:1px solid {BORDER};text-align:left"
NUM = f"padding:2px 8px;border-bottom:1px solid {BORDER};text-align:right;white-space:nowrap"
OUTCOME_COLOURS = {
    "succeeded": COLOURS["succeeded"],
    "failed": COLOURS["failed"],
    "other": "#6e7781",
}


def html_table(headers: list[str], rows: list[list[str]], numeric: set[int]) -> str:
    """A plain, readable table; ``numeric`` columns right-aligned. Cells are HTML."""
    head = "".join(
        f"<th style='{NUM if i in numeric else CELL}'>{html.escape(h)}</th>"
        for i, h in enumerate(headers)
    )
    body = "".join(
        "<tr>"
        + "".join(f"<td style='{NUM if i in numeric else CELL}'>{c}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return (
        f"<div style='overflow-x:auto'><table style='{TABLE}'><tr>{head}</tr>{body}</table></div>"
    )


def chip(status: str) -> str:
    colour = COLOURS.get(status, "#0969da")
    return (
        f"<span style='background:{colour};color:white;border-radius:8px;padding:0 6px;"
        f"font-size:85%'>{html.escape(status)}</span>"
    )


def workers_html(
    workers: list[dict[str, Any]], now: float, silent: dict[str, float] | None = None
) -> str:
    """The workers that answered, then those that answered before and not now (``silent``:
    name → when last heard), greyed with the time since."""
    silent = silent or {}
    if not workers and not silent:
        return "<i>No worker answered. Start one with <code>scriptrun worker</code>.</i>"
    rows = []
    for name, heard in sorted(silent.items()):
        rows.append(
            [
                f"<span style='color:{MUTED}'>{html.escape(name)}</span>",
                "",
                "",
                f"<span style='color:{ERROR}'>no answer for {human_seconds(now - heard)}</span>",
                "",
                "",
            ]
        )
    for wk in workers:
        runs = "<br>".join(
            f"<code>{html.escape(r['id'][:8])}</code> {html.escape(r['script'])} "
            f"({human_seconds(r.get('elapsed_s'))})"
            + (progress_html(r["progress"], None) if r.get("progress") else "")
            for r in wk.get("runs", [])
        )
        started = wk.get("started_at")
        up = human_seconds(max(now - started.timestamp(), 0.0)) if started else "?"
        rows.append(
            [
                html.escape(wk["name"]),
                html.escape(", ".join(wk.get("queues", [])) or "?"),
                f"{wk.get('busy', len(wk['active']))}/{wk.get('slots', '?')}",
                runs or "—",
                human_bytes(wk.get("tree_rss_bytes")),
                up,
            ]
        )
    headers = ["worker", "queues", "busy", "running", "memory", "up"]
    return html_table(headers, rows, {2, 4, 5})


def scripts_html(snap: Snapshot) -> str:
    if not snap.scripts:
        return "<i>No run ended in this window.</i>"
    rows = [
        [
            html.escape(s.script),
            str(s.runs),
            str(s.failed),
            f"<span style='color:{COLOURS['failed'] if s.failed else 'inherit'}'>"
            f"{s.failure_rate:.0%}</span>",
            human_seconds(s.p50_s),
            human_seconds(s.p95_s),
            human_seconds(s.wait_p50_s),
            human_seconds(s.wait_p95_s),
        ]
        for s in snap.scripts
    ]
    headers = ["script", "runs", "failed", "failure rate", "p50", "p95", "wait p50", "wait p95"]
    return html_table(headers, rows, {1, 2, 3, 4, 5, 6, 7})


def queues_html(snap: Snapshot) -> str:
    rows = [
        [
            html.escape(q["queue"]),
            str(q["queued"]),
            str(q["running"]),
            "?" if q["messages"] is None else str(q["messages"]),
        ]
        for q in snap.queues
    ]
    return html_table(["queue", "queued", "running", "in the broker"], rows, {1, 2, 3})


class Dashboard:
    """The fleet, live: display it as a cell's last expression; ``close()`` stops it."""

    def __init__(
        self,
        client: Client,
        refresh_s: float = REFRESH_S,
        window: str = "1 h",
        start: bool = True,
        workers_timeout: float = 1.0,
    ) -> None:
        self.client = client
        self.refresh_s = refresh_s
        self.workers_timeout = workers_timeout
        self.snapshot: Snapshot | None = None
        self._heard: dict[str, float] = {}  # worker name -> when it last answered
        self.refreshes = 0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

        self.title = w.HTML("<b>scriptrun fleet</b>")
        self.window = w.ToggleButtons(options=list(WINDOWS), value=window, description="Window")
        self.window.style.button_width = "70px"
        self.window.observe(lambda _: self._wake.set(), names="value")
        # A table wider than the cell scrolls inside its own box: the dashboard never does.
        fit = {"width": "auto", "min_width": "0", "overflow": "auto"}
        self.workers = w.HTML(layout=w.Layout(**fit))
        self.queues = w.HTML(layout=w.Layout(**fit))
        self.scripts = w.HTML(layout=w.Layout(**fit))

        self._build_charts()
        self.failure_rows = [self._failure_row() for _ in range(FAILURE_ROWS)]
        self.detail = w.HTML(layout=w.Layout(**fit))
        self.failures = w.VBox([row for row, _, _ in self.failure_rows])
        full = w.Layout(width="100%")
        self.widget = w.VBox(
            [
                w.HBox(
                    [self.title, self.window],
                    layout=w.Layout(justify_content="space-between", flex_flow="row wrap"),
                ),
                w.HTML("<b>Workers</b>"),
                self.workers,
                w.HTML("<b>Queues</b>"),
                self.queues,
                w.HTML("<b>Scripts</b>"),
                self.scripts,
                w.HBox(
                    [self.runs_figure, self.latency_figure],
                    layout=w.Layout(width="100%", flex_flow="row wrap"),
                ),
                w.HTML("<b>Recent failures</b>"),
                self.failures,
                self.detail,
            ],
            layout=full,
        )
        self.widget.add_class("scriptrun-dashboard")
        if start:
            self.start()

    # -- widgets ---------------------------------------------------------------------------

    def _build_charts(self) -> None:
        """Two bqplot figures on one time axis; ``show`` only changes their arrays."""
        import bqplot as bq

        # Every domain is given (show sets them): a scale left to find its own from no
        # data, or from NaN, draws its ticks at "undefined" (console errors).
        time_scale, count_scale, seconds_scale = bq.DateScale(), bq.LinearScale(), bq.LinearScale()
        count_scale.min = seconds_scale.min = 0.0
        count_scale.max = seconds_scale.max = 1.0
        self.scales = (time_scale, count_scale, seconds_scale)
        self.runs_chart = bq.Lines(
            scales={"x": time_scale, "y": count_scale},
            colors=list(OUTCOME_COLOURS.values()),
            labels=list(OUTCOME_COLOURS),
            display_legend=True,
        )
        self.latency_chart = bq.Lines(
            scales={"x": time_scale, "y": seconds_scale}, colors=["#0969da"], labels=["p50"]
        )
        # The minutes with runs as points too (a minute between empty ones is a point, not
        # only a bend in the line).
        self.latency_points = bq.Scatter(
            scales={"x": time_scale, "y": seconds_scale}, colors=["#0969da"], default_size=16
        )
        chart_layout = {"width": "100%", "height": "220px", "min_width": "200px"}
        margin = {"top": 30, "bottom": 45, "left": 50, "right": 20}
        self.runs_figure = bq.Figure(
            marks=[self.runs_chart],
            axes=[
                bq.Axis(
                    scale=time_scale, tick_format=TIME_TICKS, label=TIME_LABEL, label_offset="32px"
                ),
                bq.Axis(scale=count_scale, orientation="vertical", label="runs / min"),
            ],
            title="Runs by outcome",
            layout=w.Layout(**chart_layout),
            fig_margin=margin,
            legend_location="top-left",
        )
        self.latency_figure = bq.Figure(
            marks=[],  # show adds the marks once there are points to draw
            axes=[
                bq.Axis(
                    scale=time_scale, tick_format=TIME_TICKS, label=TIME_LABEL, label_offset="32px"
                ),
                bq.Axis(scale=seconds_scale, orientation="vertical", label="seconds"),
            ],
            title="Median duration",
            layout=w.Layout(**chart_layout),
            fig_margin=margin,
        )

    def _failure_row(self) -> tuple[w.HBox, w.HTML, w.Button]:
        """One reusable row: a summary and a button opening the run's logs and traceback."""
        label = w.HTML(layout=w.Layout(flex="1 1 auto", overflow="hidden"))
        button = w.Button(description="Logs", layout=w.Layout(width="70px", flex="0 0 auto"))
        row = w.HBox([label, button], layout=w.Layout(display="none", width="100%"))
        button.on_click(lambda b: self.open_run(b.tooltip or ""))
        return row, label, button

    def open_run(self, execution_id: str) -> None:
        """Show a run's record, logs and traceback below the failures."""
        if not execution_id:
            return
        try:
            execution = self.client.get(execution_id)
            rec = execution.record()
            card = execution_html(
                rec,
                execution.data,
                stdout=execution.stdout,
                stderr=execution.stderr,
                expanded=True,  # opened on purpose: everything shows
            )
            if execution.traceback:
                card += f"<pre style='color:{ERROR}'>{html.escape(execution.traceback)}</pre>"
        except Exception as exc:
            card = f"<span style='color:{ERROR}'>{html.escape(str(exc))}</span>"
        self.detail.value = card

    def show(self, snap: Snapshot) -> None:
        """Put a snapshot into the widgets (values only: nothing is created)."""
        now = snap.taken_at.timestamp()
        taken = snap.taken_at.astimezone(UTC).strftime("%H:%M:%S UTC")
        problems = "".join(
            f" · <span style='color:{ERROR}'>{html.escape(p)}</span>" for p in snap.problems
        )
        self.title.value = (
            f"<b>scriptrun fleet</b> · {len(snap.workers)} worker(s) · read {taken}{problems}"
        )
        for wk in snap.workers:
            self._heard[wk["name"]] = now
        answered = {wk["name"] for wk in snap.workers}
        # A worker that stops answering stays listed, with how long it has been silent,
        # for SILENT_KEPT_S (a crashed host is seen, not just gone).
        silent = {
            name: at
            for name, at in self._heard.items()
            if name not in answered and now - at <= SILENT_KEPT_S
        }
        self._heard = {name: at for name, at in self._heard.items() if now - at <= SILENT_KEPT_S}
        self.workers.value = workers_html(snap.workers, now, silent)
        self.queues.value = queues_html(snap)
        self.scripts.value = scripts_html(snap) + (
            f"<i>Over the newest {fleetview.MAX_ROWS:,} runs of the window only.</i>"
            if snap.truncated
            else ""
        )
        import numpy as np

        x = np.array(
            [m["minute"].replace(tzinfo=None) for m in snap.minutes], dtype="datetime64[ms]"
        )
        step_min = max(snap.window_s / 60 / max(len(snap.minutes), 1), 1.0)
        y = np.array([[m[k] / step_min for m in snap.minutes] for k in OUTCOME_COLOURS])
        latency = np.array([np.nan if m["p50_s"] is None else m["p50_s"] for m in snap.minutes])
        with self.runs_chart.hold_sync():
            self.runs_chart.x, self.runs_chart.y = x, y
        # Only the minutes that had runs: a NaN point puts the line's end label (and any
        # marker) at "undefined", a console error per point per render.
        seen = ~np.isnan(latency)
        with self.latency_chart.hold_sync():
            self.latency_chart.x, self.latency_chart.y = x[seen], latency[seen]
        with self.latency_points.hold_sync():
            self.latency_points.x, self.latency_points.y = x[seen], latency[seen]
        time_scale, count_scale, seconds_scale = self.scales
        start = np.datetime64(snap.taken_at.replace(tzinfo=None), "ms")
        with time_scale.hold_sync():
            time_scale.min = start - np.timedelta64(int(snap.window_s * 1000), "ms")
            time_scale.max = start
        count_scale.max = max(float(y.max()) if y.size else 0.0, 1.0) * 1.1
        seconds_scale.max = max(float(latency[seen].max()) if seen.any() else 0.0, 0.001) * 1.1
        # A line with no point draws its path at "null": the marks it has, only.
        marks = [self.latency_chart, self.latency_points] if seen.any() else []
        if self.latency_figure.marks != marks:
            self.latency_figure.marks = marks
        for i, (row, label, button) in enumerate(self.failure_rows):
            if i >= len(snap.failures):
                row.layout.display = "none"
                continue
            f = snap.failures[i]
            at = f["finished_at"].astimezone(UTC).strftime("%H:%M:%S")
            what = html.escape(f"{f.get('error_type') or ''}: {f.get('message') or ''}".strip(": "))
            label.value = (
                f"{at} {chip(f['status'])} <b>{html.escape(f['script'])}</b> "
                f"<code>{html.escape(f['id'][:8])}</code> <span title='{what}'>{what[:160]}</span>"
            )
            button.tooltip = f["id"]
            row.layout.display = "flex"

    def refresh(self) -> Snapshot:
        """Read the fleet now and show it (what the background thread does)."""
        with self._lock:
            window = WINDOWS[self.window.value]
            snap = snapshot(self.client, window, workers_timeout=self.workers_timeout)
            self.show(snap)
            self.snapshot = snap
            self.refreshes += 1
            return snap

    # -- the background ----------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception as exc:
                log.debug("dashboard refresh failed", exc_info=True)
                self.title.value = (
                    f"<b>scriptrun fleet</b> · <span style='color:{ERROR}'>"
                    f"{html.escape(str(exc))}</span>"
                )
            self._wake.wait(self.refresh_s)
            self._wake.clear()

    def start(self) -> None:
        """Refresh every ``refresh_s`` in a background thread (once)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._loop, name="scriptrun-dashboard", daemon=True
            )
            self._thread.start()

    def pause(self) -> None:
        """Stop refreshing (``start()`` resumes)."""
        self._stop.set()
        self._wake.set()

    def close(self) -> None:
        """Stop refreshing and close the widgets."""
        self.pause()
        self.widget.close()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)
