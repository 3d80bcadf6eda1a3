"""The warm runner keeps the script contract of a fresh interpreter, isolates runs from
each other, kills trees on timeout, and survives the death of its parent."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import TEST_SCRIPTS, pid_alive

from jupyter_scriptrun.config import Settings, examples_dir
from jupyter_scriptrun.contract import protocol
from jupyter_scriptrun.defaults import ENV_ALLOW
from jupyter_scriptrun.execution import child
from jupyter_scriptrun.execution.warm import WarmParent
from jupyter_scriptrun.service.client import Client
from jupyter_scriptrun.status import ExecutionStatus


@pytest.fixture(scope="module")
def warm():
    env = protocol.script_env(
        os.environ, ENV_ALLOW, parameters="{}", page_context="", script_name="", execution_id=""
    )
    parent = WarmParent(("json",), env)
    yield parent
    parent.stop()


def run(warm: WarmParent, tmp_path: Path, source: str | Path, params=None, **spec_kw):
    path = source if isinstance(source, Path) else tmp_path / "script.py"
    if not isinstance(source, Path):
        path.write_text(source)
    env = protocol.script_env(
        os.environ,
        ENV_ALLOW,
        parameters=json.dumps(params or {}),
        page_context="test",
        script_name=path.stem,
        execution_id="e1",
    )
    spawn = spec_kw.pop("spawn_with", None) or (lambda s: warm.spawn(s.argv, s.env, s.cwd))
    spec = child.RunSpec(argv=[sys.executable, str(path)], env=env, cwd=str(tmp_path), **spec_kw)
    outcome = child.run(spec, spawn=spawn)
    return outcome, protocol.interpret(outcome, spec.timeout_s)


def test_the_seed_example_gives_the_same_result_as_a_fresh_interpreter(warm, tmp_path):
    script = examples_dir() / "example_script.py"
    outcome, verdict = run(warm, tmp_path, script, {"message": "你好", "multiplier": 2})
    assert outcome.exit_code == 0 and verdict.status is ExecutionStatus.SUCCEEDED
    assert verdict.data["multiplied_message"] == "你好 你好"
    assert verdict.result["metadata"]["script_name"] == "example_script"
    assert outcome.cpu_user_s + outcome.cpu_system_s > 0 and outcome.peak_rss_mb > 0


def test_a_run_that_ends_before_the_first_look_still_has_its_peak_memory(warm, tmp_path):
    """A warm child can be done before the worker has its pid (a busy machine): it says
    its own high-water mark as it exits (once seen as a None peak in a full CI run)."""
    script = examples_dir() / "example_script.py"

    def late(spec):
        child = warm.spawn(spec.argv, spec.env, spec.cwd)
        time.sleep(0.3)  # the script has ended and been reaped by the warm parent
        return child

    outcome, verdict = run(warm, tmp_path, script, spawn_with=late)
    assert verdict.status is ExecutionStatus.SUCCEEDED
    assert outcome.peak_rss_mb is not None and outcome.peak_rss_mb > 1


def test_exit_codes_exceptions_and_stdin_behave_as_in_python(warm, tmp_path):
    assert run(warm, tmp_path, "import sys; sys.exit(3)")[0].exit_code == 3
    assert run(warm, tmp_path, "raise SystemExit('bye')")[0].stderr == "bye\n"
    outcome, verdict = run(warm, tmp_path, "def f():\n    {}['k']\nf()\n")
    assert outcome.exit_code == 1 and verdict.error_type == "KeyError"
    assert outcome.stderr.startswith("Traceback (most recent call last):\n  File ")
    assert "runpy" not in outcome.stderr and "script.py" in outcome.stderr
    outcome, _ = run(warm, tmp_path, "print(input())")
    assert "EOFError" in outcome.stderr  # stdin is /dev/null, as for a fresh run
    outcome, _ = run(warm, tmp_path, "import sys; print(sys.argv[0], __name__)")
    assert outcome.stdout.strip() == f"{tmp_path / 'script.py'} __main__"
    outcome, _ = run(warm, tmp_path, "import atexit; atexit.register(print, 'at exit')")
    assert outcome.stdout == "at exit\n"


def test_nothing_a_run_does_reaches_the_next(warm, tmp_path):
    script = TEST_SCRIPTS / "leaky.py"
    first = run(warm, tmp_path, script)[1].data
    second = run(warm, tmp_path, script)[1].data
    for found in (first, second):
        assert found["patched_json"] is None and found["env"] is None
        assert found["modules_marked"] is False
    assert first["random"] is None or first["random"] != second["random"]


def test_an_edited_script_runs_as_edited_and_its_traceback_names_its_own_copy(warm, tmp_path):
    """The parent compiles a script once per content; a run still runs the bytes it was
    given, and its traceback names its own file (each run's copy has its own path)."""
    failing = "def check(x):\n    raise ValueError(f'bad x: {x}')\n\ncheck(7)\n"
    first = tmp_path / "a" / "job.py"
    second = tmp_path / "b" / "job.py"
    for path in (first, second):
        path.parent.mkdir()
        path.write_text(failing)
    for path in (first, second, first):
        outcome, verdict = run(warm, tmp_path, path)
        assert verdict.status is ExecutionStatus.FAILED, outcome.stderr
        assert f'File "{path}", line 2, in check' in outcome.stderr
        assert outcome.stderr.endswith("ValueError: bad x: 7\n")
    first.write_text("print('edited')\n")
    assert run(warm, tmp_path, first)[0].stdout == "edited\n"
    broken = tmp_path / "broken.py"
    broken.write_text("def (:\n")  # the child reports it, as python would
    outcome, _ = run(warm, tmp_path, broken)
    assert outcome.exit_code == 1 and "SyntaxError" in outcome.stderr


def test_a_spare_child_that_died_waiting_is_replaced(warm, tmp_path):
    """The parent forks the next run's child ahead of it; killed while it waits, the next
    run is forked on the spot and nothing is lost."""
    import psutil

    def spares() -> list[psutil.Process]:
        return [c for c in psutil.Process(warm.pid).children() if c.status() != "zombie"]

    assert run(warm, tmp_path, "print('first')")[0].stdout == "first\n"
    deadline = time.monotonic() + 10
    while not spares() and time.monotonic() < deadline:
        time.sleep(0.02)
    waiting = spares()
    assert len(waiting) == 1, waiting  # one spare, no run going
    waiting[0].kill()
    waiting[0].wait(10)
    outcome, verdict = run(warm, tmp_path, "import os; print(os.getpid())")
    assert verdict.status is ExecutionStatus.SUCCEEDED
    assert int(outcome.stdout) != waiting[0].pid


def test_a_timeout_kills_the_whole_tree(warm, tmp_path):
    pidfile = tmp_path / "pids"
    source = (
        "import os, signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "child = subprocess.Popen([sys.executable, '-c', "
        "'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)'])\n"
        f"open({str(pidfile)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}')\n"
        "print('started', flush=True)\n"
        "time.sleep(60)\n"
    )
    t0 = time.monotonic()
    outcome, verdict = run(warm, tmp_path, source, timeout_s=1.5, kill_grace_s=0.5)
    assert verdict.status is ExecutionStatus.TIMED_OUT and outcome.stdout == "started\n"
    assert time.monotonic() - t0 < 5
    time.sleep(0.2)
    assert not any(pid_alive(int(p)) for p in pidfile.read_text().split())


def test_a_dead_parent_fails_the_run_clearly_and_is_replaced(warm, tmp_path):
    pidfile = tmp_path / "pid"
    source = (
        f"import os, time\nopen({str(pidfile)!r}, 'w').write(str(os.getpid()))\ntime.sleep(60)\n"
    )

    def kill_parent() -> None:
        while not pidfile.exists():
            time.sleep(0.02)
        os.kill(warm.pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_parent)
    killer.start()
    _, verdict = run(warm, tmp_path, source, kill_grace_s=0.5)
    killer.join()
    assert verdict.status is ExecutionStatus.FAILED and verdict.error_type == "RunnerLost"
    assert verdict.retryable
    time.sleep(0.2)
    assert not pid_alive(int(pidfile.read_text()))  # the orphaned run was ended too
    assert run(warm, tmp_path, "print('again')")[0].stdout == "again\n"


def test_a_worker_runs_python_scripts_warm_and_keeps_secrets_out(
    redis_settings: Settings, start_worker
):
    settings = redis_settings.with_(default_runner="warm", warm_preload=("pandas",))
    start_worker(settings, extra_env={"MY_SECRET_TOKEN": "hunter2"})
    client = Client(settings)
    found = client.run("leaky", wait_timeout=120).data
    assert found["environ_block_has_secret"] is False
    frame_run = client.run("uses_pandas", wait_timeout=120)
    assert frame_run.status is ExecutionStatus.SUCCEEDED and frame_run.data == {"sum": 10}
    shell = client.run("plain_text", wait_timeout=60)  # not Python: runs fresh
    assert shell.status is ExecutionStatus.SUCCEEDED
