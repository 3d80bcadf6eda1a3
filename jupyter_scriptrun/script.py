"""For scripts: report progress to the worker that runs them, and give a result without
printing it; silent (progress) or printing (result) when run on their own.

::

    from jupyter_scriptrun.script import progress, track

    for i, item in enumerate(items):
        work(item)
        progress(i + 1, len(items), f"item {item}")

    for item in track(items, message="loading"):  # the same, for a loop
        work(item)

    result({"status": "success", "data": rows})  # instead of printing the JSON last


The channel is the contract's, not this module's: one line per update to the file
descriptor named in ``SCRIPTRUN_PROGRESS_FD``, either JSON
(``{"done": 3, "total": 10, "message": "…"}``) or plain text (``3/10 message``). A script
in any language can write it; this module only saves Python scripts the few lines. Only
the standard library is imported here: a script pays nothing for it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

RESULT_FILE_ENV = "SCRIPTRUN_RESULT_FILE"
"""The environment variable naming the file a script's :func:`result` is written to; the
worker reads it when the run ends, before the stdout JSON (which stays the seed's way)."""
PROGRESS_FD_ENV = "SCRIPTRUN_PROGRESS_FD"
"""The environment variable naming the descriptor a script writes its progress lines to."""
MIN_INTERVAL_S = 0.05
"""Updates closer together than this are skipped (the last of a run never is): a tight
loop reporting every item costs a clock read, not a write."""

T = TypeVar("T")

_fd: int | None = None
_resolved = False
_last_write = 0.0


def _channel() -> int | None:
    """The progress descriptor, or None when no worker gave one (a standalone run)."""
    global _fd, _resolved
    if not _resolved:
        _resolved = True
        value = os.environ.get(PROGRESS_FD_ENV, "")
        _fd = int(value) if value.isdigit() else None
    return _fd


def progress(done: float, total: float | None = None, message: str | None = None) -> None:
    """Report that ``done`` of ``total`` units are done (``total`` None: unknown), with an
    optional short ``message``. A no-op outside a scriptrun worker; never raises on a
    closed channel (the script's work matters more than its progress bar)."""
    global _fd, _last_write
    fd = _channel()
    if fd is None:
        return
    now = time.monotonic()
    final = total is not None and done >= total
    if not final and now - _last_write < MIN_INTERVAL_S:
        return
    _last_write = now
    update: dict[str, object] = {"done": done, "total": total}
    if message is not None:
        update["message"] = str(message)
    line = json.dumps(update, ensure_ascii=False) + "\n"
    try:
        os.write(fd, line.encode("utf-8"))
    except OSError:  # the worker went away, or a descriptor that is not a pipe
        _fd = None


def result(document: Any) -> None:
    """Give the run's result: a JSON document shaped as on stdout (``{"status":
    "success", "data": …}``, or any value as the data). The last call wins; it stands
    instead of anything printed, so a notebook or a chatty script needs no stdout trick.
    Outside a worker it prints the document, as a script of the seed's kind would.
    ValueError or TypeError, at once, for what is not JSON (NaN, a set, a DataFrame)."""
    text = json.dumps(document, ensure_ascii=False, allow_nan=False)
    path = os.environ.get(RESULT_FILE_ENV)
    if not path:
        print(text, flush=True)
        return
    with open(path + ".part", "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(path + ".part", path)  # a reader sees the whole document or none


def track(items: Iterable[T], total: int | None = None, message: str | None = None) -> Iterator[T]:
    """Yield ``items``, reporting progress after each one (``total`` from ``len(items)``
    when it has one)."""
    if total is None:
        try:
            total = len(items)  # type: ignore[arg-type]
        except TypeError:
            total = None
    progress(0, total, message)
    for done, item in enumerate(items, 1):
        yield item
        progress(done, total, message)
