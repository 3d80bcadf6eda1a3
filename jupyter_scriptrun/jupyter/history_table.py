"""The history as a table widget: filtered, sorted and paged by the store; a row opens a run.

Only one page is ever in the browser: the store sorts and counts (``Client.history_page``),
and the page's row widgets are made once and reused, so a history of 10,000 or 1,000,000
runs costs the same per click (measured in ``bench``: see the README). While it is shown
it follows the store: the page is read again every ``REFRESH_S`` (a widget sends only what
changed), and an opened run that goes shows its progress and output as they come.
"""

from __future__ import annotations

import html
import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from jupyter_scriptrun.display import (
    COLOURS,
    ERROR,
    MARKS,
    MUTED,
    attempts_html,
    execution_html,
    human_seconds,
    running_for,
    status_html,
)
from jupyter_scriptrun.exceptions import ScriptrunError
from jupyter_scriptrun.service.handle import LiveTail
from jupyter_scriptrun.status import ExecutionStatus

if TYPE_CHECKING:
    from jupyter_scriptrun.service.client import Client

log = logging.getLogger(__name__)

PAGE = 25
REFRESH_S = 2.0
OUTPUT_KEEP_CHARS = 20_000
ID_WIDTH = 92
COLUMNS: tuple[tuple[str, str, int | None, str], ...] = (
    # (history column, title, width in px (None: the rest), alignment)
    ("status", "status", 112, "left"),
    ("script", "script", 150, "left"),
    ("queued_at", "queued", 104, "left"),
    ("duration_s", "duration", 96, "right"),
    ("queue_s", "wait", 76, "right"),
    ("peak_rss_mb", "memory", 92, "right"),
    ("exit_code", "exit", 56, "right"),
    ("message", "message", None, "left"),
)
SORTABLE = {c for c, *_ in COLUMNS} - {"message"}
TITLES = {column: title for column, title, *_ in COLUMNS}
PERIODS: dict[str, float | None] = {
    "any time": None,
    "last hour": 3600.0,
    "last 24 hours": 86400.0,
    "last 7 days": 7 * 86400.0,
}
_CELL = "display:inline-block;box-sizing:border-box;padding:0 6px;overflow:hidden;"
_CELL += "text-overflow:ellipsis;white-space:nowrap;vertical-align:middle"


def ago(when: datetime | None, now: datetime) -> str:
    """``12 s ago``, ``5 min ago``, ``3 h ago``, then the date: how long since ``when``."""
    if when is None:
        return "—"
    seconds = (now - when).total_seconds()
    if seconds < 60:
        return f"{max(seconds, 0):.0f} s ago"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min ago"
    if seconds < 86400:
        return f"{seconds // 3600:.0f} h ago"
    return when.astimezone(UTC).strftime("%Y-%m-%d")


def row_html(rec: dict[str, Any], now: datetime) -> str:
    """One row's cells (all but the id): a status chip, humanized values, and the full
    values on hover."""
    cells = []
    for column, _, width, align in COLUMNS:
        value = rec.get(column)
        full = "" if value is None else str(value)
        if column == "status":
            status = str(value)
            text = (
                f"<span style='background:{COLOURS.get(status, '#0969da')};color:white;"
                f"border-radius:8px;padding:0 6px'>{MARKS.get(status, '•')} "
                f"{html.escape(status)}</span>"
            )
        elif column == "queued_at":
            text = html.escape(ago(value, now))
            full = value.astimezone(UTC).isoformat(timespec="milliseconds") if value else ""
        elif column in ("duration_s", "queue_s"):
            text = human_seconds(value)
        elif column == "script" and rec.get("files"):
            count = rec["files"]
            text = (
                f"{html.escape(full)} <span title='{count} file{'s' if count > 1 else ''} "
                f"kept' style='color:{MUTED}'>📎{count}</span>"
            )
        elif column == "peak_rss_mb":
            text = "—" if value is None else f"{value:.1f} MiB"
        else:
            text = html.escape("—" if value is None else str(value))
        size = f"width:{width}px;" if width else "flex:1 1 120px;min-width:120px;"
        cells.append(
            f"<span style='{_CELL};{size}text-align:{align}' title='{html.escape(full)}'>"
            f"{text}</span>"
        )
    return "<div style='display:flex;align-items:center'>" + "".join(cells) + "</div>"


