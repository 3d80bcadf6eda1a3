"""A run's escaped descendants: the supervising process is a child subreaper, so a daemon
that double-forks and calls ``setsid`` is reparented to it, not to PID 1, and is found and
ended with its run.

Without it such a daemon left the run's process group and session and was never seen
again: the run ``succeeded`` while the daemon lived on. With ``PR_SET_CHILD_SUBREAPER``
(Linux 3.4+) every orphan of a run's tree becomes a child of the process that supervises
it: the worker (fresh runs) or the warm parent (warm runs). When the run's own process
exits, its left-overs are its process group, plus those adopted children that carry its
``EXECUTION_ID`` (or, as zombies that can no longer be read, its session) and everything
under them. Adopted zombies are collected here after each run (the warm parent collects
its own), never a child the process started itself, whose exit status belongs to its owner.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator

from jupyter_scriptrun.execution import proc

PR_SET_CHILD_SUBREAPER = 36
_became_in: dict[int, bool] = {}
"""Whether this process (by pid: the flag is not inherited by a fork) is a subreaper."""
_own: set[int] = set()
"""Children this process started itself (runs, the warm parent): their exits are their
owners' to collect, never the zombie sweep's."""
_lock = threading.Lock()


def become() -> bool:
    """Make this process a child subreaper (once per process); whether it is. Only a
    worker process calls it: the process then owns whatever orphans come to it."""
    pid = os.getpid()
    if pid not in _became_in:
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            _became_in[pid] = libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
        except (OSError, AttributeError):  # not Linux, or no prctl
            _became_in[pid] = False
    return _became_in[pid]


def active() -> bool:
    """Whether this process is a subreaper (``become`` was called here)."""
    return _became_in.get(os.getpid(), False)


@contextlib.contextmanager
def starting() -> Iterator[Callable[[int], None]]:
    """Around starting a child of this process's own: call the function given with its
    pid. The zombie sweep waits meanwhile, so it never takes a child not yet marked."""
    with _lock:
        yield _own.add


def ended(pid: int) -> None:
    """The owner of ``pid`` collected its exit."""
    _own.discard(pid)


def collect_zombies() -> None:
    """Collect the exits of adopted orphans (a daemon's intermediate parent, a run's
    processes after they were ended): zombies among this subreaper's children that it
    did not start itself. Cheap: the kernel's list of this process's children."""
    if not active():
        return
    with _lock:
        for pid in _adopted_by(os.getpid()):
            if pid in _own:
                continue
            stat = _stat(pid)
            if stat is not None and stat[0] == "Z":
                with contextlib.suppress(ChildProcessError, OSError):
                    os.waitpid(pid, os.WNOHANG)


def _adopted_by(pid: int) -> list[int]:
    """Children of ``pid``'s main thread: where the kernel puts the orphans a subreaper
    adopts (the first live thread of the group). Children that ``pid``'s other threads
    started are not read: one small file instead of one per thread (0.4 ms a run for a
    worker's 20 threads)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children", "rb") as f:
            return [int(c) for c in f.read().split()]
    except (OSError, ValueError):
        return []


def _stat(pid: int) -> tuple[str, int] | None:
    """``(state, session id)`` of ``pid`` (readable for a zombie too), or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rpartition(b")")[2].split()
        return fields[0].decode(), int(fields[4])
    except (OSError, ValueError, IndexError):
        return None


def _run_ids(pid: int) -> set[str]:
    """The run ids ``pid``'s environment block names: its ``EXECUTION_ID`` (a fresh run's
    processes), or the warm run tag (execution/warm.py)."""
    found = set()
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            for entry in f.read().split(b"\0"):
                for name in (b"EXECUTION_ID=", b"SCRIPTRUN_RUN_TAG="):
                    if entry.startswith(name):
                        found.add(entry[len(name) :].decode(errors="replace"))
    except OSError:
        pass
    return found


def adopted(adopter: int | None, run_sid: int, execution_id: str | None) -> list[int]:
    """Children of ``adopter`` (the subreaper supervising the run, if any) that came from
    the run whose session was ``run_sid``: by its ``EXECUTION_ID`` (a daemon in a session
    of its own) or, for a zombie, by that session; with every descendant of the living
    ones."""
    if adopter is None:
        return []
    found: list[int] = []
    for pid in _adopted_by(adopter):
        stat = _stat(pid)
        if stat is None:
            continue
        state, sid = stat
        if sid == run_sid or (state != "Z" and execution_id and execution_id in _run_ids(pid)):
            found.append(pid)
    seen, todo = set(found), list(found)
    while todo and len(found) < 10_000:
        for child in proc.children(todo.pop()):
            if child not in seen:
                seen.add(child)
                found.append(child)
                todo.append(child)
    return found
