"""The scriptrun command, run as a user would (a real process)."""

from __future__ import annotations

import csv
import inspect
import io
import json
import os
import subprocess
import sys
import time

import pytest
from conftest import settings_env

from jupyter_scriptrun.cli import parse_assignments
from jupyter_scriptrun.config import Settings
from jupyter_scriptrun.fleet.local import LocalWorker


def test_values_are_json_where_they_parse_else_text():
    assert parse_assignments(
        ["n=3", "f=1.5", "ok=true", "xs=[1,2]", "msg=hello world", "e=", "q=a=b"]
    ) == {"n": 3, "f": 1.5, "ok": True, "xs": [1, 2], "msg": "hello world", "e": "", "q": "a=b"}


@pytest.mark.parametrize("bad", [["novalue"], ["=3"], ["a=1", "a=2"]])
def test_malformed_assignments_are_refused(bad):
    with pytest.raises(ValueError):
        parse_assignments(bad)


@pytest.fixture
def cli(settings: Settings, redis_settings: Settings, start_worker):
    start_worker(redis_settings)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCRIPTRUN_")}
    env.update(redis_settings.to_env())

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "jupyter_scriptrun", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run


def test_run_prints_a_summary_and_the_data(cli):
    out = cli("run", "example_script", "message=hi there", "multiplier=2")
    assert out.returncode == 0, out.stderr
    assert "✔ example_script" in out.stdout and "succeeded" in out.stdout
    assert '"multiplied_message": "hi there hi there"' in out.stdout


def test_run_json_and_exit_codes(cli):
    out = cli("run", "failing_script", "--json")
    assert out.returncode == 1
    rec = json.loads(out.stdout)
    assert rec["status"] == "failed" and rec["error_type"] == "ValueError"
    bad = cli("run", "example_script", "multiplier=0")
    assert bad.returncode == 2 and "multiplier: 0 is less than the minimum of 1" in bad.stderr
    missing = cli("run", "nope")
    assert missing.returncode == 2 and "no script named 'nope'" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_list_history_status_logs_cancel(cli):
    listing = cli("list")
    assert "example_script" in listing.stdout and "multiplier=2" in listing.stdout
    eid = cli("run", "print_test_script", "count=2", "--no-wait").stdout.strip()
    assert len(eid) == 32
    assert cli("run", "plain_text").returncode == 0
    status = cli("status", eid[:8], "--json")
    assert json.loads(status.stdout)["id"] == eid
    logs = cli("logs", eid[:8])
    assert "print test line 2/2" in logs.stdout
    rows = list(csv.DictReader(io.StringIO(cli("history", "--format", "csv").stdout)))
    assert {r["script"] for r in rows} == {"print_test_script", "plain_text"}
    assert json.loads(cli("history", "--format", "json").stdout)[0]["script"]
    assert "print_test_scr" in cli("history").stdout
    cancelled = cli("cancel", eid)
    assert cancelled.returncode == 2 and "already ended" in cancelled.stderr
    assert cli("status", "ffffffff").returncode == 2


def test_follow_prints_output_as_it_comes(cli):
    out = cli("run", "slow_script", "seconds=1", "--follow")
    assert out.returncode == 0, out.stderr
    assert out.stdout.index("step 1:") < out.stdout.index("✔ slow_script")
    eid = cli("run", "print_test_script", "count=3", "--no-wait").stdout.strip()
    followed = cli("logs", eid, "--follow")
    assert followed.returncode == 0 and "print test line 3/3" in followed.stdout


def test_logs_of_a_run_still_going_print_its_output_so_far_and_say_so(cli):
    eid = cli("run", "slow_script", "seconds=20", "--no-wait").stdout.strip()
    deadline = time.monotonic() + 30
    while True:
        logs = cli("logs", eid[:8])
        if "step 1:" in logs.stdout:
            break
        assert time.monotonic() < deadline, logs
        time.sleep(0.3)
    assert logs.returncode == 0
    assert f"run {eid[:8]} is still running" in logs.stderr and "--follow" in logs.stderr
    assert cli("cancel", eid).returncode == 0


