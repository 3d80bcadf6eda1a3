"""The benchmark's own broker: a private ``redis-server`` on a free loopback port, so that a
benchmark touches no server somebody else runs."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from pathlib import Path

from jupyter_scriptrun.exceptions import WorkerUnavailable


class PrivateRedis:
    """``redis-server`` in ``folder`` on a free port of 127.0.0.1, without persistence;
    :meth:`stop` ends it (by its pid)."""

    def __init__(self, folder: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise WorkerUnavailable(
                "the benchmark starts a private redis-server by default, and none is "
                "installed (Debian: apt install redis-server); or pass --broker URL"
            )
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        folder.mkdir(parents=True, exist_ok=True)
        argv = [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", ""]
        argv += ["--appendonly", "no", "--dir", str(folder), "--daemonize", "no"]
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
        )
        self._wait_ready()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn,
            ):
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.05)
        self.stop()
        raise WorkerUnavailable(
            f"the benchmark's private redis-server did not start on {self.port}"
        )

    def stop(self) -> None:
        """End the server and reap it."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def check_broker(url: str) -> None:
    """Fail at once, in one line, when the benchmark's broker cannot be reached."""
    from kombu import Connection
    from kombu.utils.url import maybe_sanitize_url

    from jupyter_scriptrun.service.unreachable import broker_reason

    try:
        with Connection(url, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:
        raise WorkerUnavailable(
            f"the benchmark's broker {maybe_sanitize_url(url)} is unreachable "
            f"({broker_reason(exc)}); start it or pass --broker URL"
        ) from None
