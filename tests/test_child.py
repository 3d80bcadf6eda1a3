"""The runner: a child process in its own group, captured, measured, and killed cleanly."""

from __future__ import annotations

import os
import resource
import sys
import time
from pathlib import Path

from conftest import pid_alive

from jupyter_scriptrun.execution.child import CappedBuffer, RunSpec, run

ENV = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8"}


def py(code: str, **kw) -> RunSpec:
    return RunSpec([sys.executable, "-c", code], env=dict(ENV), **kw)


def sh(code: str, **kw) -> RunSpec:
    return RunSpec(["bash", "-c", code], env=dict(ENV), **kw)


def test_a_plain_run_reports_exit_output_and_timings():
    out = run(py("import sys; print('out'); print('err', file=sys.stderr)"))
    assert out.exit_code == 0
    assert out.stdout == "out\n" and out.stderr == "err\n"
    assert 0 < out.duration_s < 10
    assert out.cpu_user_s + out.cpu_system_s > 0
    assert out.finished_at >= out.started_at and out.started_at.tzinfo is not None


def test_the_child_gets_exactly_the_environment_given_and_no_stdin():
    out = run(
        RunSpec(
            [
                sys.executable,
                "-c",
                "import os,sys; print(sorted(os.environ)); print(sys.stdin.read()=='')",
            ],
            env={"ONLY": "this", "PATH": ENV["PATH"]},
        )
    )
    lines = out.stdout.splitlines()
    assert "ONLY" in lines[0] and "HOME" not in lines[0]
    assert lines[1] == "True"


def test_the_child_runs_in_its_own_session():
    out = run(py("import os; print(os.getsid(0) == os.getpid())"))
    assert out.stdout.strip() == "True"


def test_stdout_and_stderr_are_read_together_without_deadlock():
    # 20 MiB on each stream, interleaved: a reader of one stream at a time would block.
    code = (
        "import sys\nfor _ in range(20*1024):\n"
        "    sys.stdout.write('o'*1023+'\\n'); sys.stderr.write('e'*1023+'\\n')"
    )
    out = run(py(code, timeout_s=60, max_output_bytes=1 << 20))
    assert out.exit_code == 0 and not out.timed_out
    assert out.stdout_bytes == out.stderr_bytes == 20 * 1024 * 1024


def test_huge_output_is_capped_keeping_its_start_and_end_without_growing_memory():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    code = (
        "import sys\nsys.stdout.write('START\\n')\nblock='x'*(1<<20)\n"
        "for _ in range(300): sys.stdout.write(block)\nsys.stdout.write('\\nEND\\n')"
    )
    out = run(py(code, timeout_s=120, max_output_bytes=64 * 1024))
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert out.stdout_truncated and out.stdout_bytes > 300 * (1 << 20)
    assert out.stdout.startswith("START") and out.stdout.endswith("END\n")
    assert "bytes of output dropped" in out.stdout
    assert len(out.stdout) < 70 * 1024
    assert grown_mb < 30, f"the test process grew by {grown_mb:.0f} MiB"


def test_capped_buffer_keeps_head_and_tail():
    buf = CappedBuffer(10)
    for chunk in (b"abc", b"defgh", b"ijklmnop", b"qrst"):
        buf.add(chunk)
    assert buf.total == 20 and buf.truncated
    text = buf.text()
    assert text.startswith("abcde") and text.endswith("pqrst")


def test_timeout_kills_a_tree_that_ignores_sigterm(tmp_path: Path):
    pids = tmp_path / "pids"
    code = (
        f"trap '' TERM; (trap '' TERM; sleep 1000 & echo $! >> {pids}; wait) & "
        f"echo $$ >> {pids}; wait"
    )
    t0 = time.monotonic()
    out = run(sh(code, timeout_s=1.0, kill_grace_s=0.5))
    elapsed = time.monotonic() - t0
    assert out.timed_out and out.exit_code == -9
    assert elapsed < 4, elapsed
    listed = [int(p) for p in pids.read_text().split()]
    assert len(listed) == 2
    time.sleep(0.2)
    assert not any(pid_alive(p) for p in listed), "a process of the tree survived"


