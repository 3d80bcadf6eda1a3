"""Same-host wake-ups: a datagram that tells a process waiting on something to look now.

Linux's abstract socket namespace gives each thing waited on (a queue folder, a run) an
address with no file to create or clean up. A wake-up carries no data and is only a
hint: the one woken reads the truth (the folder, the store) itself, and a wake-up that
could not be sent or received costs the waiter one polling interval, nothing more.
Elsewhere than Linux there are no wake-ups and waiters just poll.
"""

from __future__ import annotations

import contextlib
import hashlib
import select
import socket
import sys
import threading
import time

PREFIX = "scriptrun-wake"
_sender: socket.socket | None = None
_sender_lock = threading.Lock()


def address(name: str) -> str | None:
    """The abstract address for ``name`` (None where there are none)."""
    if not sys.platform.startswith("linux"):
        return None
    digest = hashlib.sha256(name.encode()).hexdigest()[:32]
    return f"\0{PREFIX}-{digest}"


def run_name(execution_id: str) -> str:
    """What a run's waiters listen on: the worker rings it when the run's end is recorded."""
    return f"run:{execution_id}"


def ring(name: str) -> None:
    """Wake whoever listens on ``name``; nobody listening is fine."""
    target = address(name)
    if target is None:
        return
    global _sender
    if _sender is None:  # one unbound socket for the process: sendto is thread-safe
        with _sender_lock:
            if _sender is None:
                fresh = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                fresh.setblocking(False)
                _sender = fresh
    sock = _sender
    # Nobody listens (refused), or the listener's buffer is full (then it is awake).
    with contextlib.suppress(OSError):
        sock.sendto(b"!", target)


class Listener:
    """Listens on ``name``: ``wait`` sleeps until woken or the time is up (``None``: a
    listener that only sleeps)."""

    def __init__(self, name: str | None) -> None:
        self.sock: socket.socket | None = None
        target = None if name is None else address(name)
        if target is None:
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(target)
        except OSError:  # another process listens on it: this one polls only
            sock.close()
            return
        sock.setblocking(False)
        self.sock = sock

    @property
    def listening(self) -> bool:
        """Whether wake-ups reach this listener (else ``wait`` just sleeps)."""
        return self.sock is not None

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True if woken (the wake-ups are consumed)."""
        if self.sock is None:
            time.sleep(seconds)
            return False
        ready, _, _ = select.select([self.sock], [], [], seconds)
        woken = bool(ready)
        while ready:
            try:
                self.sock.recv(64)
            except BlockingIOError:
                break
        return woken

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
