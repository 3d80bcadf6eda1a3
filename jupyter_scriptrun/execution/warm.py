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
from typing import Any

from jupyter_scriptrun.execution import runtag
from jupyter_scriptrun.execution.runtag import PLACEHOLDER, RUN_TAG_ENV

HEADER = struct.Struct("!I")
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


def serve(path: str) -> None:
    """Preload, listen on ``path``, fork a child per request; exit with the worker."""
    import gc
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

    global _prctl
    _prctl = _libc_prctl()  # ctypes and libffi loaded once, not in every child (~1.5 ms)
    runtag.find()
    if _prctl is not None:
        # A run's daemons (double fork, setsid) come back here, not to PID 1: the
        # worker's supervisor finds and ends them with the run, and _reap collects them.
        PR_SET_CHILD_SUBREAPER = 36
        with contextlib.suppress(Exception):
            _prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

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
    try:
        while os.getppid() == owner:
            for key, _ in sel.select(1.0):
                if key.fileobj is listener:
                    conn, _ = listener.accept()
                    pid = _start(conn, listener, wake_r, wake_w, *children.values(), *_hwm.values())
                    if pid is not None:
                        children[pid] = conn
                else:
                    with contextlib.suppress(BlockingIOError):
                        while os.read(wake_r, 4096):
                            pass
            _reap(children)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _reap(children: dict[int, socket.socket]) -> None:
    """Report each run's end to its connection; collect adopted orphans' exits too."""
    while True:
        try:
            pid, status, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = children.pop(pid, None)
        if conn is None:
            continue
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


def _start(conn: socket.socket, *inherited: Any) -> int | None:
    """Read one request and fork its child; None (and the connection closed) on error."""
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
        request = json.loads(data)
        hwm_r, hwm_w = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            os.close(hwm_r)
            os.close(hwm_w)
            raise
        if pid == 0:
            code = 70
            try:
                conn.close()
                os.close(hwm_r)
                code = _become_script(request, fds, inherited)
            finally:
                _say_hwm(hwm_w)
                os._exit(code)
        os.close(hwm_w)
        _hwm[pid] = hwm_r
        conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
        return pid
    except Exception as exc:
        with contextlib.suppress(OSError):
            conn.sendall(json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode() + b"\n")
        conn.close()
        return None
    finally:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)


# -- the child: from a copy of the parent to the script ----------------------------


def _take_descriptors(fds: list[int]) -> int | None:
    """stdin from /dev/null, stdout and stderr to the runner's pipes; the side channel, if
    sent, keeps its number (inheritable: the script's own children may report too)."""
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(fds[0], 1)
    os.dup2(fds[1], 2)
    keep = {0, 1, 2}
    channel = fds[2] if len(fds) > 2 else None
    if channel is not None:
        keep.add(channel)
        os.set_inheritable(channel, True)
    for fd in (devnull, *fds):
        if fd not in keep:
            os.close(fd)
    return channel


def _become_script(request: dict[str, Any], fds: list[int], inherited: tuple[Any, ...]) -> int:
    """Set up the process as a fresh ``python SCRIPT`` would be, run it, return its code."""
    import io
    import threading

    os.setsid()
    _die_with_parent()
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for obj in inherited:
        with contextlib.suppress(OSError, AttributeError):
            obj.close() if hasattr(obj, "close") else os.close(obj)

    channel = _take_descriptors(fds)
    runtag.write(request["env"].get("EXECUTION_ID", ""))  # before os.environ is replaced

    if request.get("memory_limit_mb"):
        import resource

        limit = int(request["memory_limit_mb"] * 2**20)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    if channel is not None and request.get("channel_env"):
        os.environ[request["channel_env"]] = str(channel)
    script = request["argv"][1]
    sys.argv = [script, *request["argv"][2:]]
    sys.path[0] = os.path.dirname(os.path.abspath(script))
    encoding = os.environ.get("PYTHONIOENCODING", "utf-8").split(":")[0] or "utf-8"
    stdin = io.TextIOWrapper(io.FileIO(0, "r"), encoding=encoding)
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))  # as a fresh interpreter reads it
    stdout = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(1, "w")), encoding=encoding, write_through=unbuffered
    )
    stderr = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(2, "w")),
        encoding=encoding,
        errors="backslashreplace",
        line_buffering=True,
        write_through=unbuffered,
    )
    # The fresh interpreter's own streams (mypy marks sys.__std*__ final).
    sys.stdin = sys.__stdin__ = stdin  # type: ignore[misc]
    sys.stdout = sys.__stdout__ = stdout  # type: ignore[misc]
    sys.stderr = sys.__stderr__ = stderr  # type: ignore[misc]
    if "numpy" in sys.modules:  # the stdlib's random reseeds at fork; numpy's does not
        with contextlib.suppress(Exception):
            sys.modules["numpy"].random.seed()

    code = 0
    try:
        _run_as_main(script)
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except KeyboardInterrupt:
        _print_exception(script)
        code = 128 + signal.SIGINT
    except BaseException:
        _print_exception(script)
        code = 1
    finally:
        # What a fresh interpreter does at exit: join threads, atexit, flush.
        with contextlib.suppress(BaseException):
            threading._shutdown()  # type: ignore[attr-defined]
        with contextlib.suppress(BaseException):
            import atexit

            atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(BaseException):
                stream.flush()
    return code


def _run_as_main(script: str) -> None:
    """Run a file as ``__main__``, the way ``python SCRIPT`` does (runpy.run_path does
    more: path hooks, a temporary module — milliseconds per run)."""
    import builtins
    import types

    with open(script, "rb") as f:
        source = f.read()
    code = compile(source, script, "exec", dont_inherit=True)
    main = types.ModuleType("__main__")
    main.__file__ = script
    # What runpy gives a __main__ module (mypy's ModuleType lacks these two).
    main.__dict__.update(__cached__=None, __builtins__=builtins)
    sys.modules["__main__"] = main
    exec(code, main.__dict__)


_prctl: Any = None
"""libc's ``prctl``, looked up by the warm parent before it forks."""


def _libc_prctl() -> Any:
    import ctypes

    with contextlib.suppress(Exception):
        return ctypes.CDLL(None, use_errno=True).prctl
    return None


def _die_with_parent() -> None:
    """SIGKILL this child when the warm parent exits (it exits when its worker dies)."""
    PR_SET_PDEATHSIG = 1
    prctl = _prctl or _libc_prctl()
    if prctl is not None:
        with contextlib.suppress(Exception):
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:  # the parent died before the signal was armed
        os._exit(70)


def _exit_code(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    print(value, file=sys.stderr)
    return 1


def _print_exception(script: str) -> None:
    """The traceback as ``python SCRIPT`` prints it: without the runner's own frames."""
    import traceback

    kind, value, tb = sys.exc_info()
    while tb is not None and os.path.abspath(tb.tb_frame.f_code.co_filename) != os.path.abspath(
        script
    ):
        tb = tb.tb_next
    traceback.print_exception(kind, value, tb)


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
