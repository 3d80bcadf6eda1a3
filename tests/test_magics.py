"""%scriptrun on a real IPython shell, against a real worker and Redis."""

from __future__ import annotations

import pytest
from IPython.core.interactiveshell import InteractiveShell

from jupyter_scriptrun.jupyter.magics import ScriptrunMagics
from jupyter_scriptrun.service.client import Client, Execution
from jupyter_scriptrun.status import ExecutionStatus


def get_ipython() -> InteractiveShell:
    """A real IPython shell (the same one for the whole session)."""
    return InteractiveShell.instance()


@pytest.fixture
def ip(client: Client):
    shell = get_ipython()
    shell.run_line_magic("load_ext", "jupyter_scriptrun")
    shell.register_magics(ScriptrunMagics(shell, client=client))
    return shell


def test_load_ext_registers_the_magic():
    shell = get_ipython()
    shell.run_line_magic("load_ext", "jupyter_scriptrun")
    assert "scriptrun" in shell.magics_manager.magics["line"]


def test_run_returns_the_handle_with_the_result(ip, capsys):
    run = ip.run_line_magic("scriptrun", 'example_script message="hello world" multiplier=2')
    assert isinstance(run, Execution) and run.status is ExecutionStatus.SUCCEEDED
    assert run.data["multiplied_message"] == "hello world hello world"
    assert run.record()["page_context"] == "ipython"
    html = run._repr_html_()
    assert "succeeded" in html and "hello world" in html


def test_values_come_from_kernel_variables_and_o_binds_the_handle(ip):
    ip.user_ns["msg"] = "from the kernel"
    ip.run_cell("%scriptrun example_script message={msg!r} -o last")
    assert ip.user_ns["last"].data["original_message"] == "from the kernel"


def test_tabular_data_shows_as_a_table(ip):
    run = ip.run_line_magic("scriptrun", "table_script rows=3")
    assert "<table" in run._repr_html_() and run.frame()["square"].tolist() == [1, 4, 9]


def test_errors_are_one_clear_line_not_a_traceback(ip, capsys):
    assert ip.run_line_magic("scriptrun", "no_such_script") is None
    err = capsys.readouterr().err
    assert err.startswith("scriptrun: no script named 'no_such_script'")
    assert "Traceback" not in err
    assert ip.run_line_magic("scriptrun", "example_script multiplier=0 colour=red") is None
    err = capsys.readouterr().err
    assert "2 problems" in err and "multiplier: 0 is less than the minimum of 1" in err


def test_subcommands(ip, capsys):
    listing = ip.run_line_magic("scriptrun", "list")
    assert "example_script" in set(listing["name"])
    run = ip.run_line_magic("scriptrun", "print_test_script count=2 --no-wait")
    run.wait(60)
    assert ip.run_line_magic("scriptrun", f"status {run.id[:8]}").id == run.id
    ip.run_line_magic("scriptrun", f"logs {run.id}")
    assert "print test line 2/2" in capsys.readouterr().out
    history = ip.run_line_magic("scriptrun", "history --script print_test_script")
    assert history["id"].tolist() == [run.id]


def test_cancel_subcommand_ends_a_running_run(ip, capsys):
    run = ip.run_line_magic("scriptrun", "slow_script seconds=30 --no-wait")
    ip.run_line_magic("scriptrun", f"cancel {run.id}")
    assert run.wait(15).status is ExecutionStatus.CANCELLED


