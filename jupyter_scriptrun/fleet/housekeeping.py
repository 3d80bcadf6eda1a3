"""A worker's housekeeping: its duties, each on a timer of its own, on one thread.

A duty is a name, how often it is due, and what to do; one that fails is logged and due
again at its next time, so no duty stops another. The thread wakes for a revoked run at
once, for the soonest due duty, and at least every second.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class Duty:
    """One duty. ``run`` may return the seconds until it wants to run again (a schedule
    due sooner than ``every_s``); ``first_after_s`` delays its first run."""

    name: str
    every_s: float
    run: Callable[[], float | None]
    first_after_s: float = 0.0
    next_at: float = field(default=0.0, init=False)

    def start(self, now: float) -> None:
        self.next_at = now + self.first_after_s

    def do(self, now: float) -> None:
        """Run it if due; then set when it is next due."""
        if now < self.next_at:
            return
        wait: float | None = None
        try:
            wait = self.run()
        except Exception:
            log.exception("%s failed (will try again)", self.name)
        self.next_at = now + (self.every_s if wait is None else min(wait, self.every_s))


class Housekeeping:
    """Runs ``duties`` until ``stop`` is set; ``on_event`` handles what arrives on
    ``events`` (a ``queue`` of revoked runs to cancel), as soon as it arrives."""

    def __init__(
        self,
        duties: list[Duty],
        stop: threading.Event,
        events: Any,
        on_event: Callable[[Any], None],
    ) -> None:
        self.duties = duties
        self.stop = stop
        self.events = events
        self.on_event = on_event

    def run(self) -> None:
        now = time.monotonic()
        for duty in self.duties:
            duty.start(now)
        while not self.stop.is_set():
            soonest = min((d.next_at for d in self.duties), default=now + 1.0)
            try:
                event = self.events.get(timeout=min(max(soonest - time.monotonic(), 0.001), 1.0))
            except queue.Empty:
                event = None
            if event is not None:
                try:
                    self.on_event(event)
                except Exception:
                    log.exception("handling %r failed", event)
            now = time.monotonic()
            for duty in self.duties:
                duty.do(now)
