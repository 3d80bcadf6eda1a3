"""The widget panel, driven through its ipywidgets models against a real worker."""

from __future__ import annotations

import re
import time

import pytest

from jupyter_scriptrun.config import Settings
from jupyter_scriptrun.jupyter.panel import INVALID, Panel
from jupyter_scriptrun.service.client import Client
from jupyter_scriptrun.status import ExecutionStatus


@pytest.fixture
def panel(client: Client):
    p = Panel(client, refresh_s=0.1)
    yield p
    p.close()


@pytest.fixture
def form_panel(redis_settings: Settings):
    """A panel whose runs are only queued: for what happens before a worker is needed."""
    p = Panel(Client(redis_settings), refresh_s=0.1)
    yield p
    p.close()


def test_the_form_follows_the_scripts_schema(form_panel: Panel):
    panel = form_panel
    panel.script.value = "example_script"
    assert set(panel.fields) == {"message", "multiplier", "delay"}
    multiplier = panel.fields["multiplier"]
    assert multiplier.widget.value == "2"  # the declared default
    assert "example_script" in [o for o in panel.script.options]
    assert "Repeats a message" in panel.description.value


def test_invalid_fields_are_flagged_before_submission(form_panel: Panel):
    panel = form_panel
    panel.script.value = "example_script"
    panel.fields["multiplier"].widget.value = "0"
    assert panel.run_button.disabled
    assert panel.fields["multiplier"].widget.layout.border == INVALID
    assert "less than the minimum of 1" in panel.problems.value
    # Beside the field too, found by the problem's field, not by parsing its text.
    assert "less than the minimum of 1" in panel.fields["multiplier"].help.value
    assert "minimum" not in panel.fields["message"].help.value
    panel.fields["multiplier"].widget.value = "not a number"
    assert "is not a valid integer" in panel.problems.value
    panel.fields["multiplier"].widget.value = "2"
    assert not panel.run_button.disabled and panel.problems.value == ""
    assert panel.fields["multiplier"].widget.layout.border == ""
    assert panel.run() is not None


def test_clicking_run_shows_output_status_and_a_table(panel: Panel):
    panel.script.value = "table_script"
    panel.fields["rows"].widget.value = "3"
    panel.run_button.click()
    panel.wait(60)
    ((label, execution_id),) = panel.runs.options
    assert panel.runs.value == execution_id and "succeeded" in label
    assert "succeeded" in panel.result.value
    assert "<table" in panel.result.value and "square" in panel.result.value
    # The history was read again when the run ended: it is the newest row.
    assert panel.history.records[0]["id"] == execution_id


def test_several_runs_at_once_and_cancel(panel: Panel):
    panel.script.value = "slow_script"
    panel.fields["seconds"].widget.value = "30"
    slow = panel.run()
    panel.fields["seconds"].widget.value = "0.5"
    quick = panel.run()
    assert len(panel.runs.options) == 2 and panel.runs.value == quick.id
    panel.runs.value = slow.id
    deadline = time.monotonic() + 20
    while "step" not in panel.output.value:  # live output while it runs
        assert time.monotonic() < deadline
        time.sleep(0.1)
    panel.cancel_button.click()
    panel.wait(30)
    assert slow.status is ExecutionStatus.CANCELLED
    assert quick.status is ExecutionStatus.SUCCEEDED
    assert panel.cancel_button.disabled


def test_a_free_form_script_takes_a_json_object(panel: Panel):
    panel.script.value = "plain_text"
    assert panel.free_form is not None
    panel.free_form.value = "{not json"
    assert panel.run_button.disabled and "not valid JSON" in panel.problems.value
    panel.free_form.value = '{"anything": 1}'
    assert not panel.run_button.disabled


def test_history_filters(panel: Panel, client: Client):
    client.run("plain_text")
    client.run("failing_script")
    table = panel.history
    table.status.value = "failed"
    assert {r["script"] for r in table.records} == {"failing_script"}
    table.status.value = ""
    table.script.value = "plain_text"
    assert {r["script"] for r in table.records} == {"plain_text"}


