"""A run's progress: the script's progress lines (or its tqdm bars) read, checked, kept."""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from jupyter_scriptrun.execution.live import LiveOutput

MIN_GAP_S = 0.2
"""Updates closer together than this reach the live stream as one (the latest)."""
MAX_RECORDED = 2000
"""Updates written to the live stream per attempt; past it only the latest is kept."""
MESSAGE_CHARS = 200
LINE_BYTES = 4096
"""A longer progress line is not an update (and is reported once)."""

PLAIN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*(\d+(?:\.\d+)?))?(?:\s+(.*?))?\s*$")
"""``DONE[/TOTAL] [message]``: progress from a shell script without JSON quoting."""
TQDM = re.compile(r"(?:([^\r\n|]{1,80}?): *)?\d{1,3}%\|[^|\r\n]*\| *(\d+)/(\d+) \[")
"""tqdm's default bar on stderr (``desc:  30%|███   | 3/10 [00:01<00:02, …]``)."""


def parse(line: str) -> dict[str, Any]:
    """One progress line as ``{"done", "total", "message"}``; ValueError naming what is
    wrong with it."""
    text = line.strip()
    done: Any
    total: Any
    message: Any
    if text.startswith("{"):
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON ({exc.msg})") from None
        if not isinstance(raw, dict):
            raise ValueError("a JSON progress line must be an object")
        done, total, message = raw.get("done"), raw.get("total"), raw.get("message")
    elif match := PLAIN.match(text):
        done = float(match[1])
        total = float(match[2]) if match[2] is not None else None
        message = match[3] or None
    else:
        raise ValueError('expected JSON such as {"done": 3, "total": 10} or text such as 3/10')
    if not _number(done) or done < 0:
        raise ValueError(f"'done' must be a number of at least 0, not {done!r}")
    if total is not None and (not _number(total) or total <= 0):
        raise ValueError(f"'total' must be a number above 0 or null, not {total!r}")
    if message is not None:
        message = str(message)[:MESSAGE_CHARS]
    return {"done": _tidy(done), "total": _tidy(total), "message": message}


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _tidy(value: Any) -> Any:
    """3.0 as 3: counts read as counts."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


class Progress:
    """The latest progress of one attempt, fed from its channel (or tqdm on stderr).

    Updates go to the live stream as ``progress`` chunks, at most one per ``MIN_GAP_S``
    (so a client sees them in order), and the latest is kept for the run's record. A bad
    line is skipped and named once on the run's stderr, so the script's author sees why.
    """

    def __init__(self, live: LiveOutput, clock: Callable[[], float] = time.monotonic) -> None:
        self.live = live
        self.clock = clock
        self._t0 = clock()
        self._partial = b""
        self._stderr_tail = ""
        self._explicit = False
        self._complained = False
        self._latest: dict[str, Any] | None = None
        self._pending: dict[str, Any] | None = None
        self._recorded_at = -math.inf
        self._recorded = 0
        self._changed = False
        # add() runs on the supervisor's loop, flush() and take() on the lease's thread.
        self._lock = threading.Lock()

    def add(self, data: bytes) -> None:
        """Take bytes from the progress channel (whole lines count; a partial one waits)."""
        *lines, self._partial = (self._partial + data).split(b"\n")
        if len(self._partial) > LINE_BYTES:
            self._complain("a progress line longer than 4096 bytes was skipped")
            self._partial = b""
        for raw in lines:
            if not raw.strip():
                continue
            if len(raw) > LINE_BYTES:
                self._complain("a progress line longer than 4096 bytes was skipped")
                continue
            try:
                update = parse(raw.decode("utf-8", "replace"))
            except ValueError as exc:
                self._complain(f"progress line skipped: {exc}: {raw[:120]!r}")
                continue
            self._explicit = True
            self._update(update)

    def add_stderr(self, data: bytes) -> None:
        """Look for a tqdm bar in stderr output, unless the script reports for itself."""
        if self._explicit or (b"|" not in data and not self._stderr_tail):
            return
        text = self._stderr_tail + data.decode("utf-8", "replace")
        matches = list(TQDM.finditer(text))
        self._stderr_tail = text[-256:] if "|" in text[-256:] else ""
        if matches:
            last = matches[-1]
            self._update({"done": int(last[2]), "total": int(last[3]) or None, "message": last[1]})

    def _update(self, update: dict[str, Any]) -> None:
        now = self.clock()
        update["t"] = round(now - self._t0, 3)
        with self._lock:
            if self._latest is not None and _same(self._latest, update):
                return
            self._latest = update
            self._changed = True
            self._pending = update
            final = update["total"] is not None and update["done"] >= update["total"]
            if final or now - self._recorded_at >= MIN_GAP_S:
                self._record(now)

    def _record(self, now: float) -> None:
        if self._pending is None or self._recorded >= MAX_RECORDED:
            return
        self.live.add_progress(json.dumps(self._pending, ensure_ascii=False))
        self._pending = None
        self._recorded += 1
        self._recorded_at = now

    def flush(self) -> None:
        """Put a held-back update into the live stream (each store tick, and at the end)."""
        with self._lock:
            self._record(self.clock())

    def take(self) -> dict[str, Any] | None:
        """The latest update if it changed since the last call, else None."""
        with self._lock:
            if not self._changed:
                return None
            self._changed = False
            return self._latest

    @property
    def latest(self) -> dict[str, Any] | None:
        """The latest update, whether or not taken."""
        return self._latest

    def _complain(self, text: str) -> None:
        if not self._complained:
            self._complained = True
            self.live.note(f"\n[scriptrun: {text}; later bad lines are skipped silently]\n")


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (a["done"], a["total"], a["message"]) == (b["done"], b["total"], b["message"])
