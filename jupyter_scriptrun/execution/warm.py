"""The warm runner: a pre-warmed Python parent that forks a fresh child per run.

A fresh interpreter costs tens of milliseconds before the script's first line (and
hundreds more for ``import pandas``). The warm parent pays that once: it imports the
configured modules, then for each run forks a child that becomes the script — its own
session and process group, its own environment, stdin from /dev/null, stdout/stderr to the
worker's pipes, the script run as ``__main__`` — and exits when the script does. Nothing a
script does reaches the parent or the next run: each child is a copy that ends.

The worker talks to the parent over a Unix socket, one connection per run: it sends the
request and the two pipe ends (SCM_RIGHTS), and receives ``{"pid"}`` then, at the end,
``{"exit", "utime", "stime", "maxrss"}`` (the parent is the one that can ``wait4``).

Run as ``python -m jupyter_scriptrun.execution.warm SOCKET`` (the worker starts it).
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass
from typing import Any

from jupyter_scriptrun.execution import forked, runtag
from jupyter_scriptrun.execution.runtag import PLACEHOLDER, RUN_TAG_ENV

HEADER = struct.Struct("!I")
SPARE_AFTER_S = 0.002
"""How long the parent, with no run going, waits for a request before forking a spare."""
SPARE_HEADER = struct.Struct("!II")
"""A request's size and its compiled script's size, as a spare child receives them."""
MAX_REQUEST = 16 * 1024 * 1024
PRELOAD_ENV = "SCRIPTRUN_WARM_PRELOAD"
ALWAYS_PRELOAD = (
    "collections",
    "csv",
    "datetime",
    "json",
    "math",
    "pathlib",
    "random",
    "re",
    "subprocess",
    "tempfile",
    "typing",
)
"""Standard modules nearly every script imports: cheap to hold, milliseconds per run saved."""
FIRST_USE = {
    # pandas imports and caches more on its first frame (pyarrow's compatibility layer,
    # formatters): 12 ms per child after a bare import, 0.8 ms once the parent made one.
    "pandas": "import pandas as pd\n"
    "f = pd.DataFrame({'n': [1, 2]})\n"
    "f['n'].sum(); f.to_json(); str(f); f.describe()\n",
}
"""What the warm parent runs once after preloading a module, so that the module's
first-use work is done before the fork, not in every child."""


# -- the parent (a separate, single-threaded process) -------------------------------


def _warm_up() -> None:
    """Import the preloaded modules and do their first-use work; be the subreaper of
    the runs' daemons."""
    import importlib

    configured = (m.strip() for m in os.environ.get(PRELOAD_ENV, "").split(","))
    for name in (*ALWAYS_PRELOAD, *filter(None, configured)):
        try:
            importlib.import_module(name)
            if name in FIRST_USE:
                exec(FIRST_USE[name], {})
        except Exception as exc:  # a missing module must not stop the runner
            print(f"scriptrun warm: cannot preload {name!r}: {exc}", file=sys.stderr)
    # Import what every child needs now, so children share these pages.
    import io  # noqa: F401
    import threading  # noqa: F401
    import traceback  # noqa: F401
    import types  # noqa: F401

    # ctypes and libffi loaded once, not in every child (~1.5 ms)
    forked.prctl_fn = forked.libc_prctl()
    runtag.find()
    if forked.prctl_fn is not None:
        # A run's daemons (double fork, setsid) come back here, not to PID 1: the
        # worker's supervisor finds and ends them with the run, and _reap collects them.
        PR_SET_CHILD_SUBREAPER = 36
        with contextlib.suppress(Exception):
            forked.prctl_fn(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def serve(path: str) -> None:
    """Preload, listen on ``path``, fork a child per request; exit with the worker."""
    import gc

    _warm_up()
    gc.collect()
    gc.freeze()  # keep preloaded objects out of the collector: fewer copied pages per child

    owner = os.getppid()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # The worker connects as soon as the path exists: bind elsewhere and rename once
    # listening, or a connect between bind and listen is refused (a SpawnError).
    staging = f"{path}.{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(staging)
    listener.bind(staging)
    listener.listen(128)
    os.rename(staging, path)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    sel.register(wake_r, selectors.EVENT_READ)
    children: dict[int, socket.socket] = {}

    retry_at = 0.0

    def ahead() -> _Spare | None:
        """The next run's child, forked before its run comes (None: fork it then; after a
        failed fork, say a process limit, none is tried for a second)."""
        nonlocal retry_at
        try:
            return _fork_spare(listener, wake_r, wake_w, *children.values(), *_hwm.values())
        except OSError:
            retry_at = time.monotonic() + 1.0
            return None

    spare = ahead()
    try:
        while os.getppid() == owner:
            # Without a spare and with no run going, a moment's quiet is the time to fork.
            idle = spare is None and not children and time.monotonic() >= retry_at
            ready = sel.select(SPARE_AFTER_S if idle else 1.0)
            if not ready and idle:
                spare = ahead()
            for key, _ in ready:
                if key.fileobj is listener:
                    conn, _ = listener.accept()
                    inherited = (listener, wake_r, wake_w, conn, *children.values())
                    pid = _start(conn, spare, *inherited, *_hwm.values())
                    spare = None
                    if pid is not None:
                        children[pid] = conn
                    # No fork now: it would compete with this run's start for the CPU.
                else:
                    with contextlib.suppress(BlockingIOError):
                        while os.read(wake_r, 4096):
                            pass
            if _reap(children) and spare is None and time.monotonic() >= retry_at:
                spare = ahead()  # a run just ended: fork while the worker records it
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _reap(children: dict[int, socket.socket]) -> int:
    """Report each run's end to its connection; collect adopted orphans' exits too. How
    many runs' ends were reported."""
    reported = 0
    while True:
        try:
            pid, status, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return reported
        if pid == 0:
            return reported
        conn = children.pop(pid, None)
        if conn is None:
            continue
        reported += 1
        report = {
            "exit": status,
            "utime": usage.ru_utime,
            "stime": usage.ru_stime,
            "maxrss": usage.ru_maxrss,
            "hwm": _read_hwm(_hwm.pop(pid)),
        }
        with contextlib.suppress(OSError):
            conn.sendall(json.dumps(report).encode() + b"\n")
        conn.close()


_hwm: dict[int, int] = {}
"""Per child, the pipe on which it says its memory high-water mark as it exits: its only
measure if it ends before the worker looks (a forked child's ru_maxrss is the parent's)."""


def _read_hwm(fd: int) -> int | None:
    try:
        return int(os.read(fd, 64) or b"0") or None
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)


