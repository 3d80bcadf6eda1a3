"""The panel's Schedules tab: schedule the Run tab's script and form (on a cron line, at an
interval, or once); list, edit, run now, pause, resume, delete; each schedule's next fire
times and recent runs."""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import available_timezones

import ipywidgets as w

from jupyter_scriptrun.display import COLOURS, ERROR, MARKS, MUTED, human_seconds
from jupyter_scriptrun.exceptions import ScriptrunError
from jupyter_scriptrun.service.scheduling import every_schedule, spec
from jupyter_scriptrun.timing.options import panel_choices
from jupyter_scriptrun.timing.timetable import zone

if TYPE_CHECKING:
    from jupyter_scriptrun.service.client import Client

RECENT_RUNS = 10
STATE_MARKS = {"active": MARKS["running"], "paused": "‖", "ended": "✓"}
LABEL = {"description_width": "100px"}
ROW = {"width": "100%", "max_width": "420px"}


class SchedulesTab:
    """``form`` gives the Run tab's script and parameters (raising InvalidParameters when
    the form is wrong): a schedule is made from the same schema form as a run."""

    def __init__(
        self,
        client: Client,
        form: Callable[[], tuple[str, dict[str, Any]]],
        open_runs: Callable[[str], object] | None = None,
    ) -> None:
        self.client = client
        self.form = form
        self.open_runs = open_runs
        """Given a page context (``schedule:NAME``), show those runs (the History tab)."""
        self.widget = w.VBox(
            [*self._build_form(), *self._build_list()], layout=w.Layout(width="100%")
        )

    def _build_form(self) -> list[w.Widget]:
        """The new schedule's timing and policies (the script and parameters: the Run tab's)."""
        self.what = w.HTML()
        self.kind = w.ToggleButtons(options=["cron", "every", "once"], value="every")
        self.when = w.Text(
            value="1h",
            description="every",
            placeholder='a cron line "0 7 * * 1-5", 30s, 5m, 1h, or 2027-01-31T09:00',
            style=LABEL,
            layout=w.Layout(**ROW),
            continuous_update=False,
        )
        self.timezone = w.Combobox(
            value="UTC",
            options=sorted(available_timezones()),
            description="time zone",
            ensure_option=False,
            style=LABEL,
            layout=w.Layout(**ROW),
        )
        self.name = w.Text(
            description="name",
            placeholder="(the script's name and a suffix)",
            style=LABEL,
            layout=w.Layout(**ROW),
        )
        self.catchup = w.Dropdown(
            options=panel_choices("catchup"),
            description="catch-up",
            style=LABEL,
            layout=w.Layout(**ROW),
        )
        self.overlap = w.Dropdown(
            options=panel_choices("overlap"),
            description="overlap",
            style=LABEL,
            layout=w.Layout(**ROW),
        )
        self.notify = w.Text(
            description="notify",
            placeholder="apprise URLs, comma-separated",
            style=LABEL,
            layout=w.Layout(**ROW),
        )
        self.create_button = w.Button(description="Create schedule", icon="clock-o")
        self.cancel_edit = w.Button(description="Cancel edit", layout=w.Layout(display="none"))
        self.editing: str | None = None
        """The id of the schedule the form edits (None: the form makes a new one)."""
        self.problems = w.HTML()
        self.kind.observe(self._on_kind, names="value")
        self.create_button.on_click(lambda _: self.create())
        self.cancel_edit.on_click(lambda _: self._stop_editing())

        return [
            w.HTML("<b>New schedule</b>"),
            self.what,
            self.kind,
            self.when,
            self.timezone,
            self.name,
            self.catchup,
            self.overlap,
            self.notify,
            w.HBox([self.create_button, self.cancel_edit], layout=w.Layout(flex_flow="row wrap")),
            self.problems,
        ]

    def _build_list(self) -> list[w.Widget]:
        """The schedules, their actions, and the selected one's detail."""
        self.schedules = w.Select(options=[], rows=6, layout=w.Layout(width="auto"))
        self.pause_button = w.Button(description="Pause", icon="pause")
        self.resume_button = w.Button(description="Resume", icon="play")
        self.delete_button = w.Button(description="Delete", icon="trash", button_style="danger")
        self.run_now_button = w.Button(description="Run now", icon="bolt")
        self.edit_button = w.Button(description="Edit", icon="pencil")
        self.runs_button = w.Button(
            description="Runs in History",
            icon="list",
            # Hidden without a History tab to open; else the buttons' own display (an
            # inline-flex one set here lifted its icon above the text's baseline).
            layout=w.Layout(display="none" if self.open_runs is None else None),
        )
        self.runs_button.on_click(lambda _: self.show_runs())
        self.detail = w.HTML(layout=w.Layout(width="auto", overflow="auto"))
        self._confirming: str | None = None
        self.confirm = w.HTML()
        self.schedules.observe(lambda _: self.show(), names="value")
        self.pause_button.on_click(lambda _: self._act("pause"))
        self.resume_button.on_click(lambda _: self._act("resume"))
        self.delete_button.on_click(lambda _: self._act("delete"))
        self.run_now_button.on_click(lambda _: self.run_now())
        self.edit_button.on_click(lambda _: self.edit())
        return [
            w.HTML("<b>Schedules</b>"),
            self.schedules,
            w.HBox(
                [
                    self.run_now_button,
                    self.edit_button,
                    self.pause_button,
                    self.resume_button,
                    self.delete_button,
                    self.runs_button,
                ],
                layout=w.Layout(flex_flow="row wrap"),
            ),
            self.confirm,
            self.detail,
        ]

    def _on_kind(self, change: dict[str, Any]) -> None:
        self.when.description = change["new"]
        if change["new"] == "once":
            try:  # an hour from now on the form's zone's clock (what the field is read in)
                soon = datetime.now(zone(self.timezone.value)) + timedelta(hours=1)
            except ValueError:
                soon = datetime.now(UTC) + timedelta(hours=1)
            self.when.value = soon.strftime("%Y-%m-%dT%H:00")
        else:
            self.when.value = "0 7 * * 1-5" if change["new"] == "cron" else "1h"

    def edit(self) -> None:
        """Load the selected schedule into the form; the button then saves it."""
        row = self.client.get_schedule(self.schedules.value).row
        self.editing = row["id"]
        if row["once_at"] is not None:
            self.kind.value = "once"
            tz = zone(row["timezone"])
            self.when.value = row["once_at"].astimezone(tz).strftime("%Y-%m-%dT%H:%M")
        else:
            self.kind.value = "cron" if row["cron"] else "every"
            self.when.value = row["cron"] or spec(row).removeprefix("every ").split(" ")[0]
        self.timezone.value, self.name.value = row["timezone"], row["name"]
        self.catchup.value, self.overlap.value = row["catchup"], row["overlap"]
        self.notify.value = ", ".join(row["notify"] or [])
        self.create_button.description = f"Save {row['name']}"
        self.cancel_edit.layout.display = None
        self.problems.value = (
            f"<div style='color:{MUTED}'>editing {html.escape(row['name'])}: its parameters "
            "change too when the Run tab's form has its script</div>"
        )

    def _stop_editing(self) -> None:
        self.editing = None
        self.create_button.description = "Create schedule"
        self.cancel_edit.layout.display = "none"
        self.problems.value = ""
        self.name.value = self.notify.value = ""

    def run_now(self) -> Any:
        """One run of the selected schedule now, outside its timetable."""
        schedule = self.client.get_schedule(self.schedules.value)
        try:
            run = schedule.run_now()
        except ScriptrunError as exc:
            self.confirm.value = f"<div style='color:{ERROR}'>{html.escape(str(exc))}</div>"
            return None
        self.confirm.value = (
            f"<div>run <code>{run.id[:8]}</code> of {html.escape(schedule.name)} queued</div>"
        )
        self.show()
        return run

    def refresh(self) -> None:
        """Read the schedules again and say what a new one would run."""
        try:
            script, params = self.form()
            self.what.value = (
                f"<div style='color:{MUTED}'>runs <b>{html.escape(script)}</b> with "
                f"<code>{html.escape(json.dumps(params, ensure_ascii=False))}</code> (from the "
                "Run tab's form)</div>"
            )
        except ScriptrunError as exc:
            self.what.value = f"<div style='color:{ERROR}'>{html.escape(str(exc))}</div>"
        rows = [s.row for s in every_schedule(self.client)]
        selected = self.schedules.value
        self.schedules.options = [
            (
                f"{STATE_MARKS.get(r['state'], '‖')} {r['name']} · "
                f"{r['script']} · {spec(r)} · {r['fired']} runs",
                r["id"],
            )
            for r in rows
        ]
        ids = [r["id"] for r in rows]
        self.schedules.value = selected if selected in ids else (ids[0] if ids else None)
        self.show()

    def create(self) -> Any:
        """Make the schedule (or save the one being edited); every problem is listed
        under the button."""
        key = {"cron": "cron", "every": "every", "once": "at"}[self.kind.value]
        options = {
            key: self.when.value,
            "timezone": self.timezone.value,
            "catchup": self.catchup.value,
            "overlap": self.overlap.value,
            "notify": [u.strip() for u in self.notify.value.split(",") if u.strip()] or None,
        }
        name = self.name.value.strip() or None
        try:
            script, params = self.form()
            if self.editing is not None:
                schedule = self.client.get_schedule(self.editing)
                same = script == schedule.row["script"]
                schedule.update(params if same else None, name=name or schedule.name, **options)
            else:
                schedule = self.client.schedule(script, params, name=name, **options)
        except ScriptrunError as exc:
            problems = getattr(exc, "problems", None) or [str(exc)]
            items = "".join(f"<li>{html.escape(p)}</li>" for p in problems)
            self.problems.value = f"<ul style='color:{ERROR};margin:0'>{items}</ul>"
            return None
        self._stop_editing()
        self.refresh()
        self.schedules.value = schedule.id
        return schedule

    def show(self) -> None:
        """The selected schedule: its state, next fire times, last error, recent runs."""
        key = self.schedules.value
        if key != self._confirming:
            self._unconfirm()
        for button in (
            self.pause_button,
            self.resume_button,
            self.delete_button,
            self.runs_button,
            self.run_now_button,
            self.edit_button,
        ):
            button.disabled = key is None
        if key is None:
            self.detail.value = "<i>no schedules yet</i>"
            return
        schedule = self.client.get_schedule(key)
        row = schedule.row
        active = row["state"] == "active"
        self.pause_button.disabled, self.resume_button.disabled = not active, active
        nexts = "".join(f"<li>{fire_time(t)}</li>" for t in schedule.next_runs(5)) if active else ""
        error = (
            f"<div style='color:{ERROR}'>last problem: {html.escape(row['last_error'])}</div>"
            if row["last_error"]
            else ""
        )
        runs = schedule.runs().head(RECENT_RUNS)
        cell = "style='padding:1px 10px 1px 0;text-align:left'"
        recent = "".join(
            f"<tr><td {cell}><code>{html.escape(r['id'][:8])}</code></td>"
            f"<td {cell}><span style='color:{COLOURS.get(str(r['status']), '#0969da')}'>"
            f"{MARKS.get(str(r['status']), '•')} {html.escape(str(r['status']))}</span></td>"
            f"<td {cell}>{fire_time(r['queued_at'])}</td>"
            f"<td {cell.replace('left', 'right')}>{human_seconds(r['duration_s'])}</td></tr>"
            for r in runs.to_dict("records")
        )
        head = "".join(f"<th {cell}>{t}</th>" for t in ("run", "status", "queued", "took"))
        self.detail.value = (
            f"<div><b>{html.escape(row['name'])}</b> · {row['state']} · {spec(row)} in "
            f"{html.escape(row['timezone'])} · catch-up {row['catchup']} · overlap "
            f"{row['overlap']} · {row['fired']} runs, {row['skipped']} ticks skipped</div>"
            + error
            + (f"<div>next:</div><ul style='margin:0'>{nexts}</ul>" if nexts else "")
            + (
                f"<table style='border-collapse:collapse'><tr>{head}</tr>{recent}</table>"
                if recent
                else "<div><i>no runs yet</i></div>"
            )
        )

    def show_runs(self) -> None:
        """Every run of the selected schedule, in the History tab (sortable, each opens)."""
        if self.open_runs is not None and self.schedules.value is not None:
            row = self.client.get_schedule(self.schedules.value).row
            self.open_runs(f"schedule:{row['name']}")

    def _act(self, action: str) -> None:
        schedule = self.client.get_schedule(self.schedules.value)
        if action == "delete" and self._confirming != schedule.id:
            # Delete asks once more: the button says what a second click does.
            self._confirming = schedule.id
            self.delete_button.description = f"Delete {schedule.name}?"
            self.confirm.value = (
                f"<div>Click <b>Delete {html.escape(schedule.name)}?</b> again to delete it "
                "(its runs stay in the history), or pick another schedule.</div>"
            )
            return
        getattr(schedule, action)()
        self.refresh()

    def _unconfirm(self) -> None:
        if self._confirming is not None:
            self._confirming = None
            self.delete_button.description = "Delete"
            self.confirm.value = ""


def fire_time(at: Any) -> str:
    """A fire or queue time for people: ``Mon 2026-12-07 07:00:00 CET``, in its own zone (a
    schedule's next times are in the schedule's zone; the history's in UTC)."""
    return html.escape(at.strftime("%a %Y-%m-%d %H:%M:%S %Z")) if at is not None else "—"
