"""A run's id written into a process's environment block, so its daemons are told by
their run.

A process started before its run (a warm child forked from its parent, a notebook's
standby and kernel) shows its exec-time environment in /proc/PID/environ, never what
``os.environ`` became. Such a process is started with ``RUN_TAG_ENV`` set to a
placeholder, and overwrites the placeholder's bytes in place with its run's id when its
run comes; everything it starts inherits the tag (``execution/subreaper.py`` reads it).
"""

from __future__ import annotations

import contextlib

RUN_TAG_ENV = "SCRIPTRUN_RUN_TAG"
RUN_TAG_SIZE = 32
PLACEHOLDER = "-" * RUN_TAG_SIZE

_address: int | None = None
"""The address of the placeholder in this process's environment block (``find``)."""


def find() -> int | None:
    """Find the placeholder (before ``os.environ`` changes: an unset name is no longer
    found); a warm parent does it once, before it forks."""
    global _address
    import ctypes

    _address = None
    with contextlib.suppress(Exception):
        getenv = ctypes.CDLL(None).getenv
        getenv.restype = ctypes.c_void_p
        address = getenv(RUN_TAG_ENV.encode())
        if address and ctypes.string_at(address) == PLACEHOLDER.encode():
            _address = int(address)
    return _address


def write(execution_id: str) -> None:
    """Write the run's id over the placeholder found (nothing if none was)."""
    import ctypes

    tag = execution_id.encode("ascii", "replace")[:RUN_TAG_SIZE].ljust(RUN_TAG_SIZE, b"-")
    if _address is not None:
        ctypes.memmove(_address, tag, RUN_TAG_SIZE)


def tag_process(execution_id: str) -> bool:
    """Find the placeholder and write the run's id over it, at once (a process that
    learns its run once: a notebook's standby, its kernel). Whether there was one."""
    found = find()
    write(execution_id)
    return found is not None
