"""The ipywidgets panel: pick a script, fill its form, run, watch, browse the history."""

from __future__ import annotations

import html
import json
import logging
import threading
import time
import warnings
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from jupyter_scriptrun._version import __version__
from jupyter_scriptrun.display import (
    ERROR,
    FAINT,
    MARKS,
    MUTED,
    execution_html,
    running_for,
    status_html,
)
from jupyter_scriptrun.exceptions import InvalidParameters, ScriptrunError
from jupyter_scriptrun.service.handle import LiveTail
from jupyter_scriptrun.status import ExecutionStatus

if TYPE_CHECKING:
    from jupyter_scriptrun.service.client import Client

log = logging.getLogger(__name__)

REFRESH_S = 0.5
OUTPUT_KEEP_CHARS = 200_000
INVALID = f"2px solid {ERROR}"
NARROW_CSS = """<style>
.scriptrun-panel { container-type: inline-size; }
@container (max-width: 560px) {
  .scriptrun-panel .widget-inline-hbox { flex-wrap: wrap; height: auto; }
  .scriptrun-panel .widget-inline-hbox > select {
    height: var(--jp-widgets-inline-height, 28px); flex: 1 1 100%; }
  .scriptrun-panel .widget-inline-hbox > .widget-label {
    width: 100% !important; max-width: none; text-align: left; }
  .scriptrun-panel .sr-indent { margin-left: 0 !important; }
}
</style>"""
"""In a narrow cell, labels go above their fields (a CSS container query on the panel)."""
FIELD = {"width": "100%", "max_width": "460px"}
"""A form row: as wide as the cell allows, up to a comfortable width."""

_last_script: str | None = None
"""The script last picked in any panel of this kernel: a new panel starts there."""


class ParameterField:
    """One form field made from a parameter's JSON Schema, and its value back."""

    def __init__(self, name: str, spec: dict[str, Any], required: bool) -> None:
        self.name = name
        self.spec = spec
        self.required = required
        kind = spec.get("type")
        label = f"{name}{' *' if required else ''}"
        common: dict[str, Any] = {
            "description": label,
            "description_allow_html": False,
            "style": {"description_width": "140px"},
            "layout": w.Layout(**FIELD),
        }
        default = spec.get("default")
        self.kind = kind
        if "enum" in spec:
            options = list(spec["enum"])
            self.widget: w.ValueWidget = w.Dropdown(
                options=[(str(o), o) for o in options],
                value=default if default in options else options[0],
                **common,
            )
        elif kind == "boolean":
            self.widget = w.Checkbox(value=bool(default), indent=False, **common)
        elif kind in ("object", "array"):
            text = "" if default is None else json.dumps(default, ensure_ascii=False)
            self.widget = w.Textarea(value=text, placeholder=f"JSON {kind}", **common)
        else:
            # Numbers use a text box: an empty optional number means "not given", which a
            # numeric widget (always holding a number) could not say.
            text = "" if default is None else str(default)
            self.widget = w.Text(value=text, placeholder=self._hint(), **common)
        self.widget.tooltip = spec.get("description") or ""
        self.help = w.HTML(layout=w.Layout(margin="0 0 0 144px"))
        self.help.add_class("sr-indent")
        self.flag(None)
        # The help under the field, aligned with it: readable at any width.
        self.box = w.VBox([self.widget, self.help], layout=w.Layout(width="100%"))

    def _hint(self) -> str:
        kind = self.spec.get("type", "text")
        bounds = []
        if "minimum" in self.spec:
            bounds.append(f"≥ {self.spec['minimum']}")
        if "maximum" in self.spec:
            bounds.append(f"≤ {self.spec['maximum']}")
        return " ".join([str(kind), *bounds])

    def value(self) -> tuple[bool, Any]:
        """``(given, value)``; raises ValueError naming the field when the text is wrong."""
        raw = self.widget.value
        if isinstance(self.widget, w.Dropdown | w.Checkbox):
            return True, raw
        text = str(raw).strip()
        if text == "":
            return False, None
        kind = self.kind
        try:
            if kind == "integer":
                return True, int(text)
            if kind == "number":  # 20 stays 20 (JSON has one number type), 2.5 a float
                try:
                    return True, int(text)
                except ValueError:
                    return True, float(text)
            if kind in ("object", "array"):
                return True, json.loads(text)
        except ValueError:
            raise ValueError(f"{self.name}: {text!r} is not a valid {kind}") from None
        if kind == "string":
            return True, str(raw)
        try:  # no declared type: JSON where it parses, else text (as on the command line)
            return True, json.loads(text)
        except ValueError:
            return True, str(raw)

    def flag(self, problem: str | None) -> None:
        """Mark the field invalid (with the reason) or clear the mark."""
        self.widget.layout.border = INVALID if problem else ""
        note = problem or self.spec.get("description") or ""
        colour = ERROR if problem else MUTED
        self.help.value = (
            f"<div style='color:{colour};font-size:92%;line-height:1.3;white-space:normal'>"
            f"{html.escape(note)}</div>"
            if note
            else ""
        )
        self.help.layout.display = "block" if note else "none"

    def on_submit(self, callback: Any) -> None:
        """Call ``callback`` when Enter is pressed in this field (text fields only)."""
        if isinstance(self.widget, w.Text):
            with warnings.catch_warnings():
                # Deprecated for reading values, yet the only way to learn of Enter itself.
                warnings.simplefilter("ignore", DeprecationWarning)
                self.widget.on_submit(lambda _: callback())


