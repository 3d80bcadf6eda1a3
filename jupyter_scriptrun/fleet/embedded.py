"""The embedded broker: kombu's filesystem transport, made safe for several processes.

kombu's own ``_put`` creates the message file and then writes it, so a consumer listing
the folder at that moment can read an empty message; and its ``_get`` moves files to the
system temp folder, which is a copy (not atomic) when that is another filesystem. Here a
message is written under a hidden name and renamed into place, and a consumer claims a
message by renaming it inside the same folder: both atomic.
"""

from __future__ import annotations

import os
import time
import uuid
from queue import Empty
from typing import Any

from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.json import dumps, loads

ALIAS = "scriptrun-fs"


class Channel(filesystem.Channel):
    """A filesystem channel with atomic put and get."""

    # kombu's own two base classes disagree on this signature (payload/message).
    def _put(  # type: ignore[override]
        self, queue: str, payload: dict[str, Any], **kwargs: Any
    ) -> None:
        name = f"{int(time.monotonic() * 1000):015d}_{uuid.uuid4().hex}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        tmp = os.path.join(self.data_folder_out, f".{name}.tmp")
        with open(tmp, "wb") as f:
            f.write(dumps(payload).encode("utf-8"))
        os.replace(tmp, final)

    def _get(self, queue: str, timeout: float | None = None) -> dict[str, Any]:
        wanted = f"{queue}.msg"
        folder = self.data_folder_in
        for name in sorted(os.listdir(folder)):
            if name.startswith(".") or name.partition(".")[2] != wanted:
                continue
            claimed = os.path.join(folder, f".claimed-{os.getpid()}-{name}")
            try:
                os.rename(os.path.join(folder, name), claimed)
            except FileNotFoundError:
                continue  # another consumer took it
            with open(claimed, "rb") as f:
                payload = f.read()
            os.remove(claimed)
            return loads(payload.decode("utf-8"))
        raise Empty()


class Transport(filesystem.Transport):
    """The embedded transport (``scriptrun-fs://``)."""

    Channel = Channel


def register() -> None:
    """Make ``scriptrun-fs://`` URLs resolve to this transport."""
    TRANSPORT_ALIASES.setdefault(ALIAS, f"{__name__}:Transport")
