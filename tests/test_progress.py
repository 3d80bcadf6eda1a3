"""Progress from scripts: an optional channel beside the output, one line per update.

A script writes ``{"done", "total", "message"}`` (or ``3/10 message``) lines to the
descriptor in ``SCRIPTRUN_PROGRESS_FD`` (``jupyter_scriptrun.script.progress`` does it for
Python); an unchanged tqdm loop reports through its bar on stderr. Updates reach clients in
order as ``progress`` chunks of the live output, and the latest is on the run's record.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from conftest import TEST_SCRIPTS

from jupyter_scriptrun.config import Settings
from jupyter_scriptrun.execution.live import LiveOutput
from jupyter_scriptrun.execution.progress import MIN_GAP_S, Progress, parse
from jupyter_scriptrun.service.client import Client
from jupyter_scriptrun.status import ExecutionStatus

# -- the line format -------------------------------------------------------------------


def test_a_progress_line_is_json_or_plain_text():
    assert parse('{"done": 3, "total": 10, "message": "loading"}') == {
        "done": 3,
        "total": 10,
        "message": "loading",
    }
    assert parse("3/10 copying part 3") == {"done": 3, "total": 10, "message": "copying part 3"}
    assert parse("2.5") == {"done": 2.5, "total": None, "message": None}
    assert parse('{"done": 7}') == {"done": 7, "total": None, "message": None}


@pytest.mark.parametrize(
    ("line", "names"),
    [
        ('{"done": "three"}', "'done' must be a number"),
        ('{"done": -1}', "'done' must be a number of at least 0"),
        ('{"done": 1, "total": 0}', "'total' must be a number above 0"),
        ('{"done": true}', "'done' must be a number"),
        ('{"done": 1', "not valid JSON"),
        ("[1, 2]", "expected JSON such as"),
        ("half way", "expected JSON such as"),
    ],
)
def test_a_bad_progress_line_is_refused_with_what_is_wrong(line: str, names: str):
    with pytest.raises(ValueError, match=names):
        parse(line)


# -- what the worker keeps ------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_updates_closer_than_the_gap_reach_the_stream_as_the_latest():
    live, clock = LiveOutput(1000), FakeClock()
    progress = Progress(live, clock)
    progress.add(b"1/100\n")
    clock.now += MIN_GAP_S / 4
    progress.add(b"2/100\n3/100\n")  # held back: too soon after the first
    assert [json.loads(t)["done"] for _, s, t in live.take() if s == "progress"] == [1]
    progress.flush()  # the lease's next tick writes the held-back latest
    assert [json.loads(t)["done"] for _, s, t in live.take() if s == "progress"] == [3]
    assert progress.take()["done"] == 3 and progress.take() is None


def test_a_partial_line_waits_for_its_end_and_the_final_update_is_never_held():
    live, clock = LiveOutput(1000), FakeClock()
    progress = Progress(live, clock)
    progress.add(b'{"done": 1, "tot')
    assert progress.latest is None
    progress.add(b'al": 2}\n{"done": 2, "total": 2}\n')  # same instant, but final
    assert [json.loads(t)["done"] for _, s, t in live.take()] == [1, 2]


def test_a_bad_line_is_named_once_on_stderr_and_the_rest_still_count():
    live = LiveOutput(1000)
    progress = Progress(live, FakeClock())
    progress.add(b'{"done": "x"}\nnonsense\n4/8\n')
    chunks = live.take()
    notes = [t for _, s, t in chunks if s == "stderr"]
    assert len(notes) == 1 and "'done' must be a number" in notes[0]
    assert progress.latest is not None and progress.latest["done"] == 4


def test_a_tqdm_bar_on_stderr_is_read_unless_the_script_reports_itself():
    live, clock = LiveOutput(1000), FakeClock()
    progress = Progress(live, clock)
    progress.add_stderr("\rload:  30%|███       | 3/10 [00:01<00:02,  2.9it/s]".encode())
    assert progress.latest is not None
    assert {k: progress.latest[k] for k in ("done", "total", "message")} == {
        "done": 3,
        "total": 10,
        "message": "load",
    }
    progress.add(b"1/2\n")  # the script's own channel wins from then on
    progress.add_stderr(b"\r 90%|#########  | 9/10 [00:01<00:00]")
    assert progress.latest["done"] == 1


# -- end to end, with a real worker -----------------------------------------------------


def _progress_of(execution) -> list[dict]:
    return [json.loads(c["text"]) for c in execution.follow() if c["stream"] == "progress"]


@pytest.mark.slow
@pytest.mark.parametrize("runner", ["fresh", "warm"])
def test_ten_steps_reported_arrive_as_ten_updates_in_order(settings: Settings, runner: str):
    client = Client(settings.with_(default_runner=runner))
    execution = client.submit("stepper", {"steps": 10, "pause": 0.3})
    updates = _progress_of(execution)
    assert execution.status is ExecutionStatus.SUCCEEDED
    assert [u["done"] for u in updates] == list(range(1, 11))
    assert {u["total"] for u in updates} == {10}
    assert updates[-1]["message"] == "step 10"
    times = [u["t"] for u in updates]
    assert times == sorted(times) and times[-1] >= 2.7  # seconds since the script started
    assert execution.data == {"steps": 10}  # the result is untouched
    assert execution.record()["progress"]["done"] == 10
    assert execution.attempts()[-1]["progress"]["done"] == 10


@pytest.mark.slow
def test_the_latest_progress_is_on_the_record_while_the_run_goes(settings: Settings):
    client = Client(settings)
    execution = client.submit("stepper", {"steps": 20, "pause": 0.25})
    deadline = time.monotonic() + 60
    while True:
        rec = execution.record()
        if rec["progress"] is not None:
            break
        assert rec["status"] in ("queued", "running") and time.monotonic() < deadline
        time.sleep(0.1)
    assert rec["status"] == "running" and 0 < rec["progress"]["done"] < 20
    execution.wait(60)
    assert execution.record()["progress"]["done"] == 20


@pytest.mark.slow
def test_a_shell_script_reports_with_plain_text_lines(settings: Settings):
    execution = Client(settings).submit("copy_parts")
    updates = _progress_of(execution)
    assert [(u["done"], u["total"]) for u in updates] == [(i, 5) for i in range(1, 6)]
    assert updates[0]["message"] == "copying part 1"
    assert execution.stdout == "copied 5 parts\n"


@pytest.mark.slow
def test_an_unchanged_tqdm_loop_reports_progress(settings: Settings):
    execution = Client(settings).submit("tqdm_loop")
    updates = _progress_of(execution)
    assert execution.status is ExecutionStatus.SUCCEEDED
    assert [u["done"] for u in updates] == list(range(9))  # tqdm shows 0/8 first
    assert {u["total"] for u in updates} == {8} and updates[-1]["message"] == "crunching"


@pytest.mark.slow
def test_a_bad_progress_line_is_named_and_the_run_goes_on(settings: Settings):
    execution = Client(settings).submit("bad_progress")
    chunks = list(execution.follow())
    assert execution.status is ExecutionStatus.SUCCEEDED and execution.stdout == "still fine\n"
    notes = "".join(c["text"] for c in chunks if c["stream"] == "stderr")
    assert "progress line skipped: 'done' must be a number" in notes
    assert execution.record()["progress"]["done"] == 2


@pytest.mark.slow
def test_a_script_without_progress_has_none(settings: Settings):
    execution = Client(settings).run("example_script")
    assert execution.record()["progress"] is None


def test_run_on_its_own_a_reporting_script_prints_nothing_extra():
    env = {k: v for k, v in os.environ.items() if k != "SCRIPTRUN_PROGRESS_FD"}
    env["SCRIPT_PARAMETERS"] = json.dumps({"steps": 3, "pause": 0.01})
    done = subprocess.run(
        [sys.executable, str(TEST_SCRIPTS / "stepper.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == '{"status": "success", "data": {"steps": 3}}\n'
    assert done.stderr == ""