def test_the_history_tab_follows_the_store_only_while_it_is_open(panel: Panel, client: Client):
    panel.history.refresh_s = 0.2
    panel.tabs.selected_index = 1
    run = client.submit("plain_text")
    deadline = time.monotonic() + 10
    while not (panel.history.records and panel.history.records[0]["id"] == run.id):
        assert time.monotonic() < deadline, "the open History tab did not show the new run"
        time.sleep(0.1)
    panel.tabs.selected_index = 0
    time.sleep(0.5)
    assert not panel.history._follower.is_alive()  # hidden: no more reads


def test_a_new_panel_starts_on_the_script_last_picked(client: Client):
    first = Panel(client)
    first.script.value = "table_script"
    second = Panel(client)
    try:
        assert second.script.value == "table_script"
        assert "rows" in second.fields
    finally:
        first.close()
        second.close()


def test_the_header_says_where_runs_go_without_passwords(panel: Panel):
    header = panel.header.value
    assert "scriptrun" in header and "broker: redis://" in header and "store: sqlite" in header
    assert "script" in header and "v" in header


def test_enter_in_a_field_runs_the_form_only_when_it_is_valid(panel: Panel):
    panel.script.value = "table_script"
    field = panel.fields["rows"].widget
    field.value = "x"
    field._handle_string_msg(None, {"event": "submit"}, None)  # what the browser sends
    assert panel.runs.options == () and "not a valid integer" in panel.problems.value
    field.value = "2"
    field._handle_string_msg(None, {"event": "submit"}, None)
    panel.wait(60)
    assert len(panel.runs.options) == 1 and "succeeded" in panel.runs.options[0][0]


def test_one_view_per_run_live_output_then_one_card_with_the_data_once(panel: Panel):
    panel.script.value = "stepper"
    panel.fields["steps"].widget.value = "6"
    panel.fields["pause"].widget.value = "0.5"
    execution = panel.run()
    seen_bar = False
    deadline = time.monotonic() + 60
    while not execution.status.is_final:
        assert time.monotonic() < deadline
        seen_bar = seen_bar or "role='progressbar'" in panel.status.value
        if seen_bar:
            assert panel.output.layout.display == "block" and panel.result.value == ""
        time.sleep(0.1)
    panel.wait(30)
    assert seen_bar, "a progress bar while the run went"
    assert panel.output.layout.display == "none" and panel.status.value == ""
    card = panel.result.value
    opened, _folded = card.split("<details><summary>output (1 line)</summary>")  # folded
    assert "succeeded" in opened and opened.count("&quot;steps&quot;: 6") == 1  # data, once


