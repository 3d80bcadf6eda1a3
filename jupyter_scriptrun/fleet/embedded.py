"""The embedded broker: kombu's filesystem transport, made safe for several processes.

kombu's own ``_put`` creates the message file and then writes it, so a consumer listing
the folder at that moment can read an empty message; and its ``_get`` moves files to the
system temp folder, which is a copy (not atomic) when that is another filesystem. Here a
message is written under a hidden name and renamed into place, and a consumer claims a
message by renaming it inside the same folder: both atomic.

kombu polls the folder; a worker waiting between polls would add half an interval to
every run. So the worker also listens for wake-ups of its folder (fleet/wakeups.py), and
every put and every acknowledgement rings it: a new run, or a slot that just freed, is
seen at once. The poll stays as the fallback for a wake-up that could not be sent.
"""

from __future__ import annotations

import functools
import os
import time
import uuid
from queue import Empty
from typing import Any

from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.json import dumps, loads

from jupyter_scriptrun import defaults
from jupyter_scriptrun.fleet import wakeups
from jupyter_scriptrun.fleet.worker_metrics import refused

ALIAS = "scriptrun-fs"
WAKE_LISTENER = "scriptrun_wake_listener"
"""Transport option set by the worker process: it listens for its folder's wake-ups."""


@functools.lru_cache(maxsize=16)
def _real(folder: str) -> str:
    """The folder's real path: what its wake-ups are named by (computed once)."""
    return os.path.realpath(folder)


class Channel(filesystem.Channel):
    """A filesystem channel with atomic put and get, which wakes its folder's worker."""

    def _wake(self, folder: str) -> None:
        """Tell the folder's worker to look now."""
        wakeups.ring(_real(folder))

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
        self._wake(self.data_folder_out)

    def basic_ack(self, delivery_tag: Any, multiple: bool = False) -> None:
        super().basic_ack(delivery_tag, multiple=multiple)
        self._wake(self.data_folder_in)  # a slot freed: the worker may take the next run now

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
            message, problem = _envelope(payload)
            if message is not None:
                return message
            # A file no client of ours wrote (a foreign writer's, a torn copy): raised
            # from here it would reach the worker's loop, which exits on it.
            refused("bad_envelope", f"{name}: {problem}")
        raise Empty()


def _envelope(payload: bytes) -> tuple[dict[str, Any] | None, str]:
    """The kombu message in a queue file, or None and why it is not one."""
    try:
        message = loads(payload.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"not JSON ({type(exc).__name__})"
    if not isinstance(message, dict):
        return None, "not a JSON object"
    properties = message.get("properties")
    if not isinstance(properties, dict) or "delivery_tag" not in properties:
        return None, "no properties with a delivery tag"
    if not isinstance(message.get("headers"), dict | None):
        return None, "headers that are not an object"
    return message, ""


class Transport(filesystem.Transport):
    """The embedded transport (``scriptrun-fs://``)."""

    Channel = Channel
    _waker: wakeups.Listener | None = None

    def drain_events(  # type: ignore[override]  # virtual.Transport takes timeout
        self, connection: Any, timeout: float | None = None
    ) -> None:
        """kombu's polling loop; in the worker, waiting for a wake-up instead of sleeping."""
        started = time.monotonic()
        if self._waker is None:
            options = self.client.transport_options if self.client else {}
            folder = options.get("data_folder_in")
            # Only the worker listens: a client reading control replies must not take
            # the folder's address (it is first come, first served).
            listen = bool(options.get(WAKE_LISTENER)) and folder is not None
            self._waker = wakeups.Listener(_real(folder) if listen and folder else None)
        interval = self.polling_interval
        if interval is not None and self._waker.listening:
            interval = max(interval, defaults.EMBEDDED_WOKEN_POLL_S)
        if timeout and interval and interval > timeout:
            interval = timeout
        assert self.cycle is not None  # set up with the connection
        while True:
            try:
                self.cycle.get(self._deliver, timeout=timeout)
                return
            except Empty:
                if timeout is not None and time.monotonic() - started >= timeout:
                    raise TimeoutError() from None  # socket.timeout, as kombu raises
                if interval is not None:
                    self._waker.wait(interval)

    def close_connection(self, connection: Any) -> None:
        if self._waker is not None:
            self._waker.close()
            self._waker = None
        super().close_connection(connection)


def register() -> None:
    """Make ``scriptrun-fs://`` URLs resolve to this transport."""
    TRANSPORT_ALIASES.setdefault(ALIAS, f"{__name__}:Transport")
