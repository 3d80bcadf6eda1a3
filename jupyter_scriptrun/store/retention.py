"""Removing old runs: ended executions, with their attempts, output and files (in the
store and in object storage), deleted in small
batches (short transactions, no long locks), their numbers kept per script and status so
that counts over all time stay monotonic."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, func, select

from jupyter_scriptrun.status import ExecutionStatus
from jupyter_scriptrun.store.aggregates import METRIC_SCRIPT
from jupyter_scriptrun.store.engine import Database, dialect_insert, retrying, utcnow
from jupyter_scriptrun.store.objects import remove
from jupyter_scriptrun.store.tables import (
    attempts,
    executions,
    file_chunks,
    output_chunks,
    pruned_totals,
    run_files,
)

FINAL = [s.value for s in ExecutionStatus if s.is_final]


class Retention(Database):
    """``prune``: old ended runs go, their counts stay."""

    def prune(self, older_than: timedelta, *, batch: int = 1000, dry_run: bool = False) -> int:
        """Delete runs that ended more than ``older_than`` ago; how many (or, with
        ``dry_run``, would be). Runs still queued or running are never touched."""
        cutoff = utcnow() - older_than
        old = (executions.c.status.in_(FINAL), executions.c.finished_at < cutoff)
        if dry_run:
            with self.engine.connect() as conn:
                query = select(func.count()).select_from(executions).where(*old)
                return int(conn.execute(query).scalar_one())
        removed = 0
        while True:
            n, stored_elsewhere = self._prune_batch(old, batch)
            if n == 0:
                return removed
            removed += n
            if stored_elsewhere:  # after the rows went: a file is never listed but gone
                remove(stored_elsewhere)

    @retrying
    def _prune_batch(self, old: tuple[object, ...], batch: int) -> tuple[int, list[str]]:
        with self._write() as conn:
            rows = conn.execute(
                # Counted as the metrics label them: ad-hoc runs under one name.
                select(executions.c.id, METRIC_SCRIPT.label("script"), executions.c.status)
                .where(*old)  # type: ignore[arg-type]
                .limit(batch)
            ).all()
            if not rows:
                return 0, []
            ids = [r.id for r in rows]
            counts: dict[tuple[str, str], int] = {}
            for r in rows:
                counts[(r.script, r.status)] = counts.get((r.script, r.status), 0) + 1
            insert = dialect_insert(conn, pruned_totals)
            conn.execute(
                insert.on_conflict_do_update(
                    index_elements=["script", "status"],
                    set_={"runs": pruned_totals.c.runs + insert.excluded.runs},
                ),
                [{"script": s, "status": st, "runs": n} for (s, st), n in counts.items()],
            )
            elsewhere = conn.execute(
                select(run_files.c.location).where(
                    run_files.c.execution_id.in_(ids), run_files.c.location.isnot(None)
                )
            ).scalars()
            locations = [str(x) for x in elsewhere]
            conn.execute(delete(file_chunks).where(file_chunks.c.execution_id.in_(ids)))
            conn.execute(delete(run_files).where(run_files.c.execution_id.in_(ids)))
            conn.execute(delete(output_chunks).where(output_chunks.c.execution_id.in_(ids)))
            conn.execute(delete(attempts).where(attempts.c.execution_id.in_(ids)))
            conn.execute(delete(executions).where(executions.c.id.in_(ids)))
            return len(ids), locations

    def pruned(self) -> dict[tuple[str, str], int]:
        """Runs removed so far, by script and status."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(pruned_totals)).all()
        return {(r.script, r.status): int(r.runs) for r in rows}