class HistoryTable:
    """The history view of the panel (also usable alone: ``HistoryTable(client).widget``).

    Filters (script, status, period, text), column headers that sort (again: the other
    way), pages of ``PAGE`` runs, and a detail view per run with Re-run and Cancel.
    """

    def __init__(
        self, client: Client, scripts: list[str], page: int = PAGE, refresh_s: float = REFRESH_S
    ) -> None:
        self.client = client
        self.page_size = page
        self.refresh_s = refresh_s
        self.order_by, self.descending, self.offset, self.total = "queued_at", True, 0, 0
        self.records: list[dict[str, Any]] = []
        self.opened: Any = None
        """The run whose detail is shown (an Execution), if any."""
        self._tail = LiveTail(keep=OUTPUT_KEEP_CHARS)
        self._opened_final = False
        # A click (the kernel's thread) and the live refresh (its own) take turns.
        self._lock = threading.RLock()
        self._follower: threading.Thread | None = None
        self._stop = threading.Event()
        filters = self._build_filters(scripts)
        grid = self._build_grid(page)
        self.detail_box = self._build_detail()
        self.list_box = w.VBox(
            [
                filters,
                # Wide rows scroll inside their own box: the cell never scrolls sideways.
                w.Box([grid], layout=w.Layout(overflow="auto", width="100%")),
                w.HBox([self.previous, self.position, self.next]),
            ]
        )
        self.widget = w.VBox([self.list_box, self.detail_box], layout=w.Layout(width="100%"))

    def _build_filters(self, scripts: list[str]) -> w.HBox:
        self.script = w.Dropdown(
            options=[("all scripts", "")] + [(n, n) for n in scripts],
            description="Script",
            layout=w.Layout(width="240px"),
            style={"description_width": "50px"},
        )
        self.status = w.Dropdown(
            options=[("any status", "")] + [(s.value, s.value) for s in ExecutionStatus],
            description="Status",
            layout=w.Layout(width="200px"),
            style={"description_width": "50px"},
        )
        self.period = w.Dropdown(options=list(PERIODS), layout=w.Layout(width="140px"))
        self.text = w.Text(
            placeholder="search messages, or an id",
            continuous_update=False,
            layout=w.Layout(width="220px"),
        )
        self.refresh_button = w.Button(icon="refresh", tooltip="Refresh", layout={"width": "40px"})
        # Where runs came from (``schedule:NAME``…): set by a link such as the Schedules
        # tab's, shown as a button that clears it.
        self.context: str | None = None
        self.context_button = w.Button(
            icon="times", tooltip="show every run", layout=w.Layout(display="none")
        )
        for control in (self.script, self.status, self.period, self.text):
            control.observe(lambda _: self.refresh(first_page=True), names="value")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.context_button.on_click(lambda _: self.show_context(None))
        return w.HBox(
            [
                self.script,
                self.status,
                self.period,
                self.text,
                self.refresh_button,
                self.context_button,
            ],
            layout=w.Layout(flex_flow="row wrap"),
        )

    def _build_grid(self, page: int) -> w.VBox:
        """The header of sort buttons, ``page`` reusable rows, and the pager."""
        self.headers = {
            column: w.Button(
                description=title,
                tooltip=f"sort by {title}" if column in SORTABLE else "",
                disabled=column not in SORTABLE,
                layout=w.Layout(
                    width=f"{width}px" if width else "auto", margin="0", flex="0 0 auto"
                ),
            )
            for column, title, width, _ in COLUMNS
        }
        for column, button in self.headers.items():
            button.on_click(lambda _, c=column: self.sort(c))
        self.headers["message"].layout = w.Layout(flex="1 1 120px", margin="0")
        fixed = {"width": f"{ID_WIDTH}px", "margin": "0", "flex": "0 0 auto"}
        id_head = w.Button(description="id", disabled=True, layout=w.Layout(**fixed))
        header = w.HBox([id_head, *self.headers.values()], layout=w.Layout(min_width="840px"))
        self.rows: list[tuple[w.Button, w.HTML, w.HBox]] = []
        for _ in range(page):
            button = w.Button(layout=w.Layout(**fixed))
            button.on_click(lambda b: self.open(b.tooltip))
            cells = w.HTML(layout=w.Layout(flex="1 1 auto", margin="0"))
            self.rows.append(
                (button, cells, w.HBox([button, cells], layout=w.Layout(display="none")))
            )
        self.empty = w.HTML()
        self.previous = w.Button(description="newer", icon="chevron-left", layout={"width": "90px"})
        self.next = w.Button(description="older", icon="chevron-right", layout={"width": "90px"})
        self.position = w.HTML()
        self.previous.on_click(lambda _: self.turn(-1))
        self.next.on_click(lambda _: self.turn(+1))
        return w.VBox(
            [header, *(row for *_, row in self.rows), self.empty],
            layout=w.Layout(min_width="840px"),
        )

    def _build_detail(self) -> w.VBox:
        self.detail = w.HTML()
        self.rerun_button = w.Button(description="Re-run", icon="repeat", button_style="primary")
        self.cancel_button = w.Button(description="Cancel", icon="stop", button_style="warning")
        self.close_button = w.Button(description="Back to the list", icon="arrow-left")
        self.detail_problem = w.HTML()
        self.rerun_button.on_click(lambda _: self.rerun())
        self.cancel_button.on_click(lambda _: self.cancel())
        self.close_button.on_click(lambda _: self.close_detail())
        return w.VBox(
            [
                w.HBox([self.close_button, self.rerun_button, self.cancel_button]),
                self.detail_problem,
                self.detail,
            ],
            layout=w.Layout(display="none"),
        )

    # -- the list -----------------------------------------------------------------

    def filters(self) -> dict[str, Any]:
        """The chosen filters, as ``Client.history`` takes them."""
        chosen: dict[str, Any] = {
            "script": self.script.value or None,
            "status": self.status.value or None,
            "text": self.text.value.strip() or None,
        }
        window = PERIODS[self.period.value]
        if window is not None:
            chosen["since"] = datetime.now(UTC) - timedelta(seconds=window)
        if self.context is not None:
            chosen["page_context"] = self.context
        return chosen

    def show_context(self, context: str | None) -> None:
        """Only the runs started from ``context`` (``schedule:NAME``), on the list; None:
        every run again."""
        with self._lock:
            self.context = context
            self.context_button.description = context or ""
            self.context_button.layout.display = "none" if context is None else None
            self.offset = 0
            if self.opened is not None:
                self.close_detail()  # back to the list, which it reads
            else:
                self.refresh()

    def refresh(self, first_page: bool = False) -> None:
        """Read the page again (the first one after a filter changed) and show it."""
        with self._lock:
            if first_page:
                self.offset = 0
            self.records, self.total = self.client.history_page(
                order_by=self.order_by,
                descending=self.descending,
                limit=self.page_size,
                offset=self.offset,
                **self.filters(),
            )
            if not self.records and self.offset and self.total:  # the page emptied: go back
                self.offset = max(0, (self.total - 1) // self.page_size * self.page_size)
                return self.refresh()
            self._draw()

    def _draw(self) -> None:
        now = datetime.now(UTC)
        for index, (button, cells, row) in enumerate(self.rows):
            if index < len(self.records):
                rec = self.records[index]
                button.description, button.tooltip = rec["id"][:8], rec["id"]
                cells.value = row_html(rec, now)
                row.layout.display = "flex"
            else:
                row.layout.display = "none"
        self.empty.value = "" if self.records else "<i>no runs match</i>"
        first = self.offset + 1 if self.records else 0
        last = self.offset + len(self.records)
        self.position.value = (
            f"<span style='padding:0 1em'>{first:,} to {last:,} of {self.total:,}</span>"
        )
        self.previous.disabled = self.offset == 0
        self.next.disabled = last >= self.total
        for column, button in self.headers.items():
            title = TITLES[column]
            if column == self.order_by:
                title += " ▼" if self.descending else " ▲"
            button.description = title

    def sort(self, column: str) -> None:
        """Sort by ``column``; the same column again turns the order round."""
        if column == self.order_by:
            self.descending = not self.descending
        else:
            self.order_by = column
            self.descending = column not in ("script", "status")  # names A→Z, else biggest
        self.refresh(first_page=True)

    def turn(self, pages: int) -> None:
        """Go ``pages`` pages on (older) or back (newer)."""
        self.offset = max(0, self.offset + pages * self.page_size)
        self.refresh()

    # -- one run --------------------------------------------------------------------

    def open(self, execution_id: str) -> None:
        """Show a run: its record, parameters, output, traceback, data and attempts."""
        execution = self.client.get(execution_id)
        with self._lock:
            self.opened = execution
            self._tail = LiveTail(keep=OUTPUT_KEEP_CHARS)
            self._opened_final = False
            self.detail_problem.value = ""
            self._draw_detail()
            self.list_box.layout.display = "none"
            self.detail_box.layout.display = "flex"

    def _draw_detail(self) -> None:
        """The opened run: while it goes, its line, progress bar and output so far; once
        it ended, the whole card (drawn once: an ended run does not change)."""
        execution = self.opened
        rec = execution.record()
        status = ExecutionStatus(rec["status"])
        if not status.is_final:
            self._tail.read(execution)  # only while it goes: an ended run's card has it all
            output = (
                f"<pre style='max-height:24em;overflow:auto;white-space:pre-wrap'>"
                f"{html.escape(self._tail.text)}</pre>"
                if self._tail.text
                else "<i>no output yet</i>"
            )
            self.detail.value = status_html(rec, running_for(rec)) + output
            self.cancel_button.disabled = False
            return
        frame = execution.frame() if status is ExecutionStatus.SUCCEEDED else None
        card = execution_html(
            rec,
            execution.data,
            frame,
            execution.stdout,
            execution.stderr,
            expanded=True,
            files=execution.file_views(),
        )
        self.detail.value = card + attempts_html(execution.attempts())
        self.cancel_button.disabled = True
        self._opened_final = True

    # -- following the store --------------------------------------------------------------

    def tick(self) -> None:
        """One live refresh: the opened run while it goes, else the page."""
        with self._lock:
            if self.opened is None:
                self.refresh()
            elif not self._opened_final:
                self._draw_detail()

    def start(self) -> None:
        """Follow the store in the background (the panel calls it while the tab shows)."""
        with self._lock:
            if self._follower is None or not self._follower.is_alive():
                self._stop = threading.Event()
                self._follower = threading.Thread(
                    target=self._follow, args=(self._stop,), name="scriptrun-history", daemon=True
                )
                self._follower.start()

    def pause(self) -> None:
        """Stop following (the tab is hidden); ``start`` again reads at once."""
        self._stop.set()

    def _follow(self, stop: threading.Event) -> None:
        while True:
            try:
                self.tick()
            except Exception:  # a store hiccup must not end the following
                log.warning("history refresh failed", exc_info=True)
            if stop.wait(self.refresh_s):
                return

    def rerun(self) -> Any:
        """Run the opened run's script again with the same parameters; open the new run."""
        rec = self.opened.record()
        try:
            execution = self.client.submit(rec["script"], rec["parameters"], page_context="panel")
        except ScriptrunError as exc:
            self.detail_problem.value = (
                f"<span style='color:{ERROR}'>{html.escape(str(exc))}</span>"
            )
            return None
        self.open(execution.id)
        return execution

    def cancel(self) -> None:
        """Cancel the opened run."""
        try:
            self.opened.cancel()
        except ScriptrunError as exc:
            self.detail_problem.value = (
                f"<span style='color:{ERROR}'>{html.escape(str(exc))}</span>"
            )
        with self._lock:
            self._draw_detail()

    def close_detail(self) -> None:
        """Back to the list (read again: runs may have ended meanwhile)."""
        with self._lock:
            self.opened = None
            self.detail_box.layout.display = "none"
            self.list_box.layout.display = "flex"
            self.refresh()
