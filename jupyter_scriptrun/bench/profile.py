"""The benchmark's profile: py-spy samples of the client and the worker tree while runs
go, summed by who spends the CPU (``--profile DIR``).

py-spy samples only threads that are on the CPU (not waiting), so a component's samples
over the sampling rate, divided by the runs, estimate its CPU per run. The collapsed
stacks are kept in ``DIR`` (one line per stack and its count: open them with speedscope
or flamegraph.pl for the flame graph itself).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

RATE_HZ = 1000

# A stack's owner is its innermost frame from one of these (path fragment, component),
# tried in order; a stack with none of the product's frames goes by its innermost
# library frame (LIBRARIES).
PRODUCT = (
    ("jupyter_scriptrun/store/", "store (SQLAlchemy, SQLite/PostgreSQL)"),
    ("jupyter_scriptrun/fleet/notices.py", "completion notice (Redis backend)"),
    ("jupyter_scriptrun/execution/warm.py", "asking the warm parent for a child"),
    ("jupyter_scriptrun/execution/child.py", "run supervision (pipes, wait, limits)"),
    ("jupyter_scriptrun/execution/proc.py", "run supervision (pipes, wait, limits)"),
    ("jupyter_scriptrun/execution/", "attempt set-up (spec, lease, ledger, files)"),
    ("jupyter_scriptrun/service/", "client (submit, wait)"),
    ("jupyter_scriptrun/contract/", "scripts and their contract (registry, parameters)"),
    ("jupyter_scriptrun/fleet/", "task entry (tasks, consumer)"),
)
LIBRARIES = (
    ("sqlalchemy/", "store (SQLAlchemy, SQLite/PostgreSQL)"),
    ("celery/", "Celery and kombu (consumer, messages, results)"),
    ("kombu/", "Celery and kombu (consumer, messages, results)"),
    ("billiard/", "Celery and kombu (consumer, messages, results)"),
    ("redis/", "redis-py (broker and results I/O)"),
)
OTHER = "other (interpreter, threads, logging)"
# The warm parent's main loop, also at the root of its forked children's stacks (py-spy
# does not always name the process).
WARM_PARENT = (
    "serve (jupyter_scriptrun/execution/warm.py",
    "<module> (jupyter_scriptrun/execution/warm.py",
)
CHILD = ("prepare (", "become_script (")  # what only a forked child runs (forked.py)


def available() -> bool:
    """Whether py-spy is installed (``pip install py-spy``)."""
    return shutil.which("py-spy") is not None


class Profile:
    """py-spy recording ``pids`` (with their child processes) into ``folder``/``name``-*.txt
    until :meth:`stop`."""

    def __init__(self, folder: Path, name: str, pids: dict[str, tuple[int, bool]]) -> None:
        """``pids``: a name for each process, with its pid and whether its child processes
        are sampled too."""
        folder.mkdir(parents=True, exist_ok=True)
        self.files = {who: folder / f"{name}-{who}.txt" for who in pids}
        # --gil: only the thread holding the GIL is sampled, so a thread waiting in a
        # system call (which releases it) is not counted as working; py-spy's own idle
        # guess counted the workers' waits here. --nonblocking: no pause at each sample.
        flags = ["--gil", "--nonblocking", "--rate", str(RATE_HZ), "--format", "raw"]
        self._procs = [
            subprocess.Popen(
                ["py-spy", "record", "--pid", str(pid), *flags, "--output", str(self.files[who])]
                + (["--subprocesses"] if tree else []),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for who, (pid, tree) in pids.items()
        ]

    def stop(self) -> None:
        """Stop sampling; py-spy writes its file on SIGINT."""
        for proc in self._procs:
            proc.send_signal(signal.SIGINT)
        for proc in self._procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def summary(self, runs: int) -> dict[str, Any]:
        """CPU ms per run by component, per profiled process (see :func:`components`)."""
        out: dict[str, Any] = {"rate_hz": RATE_HZ, "runs": runs}
        for who, path in self.files.items():
            lines = path.read_text(errors="replace").splitlines() if path.exists() else []
            counts = components(lines)
            out[who] = {k: v / RATE_HZ / runs * 1000 for k, v in counts.most_common()}
        return out


def components(lines: Iterable[str]) -> Counter[str]:
    """Samples per component from py-spy's raw (collapsed) lines: ``frame;frame… count``."""
    counts: Counter[str] = Counter()
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue  # a process frame's command line can hold spaces: the count is last
        counts[owner(stack.split(";"))] += int(count)
    return counts


def owner(frames: list[str]) -> str:
    """The component a stack's CPU is charged to: in the warm parent's processes, the
    parent or a run's child; elsewhere its innermost product frame, else its innermost
    known library."""
    if any(frame.startswith(WARM_PARENT) for frame in frames):
        if any(frame.startswith(CHILD) for frame in frames):
            return "a run's child: set-up, the script, exit"
        return "warm parent: fork, hand-over, reap"
    for table in (PRODUCT, LIBRARIES):
        for frame in reversed(frames):
            for fragment, component in table:
                if fragment in frame:
                    return component
    return OTHER


def report(summary: dict[str, Any]) -> None:
    """Print CPU ms per run by component for each profiled process."""
    print(
        f"where the CPU goes, warm runs (py-spy at {summary['rate_hz']} Hz, on-CPU samples "
        f"only, {summary['runs']} runs; ms of CPU per run):"
    )
    for who, parts in summary.items():
        if not isinstance(parts, dict):
            continue
        total = sum(parts.values())
        print(f"  {who}: {total:.2f} ms")
        for component, ms in parts.items():
            print(f"    {ms:6.2f}  {component}")
