"""Processes on this host: identity against pid reuse, trees, sessions, peak memory.

psutil does the reading and the signalling: a :class:`psutil.Process` remembers its
start time, so a signal never reaches a process that took over a reused pid. Two reads
psutil has no call for are here too: a process's direct children from
``/proc/PID/task/*/children`` (psutil's ``children()`` scans every process of the host,
which a run's supervisor does up to a hundred times a minute), and the memory high-water
mark ``VmHWM``, which psutil does not expose.
"""

from __future__ import annotations

import contextlib
import os
import signal

import psutil

Identity = float
"""A process's start time as psutil gives it (seconds since the epoch): with the pid,
what tells a process from a later one that reuses its pid."""


def identity(pid: int) -> Identity | None:
    """``pid``'s start time, or None when no such process runs."""
    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, ValueError):
        return None


def alive(pid: int, started: Identity | None = None) -> bool:
    """Whether ``pid`` runs (and is not a zombie), and is the process that started at
    ``started`` when that is given."""
    try:
        proc = psutil.Process(pid)
        if started is not None and proc.create_time() != started:
            return False
        return proc.status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except (psutil.Error, ValueError):
        return False


def send(pid: int, started: Identity | None, sig: int) -> bool:
    """Signal ``pid`` if it is still the process that started at ``started``; whether
    the signal was sent."""
    try:
        proc = psutil.Process(pid)
        if started is not None and proc.create_time() != started:
            return False
        proc.send_signal(sig)
        return True
    except (psutil.Error, ValueError):
        return False


def children(pid: int) -> list[int]:
    """``pid``'s direct children (the kernel's list per thread: cheap, no host scan)."""
    out: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                out.extend(int(c) for c in f.read().split())
        except (OSError, ValueError):
            continue
    return out


def vm_hwm_kb(pid: int, unless_named: bytes | None = None) -> int | None:
    """``pid``'s memory high-water mark (VmHWM, KiB), or None when it is gone (or, with
    ``unless_named``, while that program is what it runs)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if unless_named is not None and line == b"Name:\t" + unless_named + b"\n":
                    return None
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


LOADED_AFTER_NS = 500_000
"""CPU time after which an exec'd program has loaded its libraries. Before it, its memory
mark is the loader's few hundred KiB: on a busy machine a short script can be sampled
twice in that state (seen in CI: 0.46 MiB for ``echo hi``)."""


def past_its_loader(pid: int) -> bool:
    """Whether a memory sample of ``pid`` can speak for its program: it has run long enough
    to have loaded it (True where the kernel keeps no schedstat)."""
    try:
        with open(f"/proc/{pid}/schedstat", "rb") as f:  # nanoseconds on a CPU, first
            return int(f.read().split()[0]) >= LOADED_AFTER_NS
    except (OSError, ValueError, IndexError):
        return True


def group_members(pgid: int) -> list[int]:
    """Pids whose process group is ``pgid`` (a scan of the host: only for rare cases)."""
    return [pid for pid, _ in _members(os.getpgid, pgid)]


def session_members(sid: int) -> list[tuple[int, Identity]]:
    """Processes in session ``sid``, with their start times (a scan of the host)."""
    return _members(os.getsid, sid)


def _members(which: object, value: int) -> list[tuple[int, Identity]]:
    members = []
    for proc in psutil.process_iter(["create_time"]):
        try:
            if which(proc.pid) == value:  # type: ignore[operator]
                members.append((proc.pid, proc.info["create_time"]))
        except (OSError, psutil.Error):
            continue  # gone meanwhile
    return members


def group_alive(pgid: int) -> bool:
    """Whether any process of group ``pgid`` runs."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def killpg(pgid: int, sig: int = signal.SIGKILL) -> None:
    """Signal a process group; a group that is gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
