"""The records: an execution, an attempt and a page of output as typed dicts (what the
store returns and the client hands on, JSON already decoded), the history's columns by
kind, and the history's query. Importable without SQLAlchemy or pandas (the columnar
reader's child needs it).

A new column goes into the table (``store/tables.py``), a migration, and the record here;
the history's columns are listed below when it belongs to the history.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypedDict


class ExecutionRecord(TypedDict):
    """One execution (a row of ``executions``): the history's columns and more."""

    id: str
    script: str
    script_id: int | None
    status: str
    page_context: str
    parameters: dict[str, Any]
    queue: str | None
    timeout_s: float | None
    queued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    queue_s: float | None
    duration_s: float | None
    cpu_user_s: float | None
    cpu_system_s: float | None
    peak_rss_mb: float | None
    exit_code: int | None
    attempt: int
    worker: str | None
    error_type: str | None
    message: str | None
    content_hash: str | None
    heartbeat_at: datetime | None
    """A running run's last heartbeat; a queued run's last send."""
    cancel_requested: bool
    idempotency_key: str | None
    source: str | None
    """An ad-hoc script's text (``%%scriptrun`` cells)."""
    language: str | None
    schedule_id: str | None
    """The schedule that made the run (None: started by hand)."""
    scheduled_for: datetime | None
    """The schedule's tick the run stands for."""
    progress: dict[str, Any] | None
    """The latest progress the script reported: ``{"done", "total", "message", "t"}`` (``t``:
    seconds since its start); None when it reported none."""
    notify: list[str] | None
    """apprise URLs told when the run ends as ``notify_on`` says."""
    notify_on: list[str] | None
    """The outcomes that notify (None: failed, timed_out, lost)."""
    notified: dict[str, Any] | None
    """How the notification went: ``{"at", "status", "targets": [{"target", "ok",
    "attempts", "error"}]}`` (None: nothing was sent)."""


class AttemptRecord(TypedDict):
    """One attempt of an execution (a row of ``attempts``), with its output and result."""

    execution_id: str
    attempt: int
    status: str
    worker: str | None
    started_at: datetime
    finished_at: datetime | None
    duration_s: float | None
    cpu_user_s: float | None
    cpu_system_s: float | None
    peak_rss_mb: float | None
    exit_code: int | None
    error_type: str | None
    message: str | None
    content_hash: str | None
    stdout: str | None
    stderr: str | None
    stdout_bytes: int | None
    stderr_bytes: int | None
    stdout_truncated: bool | None
    stderr_truncated: bool | None
    traceback: str | None
    result: Any
    """The whole result document the script printed (None when it printed no JSON)."""
    data: Any
    progress: dict[str, Any] | None


class FileRecord(TypedDict):
    """One file a run left in its output folder (its last attempt's)."""

    name: str
    """Its path below the output folder (``plot.png``, ``tables/out.csv``)."""
    size: int
    media_type: str
    sha256: str | None
    note: str | None
    """None: kept. Otherwise why it was not (a link, over a limit)."""
    attempt: int
    location: str | None
    """Where its bytes are when kept outside the store (a folder's or S3's URL)."""


class OutputChunk(TypedDict):
    """A piece of live output."""

    seq: int
    stream: str
    """``stdout`` or ``stderr``."""
    text: str


class OutputPage(TypedDict):
    """Live output of one attempt from a chunk offset on."""

    attempt: int
    chunks: list[OutputChunk]
    next_offset: int
    """Pass it back to read only what is new."""


HISTORY_COLUMNS = (
    "id",
    "script",
    "status",
    "page_context",
    "parameters",
    "queued_at",
    "started_at",
    "finished_at",
    "queue_s",
    "duration_s",
    "cpu_user_s",
    "cpu_system_s",
    "peak_rss_mb",
    "exit_code",
    "attempt",
    "worker",
    "error_type",
    "message",
)
"""The history DataFrame's columns, in order: a contract (README, "Records"); new ones
are added at the end."""

TIME_COLUMNS = ("queued_at", "started_at", "finished_at")
"""The history's timestamp columns (timezone-aware UTC in the frame)."""

FLOAT_COLUMNS = (
    "queue_s",
    "duration_s",
    "cpu_user_s",
    "cpu_system_s",
    "peak_rss_mb",
    "exit_code",
    "attempt",
)
"""The history's numeric columns (floats in the frame)."""

