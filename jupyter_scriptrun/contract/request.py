"""A run request, declared once: what is asked of a script (its parameters and the run's
options), checked whole, and prepared into the columns of a queued run. The client's
submit, a schedule's tick, a schedule being made and ``run_now`` all prepare runs here,
so they cannot drift apart.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from jupyter_scriptrun.config import Settings
from jupyter_scriptrun.contract.protocol import encode_parameters
from jupyter_scriptrun.contract.registry import Script
from jupyter_scriptrun.exceptions import InvalidParameters, Problem
from jupyter_scriptrun.timing.spec import notify_problems

PAGE_CONTEXT_CHARS = 1024
QueueCheck = Callable[[str, str | None], str | None]
"""``check(queue, script_queue)``: why runs cannot go to ``queue`` (None: they can)."""


def positive_seconds(value: object) -> bool:
    """Whether ``value`` is a finite number of seconds above zero (not a bool)."""
    return (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        and value > 0
    )


@dataclass(frozen=True)
class RunRequest:
    """What a run is asked to be. ``params`` are checked against the script's schema (its
    defaults filled in); ``timeout`` defaults to the script's, else the settings'; ``queue``
    to the script's, else the settings' (a laptop's one local worker serves them all)."""

    params: dict[str, Any] | None = None
    page_context: str = "python"
    timeout: float | None = None
    queue: str | None = None
    idempotency_key: str | None = None
    notify: Sequence[str] | None = None
    notify_on: Sequence[str] | None = None

    def problems(self) -> list[Problem]:
        """What is wrong with the run's options, whatever the script (empty: fine)."""
        found = []
        if self.timeout is not None and not positive_seconds(self.timeout):
            found.append(
                Problem(f"timeout must be a positive number, not {self.timeout!r}", "timeout")
            )
        key = self.idempotency_key
        if key is not None and (not isinstance(key, str) or not 0 < len(key) <= 255):
            found.append(
                Problem(
                    "idempotency_key must be a string of 1 to 255 characters", "idempotency_key"
                )
            )
        if not isinstance(self.page_context, str) or "\x00" in self.page_context:
            # It reaches the script as PAGE_CONTEXT, and no environment holds a NUL.
            found.append(
                Problem("page_context must be a string without NUL characters", "page_context")
            )
        found += [
            Problem(p, p.split(":")[0].split(" ")[0])
            for p in notify_problems(self.notify, self.notify_on)
        ]
        return found

    def prepare(
        self, script: Script, settings: Settings, check_queue: QueueCheck | None = None
    ) -> dict[str, Any]:
        """The queued run's columns for ``script`` (``check_queue``: whether the queue is
        allowed); InvalidParameters lists every problem at once, parameters and options."""
        found: list[str] = []
        merged: dict[str, Any] = {}
        try:
            merged = script.meta.validate(script.name, self.params)
            encode_parameters(script.name, merged)  # refuses what cannot travel to a script
        except InvalidParameters as exc:
            found += [p if isinstance(p, Problem) else Problem(p, None) for p in exc.problems]
        found += self.problems()
        queue = self.queue or script.meta.queue or settings.queue
        if check_queue is not None and (problem := check_queue(queue, script.meta.queue)):
            found.append(Problem(problem, "queue"))
        if found:
            raise InvalidParameters(script.name, found)
        timeout_s = float(self.timeout) if self.timeout else None
        return {
            "script": script.name,
            "parameters": merged,
            "page_context": self.page_context[:PAGE_CONTEXT_CHARS],
            "queue": settings.queue if settings.embedded else queue,
            "timeout_s": timeout_s or script.meta.timeout or settings.default_timeout_s,
            "content_hash": script.content_hash,
            "idempotency_key": self.idempotency_key,
            "notify": list(self.notify) if self.notify else None,
            "notify_on": list(self.notify_on) if self.notify_on else None,
        }