def test_the_schedules_tab_makes_lists_pauses_and_deletes_schedules(form_panel: Panel):
    panel = form_panel
    client = panel.client
    panel.script.value = "example_script"
    panel.fields["message"].widget.value = "from the tab"
    panel.tabs.selected_index = 2  # opening the tab reads it
    tab = panel.schedules
    assert "example_script" in tab.what.value and "from the tab" in tab.what.value

    tab.kind.value = "cron"
    tab.when.value = "0 7 * * *"
    tab.timezone.value = "Mars/Base"
    tab.create_button.click()
    assert "unknown time zone &#x27;Mars/Base&#x27;" in tab.problems.value
    assert client.schedules().empty

    tab.timezone.value = "Europe/Berlin"
    tab.name.value = "tab-made"
    tab.create_button.click()
    assert tab.problems.value == ""
    listed = client.schedules().set_index("name")
    assert listed.loc["tab-made", "spec"] == "cron 0 7 * * *"
    assert listed.loc["tab-made", "timezone"] == "Europe/Berlin"
    assert client.get_schedule("tab-made").row["parameters"]["message"] == "from the tab"
    assert tab.schedules.value == client.get_schedule("tab-made").id
    # Next fire times in the schedule's zone, for people (no ISO, no microseconds).
    assert re.search(r"<li>\w{3} \d{4}-\d\d-\d\d 07:00:00 CES?T</li>", tab.detail.value)
    assert "no runs yet" in tab.detail.value
    assert '{"message": "from the tab", "multiplier": 2' in tab.what.value.replace("&quot;", '"')

    # Its runs, in the History tab (queued here: this panel has no worker).
    mine = client.submit("example_script", page_context="schedule:tab-made")
    client.submit("example_script", page_context="elsewhere")
    tab.runs_button.click()
    assert panel.tabs.selected_index == 1
    assert [r["id"] for r in panel.history.records] == [mine.id]
    assert panel.history.context_button.description == "schedule:tab-made"
    panel.history.context_button.click()  # every run again
    assert len(panel.history.records) == 2
    assert panel.history.context_button.layout.display == "none"
    panel.tabs.selected_index = 2

    tab.pause_button.click()
    assert client.get_schedule("tab-made").row["state"] == "paused"
    assert tab.pause_button.disabled and not tab.resume_button.disabled
    tab.resume_button.click()
    assert client.get_schedule("tab-made").row["state"] == "active"
    tab.delete_button.click()  # asks first
    assert not client.schedules().empty and "again to delete it" in tab.confirm.value
    assert tab.delete_button.description == "Delete tab-made?"
    tab.delete_button.click()
    assert client.schedules().empty and "no schedules yet" in tab.detail.value
    assert tab.delete_button.description == "Delete" and tab.confirm.value == ""

    panel.fields["multiplier"].widget.value = "0"  # a wrong form: nothing to schedule
    tab.refresh()
    assert "less than the minimum of 1" in tab.what.value
    tab.create_button.click()
    assert "less than the minimum of 1" in tab.problems.value


def test_the_schedules_tab_edits_runs_now_and_makes_one_off_schedules(form_panel: Panel):
    panel = form_panel
    client = panel.client
    panel.script.value = "example_script"
    panel.fields["message"].widget.value = "first"
    panel.tabs.selected_index = 2
    tab = panel.schedules
    tab.name.value = "tab-edit"
    tab.create_button.click()
    made = client.get_schedule("tab-edit")
    assert made.row["every_s"] == 3600.0

    tab.edit_button.click()  # the form holds the schedule now
    assert (tab.kind.value, tab.when.value, tab.name.value) == ("every", "1h", "tab-edit")
    assert tab.create_button.description == "Save tab-edit"
    tab.kind.value = "cron"
    tab.when.value = "61 7 * * *"
    tab.create_button.click()
    assert "minute: 61 is outside 0-59" in tab.problems.value  # nothing changed
    assert client.get_schedule("tab-edit").row["cron"] is None
    tab.when.value = "30 7 * * *"
    panel.fields["message"].widget.value = "edited"
    tab.notify.value = "nope"
    tab.create_button.click()
    assert "&#x27;nope&#x27; is not an apprise URL" in tab.problems.value
    tab.notify.value = "json://127.0.0.1:9/hook, mailto://ops@example.org"
    tab.create_button.click()
    assert client.get_schedule("tab-edit").row["notify"] == [
        "json://127.0.0.1:9/hook",
        "mailto://ops@example.org",
    ]
    row = client.get_schedule("tab-edit").row
    assert (row["cron"], row["every_s"], row["parameters"]["message"]) == (
        "30 7 * * *",
        None,
        "edited",
    )
    assert tab.create_button.description == "Create schedule" and tab.problems.value == ""

    tab.run_now_button.click()  # one run now, recorded as the schedule's
    (run_id,) = made.runs()["id"]
    assert run_id[:8] in tab.confirm.value
    assert client.get(run_id).record()["schedule_id"] == made.id

    tab.kind.value = "once"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:00", tab.when.value)  # an hour or so ahead
    tab.name.value = "tab-once"
    tab.create_button.click()
    assert client.get_schedule("tab-once").row["once_at"] is not None
    assert "once at" in client.schedules().set_index("name").loc["tab-once", "spec"]