def test_a_grandchild_that_left_the_group_with_setsid_is_killed_too(tmp_path: Path):
    pidfile = tmp_path / "pid"
    code = (
        f"setsid bash -c 'trap \"\" TERM; echo $$ > {pidfile}; exec sleep 1000' "
        "</dev/null >/dev/null 2>&1 & sleep 1000"
    )
    out = run(sh(code, timeout_s=1.5, kill_grace_s=0.5))
    assert out.timed_out
    time.sleep(0.2)
    assert not pid_alive(int(pidfile.read_text())), "the setsid escapee survived"


def test_processes_left_behind_at_exit_end_with_the_run(tmp_path: Path):
    pidfile = tmp_path / "pid"
    code = f"sleep 1000 >/dev/null 2>&1 & echo $! > {pidfile}; echo done"
    out = run(sh(code, timeout_s=30, kill_grace_s=0.5))
    assert out.exit_code == 0 and out.stdout == "done\n"
    assert not pid_alive(int(pidfile.read_text()))


def test_a_background_child_holding_stdout_does_not_hang_the_run():
    t0 = time.monotonic()
    out = run(sh("sleep 1000 & echo started", timeout_s=30, kill_grace_s=0.5))
    assert out.exit_code == 0 and out.stdout == "started\n"
    assert time.monotonic() - t0 < 5


def test_a_script_that_closes_stdout_early_is_still_timed_out():
    out = run(
        py(
            "import os,time; os.close(1); os.close(2); time.sleep(100)",
            timeout_s=1.0,
            kill_grace_s=0.5,
        )
    )
    assert out.timed_out


def test_poll_returning_true_cancels_the_run():
    calls = []

    def poll() -> bool:
        calls.append(time.monotonic())
        return len(calls) >= 2

    t0 = time.monotonic()
    out = run(sh("trap '' TERM; sleep 100", timeout_s=60, kill_grace_s=0.5), poll=poll)
    assert out.cancelled and not out.timed_out
    assert time.monotonic() - t0 < 5


def test_peak_memory_of_the_script_is_measured_not_the_parents():
    small = run(py("print(1)"))
    big = run(
        py(
            "b = bytearray(150 * 1024 * 1024)\nfor i in range(0, len(b), 4096): b[i] = 1\n"
            "import time; time.sleep(0.5)"
        )
    )
    assert small.peak_rss_mb is not None and small.peak_rss_mb < 60
    assert big.peak_rss_mb is not None and 150 <= big.peak_rss_mb < 250


def test_peak_memory_counts_the_children_of_the_script():
    code = (
        "import subprocess, sys\n"
        "subprocess.run([sys.executable, '-c', 'b = bytearray(120 * 1024 * 1024)\\n"
        "for i in range(0, len(b), 4096): b[i] = 1\\nimport time; time.sleep(0.6)'])"
    )
    out = run(py(code))
    assert out.peak_rss_mb is not None and out.peak_rss_mb >= 120


def test_cpu_time_is_measured():
    out = run(
        py("import time\nend = time.process_time() + 0.4\nwhile time.process_time() < end: pass")
    )
    assert out.cpu_user_s + out.cpu_system_s >= 0.35


def test_a_missing_interpreter_is_reported_not_raised():
    out = run(RunSpec(["/nonexistent/interpreter", "x"], env=dict(ENV)))
    assert out.exit_code is None and "FileNotFoundError" in (out.spawn_error or "")


def test_a_nul_in_the_environment_is_reported_not_raised():
    out = run(RunSpec([sys.executable, "-c", "pass"], env={**ENV, "PAGE_CONTEXT": "a\x00b"}))
    assert out.exit_code is None and "null byte" in (out.spawn_error or "")


def test_a_signal_death_is_reported_as_a_negative_exit_code():
    out = run(py("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"))
    assert out.exit_code == -11 and out.signal_name == "SIGSEGV"