def _say_hwm(fd: int) -> None:
    """The child's VmHWM (KiB), written as it exits."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmHWM:"):
                os.write(fd, line.split()[1])
                break


@dataclass
class _Spare:
    """A child forked ahead of its run, waiting on its socket for the run's request: the
    fork and the first copy-on-write page faults are paid between runs, not in one."""

    pid: int
    sock: socket.socket
    """The parent's end of the socket pair the request goes down."""
    hwm_r: int


def _fork_spare(*inherited: Any) -> _Spare:
    """Fork a child that prepares itself, then waits for a request (see _hand)."""
    parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    hwm_r, hwm_w = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        for fd in (hwm_r, hwm_w):
            os.close(fd)
        parent_end.close()
        child_end.close()
        raise
    if pid == 0:
        code = 70
        try:
            parent_end.close()
            os.close(hwm_r)
            forked.prepare(inherited)
            request, fds, compiled = _receive(child_end)  # EOF: the parent let it go
            child_end.close()
            code = forked.become_script(request, fds, compiled)
        finally:
            _say_hwm(hwm_w)
            os._exit(code)
    child_end.close()
    os.close(hwm_w)
    return _Spare(pid, parent_end, hwm_r)


def _hand(spare: _Spare, data: bytes, fds: list[int], compiled: bytes | None) -> None:
    """Send the request, its descriptors and the compiled script to a waiting child."""
    blob = compiled or b""
    socket.send_fds(spare.sock, [SPARE_HEADER.pack(len(data), len(blob))], fds)
    spare.sock.sendall(data + blob)
    spare.sock.close()


