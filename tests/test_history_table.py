"""The panel's history table, driven through its widget models: the store filters, sorts
and pages (10,000 runs here); a row opens its run, which can be run again or cancelled."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from jupyter_scriptrun.bench.table import fill
from jupyter_scriptrun.config import Settings
from jupyter_scriptrun.jupyter.history_table import HistoryTable, ago, row_html
from jupyter_scriptrun.service.client import Client
from jupyter_scriptrun.status import ExecutionStatus
from jupyter_scriptrun.store import utcnow

ROWS = 10_000


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Client:
    root = tmp_path_factory.mktemp("history-table")
    client = Client(Settings(data_dir=root / "data", queue="sr-history-table"))
    fill(client, ROWS)  # one a minute back from now; every 10th failed, every 50th lost
    return client


@pytest.fixture
def table(big: Client) -> HistoryTable:
    t = HistoryTable(big, [f"script_{i}" for i in range(7)])
    t.refresh()
    return t


def shown_ids(table: HistoryTable) -> list[str]:
    return [b.tooltip for b, _, row in table.rows if row.layout.display != "none"]


def test_the_first_page_is_the_newest_runs_with_the_count(table: HistoryTable):
    assert len(table.records) == 25 and table.total == ROWS
    assert shown_ids(table) == [r["id"] for r in table.records]
    assert "1 to 25 of 10,000" in table.position.value
    assert table.previous.disabled and not table.next.disabled
    queued = [r["queued_at"] for r in table.records]
    assert queued == sorted(queued, reverse=True)
    assert table.headers["queued_at"].description == "queued ▼"


def test_a_header_sorts_and_the_same_header_turns_the_order(table: HistoryTable):
    table.headers["duration_s"].click()
    first = [r["duration_s"] for r in table.records]
    assert first[0] == 9.6 and first == sorted(first, reverse=True)
    assert table.headers["duration_s"].description == "duration ▼"
    assert table.headers["queued_at"].description == "queued"
    table.headers["duration_s"].click()
    again = [r["duration_s"] for r in table.records]
    assert again[0] == 0.0 and again == sorted(again)  # empty durations last either way
    table.headers["script"].click()  # names start A to Z
    assert table.records[0]["script"] == "script_0"
    table.turn(ROWS // 25 - 1)  # the last page: the lost runs, without a duration
    table.headers["duration_s"].click()
    table.turn(ROWS // 25 - 1)
    assert all(r["duration_s"] is None for r in table.records)


def test_pages_go_on_and_back(table: HistoryTable):
    page_one = shown_ids(table)
    table.next.click()
    assert table.offset == 25 and "26 to 50 of 10,000" in table.position.value
    assert not set(shown_ids(table)) & set(page_one)
    assert not table.previous.disabled
    table.previous.click()
    assert shown_ids(table) == page_one
    table.turn(ROWS)  # far past the end: the last page
    assert table.next.disabled and "10,000 of 10,000" in table.position.value


def test_filters_narrow_the_count_and_start_at_the_first_page(table: HistoryTable):
    table.next.click()
    table.status.value = "failed"
    assert table.offset == 0 and table.total == sum(
        1 for i in range(ROWS) if i % 10 == 0 and i % 50
    )
    assert {r["status"] for r in table.records} == {"failed"}
    table.status.value = ""
    table.text.value = "disk 120 "  # in the message (trimmed)
    assert [r["message"] for r in table.records] == ["disk 120 is full"]
    table.text.value = "100%"  # no wildcard: a literal search
    assert table.total == 0 and "no runs match" in table.empty.value
    table.text.value = ""
    table.period.value = "last hour"
    assert table.total == 60
    table.script.value = "script_3"
    assert {r["script"] for r in table.records} == {"script_3"} and table.total < 60


def test_a_row_shows_a_chip_short_values_and_full_ones_on_hover(table: HistoryTable):
    rec = next(r for r in table.records if r["status"] == "failed")
    cells = row_html(rec, utcnow())
    assert "✘ failed" in cells and "background:#cf222e" in cells
    assert "min ago" in cells and rec["queued_at"].isoformat()[:16] in cells
    assert "text-align:right" in cells and "MiB" in cells
    assert ago(utcnow() - timedelta(days=3), utcnow()).count("-") == 2  # a date


@pytest.mark.slow
def test_a_row_opens_its_run_which_can_run_again_and_be_cancelled(client: Client):
    done = client.run("example_script", {"message": "table", "multiplier": 2})
    table = HistoryTable(client, ["example_script", "slow_script"])
    table.refresh()
    button = next(b for b, _, _ in table.rows if b.tooltip == done.id)
    button.click()
    assert table.opened.id == done.id and table.list_box.layout.display == "none"
    detail = table.detail.value
    assert done.id in detail and "table table" in detail  # record, data
    assert "attempts (1)" in detail and "output (" in detail
    assert table.cancel_button.disabled  # it ended

    again = table.rerun()
    assert again.id != done.id and table.opened.id == again.id
    again.wait(60)
    assert again.record()["parameters"] == done.record()["parameters"]

    slow = client.submit("slow_script", {"seconds": 30})
    table.open(slow.id)
    deadline = time.monotonic() + 30
    while slow.status is not ExecutionStatus.RUNNING:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    table.open(slow.id)
    assert not table.cancel_button.disabled
    table.cancel_button.click()
    slow.wait(30)
    assert slow.status is ExecutionStatus.CANCELLED
    table.close_button.click()
    assert table.detail_box.layout.display == "none"
    assert table.records[0]["id"] == slow.id and table.records[0]["status"] == "cancelled"


def wait_until(check, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not seen in time"
        time.sleep(0.1)


def test_an_opened_run_that_goes_shows_its_output_then_its_card_without_a_click(
    client: Client,
):
    slow = client.submit("slow_script", {"seconds": 3})
    table = HistoryTable(client, ["slow_script"], refresh_s=0.2)
    table.open(slow.id)
    table.start()
    try:
        wait_until(lambda: "step 1:" in table.detail.value)
        assert "running" in table.detail.value and not table.cancel_button.disabled
        wait_until(lambda: "attempts (1)" in table.detail.value)  # ended: the whole card
        assert "succeeded" in table.detail.value and table.cancel_button.disabled
    finally:
        table.pause()


def test_an_opened_run_shows_its_progress_bar_as_it_advances(client: Client):
    stepper = client.submit("stepper", {"steps": 8, "pause": 0.5})
    table = HistoryTable(client, ["stepper"], refresh_s=0.2)
    table.open(stepper.id)
    seen: set[str] = set()
    table.start()
    try:
        while not stepper.status.is_final:
            seen |= {f"{n}/8" for n in range(1, 8) if f"{n}/8 (" in table.detail.value}
            time.sleep(0.1)
    finally:
        table.pause()
    assert len(seen) >= 3, f"the bar advanced through {sorted(seen)} only"


def test_the_list_follows_new_runs_while_shown_and_not_once_paused(client: Client):
    table = HistoryTable(client, ["example_script"], refresh_s=0.2)
    table.start()
    try:
        first = client.submit("example_script", {"message": "a", "multiplier": 1})
        wait_until(lambda: table.records and table.records[0]["id"] == first.id, 10)
        wait_until(lambda: table.records[0]["status"] == "succeeded", 30)
    finally:
        table.pause()
    time.sleep(0.5)  # a read under way ends
    later = client.submit("example_script", {"message": "b", "multiplier": 1})
    time.sleep(1.5)
    assert table.records[0]["id"] == first.id
    table.start()  # shown again: read at once
    try:
        wait_until(lambda: table.records[0]["id"] == later.id, 5)
    finally:
        table.pause()


def test_output_colours_are_rendered_not_shown_as_escape_codes():
    from jupyter_scriptrun.display import ansi_html

    assert "ansi-red" in ansi_html("\x1b[31merror\x1b[0m <b>")
    assert "&lt;b&gt;" in ansi_html("\x1b[31merror\x1b[0m <b>")
    assert ansi_html("plain <b>") == "plain &lt;b&gt;"
