"""The embedded default's local worker: started on first use, stopped when idle."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from jupyter_scriptrun._version import __version__
from jupyter_scriptrun.config import PACKAGE_DIR, Settings
from jupyter_scriptrun.exceptions import WorkerUnavailable

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


@functools.cache
def _code_stamp() -> str:
    """The installed package's version and its files' sizes and times: a local worker
    started before the code changed (an upgrade, an edit in a source checkout) differs.
    The interpreter counts as its environment and its real file: a kernel's
    ``venv/bin/python`` and the CLI's ``venv/bin/python3`` share one worker."""
    parts = [__version__, sys.prefix, os.path.realpath(sys.executable)]
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        st = path.stat()
        parts.append(f"{path.relative_to(PACKAGE_DIR)}:{st.st_size}:{st.st_mtime_ns}")
    return "\n".join(parts)


def local_fingerprint(settings: Settings) -> str:
    """Twelve hex characters naming a local worker's configuration and code.

    The embedded default's client and its local worker must agree on every setting (the
    scripts' folders, limits, the runner) and run the same code: a client whose settings
    differ uses a local worker (and an embedded broker folder) of its own, so its runs can
    never be taken by a worker that would run them differently.
    """
    # What the worker reads, less the idle exit its launcher adds: that changes when the
    # worker exits, not how it runs anything.
    seen = Settings.from_env(settings.to_env()).with_(worker_idle_exit_s=None).to_env()
    text = "\n".join(f"{k}={v}" for k, v in sorted(seen.items())) + "\n" + _code_stamp()
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]


class LocalWorker:
    """One Celery worker per data directory and configuration, shared by every kernel
    and CLI that uses that configuration.

    A pid file and a lock make sure concurrent clients start one worker, not several. The
    worker exits by itself after ``local_idle_timeout_s`` with nothing to do; the next
    submission starts it again. A client with other settings or newer code gets a worker
    of its own (see :func:`local_fingerprint`); the old one finishes its runs and idles out.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.fingerprint = local_fingerprint(settings)
        self.dir = settings.data_dir / "local" / self.fingerprint
        self.pidfile = self.dir / "worker.pid"
        self.logfile = self.dir / "worker.log"
        self.lockfile = self.dir / "worker.lock"

    @staticmethod
    def all_pids(data_dir: Path) -> dict[Path, int]:
        """Every running local worker under ``data_dir``: its folder and pid."""
        found = {}
        for pidfile in sorted((data_dir / "local").glob("*/worker.pid")):
            pid = _local_worker_pid(pidfile)
            if pid is not None:
                found[pidfile.parent] = pid
        return found

    def pid(self) -> int | None:
        """The running local worker's pid, or None."""
        return _local_worker_pid(self.pidfile)

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
        idle_exit = self.settings.with_(worker_idle_exit_s=self.settings.local_idle_timeout_s)
        env = {**os.environ, **idle_exit.to_env()}
        # ``python -m celery`` puts its working directory first on sys.path: started from
        # a source checkout, the worker would import the checkout's package instead of the
        # installed one this client runs, compute another fingerprint, and listen on
        # another folder (runs then waited for the reaper, 30 s). So it starts in its own
        # folder; a client running from a checkout without an install passes it on.
        if PACKAGE_DIR.parent == Path.cwd().resolve():
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(PACKAGE_DIR.parent), os.environ.get("PYTHONPATH")) if p
            )
        cmd = worker_argv(
            self.settings.queue,
            hostname=f"local-{os.getpid()}@%h",
            extra=("--without-mingle", "--without-gossip"),
        )
        with open(self.logfile, "ab") as log_out:
            proc = subprocess.Popen(
                cmd,
                env=env,
                cwd=self.dir,
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
        stop_pid(pid, self.pidfile, timeout)
        return True

    @classmethod
    def stop_all(cls, data_dir: Path, timeout: float = 30.0) -> int:
        """Stop every local worker under ``data_dir`` (of any configuration); how many."""
        found = cls.all_pids(data_dir)
        for folder, pid in found.items():
            stop_pid(pid, folder / "worker.pid", timeout)
        return len(found)


def stop_pid(pid: int, pidfile: Path, timeout: float) -> None:
    """SIGTERM a local worker (warm shutdown), SIGKILL it after ``timeout`` seconds."""
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _local_worker_pid(pidfile) is None:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


def _local_worker_pid(pidfile: Path) -> int | None:
    """The pid in ``pidfile`` when it is a live local worker (not a reused pid)."""
    try:
        pid = int(pidfile.read_text().strip())
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        if not any("jupyter_scriptrun.worker" in part for part in proc.cmdline()):
            return None  # the pid was reused by something else
    except (OSError, ValueError, psutil.Error):
        return None
    return pid