def _receive(sock: socket.socket) -> tuple[dict[str, Any], list[int], bytes | None]:
    """In a spare: the request, its descriptors and the compiled script (_hand's)."""
    head, fds, _, _ = socket.recv_fds(sock, SPARE_HEADER.size, 3)
    if len(head) != SPARE_HEADER.size:
        raise EOFError("no request")
    size, code_size = SPARE_HEADER.unpack(head)
    data = bytearray()
    while len(data) < size + code_size:
        chunk = sock.recv(size + code_size - len(data))
        if not chunk:
            raise EOFError("request cut short")
        data += chunk
    return json.loads(data[:size]), fds, bytes(data[size:]) or None


def _start(conn: socket.socket, spare: _Spare | None, *inherited: Any) -> int | None:
    """Read one request and give it to the spare (or a child forked now); the child's
    pid, or None (and the connection closed) on error."""
    fds: list[int] = []
    try:
        conn.settimeout(10)
        head, fds, _, _ = socket.recv_fds(conn, HEADER.size, 3)
        if len(head) != HEADER.size or len(fds) not in (2, 3):
            raise ValueError("malformed request header")
        (size,) = HEADER.unpack(head)
        if size > MAX_REQUEST:
            raise ValueError("request too large")
        data = bytearray()
        while len(data) < size:
            chunk = conn.recv(size - len(data))
            if not chunk:
                raise ValueError("request cut short")
            data += chunk
        argv = json.loads(data)["argv"]  # checked here: a bad request is the worker's error
        compiled = forked.compile_once(argv[1])  # in the parent: children share the cache
        try:
            if spare is None:
                raise OSError("no spare")
            _hand(spare, bytes(data), fds, compiled)
        except OSError:  # none, or it died waiting: a child forked now takes the run
            if spare is not None:
                spare.sock.close()
                os.close(spare.hwm_r)
            spare = _fork_spare(*inherited)
            _hand(spare, bytes(data), fds, compiled)
        _hwm[spare.pid] = spare.hwm_r
        conn.sendall(json.dumps({"pid": spare.pid}).encode() + b"\n")
        return spare.pid
    except Exception as exc:
        with contextlib.suppress(OSError):
            conn.sendall(json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode() + b"\n")
        conn.close()
        return None
    finally:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)


# -- the worker's side --------------------------------------------------------------