ISO_FORMAT = "%Y-%m-%dT%H:%M:%S.%f+00:00"
"""Timestamps in every export: ISO 8601, microseconds, the UTC offset spelled out (as in
``datetime.isoformat(timespec="microseconds")`` of an aware UTC time)."""

INTEGER_COLUMNS = ("exit_code", "attempt")
"""Numeric columns whose values are whole numbers: floats in the frame (the contract),
integers in exports (CSV, JSON, tables), where ``1.0`` would mislead."""

ATTEMPT_MEASURES = ("duration_s", "cpu_user_s", "cpu_system_s", "peak_rss_mb", "exit_code")
"""What the runner measured of an attempt: columns of both the attempt and the execution
(the runner's outcome has fields of the same names)."""

ATTEMPT_STREAMS = (
    "stdout",
    "stderr",
    "stdout_bytes",
    "stderr_bytes",
    "stdout_truncated",
    "stderr_truncated",
)
"""The attempt's captured output: columns of the attempt only."""


HISTORY_FILTERS = ("script", "status", "since", "until", "page_context", "text", "schedule_id")


@dataclass(frozen=True)
class HistoryQuery:
    """Which runs a history holds, declared once for Python, the CLI, the magics, the
    panel and REST: the filters (each None: any), newest first, ``limit`` runs (None:
    every run) after skipping ``offset``. ``text`` is looked for in the message and the
    error type, and as an id prefix; ``schedule_id`` selects one schedule's runs."""

    script: tuple[str, ...] | None = None
    status: tuple[str, ...] | None = None
    since: datetime | None = None
    until: datetime | None = None
    page_context: str | None = None
    text: str | None = None
    schedule_id: str | None = None
    limit: int | None = None
    offset: int = 0

    @classmethod
    def of(cls, **given: Any) -> HistoryQuery:
        """A query from filters as people give them (a name or names, a status or
        statuses); ValueError listing every problem (an unknown filter, a status that is
        none, a time that is no datetime, a negative offset)."""
        from jupyter_scriptrun.status import ALL

        known = (*HISTORY_FILTERS, "limit", "offset")
        problems = [
            f"unknown filter {name!r} (filters: {', '.join(known)})"
            for name in given
            if name not in known
        ]
        values = {k: v for k, v in given.items() if k in known and v is not None}
        for name in ("script", "status"):
            if name in values:
                value = values[name]
                values[name] = (value,) if isinstance(value, str) else tuple(value) or None
        for bad in sorted(set(values.get("status") or ()) - set(ALL)):
            problems.append(f"status {bad!r} is not one of {', '.join(ALL)}")
        for name in ("since", "until"):
            if name in values and not isinstance(values[name], datetime):
                problems.append(f"{name} must be a datetime, not {values[name]!r}")
        offset = values.get("offset", 0)
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            problems.append(f"offset must be a whole number of runs, not {offset!r}")
        if problems:
            raise ValueError("; ".join(problems))
        return cls(**values)

    def filters(self) -> dict[str, Any]:
        """The filters given, as the store's reads take them (``limit``/``offset`` too)."""
        return {
            name: getattr(self, name)
            for name in (*HISTORY_FILTERS, "limit", "offset")
            if getattr(self, name) is not None and not (name == "offset" and self.offset == 0)
        }


def export_record(row: dict[str, Any]) -> dict[str, Any]:
    """A history row as the exports give it: timestamps in ISO 8601 (microseconds, UTC),
    whole numbers as integers, measures rounded to the microsecond as NumPy rounds them
    (so the values equal the DataFrame's JSON export), the status as its text."""
    out = dict(row)
    for name in TIME_COLUMNS:
        if out.get(name) is not None:
            out[name] = out[name].astimezone(UTC).strftime(ISO_FORMAT)
    for name in FLOAT_COLUMNS:
        value = out.get(name)
        if value is not None:
            out[name] = round(float(value) * 1e6) / 1e6 if math.isfinite(value) else None
    for name in INTEGER_COLUMNS:
        if out.get(name) is not None:
            out[name] = int(out[name])
    if out.get("status") is not None:
        out["status"] = str(getattr(out["status"], "value", out["status"]))
    return out
