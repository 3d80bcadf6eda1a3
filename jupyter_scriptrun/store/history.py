"""The store's read path: one run, its attempts and output, and the history (also as
SQL text for the columnar reader)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Text, bindparam, func, or_, select, type_coerce

from jupyter_scriptrun.exceptions import ExecutionNotFound
from jupyter_scriptrun.models import (
    HISTORY_COLUMNS,
    TIME_COLUMNS,
    AttemptRecord,
    ExecutionRecord,
    OutputChunk,
    OutputPage,
)
from jupyter_scriptrun.status import ExecutionStatus
from jupyter_scriptrun.store import dialects
from jupyter_scriptrun.store.engine import Database, aware, retrying
from jupyter_scriptrun.store.tables import attempts, executions, output_chunks, script_versions

MIN_ID_PREFIX = 4
"""The shortest id prefix that names a run."""

_STATUS = select(executions.c.status).where(executions.c.id == bindparam("b_id"))
"""Built once: a waiting client reads it for every run."""


class HistoryReads(Database):
    """Reads of runs and of the history; never writes."""

    @retrying
    def output(self, id: str, offset: int = 0, attempt: int | None = None) -> OutputPage:
        """Live output of an attempt (the latest by default) from chunk ``offset`` on.

        Returns ``{"attempt", "chunks": [{"seq", "stream", "text"}], "next_offset"}``;
        pass ``next_offset`` back to read only what is new.
        """
        with self.engine.connect() as conn:
            if attempt is None:
                attempt = conn.execute(
                    select(executions.c.attempt).where(executions.c.id == id)
                ).scalar()
                if attempt is None:
                    raise ExecutionNotFound(f"no execution {id!r}")
            rows = conn.execute(
                select(output_chunks.c.seq, output_chunks.c.stream, output_chunks.c.text)
                .where(
                    output_chunks.c.execution_id == id,
                    output_chunks.c.attempt == attempt,
                    output_chunks.c.seq >= max(0, offset),
                )
                .order_by(output_chunks.c.seq)
            ).all()
        chunks = [OutputChunk(seq=r.seq, stream=r.stream, text=r.text) for r in rows]
        return {
            "attempt": attempt,
            "chunks": chunks,
            "next_offset": chunks[-1]["seq"] + 1 if chunks else max(0, offset),
        }

    @retrying
    def resolve(self, id_or_prefix: str) -> str:
        """A full execution id from an id or a unique prefix of at least 4 characters."""
        key = str(id_or_prefix).strip().lower()
        if not key or not all(c in "0123456789abcdef" for c in key):
            raise ExecutionNotFound(f"{id_or_prefix!r} is not an execution id")
        with self.engine.connect() as conn:
            if len(key) == 32:
                if conn.execute(select(executions.c.id).where(executions.c.id == key)).first():
                    return key
                raise ExecutionNotFound(f"no execution {key}")
            if len(key) < MIN_ID_PREFIX:
                raise ExecutionNotFound(
                    f"{key!r}: give at least {MIN_ID_PREFIX} characters of the id"
                )
            ids = (
                conn.execute(
                    select(executions.c.id).where(executions.c.id.like(f"{key}%")).limit(2)
                )
                .scalars()
                .all()
            )
        if not ids:
            raise ExecutionNotFound(f"no execution id starts with {key!r}")
        if len(ids) > 1:
            raise ExecutionNotFound(f"{key!r} matches several executions; give more of the id")
        return ids[0]

    @retrying
    def get(self, id: str) -> ExecutionRecord:
        """One execution's record (the history columns and more)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(executions).where(executions.c.id == id)).first()
        if row is None:
            raise ExecutionNotFound(f"no execution {id!r}")
        return cast(ExecutionRecord, dict(row._mapping))

    @retrying
    def script_version(self, content_hash: str) -> tuple[str, bytes] | None:
        """A kept script version: its file name and source, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(script_versions.c.file_name, script_versions.c.source).where(
                    script_versions.c.content_hash == content_hash
                )
            ).first()
        return None if row is None else (row.file_name, bytes(row.source))

    @retrying
    def status(self, id: str) -> ExecutionStatus:
        """The current status of one execution (one narrow query)."""
        with self.engine.connect() as conn:
            value = conn.execute(_STATUS, {"b_id": id}).scalar()
        if value is None:
            raise ExecutionNotFound(f"no execution {id!r}")
        return ExecutionStatus(value)

    @retrying
    def attempts(self, id: str) -> list[AttemptRecord]:
        """Every attempt of an execution, oldest first, with output and result."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(attempts).where(attempts.c.execution_id == id).order_by(attempts.c.attempt)
            )
            return [cast(AttemptRecord, dict(r._mapping)) for r in rows]

    def history_query(
        self,
        *,
        script: str | Sequence[str] | None = None,
        status: str | Sequence[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        page_context: str | None = None,
        limit: int | None = None,
        offset: int = 0,
        raw: bool = False,
        text: str | None = None,
        schedule_id: str | None = None,
    ) -> Any:
        """The SELECT behind the history, newest first (for frames and the REST API)."""
        cols: list[Any] = [executions.c[c] for c in HISTORY_COLUMNS]
        if raw:
            # Timestamps as the driver gives them (text on SQLite, datetimes on PostgreSQL)
            # and parameters as their JSON text: a vectorized parse in pandas beats a
            # Python conversion per value by far.
            plain = dialects.raw_time_type(self.engine.dialect.name)
            cols = [
                type_coerce(c, plain).label(c.name)
                if c.name in TIME_COLUMNS
                else type_coerce(c, Text()).label(c.name)
                if c.name == "parameters"
                else c
                for c in cols
            ]
        conds = _history_conditions(
            script, status, since, until, page_context, text=text, schedule_id=schedule_id
        )
        query = select(*cols).where(*conds).order_by(*_NEWEST_FIRST)
        if limit is not None:
            query = query.limit(limit)
        if offset:
            query = query.offset(offset)
        return query

    @retrying
    def history_page(
        self,
        *,
        order_by: str = "queued_at",
        descending: bool = True,
        limit: int = 25,
        offset: int = 0,
        **filters: Any,
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of the history sorted by ``order_by`` (one of ``SORTABLE``; empty
        values last), and how many runs the filters match: what a table view shows."""
        if order_by not in SORTABLE:
            raise ValueError(f"cannot sort by {order_by!r}; one of: {', '.join(SORTABLE)}")
        column = executions.c[order_by]
        key = (column.desc() if descending else column.asc()).nulls_last()
        conds = _history_conditions(**filters)
        query = (
            select(*[executions.c[c] for c in HISTORY_COLUMNS])
            .where(*conds)
            .order_by(key, *_NEWEST_FIRST)
            .limit(limit)
            .offset(offset)
        )
        with self.engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(executions).where(*conds))
            count = total.scalar_one()
            return [dict(r._mapping) for r in conn.execute(query)], count

    @retrying
    def history_count(self, **filters: Any) -> int:
        """How many runs the history filters match (``limit``/``offset`` not applied)."""
        conds = _history_conditions(**filters)
        with self.engine.connect() as conn:
            return conn.execute(
                select(func.count()).select_from(executions).where(*conds)
            ).scalar_one()

    @retrying
    def history_slices(self, parts: int, rows: int, **filters: Any) -> list[str]:
        """The history query cut into up to ``parts`` consecutive slices, newest first, as
        SQL texts with the values inlined: for readers that run the slices in parallel on
        connections of their own (``columnar``). ``rows`` is ``history_count(**filters)``.

        Slices are cut at ``queued_at`` values, so runs queued at the same instant stay
        together and each slice comes ordered from the database (the history's index).
        """
        queued_at = executions.c.queued_at
        cuts: list[datetime] = []
        if parts > 1 and filters.get("limit") is None and not filters.get("offset"):
            conds = _history_conditions(**filters)
            offsets = sorted({rows * k // parts for k in range(1, parts)} - {0})
            # One pass over the index for every cut (an OFFSET per cut reads the rows
            # before it again each time: seconds for a million runs).
            ranked = (
                select(queued_at, func.row_number().over(order_by=queued_at.desc()).label("n"))
                .where(*conds)
                .subquery()
            )
            at = select(ranked.c.queued_at).where(ranked.c.n.in_([o + 1 for o in offsets]))
            with self.engine.connect() as conn:
                cuts = sorted(set(conn.execute(at).scalars()))[::-1]
        base = self.history_query(raw=True, **filters)
        slices = []
        for k in range(len(cuts) + 1):
            query = base
            if k < len(cuts):
                query = query.where(queued_at > cuts[k])
            if k > 0:
                query = query.where(queued_at <= cuts[k - 1])
            sql = query.compile(
                dialect=self._literal_dialect(), compile_kwargs={"literal_binds": True}
            )
            slices.append(str(sql))
        return slices

    def _literal_dialect(self) -> Any:
        """The dialect to write a slice's SQL with values inlined. For PostgreSQL, not the
        engine's psycopg one: its ``%s`` parameter style doubles every ``%`` in inlined
        text, which another client (ADBC's driver) would then take literally."""
        return dialects.literal_dialect(self.engine.dialect)

    @retrying
    def history_columns(self, **filters: Any) -> dict[str, list[Any]]:
        """History as columns of driver values (timestamps unparsed): the fast path to a
        DataFrame (see ``frames.history_frame``)."""
        with self.engine.connect() as conn:
            rows = conn.execute(self.history_query(raw=True, **filters)).all()
        values = list(zip(*rows, strict=True)) if rows else [() for _ in HISTORY_COLUMNS]
        return {name: list(col) for name, col in zip(HISTORY_COLUMNS, values, strict=True)}

    @retrying
    def history_rows(self, **filters: Any) -> list[dict[str, Any]]:
        """The history's rows as dicts, newest first (``history_query``'s filters): for
        a page of the REST API, where building a DataFrame costs more than the query."""
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(self.history_query(**filters))]

    @retrying
    def count(self, status: str | None = None) -> int:
        """How many executions there are (with that status)."""
        query = select(func.count()).select_from(executions)
        if status:
            query = query.where(executions.c.status == status)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())


_NEWEST_FIRST = (executions.c.queued_at.desc(), executions.c.id)
SORTABLE = (
    "queued_at",
    "started_at",
    "finished_at",
    "script",
    "status",
    "queue_s",
    "duration_s",
    "cpu_user_s",
    "peak_rss_mb",
    "exit_code",
    "worker",
)
"""The history columns a table view may sort by."""


def _history_conditions(
    script: str | Sequence[str] | None = None,
    status: str | Sequence[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    page_context: str | None = None,
    limit: int | None = None,
    offset: int = 0,
    text: str | None = None,
    schedule_id: str | None = None,
) -> list[Any]:
    """WHERE conditions of the history filters (``limit``/``offset`` are not conditions);
    ``text`` is looked for in the message and the error type, and as an id prefix;
    ``schedule_id`` selects one schedule's runs (its name may have been reused)."""
    conds: list[Any] = []
    if schedule_id is not None:
        conds.append(executions.c.schedule_id == schedule_id)
    if text:
        conds.append(
            or_(
                executions.c.message.icontains(text, autoescape=True),
                executions.c.error_type.icontains(text, autoescape=True),
                executions.c.id.startswith(text.lower(), autoescape=True),
            )
        )
    if script:
        names = [script] if isinstance(script, str) else list(script)
        conds.append(executions.c.script.in_(names))
    if status:
        values = [status] if isinstance(status, str) else list(status)
        conds.append(executions.c.status.in_([ExecutionStatus(v).value for v in values]))
    if since is not None:
        conds.append(executions.c.queued_at >= aware(since))
    if until is not None:
        conds.append(executions.c.queued_at < aware(until))
    if page_context is not None:
        conds.append(executions.c.page_context == page_context)
    return conds