class WarmParent:
    """The worker's handle on its warm parent: started on first use, restarted if it died.

    Args:
        preload: modules the parent imports once (e.g. ``("pandas", "numpy")``).
        env: the parent's own environment; only allowlisted variables, since a forked
            child could read the parent's initial environment in /proc/self/environ.
    """

    def __init__(self, preload: tuple[str, ...], env: dict[str, str]) -> None:
        import tempfile
        import threading

        self.preload = preload
        self.env = {**env, PRELOAD_ENV: ",".join(preload), RUN_TAG_ENV: PLACEHOLDER}
        self.dir = tempfile.mkdtemp(prefix="scriptrun-warm-")
        self.path = os.path.join(self.dir, "parent.sock")
        self.proc: Any = None
        self._lock = threading.Lock()

    def ensure(self, timeout: float = 120.0) -> None:
        """Start the parent unless it runs, and wait until it listens."""
        import subprocess
        import time

        with self._lock:
            if self.proc is not None and self.proc.poll() is None:
                return
            if self.proc is not None:
                print(
                    f"scriptrun warm: parent {self.proc.pid} ended ({self.proc.returncode}); "
                    "starting a new one",
                    file=sys.stderr,
                )
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            # Its own messages (a module that failed to preload) go to the worker's log.
            from jupyter_scriptrun.execution import subreaper  # psutil: not in the parent

            with subreaper.starting() as mine:  # its exit is ours to read, not the sweep's
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "jupyter_scriptrun.execution.warm", self.path],
                    env=self.env,
                    cwd=self.dir,
                    stdin=subprocess.DEVNULL,
                    close_fds=True,
                )
                mine(self.proc.pid)
            deadline = time.monotonic() + timeout
            while not os.path.exists(self.path):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise OSError("the warm parent did not start (see the worker's log)")
                time.sleep(0.01)

    @property
    def pid(self) -> int | None:
        """The parent's pid while it runs."""
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def spawn(
        self,
        argv: list[str],
        env: dict[str, str],
        cwd: str | None,
        memory_limit_mb: float | None = None,
        channel_env: str | None = None,
    ) -> WarmChild:
        """Fork a child running ``argv`` (``[python, script, *args]``); raises OSError.
        With ``channel_env``, the child gets a side channel (see ``runner.RunSpec``)."""
        self.ensure()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        channel_r, channel_w = os.pipe() if channel_env else (None, None)
        writers = [fd for fd in (out_w, err_w, channel_w) if fd is not None]
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.settimeout(30)
            conn.connect(self.path)
            request = {
                "argv": argv,
                "env": env,
                "cwd": cwd or os.getcwd(),
                "memory_limit_mb": memory_limit_mb,
                "channel_env": channel_env,
            }
            payload = json.dumps(request).encode()
            socket.send_fds(conn, [HEADER.pack(len(payload))], writers)
            conn.sendall(payload)
            buffer = b""
            while b"\n" not in buffer:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                buffer += chunk
            line, _, rest = buffer.partition(b"\n")
            answer = json.loads(line) if line else {"error": "the warm parent closed"}
            if "pid" not in answer:
                raise OSError(f"warm runner: {answer.get('error')}")
        except BaseException:
            conn.close()
            for fd in (out_r, err_r, channel_r):
                if fd is not None:
                    os.close(fd)
            raise
        finally:
            for fd in writers:
                os.close(fd)
        conn.setblocking(False)
        return WarmChild(int(answer["pid"]), out_r, err_r, conn, rest, self.pid, channel_r)

    def stop(self) -> None:
        """End the parent (children already running go on until their runs end)."""
        import shutil

        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(Exception):
                self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


class WarmChild:
    """A run's process, forked by the warm parent: pipes, and its end as a message."""

    def __init__(
        self,
        pid: int,
        stdout: int,
        stderr: int,
        conn: socket.socket,
        buffered: bytes,
        parent_pid: int | None,
        channel: int | None = None,
    ) -> None:
        self.pid = pid
        self.stdout = stdout
        self.stderr = stderr
        self.channel = channel
        self.conn = conn
        self._buffer = buffered  # the exit report may have come with the pid
        self.parent_pid = parent_pid
        self.adopter = parent_pid  # the warm parent is a child subreaper (serve)
        self.exit_hwm_kb: int | None = None
        """Its memory high-water mark as it exited (KiB), as it said it."""
        self.exit_fd: int | None = conn.fileno()

    def reap(self) -> tuple[int | None, float, float, int, str | None] | None:
        """``(waitstatus, utime, stime, maxrss_kb, error)`` once the child ended, else
        None. A parent that died first gives ``(None, …, error)``."""
        while not self._buffer.endswith(b"\n"):
            try:
                data = self.conn.recv(4096)
            except (BlockingIOError, InterruptedError):
                return None
            except OSError:
                data = b""
            if not data:
                return (None, 0.0, 0.0, 0, "the warm parent died while the run was in progress")
            self._buffer += data
        report = json.loads(self._buffer)
        self.exit_hwm_kb = report.get("hwm")
        return (report["exit"], report["utime"], report["stime"], report["maxrss"], None)

    def parent_peak_kb(self) -> int:
        """The warm parent's memory high-water mark (what a forked child starts from)."""
        # Imported here: the warm parent imports this module, and its children should
        # not carry psutil.
        from jupyter_scriptrun.execution.proc import vm_hwm_kb

        if self.parent_pid is None:
            return 0
        return vm_hwm_kb(self.parent_pid) or 0

    def close(self) -> None:
        """Release the connection (the pipes belong to the runner)."""
        self.exit_fd = None
        with contextlib.suppress(OSError):
            self.conn.close()


if __name__ == "__main__":
    serve(sys.argv[1])
