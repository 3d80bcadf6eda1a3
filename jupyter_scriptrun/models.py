"""The history's columns by kind: importable without SQLAlchemy or pandas (the columnar
reader's child process needs them)."""

from __future__ import annotations

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
"""The history DataFrame's columns, in order (a contract: see DESIGN.md)."""

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
