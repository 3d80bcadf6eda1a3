"""The states an execution moves through."""

from __future__ import annotations

from enum import StrEnum


class ExecutionStatus(StrEnum):
    """Status of an execution, as stored and as shown."""

    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    LOST = "lost"

    def __str__(self) -> str:
        return self.value

    @property
    def is_final(self) -> bool:
        """True when the run will not change any more."""
        return self in FINAL


FINAL = frozenset(
    {
        ExecutionStatus.SUCCEEDED,
        ExecutionStatus.FAILED,
        ExecutionStatus.TIMED_OUT,
        ExecutionStatus.CANCELLED,
        ExecutionStatus.LOST,
    }
)
PENDING = frozenset({ExecutionStatus.QUEUED, ExecutionStatus.RETRYING})
ALL = tuple(s.value for s in ExecutionStatus)
