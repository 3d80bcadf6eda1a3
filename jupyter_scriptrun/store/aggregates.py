"""What the fleet's metrics count, in indexed queries: totals of the runs that ended up to
a point in time, the runs that ended after it, and what is queued and running now."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, select

from jupyter_scriptrun.status import FINAL, PENDING, ExecutionStatus
from jupyter_scriptrun.store.engine import Database
from jupyter_scriptrun.store.tables import executions, pruned_totals

ENDED = sorted(s.value for s in FINAL)
# Only a run that ended has a finished_at, so the reads by end filter on it alone: with a
# status filter too, SQLite prefers the status index (a million "succeeded" rows) to the
# range on finished_at (the last seconds' runs), 0.3-0.5 s instead of ms at 1M runs.
ACTIVE = sorted({s.value for s in PENDING} | {ExecutionStatus.RUNNING.value})
ADHOC = "(ad-hoc)"
"""The one ``script`` the metrics give every ad-hoc run (a ``%%scriptrun`` cell, a REST
``source``): their names are the user's and unbounded, each a new set of series."""
METRIC_SCRIPT = case((executions.c.source.is_not(None), ADHOC), else_=executions.c.script)
"""A run's script as the metrics label it: a registered script by name, ad-hoc as one."""


@dataclass
class Totals:
    """Runs of one script that ended with one status."""

    script: str
    status: str
    runs: int
    retries: int
    """Attempts beyond the first."""
    duration: list[int]
    """Runs whose duration is at most each bucket's bound (not cumulative), then the rest."""
    duration_sum: float
    duration_count: int
    wait: list[int]
    """The same for the queue wait."""
    wait_sum: float
    wait_count: int


def _bucket_counts(column: Any, bounds: Sequence[float]) -> list[ColumnElement[Any]]:
    """One SUM per bucket (lower bound exclusive, upper inclusive), and one for the rest."""
    sums: list[ColumnElement[Any]] = []
    lower: float | None = None
    for bound in [*bounds, None]:
        conditions = [column.is_not(None)]
        if lower is not None:
            conditions.append(column > lower)
        if bound is not None:
            conditions.append(column <= bound)
        sums.append(func.coalesce(func.sum(case((and_(*conditions), 1), else_=0)), 0))
        lower = bound
    return sums


class Aggregates(Database):
    """Reads for the metrics: cheap enough for a scrape every few seconds."""

    def ended_totals(
        self, until: datetime, duration_bounds: Sequence[float], wait_bounds: Sequence[float]
    ) -> list[Totals]:
        """Per script and status, the runs that ended at or before ``until`` (one pass)."""
        d = _bucket_counts(executions.c.duration_s, duration_bounds)
        w = _bucket_counts(executions.c.queue_s, wait_bounds)
        attempt = executions.c.attempt
        query = (
            select(
                METRIC_SCRIPT,
                executions.c.status,
                func.count(),
                func.coalesce(func.sum(case((attempt > 1, attempt - 1), else_=0)), 0),
                func.coalesce(func.sum(executions.c.duration_s), 0.0),
                func.count(executions.c.duration_s),
                func.coalesce(func.sum(executions.c.queue_s), 0.0),
                func.count(executions.c.queue_s),
                *d,
                *w,
            )
            .where(executions.c.status.in_(ENDED), executions.c.finished_at <= until)
            .group_by(METRIC_SCRIPT, executions.c.status)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        n = len(d)
        return [
            Totals(
                script=r[0],
                status=r[1],
                runs=int(r[2]),
                retries=int(r[3]),
                duration_sum=float(r[4]),
                duration_count=int(r[5]),
                wait_sum=float(r[6]),
                wait_count=int(r[7]),
                duration=[int(v) for v in r[8 : 8 + n]],
                wait=[int(v) for v in r[8 + n : 8 + 2 * n]],
            )
            for r in rows
        ]

    def ended_after(self, after: datetime, limit: int = 100_000) -> list[Any]:
        """The runs that ended after ``after`` (oldest first; by the finished_at index)."""
        c = executions.c
        query = (
            select(
                c.id,
                METRIC_SCRIPT.label("script"),
                c.status,
                c.finished_at,
                c.duration_s,
                c.queue_s,
                c.attempt,
            )
            .where(c.finished_at > after)
            .order_by(c.finished_at)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return list(conn.execute(query).all())

    def recent_failures(self, since: datetime, limit: int = 10) -> list[dict[str, Any]]:
        """The newest runs that ended badly (failed, timed out, lost) since ``since``."""
        c = executions.c
        bad = [s.value for s in (ExecutionStatus.FAILED, ExecutionStatus.TIMED_OUT)]
        bad.append(ExecutionStatus.LOST.value)
        query = (
            select(c.id, c.script, c.status, c.finished_at, c.error_type, c.message, c.attempt)
            .where(c.finished_at > since, c.status.in_(bad))
            .order_by(c.finished_at.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query).all()]

    def count_ended_between(self, after: datetime, until: datetime) -> int:
        """How many runs ended after ``after`` and at or before ``until`` (the index only)."""
        c = executions.c
        query = (
            select(func.count())
            .select_from(executions)
            .where(c.finished_at > after, c.finished_at <= until)
        )
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def ended_before(self, until: datetime, skip: int) -> datetime | None:
        """The end time ``skip`` runs back from ``until`` (by the finished_at index)."""
        c = executions.c
        query = (
            select(c.finished_at)
            .where(c.finished_at <= until)
            .order_by(c.finished_at.desc())
            .offset(skip)
            .limit(1)
        )
        with self.engine.connect() as conn:
            return conn.execute(query).scalar_one_or_none()

    def pruned_runs(self) -> dict[tuple[str, str], int]:
        """Runs removed by ``prune``, by script and status."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(pruned_totals)).all()
        return {(r.script, r.status): int(r.runs) for r in rows}

    def active_runs(self) -> list[tuple[str, str, int]]:
        """(queue, status, runs) for what is queued, retrying or running now."""
        query = (
            select(executions.c.queue, executions.c.status, func.count())
            .where(executions.c.status.in_(ACTIVE))
            .group_by(executions.c.queue, executions.c.status)
        )
        with self.engine.connect() as conn:
            return [(q or "", s, int(n)) for q, s, n in conn.execute(query).all()]
