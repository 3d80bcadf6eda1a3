"""An attempt's lease on its run, kept by a thread of its own: live output written,
heartbeats renewed, cancels learnt, while the supervisor never waits on the database.

The lease lasts ``lost_after_s`` from the last heartbeat the database accepted (on its
own clock). Past that, any worker's reaper may declare the run lost and run it again.
So an attempt that cannot renew its lease (the database or the network away) stops its
script once ``lost_after_s - heartbeat_s`` has passed since its last renewal: one
heartbeat before anyone may take the run over (self-fencing). An attempt whose run has
moved on (declared lost, taken over) stops at its next tick.
"""

from __future__ import annotations

import logging
import threading
import time

from jupyter_scriptrun.defaults import TICK_S
from jupyter_scriptrun.execution.live import LiveOutput

log = logging.getLogger(__name__)


class Lease:
    """The store side of one running attempt, on a background thread.

    Args:
        store: has ``append_output(id, attempt, chunks)`` and
            ``beat(id, heartbeat, attempt) -> bool`` (True: stop the attempt).
        live: the attempt's live output, written each tick.
    """

    def __init__(
        self,
        store: object,
        execution_id: str,
        attempt: int,
        live: LiveOutput,
        heartbeat_s: float,
        lost_after_s: float,
    ) -> None:
        self.store = store
        self.execution_id = execution_id
        self.attempt = attempt
        self.live = live
        self.heartbeat_s = heartbeat_s
        self.fence_after_s = max(lost_after_s - heartbeat_s, TICK_S)
        self.stop_asked = threading.Event()
        """Set when the attempt must stop: cancelled, superseded, or its lease lapsing."""
        self.reason: str | None = None
        """Why the lease was given up (None for a cancel or while it holds)."""
        self._done = threading.Event()
        self._unsent: list[tuple[int, str, str]] = []
        self._thread = threading.Thread(
            target=self._keep, name=f"scriptrun-lease-{execution_id[:8]}", daemon=True
        )

    def start(self) -> Lease:
        """Begin keeping the lease (the attempt was just claimed: the lease is fresh)."""
        self._renewed = time.monotonic()
        self._thread.start()
        return self

    def poll(self) -> bool:
        """For the supervisor, every tick: whether to stop the run. Never blocks."""
        return self.stop_asked.is_set()

    def close(self) -> list[tuple[int, str, str]]:
        """Stop keeping the lease; the live output not yet written (for ``finish``)."""
        self._done.set()
        self._thread.join(timeout=5 * TICK_S)  # it may be stuck on a dead connection
        return self._unsent + self.live.take(final=True)

    def _keep(self) -> None:
        last_beat = time.monotonic()
        while not self._done.wait(TICK_S):
            now = time.monotonic()
            beat = now - last_beat >= self.heartbeat_s
            try:
                self._write_output()
                stop = self.store.beat(  # type: ignore[attr-defined]
                    self.execution_id, beat, attempt=self.attempt
                )
            except Exception as exc:  # the database away: the run goes on, for a while
                log.warning(
                    "execution %s attempt %s: lease not renewed (%s)",
                    self.execution_id,
                    self.attempt,
                    str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__,
                )
                stop = False
            else:
                if beat:
                    last_beat = self._renewed = now
            if stop:
                self.stop_asked.set()
            elif time.monotonic() - self._renewed >= self.fence_after_s:
                self.reason = (
                    f"its lease lapsed: no heartbeat reached the store for "
                    f"{self.fence_after_s:g} s, after which the run may be taken over"
                )
                log.error(
                    "execution %s attempt %s: %s", self.execution_id, self.attempt, self.reason
                )
                self.stop_asked.set()
                return

    def _write_output(self) -> None:
        chunks = self._unsent + self.live.take()
        self._unsent = chunks  # kept until written: a failed write loses nothing
        if chunks:
            self.store.append_output(  # type: ignore[attr-defined]
                self.execution_id, self.attempt, chunks
            )
        self._unsent = []
