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
import signal
import threading
import time

from jupyter_scriptrun.defaults import STORE_TICK_S, TICK_S
from jupyter_scriptrun.execution.live import LiveOutput
from jupyter_scriptrun.execution.progress import Progress

log = logging.getLogger(__name__)

_stop_requests: dict[str, tuple[float, signal.Signals | None]] = {}
"""Runs this process was told to stop (a cancel or revoke broadcast to every worker): when
it was told, and the signal asked for (None: SIGTERM, then SIGKILL after the grace). Seen
within a tick, before the store says so."""
_stop_lock = threading.Lock()
THREAD_AFTER_S = STORE_TICK_S / 2
"""When the lease's thread starts, if the run is still going (see ``Lease.start``)."""
STOP_REQUEST_TTL_S = 3600.0
"""How long a request for a run this process does not run is remembered."""


def request_stop(execution_id: str, signum: signal.Signals | None = None) -> None:
    """Stop the run ``execution_id`` if this process runs it (a cancel arrived here), with
    ``signum`` first if given (``celery control terminate SIGKILL``)."""
    now = time.monotonic()
    with _stop_lock:
        _stop_requests[execution_id] = (now, signum)
        # Broadcasts reach every worker: forget requests for runs that were never here.
        for old in [k for k, (at, _) in _stop_requests.items() if now - at > STOP_REQUEST_TTL_S]:
            del _stop_requests[old]


class Lease:
    """The store side of one running attempt, on a background thread.

    Args:
        store: has ``tick(id, attempt, chunks, heartbeat, progress) -> bool`` (True: stop).
        live: the attempt's live output, written each store tick.
        progress: the attempt's progress, its latest written each store tick it changed.
    """

    def __init__(
        self,
        store: object,
        execution_id: str,
        attempt: int,
        live: LiveOutput,
        heartbeat_s: float,
        lost_after_s: float,
        progress: Progress | None = None,
    ) -> None:
        self.store = store
        self.execution_id = execution_id
        self.attempt = attempt
        self.live = live
        self.progress = progress
        self.heartbeat_s = heartbeat_s
        self.fence_after_s = max(lost_after_s - heartbeat_s, TICK_S)
        self.stop_asked = threading.Event()
        """Set when the attempt must stop: cancelled, superseded, or its lease lapsing."""
        self.reason: str | None = None
        """Why the lease was given up (None for a cancel or while it holds)."""
        self.stop_signal: signal.Signals | None = None
        """The signal a stop request asked for (None: the usual SIGTERM, then SIGKILL)."""
        self._give_up_lock = threading.Lock()
        self._done = threading.Event()
        self._unsent: list[tuple[int, str, str]] = []
        self._unsent_progress: dict[str, object] | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Lease:
        """Begin keeping the lease (the attempt was just claimed: the lease is fresh).

        The thread itself starts at the supervisor's first poll after ``THREAD_AFTER_S``:
        a run that ends sooner has nothing to write before its finish (the first store
        tick is ``STORE_TICK_S`` away), and most runs are that short."""
        self._renewed = self._started = time.monotonic()
        return self

    def poll(self) -> bool | signal.Signals:
        """For the supervisor, every tick: whether to stop the run (the signal to send
        first when one was asked for). Never blocks.

        The lease's deadline is judged here, on the supervisor's clock, not only on the
        lease thread: behind a cut link that thread hangs in a database call until TCP
        gives up (a minute or more), long past the moment the run may be taken over."""
        if self._thread is None and time.monotonic() - self._started >= THREAD_AFTER_S:
            self._thread = threading.Thread(
                target=self._keep, name=f"scriptrun-lease-{self.execution_id[:8]}", daemon=True
            )
            self._thread.start()
        if (asked := _stop_requests.get(self.execution_id)) is not None:
            self.stop_signal = asked[1]  # also before the thread runs
            self.stop_asked.set()
        if not self.stop_asked.is_set() and self._lapsed():
            self._give_up()
        if not self.stop_asked.is_set():
            return False
        return self.stop_signal or True

    def _lapsed(self) -> bool:
        return time.monotonic() - self._renewed >= self.fence_after_s

    def _give_up(self) -> None:
        with self._give_up_lock:
            if self.reason is not None:
                return
            self.reason = (
                f"its lease lapsed: no heartbeat reached the store for "
                f"{self.fence_after_s:g} s, after which the run may be taken over"
            )
        log.error("execution %s attempt %s: %s", self.execution_id, self.attempt, self.reason)
        self.stop_asked.set()

    def close(self) -> list[tuple[int, str, str]]:
        """Stop keeping the lease; the live output not yet written (for ``finish``)."""
        self._done.set()
        if self._thread is not None:
            self._thread.join(timeout=5 * TICK_S)  # it may be stuck on a dead connection
        with _stop_lock:
            _stop_requests.pop(self.execution_id, None)
        if self.progress is not None:
            self.progress.flush()
        return self._unsent + self.live.take(final=True)

    def _keep(self) -> None:
        last_beat = last_store = self._started  # the claim's beat: the thread starts late
        while not self._done.wait(TICK_S):
            if self.execution_id in _stop_requests:
                self.stop_asked.set()
            now = time.monotonic()
            if now - last_store < STORE_TICK_S:
                continue
            last_store = now
            beat = now - last_beat >= self.heartbeat_s
            if self.progress is not None:
                self.progress.flush()
                self._unsent_progress = self.progress.take() or self._unsent_progress
            chunks = self._unsent + self.live.take()
            self._unsent = chunks  # kept until written: a failed write loses nothing
            try:
                stop = self.store.tick(  # type: ignore[attr-defined]
                    self.execution_id, self.attempt, chunks, beat, self._unsent_progress
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
                self._unsent = []
                self._unsent_progress = None
                if beat:
                    last_beat = self._renewed = now
            if stop:
                self.stop_asked.set()
            elif self._lapsed():
                self._give_up()
                return
