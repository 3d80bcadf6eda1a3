"""A warm parent's forked child becoming the script: the script compiled once by the
parent, then in the child its descriptors, session, environment and streams as a fresh
``python SCRIPT`` has them, the script run as ``__main__``, and its exit code.

The parent (:mod:`jupyter_scriptrun.execution.warm`) calls :func:`compile_once` when a
request comes; a child it forked ahead calls :func:`prepare` at once, then, given its
request, :func:`become_script`.
"""

from __future__ import annotations

import contextlib
import hashlib
import marshal
import os
import signal
import sys
from collections import OrderedDict
from types import CodeType
from typing import Any

from jupyter_scriptrun.execution import runtag

_COMPILED: OrderedDict[bytes, bytes] = OrderedDict()
"""Scripts compiled by the parent (marshalled code), by their bytes' digest, newest last
(a run's script is a copy in its own folder, so the path says nothing; the bytes do)."""
COMPILED_KEEP = 64
COMPILE_MAX_BYTES = 1 << 20


def compile_once(script: str) -> bytes | None:
    """The script's code, compiled once per content by the parent and marshalled for the
    child, so that each child does not compile it again (about a millisecond for a small
    script). None when it cannot be read or compiled here, or is large: the child then
    compiles it itself and reports what is wrong as ``python SCRIPT`` would. Compiling
    runs none of its code."""
    try:
        with open(script, "rb") as f:
            source = f.read(COMPILE_MAX_BYTES + 1)
    except OSError:
        return None
    if len(source) > COMPILE_MAX_BYTES:
        return None
    key = hashlib.blake2b(source, digest_size=16).digest()
    if (blob := _COMPILED.get(key)) is not None:
        _COMPILED.move_to_end(key)
        return blob
    try:
        blob = marshal.dumps(compile(source, script, "exec", dont_inherit=True))
    except Exception:  # SyntaxError, ValueError (NUL bytes): the child's to report
        return None
    _COMPILED[key] = blob
    while len(_COMPILED) > COMPILED_KEEP:
        _COMPILED.popitem(last=False)
    return blob


def _named(code: CodeType, filename: str) -> CodeType:
    """``code`` as compiled from ``filename`` (its functions' code too), for tracebacks
    and ``__file__``-relative paths that name this run's copy."""
    if code.co_filename == filename:
        return code
    consts = tuple(_named(c, filename) if isinstance(c, CodeType) else c for c in code.co_consts)
    return code.replace(co_filename=filename, co_consts=consts)


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


def prepare(inherited: tuple[Any, ...]) -> None:
    """What a child does before its run is known: its own session, death with the
    parent, default signal handling, and none of the parent's descriptors (``inherited``:
    the parent's sockets and descriptors)."""
    os.setsid()
    _die_with_parent()
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for obj in inherited:
        with contextlib.suppress(OSError, AttributeError):
            obj.close() if hasattr(obj, "close") else os.close(obj)


def become_script(request: dict[str, Any], fds: list[int], compiled: bytes | None = None) -> int:
    """Set up a prepared child (:func:`prepare`) as a fresh ``python SCRIPT`` would be, run
    it, return its code (``compiled``: the script's marshalled code from the parent; None:
    compile it here)."""
    import io
    import threading

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
        _run_as_main(script, compiled)
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


def _run_as_main(script: str, compiled: bytes | None = None) -> None:
    """Run a file as ``__main__``, the way ``python SCRIPT`` does (runpy.run_path does
    more: path hooks, a temporary module — milliseconds per run); ``compiled``: its code,
    marshalled, already compiled from the same bytes."""
    import builtins
    import types

    if compiled is None:
        with open(script, "rb") as f:
            source = f.read()
        code = compile(source, script, "exec", dont_inherit=True)
    else:
        code = _named(marshal.loads(compiled), script)
    main = types.ModuleType("__main__")
    main.__file__ = script
    # What runpy gives a __main__ module (mypy's ModuleType lacks these two).
    main.__dict__.update(__cached__=None, __builtins__=builtins)
    sys.modules["__main__"] = main
    exec(code, main.__dict__)


prctl_fn: Any = None
"""libc's ``prctl``, looked up by the warm parent before it forks (:func:`libc_prctl`)."""


def libc_prctl() -> Any:
    import ctypes

    with contextlib.suppress(Exception):
        return ctypes.CDLL(None, use_errno=True).prctl
    return None


def _die_with_parent() -> None:
    """SIGKILL this child when the warm parent exits (it exits when its worker dies)."""
    PR_SET_PDEATHSIG = 1
    prctl = prctl_fn or libc_prctl()
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
