"""A per-host ledger of the sessions that running scripts lead, so that nothing a script
started outlives a worker killed with SIGKILL.

Every script runs in a session of its own (its pid is the session id). The parent-death
signal ends the script itself with its worker, but not the children it started. So the
worker writes one small file per running script (session id, owner pid, start times) in
a folder shared by the workers of a host, and removes it when the run's tree is gone.
Any worker on the host, and a restarted one at start, sweeps that folder: an entry whose
owner is dead names a session whose remaining processes are killed. Start times guard
against reused pids. A process that left the session (``setsid`` of its own) escapes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

from jupyter_scriptrun.execution import proc

log = logging.getLogger(__name__)

START_SLACK_S = 2.0
"""How much earlier than its entry a run's session is taken to have started."""


class Ledger:
    """The folder of running scripts' sessions on this host."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self._owner: tuple[int, Any] | None = None  # (pid, start time) of the writer

    def add(self, sid: int, execution_id: str, attempt: int) -> None:
        """Record that this process supervises the session ``sid`` of a run (just
        started: its processes all start after this call, less ``START_SLACK_S``)."""
        owner = os.getpid()
        if self._owner is None or self._owner[0] != owner:  # once per process (and fork)
            self._owner = (owner, proc.identity(owner))
            self.dir.mkdir(parents=True, exist_ok=True)
        entry = {
            "sid": sid,
            # A lower bound of the session's start times, not the leader's own: reading
            # it from /proc blocks while the new process is still in exec (about 1 ms
            # per run). psutil's start times are whole clock ticks after a boot time in
            # whole seconds, hence the slack; a pid cannot come round again within it.
            "sid_started": time.time() - START_SLACK_S,
            "owner": owner,
            "owner_started": self._owner[1],
            "execution_id": execution_id,
            "attempt": attempt,
        }
        # One write of a few hundred bytes, no temporary file and rename: a sweep that
        # met a half-written entry skips it (unparseable), and its owner is alive anyway.
        path = self.dir / f"{sid}.json"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        except FileNotFoundError:  # the folder was removed since
            self.dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, json.dumps(entry).encode())
        finally:
            os.close(fd)

    def remove(self, sid: int) -> None:
        """The session's tree is gone: forget it."""
        with contextlib.suppress(FileNotFoundError):
            (self.dir / f"{sid}.json").unlink()

    def sweep(self) -> list[dict[str, Any]]:
        """Kill what is left of sessions whose supervising process died; return those
        entries (each with ``killed``, the pids signalled)."""
        swept: list[dict[str, Any]] = []
        try:
            names = [n for n in os.listdir(self.dir) if n.endswith(".json")]
        except FileNotFoundError:
            return swept
        for name in names:
            path = self.dir / name
            try:
                entry = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # removed meanwhile, or not ours
            # Entries of older versions held start times in clock ticks ("*_start"):
            # without a comparable time, only a dead owner counts.
            if _alive(entry.get("owner"), entry.get("owner_started")):
                continue
            entry["killed"] = kill_session(int(entry["sid"]), entry.get("sid_started"))
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            swept.append(entry)
            if entry["killed"]:
                log.warning(
                    "execution %s attempt %s: its worker (pid %s) died; killed %d process(es) "
                    "its script left behind (session %s)",
                    entry.get("execution_id"),
                    entry.get("attempt"),
                    entry.get("owner"),
                    len(entry["killed"]),
                    entry["sid"],
                )
        return swept


def kill_session(sid: int, started: proc.Identity | None) -> list[int]:
    """SIGKILL every process in session ``sid`` that started no earlier than ``started``
    (the session leader's start time); the pids signalled."""
    killed = []
    for pid, start in proc.session_members(sid):
        if pid == os.getpid() or (started is not None and start < started):
            continue  # older than the session's leader: not the run's (pid reuse)
        if proc.send(pid, start, signal.SIGKILL):
            killed.append(pid)
    return killed


def _alive(pid: object, started: object) -> bool:
    if not isinstance(pid, int):
        return False
    return proc.alive(pid, started if isinstance(started, float) else None)