def test_a_kernel_interrupt_while_waiting_cancels_the_run(ip, capsys):
    import os
    import signal
    import threading

    timer = threading.Timer(2.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        run = ip.run_line_magic("scriptrun", "slow_script seconds=60")
    finally:
        timer.cancel()
    assert run.status is ExecutionStatus.CANCELLED
    assert "interrupted" in capsys.readouterr().err


def test_no_arguments_lists_the_scripts(ip):
    assert "table_script" in set(ip.run_line_magic("scriptrun", "")["name"])


def test_output_lines_show_while_the_run_goes_on(ip, monkeypatch):
    import io
    import sys
    import time

    class Timestamped(io.StringIO):
        def __init__(self) -> None:
            super().__init__()
            self.writes: list[tuple[float, str]] = []

        def write(self, text: str) -> int:
            self.writes.append((time.monotonic(), text))
            return super().write(text)

    out = Timestamped()
    monkeypatch.setattr(sys, "stdout", out)
    run = ip.run_line_magic("scriptrun", "slow_script seconds=3")
    returned = time.monotonic()
    assert run.status is ExecutionStatus.SUCCEEDED
    first_step = next(t for t, text in out.writes if "step 1" in text)
    assert returned - first_step > 1.0, "output was shown only at the end"
    assert "".join(text for _, text in out.writes if "step" in text or "slept" in text) in (
        run.stdout
    )


def test_a_cell_runs_as_an_ad_hoc_script(ip, capsys):
    ip.user_ns["n"] = 4
    ip.run_cell(
        "%%scriptrun --name squares rows={n} -o cell_run\n"
        "import json, os\n"
        "rows = json.loads(os.environ['SCRIPT_PARAMETERS'])['rows']\n"
        "print('computing', rows, 'rows')\n"
        "print(json.dumps({'status': 'success', 'data': [{'n': i, 'sq': i * i}"
        " for i in range(rows)]}))\n"
    )
    run = ip.user_ns["cell_run"]
    assert run.status is ExecutionStatus.SUCCEEDED and run.record()["script"] == "squares"
    assert run.frame()["sq"].tolist() == [0, 1, 4, 9]
    assert "computing 4 rows" in capsys.readouterr().out


def test_a_bash_cell_and_a_bad_language(ip, capsys):
    ip.run_cell('%%scriptrun --lang bash -o sh_run\necho "from bash $BASH_VERSION" >&2\n')
    run = ip.user_ns["sh_run"]
    assert run.status is ExecutionStatus.SUCCEEDED and "from bash" in run.stderr
    ip.run_cell("%%scriptrun --lang cobol\nDISPLAY 'HI'.\n")
    err = capsys.readouterr().err
    assert "scriptrun: unknown language 'cobol'" in err and "Traceback" not in err


FIRST_MAGIC = """
import importlib.abc, importlib.machinery, sys, time, threading

class SlowLoader(importlib.abc.Loader):
    def __init__(self, inner): self.inner = inner
    def create_module(self, spec): return self.inner.create_module(spec)
    def exec_module(self, module):
        time.sleep(1.5)  # a slow disk: the package sits half-imported in sys.modules
        self.inner.exec_module(module)

class SlowJsonschema(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "jsonschema.validators":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        spec.loader = SlowLoader(spec.loader)
        return spec

sys.meta_path.insert(0, SlowJsonschema())
from IPython.core.interactiveshell import InteractiveShell
ip = InteractiveShell.instance()
ip.run_line_magic("load_ext", "jupyter_scriptrun")
while "jsonschema" not in sys.modules:
    time.sleep(0.005)
run = ip.run_line_magic("scriptrun", "example_script multiplier=2")
print("STATUS", run.status.value)
"""


def test_the_first_magic_right_after_load_ext_works(redis_settings, start_worker):
    """``%load_ext`` warms imports in a thread; a magic typed meanwhile must not see a
    half-imported module (it did: ``partially initialized module 'jsonschema'``)."""
    import subprocess
    import sys

    from conftest import settings_env

    start_worker(redis_settings)
    out = subprocess.run(
        [sys.executable, "-c", FIRST_MAGIC],
        env=settings_env(redis_settings),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "STATUS succeeded" in out.stdout, out.stdout + out.stderr
    assert "partially initialized" not in out.stdout + out.stderr


def test_a_refused_queue_is_one_line(ip, capsys):
    assert ip.run_line_magic("scriptrun", "example_script --queue unacked") is None
    err = capsys.readouterr().err
    assert "queue 'unacked'" in err and "Traceback" not in err


def test_status_marks_are_text_glyphs_not_emoji():
    """The running mark was an hourglass emoji: an empty box in a browser without emoji
    fonts. Every mark is outside the emoji blocks (pictographs, the hourglass/stopwatch
    row of Miscellaneous Technical)."""
    from jupyter_scriptrun.display import MARKS

    for status, mark in MARKS.items():
        for ch in mark:
            code = ord(ch)
            assert code < 0x1F000, (status, mark)
            assert not (0x231A <= code <= 0x231B or 0x23E9 <= code <= 0x23FA), (status, mark)


def test_the_result_card_is_compact_with_the_data_once_and_the_rest_folded(ip):
    import re

    run = ip.run_line_magic("scriptrun", 'example_script message="card" multiplier=2')
    html = run._repr_html_()
    first_line = html.split("</div>", 1)[0]
    assert "succeeded" in first_line and "example_script" in first_line
    assert f"title='{run.id}'>{run.id[:8]}</code>" in first_line  # short id, whole on hover
    assert " s · peak " in first_line and "MiB" in first_line
    assert html.count("<details open>") == 1  # the data, once
    assert "<details open><summary>data</summary>" in html
    assert re.search(r"<details><summary>output \(\d+ lines?\)</summary>", html)  # folded
    assert "<details><summary>details</summary>" in html and "exit code" in html

    failed = ip.run_line_magic("scriptrun", "failing_script mode=crash")
    card = failed._repr_html_()
    assert "KeyError" in card.split("<details", 1)[0]  # the error, above the folds
    assert card.count("<details open>") == 0  # no data; the traceback is folded in stderr
    assert card.count("Traceback (most recent call last)") == 1


def test_a_long_output_shows_its_end_and_all_of_it_one_click_away(ip):
    run = ip.run_line_magic("scriptrun", "big_output mb=1")
    html = run._repr_html_()
    assert "<details><summary>show all</summary>" in html
    assert "output (1025 lines)" in html


def test_the_live_status_line_shows_a_progress_bar_that_advances(ip, monkeypatch):
    """In a notebook the status line is redrawn in place: for a script that reports
    progress it is a bar with its count and the time left, moving forward."""
    import re

    from jupyter_scriptrun.jupyter import magics

    shown: list[str] = []

    class Handle:
        def update(self, obj):
            shown.append(obj._repr_html_())

    def fake_display(obj, display_id=False):
        shown.append(obj._repr_html_())
        return Handle()

    monkeypatch.setattr(magics, "display", fake_display)
    monkeypatch.setattr(ScriptrunMagics, "_in_kernel", lambda self: True)
    run = ip.run_line_magic("scriptrun", "stepper steps=8 pause=0.7")
    assert run.status is ExecutionStatus.SUCCEEDED
    values = [int(v) for h in shown for v in re.findall(r"aria-valuenow='(\d+)'", h)]
    assert len(set(values)) >= 3, values  # seen at several points of the run
    assert values == sorted(values) and max(values) <= 8
    with_eta = [h for h in shown if "left" in h and "role='progressbar'" in h]
    assert with_eta and re.search(r"\d+/8 \(\d+%\) · step \d", with_eta[-1])
    assert "succeeded" in shown[-1] and "progressbar" not in shown[-1]


def test_a_run_without_progress_shows_its_elapsed_time(ip, monkeypatch):
    from jupyter_scriptrun.jupyter import magics

    shown: list[str] = []

    class Handle:
        def update(self, obj):
            shown.append(obj._repr_html_())

    monkeypatch.setattr(magics, "display", lambda obj, display_id=False: Handle())
    monkeypatch.setattr(ScriptrunMagics, "_in_kernel", lambda self: True)
    ip.run_line_magic("scriptrun", "slow_script seconds=2")
    running = [h for h in shown if "running" in h]
    assert running and "progressbar" not in running[-1]
    assert any(" s</span>" in h for h in running)  # the clock, e.g. "1.2 s"


def test_the_result_document_is_not_echoed_above_the_card(ip, capsys):
    import json

    run = ip.run_line_magic("scriptrun", 'example_script message="once" multiplier=2')
    out = capsys.readouterr().out
    assert run.status is ExecutionStatus.SUCCEEDED and run.result is not None
    assert json.dumps(run.result)[:20] not in out  # the card shows the data; not twice


def test_a_json_looking_line_followed_by_more_output_is_shown():
    import io
    import sys

    from jupyter_scriptrun.jupyter.magics import Echo

    out, saved = io.StringIO(), sys.stdout
    sys.stdout = out
    try:
        echo = Echo()
        echo.write({"stream": "stdout", "text": "working\n"})
        assert out.getvalue() == "working\n"  # plain lines at once
        echo.write({"stream": "stdout", "text": '{"partial": 1}\n'})
        assert out.getvalue() == "working\n"  # held: it may be the result
        echo.write({"stream": "progress", "text": '{"done": 1}'})
        echo.write({"stream": "stdout", "text": "more\n"})
        assert out.getvalue() == 'working\n{"partial": 1}\nmore\n'
        echo.write({"stream": "stdout", "text": '{"status": "success"}\n'})
        echo.finish({"status": "error"})  # not the result: shown
        assert out.getvalue().endswith('{"status": "success"}\n')
    finally:
        sys.stdout = saved


def test_schedules_from_the_magic(ip, capsys):
    import time

    made = ip.run_line_magic(
        "scriptrun",
        "schedule example_script message=tick --every 1s --name magic-often --overlap allow",
    )
    assert made.name == "magic-often" and "scheduled magic-often; next:" in capsys.readouterr().out
    time.sleep(3.5)
    listed = ip.run_line_magic("scriptrun", "schedules").set_index("name")
    assert (
        listed.loc["magic-often", "spec"] == "every 1s" and listed.loc["magic-often", "runs"] >= 2
    )
    assert ip.run_line_magic("scriptrun", "pause magic-often").row["state"] == "paused"
    assert ip.run_line_magic("scriptrun", "resume magic-often").row["state"] == "active"
    ip.run_line_magic("scriptrun", "delete magic-often")
    assert "deleted magic-often" in capsys.readouterr().out
    assert (
        ip.run_line_magic("scriptrun", 'schedule example_script --cron "0 25 * * *" --tz Mars/Base')
        is None
    )
    err = capsys.readouterr().err
    assert "2 problems" in err and "hour: 25 is outside 0-23" in err and "Mars/Base" in err


def test_a_schedule_is_edited_from_the_magic_and_a_one_off_made(ip, capsys):
    ip.run_line_magic("scriptrun", "schedule example_script --every 1h --name magic-edit")
    capsys.readouterr()
    edited = ip.run_line_magic(
        "scriptrun",
        'schedule magic-edit message=edited --edit --cron "45 7 * * *" --tz Asia/Tokyo',
    )
    assert edited.row["cron"] == "45 7 * * *" and edited.row["parameters"]["message"] == "edited"
    assert "changed magic-edit; next:" in capsys.readouterr().out
    assert edited.next_runs(1)[0].strftime("%H:%M %Z") == "07:45 JST"
    assert ip.run_line_magic("scriptrun", "schedule magic-edit --edit --jitter 9999") is None
    assert "jitter must be 0 to 3600 seconds" in capsys.readouterr().err
    once = ip.run_line_magic(
        "scriptrun", "schedule example_script --at 2099-01-01T00:00 --name magic-once"
    )
    assert once.row["once_at"].year == 2099 and "next: 2099-01-01T00:00:00+00:00" in (
        capsys.readouterr().out
    )
    for name in ("magic-edit", "magic-once"):
        ip.run_line_magic("scriptrun", f"delete {name}")


def test_one_word_for_each_concept_with_the_old_spellings_kept(ip):
    """``--params`` and ``--page-context`` as in Python, the CLI and REST; ``--json`` and
    ``--context`` still work where notebooks have them."""
    new = ip.run_line_magic(
        "scriptrun", """example_script --params '{"message": "new"}' --page-context here"""
    )
    old = ip.run_line_magic(
        "scriptrun", """example_script --json '{"message": "old"}' --context there"""
    )
    assert [
        (r.record()["parameters"]["message"], r.record()["page_context"]) for r in (new, old)
    ] == [
        ("new", "here"),
        ("old", "there"),
    ]
