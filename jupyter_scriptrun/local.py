"""The embedded default's local worker: started on first use, stopped when idle."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from .config import Settings
from .exceptions import WorkerUnavailable

log = logging.getLogger(__name__)


def worker_argv(
    queues: str,
    *,
    loglevel: str = "INFO",
    concurrency: int | None = None,
    pool: str | None = None,
    hostname: str | None = None,
    extra: tuple[str, ...] | list[str] = (),
    app: str = "jupyter_scriptrun.worker",
) -> list[str]:
    """The command line of a worker process (plain ``celery worker`` on our app, or on
    ``app``)."""
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        app,
        "worker",
        f"--loglevel={loglevel}",
        f"--queues={queues}",
    ]
    if concurrency:
        argv.append(f"--concurrency={concurrency}")
    if pool:
        argv.append(f"--pool={pool}")
    if hostname:
        argv.append(f"--hostname={hostname}")
    return [*argv, *extra]


class LocalWorker:
    """One Celery worker per data directory, shared by every kernel and CLI that uses it.

    A pid file and a lock in the data directory make sure concurrent clients start one
    worker, not several. The worker exits by itself after ``local_idle_timeout_s`` with
    nothing to do; the next submission starts it again.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.data_dir
        self.pidfile = self.dir / "worker.pid"
        self.logfile = self.dir / "worker.log"
        self.lockfile = self.dir / "worker.lock"

    def pid(self) -> int | None:
        """The running local worker's pid, or None."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        if b"jupyter_scriptrun.worker" not in cmdline:
            return None  # the pid was reused by something else
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    return None
        except OSError:
            return None
        return pid

    def ensure(self) -> int:
        """Start the local worker unless it runs; return its pid."""
        pid = self.pid()
        if pid is not None:
            return pid
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.lockfile, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            pid = self.pid()
            if pid is None:
                pid = self._spawn()
        return pid

    def _spawn(self) -> int:
        env = {**os.environ, **self.settings.to_env()}
        env["SCRIPTRUN_WORKER_IDLE_EXIT"] = str(self.settings.local_idle_timeout_s)
        cmd = worker_argv(
            self.settings.queue,
            hostname=f"local-{os.getpid()}@%h",
            extra=("--without-mingle", "--without-gossip"),
        )
        with open(self.logfile, "ab") as log_out:
            proc = subprocess.Popen(
                cmd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        self.pidfile.write_text(str(proc.pid))
        # Reap it when it exits, so no zombie stays behind in this (long-lived) process.
        threading.Thread(target=proc.wait, name="scriptrun-local-reaper", daemon=True).start()
        log.info("started the local worker (pid %s, log %s)", proc.pid, self.logfile)
        time.sleep(0.05)
        if proc.poll() is not None:
            raise WorkerUnavailable(
                f"the local worker exited at once (code {proc.returncode}); see {self.logfile}"
            )
        return proc.pid

    def check(self) -> None:
        """Raise WorkerUnavailable with the log's tail if the local worker died."""
        if self.pid() is None:
            tail = ""
            with contextlib.suppress(OSError):
                tail = "\n".join(self.logfile.read_text(errors="replace").splitlines()[-15:])
            raise WorkerUnavailable(f"the local worker is not running; log {self.logfile}:\n{tail}")

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the local worker (warm shutdown: running scripts finish first)."""
        pid = self.pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid() is None:
                return True
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
        return True
