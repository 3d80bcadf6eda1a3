"""Telling people a run ended: its ``notify`` URLs through apprise, retried, off the run's
path (the worker that ended the run sends, on a thread of its own, and records how it went
in the run's ``notified``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from jupyter_scriptrun.status import ExecutionStatus
from jupyter_scriptrun.store import Store, utcnow
from jupyter_scriptrun.timing.spec import DEFAULT_NOTIFY_ON

log = logging.getLogger(__name__)

ATTEMPTS = 3
"""Tries per target; between them 1 s, then 2 s."""
TIMEOUT_S = 10
"""Each try's connect and read timeout (apprise's ``cto`` and ``rto``)."""
BODY_CHARS = 1500


def wanted(row: Mapping[str, Any], status: ExecutionStatus) -> bool:
    """Whether a run that ended ``status`` notifies anyone."""
    return bool(row.get("notify")) and status.value in (row.get("notify_on") or DEFAULT_NOTIFY_ON)


def message(record: Mapping[str, Any]) -> tuple[str, str]:
    """The title and body told: script, status, how long, the error and where it ran."""
    status = record["status"]
    title = f"scriptrun: {record['script']} {status}"
    lines = [f"run {record['id']} of {record['script']} ended {status}"]
    if record.get("duration_s") is not None:
        lines.append(f"took {record['duration_s']:.1f} s (attempt {record['attempt']})")
    if record.get("error_type") or record.get("message"):
        lines.append(f"{record.get('error_type') or 'error'}: {record.get('message') or ''}")
    if record.get("page_context"):
        lines.append(f"started from {record['page_context']}")
    if record.get("worker"):
        lines.append(f"on {record['worker']}")
    return title, "\n".join(lines)[:BODY_CHARS]


def send(
    url: str, title: str, body: str, sleep: Callable[[float], None] = time.sleep
) -> dict[str, Any]:
    """Send to one apprise URL, up to ATTEMPTS times; what happened, with the URL's
    secrets hidden (apprise's privacy form)."""
    import apprise

    notifier = apprise.Apprise()
    if not notifier.add(_with_timeouts(url)):
        return {
            "target": url.split("://")[0] + "://…",
            "ok": False,
            "attempts": 0,
            "error": "apprise cannot read this URL",
        }
    target = notifier[0].url(privacy=True)
    error = ""
    for attempt in range(1, ATTEMPTS + 1):
        with apprise.LogCapture(level=logging.WARNING) as captured:
            ok = notifier.notify(title=title, body=body)
        if ok:
            return {"target": target, "ok": True, "attempts": attempt}
        lines = captured.getvalue().strip().splitlines()
        error = (lines[-1] if lines else "not delivered")[:300]
        if attempt < ATTEMPTS:
            sleep(2 ** (attempt - 1))
    return {"target": target, "ok": False, "attempts": ATTEMPTS, "error": error}


def _with_timeouts(url: str) -> str:
    """``url`` with apprise's connect and read timeouts, unless it sets them."""
    if "cto=" in url or "rto=" in url:
        return url
    return f"{url}{'&' if '?' in url else '?'}cto={TIMEOUT_S}&rto={TIMEOUT_S}"


class Notifier:
    """Sends a worker's notifications on two threads of their own: a run never waits."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._pool: ThreadPoolExecutor | None = None

    def ended(self, execution_id: str, row: Mapping[str, Any], status: ExecutionStatus) -> None:
        """A run ended ``status`` (``row``: its record, with ``notify`` and ``notify_on``)."""
        if not wanted(row, status):
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="scriptrun-notify")
        future = self._pool.submit(self.deliver, execution_id, list(row["notify"]), status)
        future.add_done_callback(_log_failure)

    def deliver(
        self, execution_id: str, targets: list[str], status: ExecutionStatus
    ) -> dict[str, Any]:
        """Tell every target, then record how it went in the run's ``notified``."""
        record = self.store.get(execution_id)
        title, body = message({**record, "status": status.value})
        outcome: dict[str, Any] = {
            "at": utcnow().isoformat(),
            "status": status.value,
            "targets": [send(url, title, body) for url in targets],
        }
        self.store.record_notified(execution_id, outcome)
        failed = [t["target"] for t in outcome["targets"] if not t["ok"]]
        if failed:
            log.warning("run %s: notifying %s failed", execution_id, ", ".join(failed))
        return outcome


def _log_failure(future: Future) -> None:
    if (exc := future.exception()) is not None:
        log.error("notifying failed: %s", exc, exc_info=exc)
