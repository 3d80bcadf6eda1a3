"""Removing old runs: ended executions, with their attempts and output, deleted in small
batches (short transactions, no long locks), their numbers kept per script and status so
that counts over all time stay monotonic."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, func, select

from jupyter_scriptrun.status import ExecutionStatus
from jupyter_scriptrun.store.aggregates import METRIC_SCRIPT
from jupyter_scriptrun.store.engine import Database, dialect_insert, retrying, utcnow
from jupyter_scriptrun.store.tables import attempts, executions, output_chunks, pruned_totals

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
        while (n := self._prune_batch(old, batch)) > 0:
            removed += n
        return removed

    @retrying
    def _prune_batch(self, old: tuple[object, ...], batch: int) -> int:
        with self._write() as conn:
            rows = conn.execute(
                # Counted as the metrics label them: ad-hoc runs under one name.
                select(executions.c.id, METRIC_SCRIPT.label("script"), executions.c.status)
                .where(*old)  # type: ignore[arg-type]
                .limit(batch)
            ).all()
            if not rows:
                return 0
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
            conn.execute(delete(output_chunks).where(output_chunks.c.execution_id.in_(ids)))
            conn.execute(delete(attempts).where(attempts.c.execution_id.in_(ids)))
            conn.execute(delete(executions).where(executions.c.id.in_(ids)))
            return len(ids)

    def pruned(self) -> dict[tuple[str, str], int]:
        """Runs removed so far, by script and status."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(pruned_totals)).all()
        return {(r.script, r.status): int(r.runs) for r in rows}