class Panel:
    """A widget panel over a client: ``sr.panel()`` in a notebook.

    Everything slow (waiting for runs, reading output) happens on a background thread;
    the kernel stays free while runs are active, and the panel refreshes itself.
    """

    def __init__(self, client: Client, refresh_s: float = REFRESH_S) -> None:
        self.client = client
        self.refresh_s = refresh_s
        self.fields: dict[str, ParameterField] = {}
        self.free_form: w.Textarea | None = None
        self._runs: dict[str, Any] = {}  # id -> Execution, in the order started
        self._tails: dict[str, LiveTail] = {}  # id -> its output so far
        self._labels: list[tuple[str, str]] = []
        self._states: dict[str, tuple[str, str]] = {}  # id -> (script, last status seen)
        self._lock = threading.RLock()
        self._watcher: threading.Thread | None = None
        self._stop = threading.Event()

        self._scripts = {s.name: s for s in client.scripts()}
        self.fleet_tab = w.VBox()
        self.dashboard: Any = None
        from jupyter_scriptrun.jupyter.schedules_tab import SchedulesTab

        run_tab = self._run_tab()
        self.schedules = SchedulesTab(
            client, lambda: (self.script.value, self.parameters()), self._show_runs_of
        )
        self.tabs = w.Tab(
            children=[run_tab, self._history_tab(), self.schedules.widget, self.fleet_tab]
        )
        for index, title in enumerate(("Run", "History", "Schedules", "Fleet")):
            self.tabs.set_title(index, title)
        self.tabs.observe(self._on_tab, names="selected_index")
        self.header = w.HTML(self._header_html())
        self.widget = w.VBox([self.header, self.tabs], layout=w.Layout(width="100%"))
        self.widget.add_class("scriptrun-panel")  # for the browser tests and users' CSS
        if _last_script in self._scripts:
            self.script.value = _last_script
        self._build_form()
        self.refresh_history()

    def _header_html(self) -> str:
        where = self.client.where()
        count = len(self._scripts)
        return NARROW_CSS + (
            "<div style='display:flex;flex-wrap:wrap;gap:4px 12px;align-items:baseline;"
            "margin:0 0 6px'>"
            f"<span style='font-size:120%;font-weight:600'>scriptrun</span>"
            f"<span style='color:{MUTED}'>{count} script{'s' if count != 1 else ''}</span>"
            f"<span style='color:{MUTED}'>broker: {html.escape(where['broker'])}</span>"
            f"<span style='color:{MUTED};overflow-wrap:anywhere'>store: "
            f"{html.escape(where['store'])}</span>"
            f"<span style='color:{FAINT}'>v{html.escape(__version__)}</span></div>"
        )

    def _on_tab(self, change: dict[str, Any]) -> None:
        """The Schedules tab is read when opened; the History and Fleet tabs follow the
        store only while open."""
        if change["new"] == 1:
            self.history.start()
        else:
            self.history.pause()
        if change["new"] == 2:
            self.schedules.refresh()
        if change["new"] == 3:
            if self.dashboard is None:
                from jupyter_scriptrun.jupyter.dashboard import Dashboard

                self.dashboard = Dashboard(self.client)
                self.fleet_tab.children = [self.dashboard.widget]
            else:
                self.dashboard.start()
        elif self.dashboard is not None:
            self.dashboard.pause()

    def _show_runs_of(self, context: str) -> None:
        """The History tab, showing the runs started from ``context`` only."""
        self.history.show_context(context)
        self.tabs.selected_index = 1

    def _run_tab(self) -> w.VBox:
        """Pick a script, fill its form, run it and watch it."""
        self.script = w.Dropdown(
            options=list(self._scripts),
            description="Script",
            style={"description_width": "140px"},
            layout=w.Layout(**FIELD),
        )
        self.description = w.HTML()
        self.form = w.VBox(layout=w.Layout(width="100%"))
        self.problems = w.HTML()
        self.run_button = w.Button(
            description="Run", button_style="primary", icon="play", tooltip="Run (Enter)"
        )
        self.cancel_button = w.Button(
            description="Cancel", button_style="warning", icon="stop", disabled=True
        )
        self.runs = w.Select(options=[], description="Runs", rows=5, layout=w.Layout(width="auto"))
        self.status = w.HTML()
        # The output as it comes while the run goes; once it ended, the result card below
        # holds everything (output folded, data once) and this box is hidden.
        self.output = w.Textarea(
            value="",
            disabled=True,
            layout=w.Layout(width="auto", height="160px", display="none"),
            placeholder="output appears here as the script prints it",
        )
        self.result = w.HTML(layout=w.Layout(width="auto", overflow="auto"))
        self.script.observe(lambda _: self._build_form(), names="value")
        self.run_button.on_click(lambda _: self.run())
        self.cancel_button.on_click(lambda _: self.cancel())
        self.runs.observe(lambda _: self._show_selected(), names="value")
        return w.VBox(
            [
                self.script,
                self.description,
                self.form,
                self.problems,
                w.HBox([self.run_button, self.cancel_button]),
                self.runs,
                self.status,
                self.output,
                self.result,
            ],
            layout=w.Layout(width="100%"),
        )

    def _history_tab(self) -> w.VBox:
        """The history: filtered, sorted and paged, a row opens the run (history_table)."""
        from jupyter_scriptrun.jupyter.history_table import HistoryTable

        self.history = HistoryTable(self.client, list(self._scripts))
        return self.history.widget

    # -- display ----------------------------------------------------------------

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    # -- the form ---------------------------------------------------------------

    def _build_form(self) -> None:
        global _last_script
        script = self._scripts.get(self.script.value)
        if script is not None:
            _last_script = script.name
        self.fields = {}
        self.free_form = None
        if script is None:
            self.description.value = "<i>no scripts registered (see SCRIPTRUN_SCRIPTS_PATH)</i>"
            self.form.children = []
            self.run_button.disabled = True
            return
        meta = script.meta
        self.description.value = (
            f"<div class='sr-indent' style='margin:2px 0 6px 144px;color:{MUTED};"
            "white-space:normal'>"
            f"{html.escape(meta.description or '(no description)')}</div>"
        )
        if meta.declares_parameters:
            required = set(meta.schema.get("required", []))
            for name, spec in meta.parameters.items():
                self.fields[name] = ParameterField(name, spec, name in required)
            boxes = [f.box for f in self.fields.values()]
            for f in self.fields.values():
                f.widget.observe(lambda _: self.validate(), names="value")
                f.on_submit(self._submit)
        else:
            self.free_form = w.Textarea(
                value="{}",
                description="parameters",
                placeholder='JSON object, e.g. {"message": "hi"}',
                style={"description_width": "140px"},
                layout=w.Layout(**FIELD),
            )
            self.free_form.observe(lambda _: self.validate(), names="value")
            boxes = [self.free_form]
        self.form.children = boxes
        self.validate()

    def parameters(self) -> dict[str, Any]:
        """The form's values (defaults filled in), or InvalidParameters listing every
        problem; each wrong field is flagged."""
        script = self._scripts[self.script.value]
        problems: dict[str, str] = {}
        params: dict[str, Any] = {}
        if self.free_form is not None:
            try:
                params = json.loads(self.free_form.value or "{}")
            except ValueError as exc:
                raise InvalidParameters(
                    script.name, [f"parameters: not valid JSON ({exc})"]
                ) from None
        for name, field in self.fields.items():
            try:
                given, value = field.value()
            except ValueError as exc:
                problems[name] = str(exc)
                continue
            if given:
                params[name] = value
        try:
            merged = script.meta.validate(script.name, params)
        except InvalidParameters as exc:
            for problem in exc.problems:  # each says which parameter it is about
                problems.setdefault(getattr(problem, "field", None) or "(parameters)", problem)
            merged = None
        for name, field in self.fields.items():
            field.flag(problems.get(name))
        if problems or merged is None:
            raise InvalidParameters(script.name, list(problems.values()))
        return merged

    def validate(self) -> bool:
        """Check the form now: flag wrong fields, list problems, enable Run when fine."""
        try:
            self.parameters()
        except InvalidParameters as exc:
            items = "".join(f"<li>{html.escape(p)}</li>" for p in exc.problems)
            self.problems.value = f"<ul style='color:{ERROR};margin:0'>{items}</ul>"
            self.run_button.disabled = True
            return False
        self.problems.value = ""
        self.run_button.disabled = False
        return True

    # -- runs -------------------------------------------------------------------

    def _submit(self) -> None:
        """Enter in a field: run, when the form is valid (else its problems show)."""
        if self.validate():
            self.run()

    def run(self) -> Any:
        """Submit the form's run (several may be active at once); returns its handle."""
        if not self.validate():
            return None
        try:
            execution = self.client.submit(
                self.script.value, self.parameters(), page_context="panel"
            )
        except ScriptrunError as exc:
            self.problems.value = f"<span style='color:{ERROR}'>{html.escape(str(exc))}</span>"
            return None
        with self._lock:
            self._runs[execution.id] = execution
            self._states[execution.id] = (self.script.value, ExecutionStatus.QUEUED.value)
            self._tails[execution.id] = LiveTail(keep=OUTPUT_KEEP_CHARS)
        self._relabel()
        self.runs.value = execution.id
        self._ensure_watcher()
        return execution

    def cancel(self) -> None:
        """Cancel the selected run."""
        execution = self._runs.get(self.runs.value or "")
        if execution is None:
            return
        try:
            execution.cancel()
        except ScriptrunError as exc:
            self.problems.value = f"<span style='color:{ERROR}'>{html.escape(str(exc))}</span>"
        self._refresh_run(execution.id)

    @property
    def active(self) -> list[str]:
        """Ids of the panel's runs that have not ended."""
        with self._lock:
            return [i for i, (_, s) in self._states.items() if not ExecutionStatus(s).is_final]

    def wait(self, timeout: float = 60.0) -> None:
        """Block until every run started here has ended and the panel shows it (tests)."""
        deadline = time.monotonic() + timeout
        while self._watcher is not None and self._watcher.is_alive():
            if time.monotonic() > deadline:
                raise TimeoutError("panel runs still active")
            time.sleep(0.05)

    def close(self) -> None:
        """Stop refreshing and close the widgets."""
        self._stop.set()
        self.history.pause()
        self.widget.close()

    def _ensure_watcher(self) -> None:
        with self._lock:
            if self._watcher is None or not self._watcher.is_alive():
                self._watcher = threading.Thread(
                    target=self._watch, name="scriptrun-panel", daemon=True
                )
                self._watcher.start()

    def _watch(self) -> None:
        """Refresh the runs while any is active; then the history once, and stop."""
        while not self._stop.is_set():
            try:
                for execution_id in self.active:  # ended runs do not change any more
                    self._refresh_run(execution_id)
                self._relabel()
                active = self.active
            except Exception:  # a store hiccup must not kill the refresh loop
                log.warning("panel refresh failed", exc_info=True)
                active = ["(retry)"]
            if not active:
                break
            self._stop.wait(self.refresh_s)
        try:
            self.refresh_history()
        except Exception:
            log.warning("history refresh failed", exc_info=True)

    def _refresh_run(self, execution_id: str) -> None:
        execution = self._runs[execution_id]
        with self._lock:
            status = self._tails[execution_id].read(execution)
            self._states[execution_id] = (self._states[execution_id][0], status.value)
            if execution_id == self.runs.value:
                self._show(execution, status)

    def _show_selected(self) -> None:
        execution = self._runs.get(self.runs.value or "")
        if execution is not None:
            self._show(execution, execution.status)

    def _show(self, execution: Any, status: ExecutionStatus) -> None:
        """The selected run: while it goes, its line, progress and live output; once it
        ended, one card (data once, output and details folded)."""
        rec = execution.record()
        self.cancel_button.disabled = status.is_final
        if not status.is_final:
            self.status.value = status_html(rec, running_for(rec))
            self.output.layout.display = "block"
            tail = self._tails.get(execution.id)
            self.output.value = tail.text if tail else ""  # sent only when it changed
            self.result.value = ""
            return
        self.status.value = ""
        self.output.layout.display = "none"
        if not self.result.value.startswith(f"<!--{execution.id}-->"):
            frame = execution.frame() if status is ExecutionStatus.SUCCEEDED else None
            card = execution_html(
                rec,
                execution.data,
                frame,
                execution.stdout,
                execution.stderr,
                files=execution.file_views(),
            )
            self.result.value = f"<!--{execution.id}-->{card}"

    def _relabel(self) -> None:
        """Keep the runs list's labels (mark, script, id, status) current, newest first."""
        with self._lock:
            options = []
            for execution_id in reversed(list(self._runs)):
                script, status = self._states[execution_id]
                label = f"{MARKS.get(status, '•')} {script} [{execution_id[:8]}] {status}"
                options.append((label, execution_id))
            if options != self._labels:
                self._labels = options
                selected = self.runs.value
                self.runs.options = options
                if selected in self._runs:
                    self.runs.value = selected

    # -- history ----------------------------------------------------------------

    def refresh_history(self) -> None:
        """Read the history's current page again."""
        self.history.refresh()