def test_demo_on_the_embedded_default(settings: Settings):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCRIPTRUN_")}
    env.update(settings.to_env())
    try:
        out = subprocess.run(
            [sys.executable, "-m", "jupyter_scriptrun", "demo"],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
    finally:
        LocalWorker(settings).stop()
    assert out.returncode == 0, out.stderr
    assert "all good" in out.stdout and "你好" not in out.stderr


def test_a_reader_that_leaves_early_ends_the_command_quietly(cli, redis_settings: Settings):
    """``scriptrun history | head``: the pipe closes; no traceback, the shell's code 141."""
    from conftest import settings_env

    eid = cli("run", "example_script", "--no-wait").stdout.strip()
    for command in ("history --limit 0", "history --format csv", f"status {eid}", "list"):
        out = subprocess.run(
            [
                "bash",
                "-c",
                f"{sys.executable} -m jupyter_scriptrun {command} | true; "
                'echo "rc=${PIPESTATUS[0]}"',
            ],
            env=settings_env(redis_settings),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.stdout.strip() in ("rc=0", "rc=141"), (command, out.stdout)
        assert "Traceback" not in out.stderr and "BrokenPipe" not in out.stderr, out.stderr


def test_an_unreachable_database_or_broker_is_one_line_naming_it(settings: Settings):
    from conftest import free_port, settings_env

    port = free_port()
    cases = {
        "database": settings.with_(
            broker_url="redis://127.0.0.1:1/0",
            database_url=f"postgresql+psycopg://me:secret@127.0.0.1:{port}/nope",
        ),
        "broker": settings.with_(broker_url=f"redis://127.0.0.1:{port}/0"),
    }
    for what, broken in cases.items():
        out = subprocess.run(
            [sys.executable, "-m", "jupyter_scriptrun", "run", "example_script"],
            env=settings_env(broken),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 3, (what, out.stderr)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
        assert f"127.0.0.1:{port}" in lines[0] and "secret" not in lines[0]
        assert "Connection refused" in lines[0] or "connection" in lines[0].lower()
        assert "result store backend" not in lines[0]


def test_version_workers_and_refused_queues(cli, redis_settings: Settings):
    from jupyter_scriptrun import __version__

    assert cli("--version").stdout.strip() == f"scriptrun {__version__}"
    listing = cli("workers")
    assert listing.returncode == 0 and "test-" in listing.stdout, listing.stdout
    assert json.loads(cli("workers", "--json").stdout)[0]["name"].startswith("test-")
    for queue in ("unacked", "_kombu.binding.x", "elsewhere"):
        out = cli("run", "example_script", "--queue", queue)
        assert out.returncode == 2 and "queue" in out.stderr and "Traceback" not in out.stderr
    worker = cli("worker", "-Q", "scriptrun,unacked")  # would consume Redis's own hash
    assert worker.returncode == 2 and "'unacked'" in worker.stderr


def test_the_benchmark_against_an_unreachable_broker_fails_clearly_leaving_nothing():
    import psutil
    from conftest import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"
    out = subprocess.run(
        [sys.executable, "-m", "jupyter_scriptrun.bench", "--broker", url, "--runs", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 3 and "Traceback" not in out.stderr, out.stderr
    assert url in out.stderr and "unreachable" in out.stderr
    leftovers = []  # the bench hands its workers the broker URL in their environment
    for proc in psutil.process_iter():
        try:
            if url in proc.environ().values() or url in " ".join(proc.cmdline()):
                leftovers.append(proc)
        except (psutil.Error, OSError):
            continue
    assert leftovers == []


def test_health_is_a_liveness_probe(redis_settings: Settings, start_worker):
    """``scriptrun health``: 0 with a worker consuming the queue (naming it), 1 without
    one, 3 when the broker is away; each check on a line of its own."""
    env = settings_env(redis_settings)
    cmd = [sys.executable, "-m", "jupyter_scriptrun", "health", "--timeout", "1"]
    alone = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert alone.returncode == 1, alone.stdout + alone.stderr
    assert f"no worker consumes '{redis_settings.queue}'" in alone.stdout
    worker = start_worker(redis_settings)
    healthy = subprocess.run([*cmd, "--this-host"], env=env, capture_output=True, text=True)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "ok   store" in healthy.stdout and "ok   broker" in healthy.stdout
    assert f"consumed by {worker.hostname.split('@')[0]}@" in healthy.stdout, healthy.stdout
    away = settings_env(redis_settings.with_(broker_url="redis://127.0.0.1:1/0"))
    down = subprocess.run(cmd, env=away, capture_output=True, text=True, timeout=60)
    assert down.returncode == 3 and "FAIL broker" in down.stdout, down.stdout + down.stderr


def test_on_a_terminal_run_shows_a_status_line_with_progress(
    redis_settings: Settings, start_worker
):
    """stderr a terminal: one line redrawn in place while the run goes (its progress and
    the time left), cleared before the summary; stdout keeps only the result."""
    import pty

    start_worker(redis_settings)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCRIPTRUN_")}
    env.update(redis_settings.to_env())
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "jupyter_scriptrun", "run", "stepper", "steps=8", "pause=0.4"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=follower,
            text=True,
            timeout=120,
        )
        os.close(follower)
        follower = -1
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal's other end is closed: all read
                break
            if not chunk:
                break
            seen += chunk
    finally:
        if follower >= 0:
            os.close(follower)
        os.close(leader)
    assert done.returncode == 0, done.stdout
    lines = seen.decode().split("\r\x1b[2K")
    assert any("running" in line and "/8 (" in line and "left" in line for line in lines), lines
    assert lines[-1] == ""  # cleared at the end
    assert done.stdout.startswith("✔ stepper [") and '"steps": 8' in done.stdout


def test_the_history_limit_means_one_thing_with_one_default(cli):
    """``--limit N`` is the newest N runs (0: none), ``all`` every run; the default is one
    number, the same in Python, the CLI, the magics and REST; a negative one is refused."""
    from jupyter_scriptrun import defaults
    from jupyter_scriptrun.cli import build_parser
    from jupyter_scriptrun.jupyter.magics import ScriptrunMagics
    from jupyter_scriptrun.service.client import Client

    for _ in range(3):
        assert cli("run", "example_script").returncode == 0
    count = {
        limit: len(json.loads(cli("history", "--limit", limit, "--format", "json").stdout))
        for limit in ("0", "2", "all")
    }
    assert count == {"0": 0, "2": 2, "all": 3}
    negative = cli("history", "--limit", "-3")
    assert negative.returncode == 2 and "--limit: -3 is negative" in negative.stderr
    assert build_parser().parse_args(["history"]).limit == defaults.HISTORY_LIMIT
    assert ScriptrunMagics.scriptrun.parser.parse_args([]).limit == defaults.HISTORY_LIMIT
    default = inspect.signature(Client.history).parameters["limit"].default
    assert default == defaults.HISTORY_LIMIT == 100


def test_history_messages_name_what_was_asked(cli):
    """A bad status lists the valid ones; filters that match nothing say so (not "no runs
    yet"), with how many runs there are; times carry their zone; CJK text stays aligned."""
    assert cli("run", "seed_style", "message=你好").returncode == 0  # the seed's CJK message
    assert cli("run", "print_test_script", "count=1").returncode == 0
    bogus = cli("history", "--status", "bogus")
    assert bogus.returncode == 2 and "'succeeded'" in bogus.stderr and "'lost'" in bogus.stderr
    nosuch = cli("history", "--script", "nosuch")
    assert nosuch.returncode == 0, nosuch.stderr
    assert "no runs match script nosuch (2 runs in all)" in nosuch.stdout
    table = cli("history").stdout.splitlines()
    assert len(table) == 3 and " UTC " in table[1]
    # The message column starts at the same display column in every row: a CJK
    # character takes two cells, and the column is not right-aligned.
    import unicodedata

    def cells(text: str) -> int:
        return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)

    words = ("message", "printed", "执行成功")
    starts = {cells(line[: line.index(word)]) for line, word in zip(table, words, strict=True)}
    assert len(starts) == 1, table


def test_options_are_blamed_by_the_name_typed(cli):
    out = cli("--kill-grace", "abc", "list")
    assert out.returncode == 2 and "--kill-grace 'abc': not a valid float" in out.stderr
    assert "SCRIPTRUN_KILL_GRACE" not in out.stderr
    bad = cli("schedule", "add", "example_script", "--every", "0")
    assert bad.returncode == 2 and "invalid schedule of 'example_script'" in bad.stderr, bad.stderr
    # A setting after the command says where it goes, instead of a page of usage.
    late = cli("list", "--scripts-path=/elsewhere")
    assert late.returncode == 2
    assert late.stderr.strip().endswith(
        "--scripts-path: a setting goes before the command (scriptrun --scripts-path VALUE list …)"
    ), late.stderr


def test_ctrl_c_exits_130_with_one_true_line(cli, redis_settings: Settings):
    """Ctrl-C while ``run`` waits cancels the run and says how it ended; while ``workers``
    waits for answers or ``top`` draws, it ends quietly; 130 each time, no traceback."""
    import signal

    env = settings_env(redis_settings)
    for args, wait_for in (
        (["run", "slow_script", "seconds=60"], "running"),
        (["workers", "--timeout", "30"], None),
        (["top", "--interval", "0.5"], None),
    ):
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter_scriptrun", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(3)
        if wait_for:
            deadline = time.monotonic() + 30
            while '"running"' not in cli("history", "--format", "json", "--limit", "1").stdout:
                assert time.monotonic() < deadline
                time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, (args, err)
        assert "Traceback" not in err and err.strip().count("\n") == 0, (args, err)
        if wait_for:
            assert err.strip().startswith("interrupted: run ") and err.strip().endswith(
                "cancelled"
            ), err
    assert "\x1b[" not in cli("top", "--once").stdout


def test_health_on_the_embedded_default_with_its_worker_idle(settings: Settings):
    """The embedded default's local worker stops when idle and the next run starts it:
    health says so and passes."""
    out = subprocess.run(
        [sys.executable, "-m", "jupyter_scriptrun", "health", "--timeout", "1"],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "the next run starts the local one" in out.stdout


def test_schedules_are_made_edited_run_now_and_ended_from_the_shell(cli):
    made = cli("schedule", "add", "example_script", "message=cli", "--every", "1h", "--name", "c1")
    assert made.returncode == 0 and "scheduled c1" in made.stdout, made.stderr
    edited = cli("schedule", "edit", "c1", "--cron", "15 8 * * 1-5", "--tz", "Europe/Paris")
    assert edited.returncode == 0 and "changed c1" in edited.stdout, edited.stderr
    assert "T08:15:00+0" in edited.stdout
    bad = cli("schedule", "edit", "c1", "colour=red", "--jitter", "-1", "--notify-on", "rain")
    assert bad.returncode == 2, bad.stdout
    for words in ("jitter must be", "notify_on: 'rain'", "colour"):
        assert words in bad.stderr, (words, bad.stderr)
    ran = cli("schedule", "run", "c1")
    assert ran.returncode == 0 and "queued for c1" in ran.stdout, ran.stderr
    run_id = ran.stdout.split()[0]
    deadline = time.monotonic() + 60
    while "succeeded" not in (shown := cli("status", run_id[:8])).stdout:
        assert time.monotonic() < deadline, shown.stdout + shown.stderr
        time.sleep(0.5)
    once = cli("schedule", "add", "example_script", "--at", "2099-05-01T12:00", "--name", "c2")
    assert once.returncode == 0 and "next: 2099-05-01T12:00:00+00:00" in once.stdout
    listed = cli("schedule", "list").stdout
    assert "cron 15 8 * * 1-5" in listed and "once at 2099-05-01 12:00 UTC" in listed
