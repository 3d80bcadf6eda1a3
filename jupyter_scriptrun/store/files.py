"""The files a run left: listed in ``run_files``, their bytes in ``file_chunks`` (or at a
location in object storage, see :mod:`.objects`), those of the run's last attempt."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy import delete, select

from jupyter_scriptrun.exceptions import FileNotKept
from jupyter_scriptrun.store.engine import Database, retrying, utcnow
from jupyter_scriptrun.store.tables import file_chunks, run_files

FILE_COLUMNS = ("name", "size", "media_type", "sha256", "note", "attempt", "location")


class RunFiles(Database):
    """Keeping and reading the files runs write."""

    @retrying
    def clear_files(self, execution_id: str) -> list[str]:
        """Forget a run's files (a new attempt's replace them); the object-storage
        locations of those that were kept there, for the caller to remove."""
        with self._write() as conn:
            locations = conn.execute(
                select(run_files.c.location).where(
                    run_files.c.execution_id == execution_id, run_files.c.location.isnot(None)
                )
            ).scalars()
            found = [str(x) for x in locations]
            conn.execute(delete(file_chunks).where(file_chunks.c.execution_id == execution_id))
            conn.execute(delete(run_files).where(run_files.c.execution_id == execution_id))
        return found

    def add_file(
        self,
        execution_id: str,
        attempt: int,
        entry: dict[str, Any],
        chunks: Iterable[bytes] | None = None,
    ) -> None:
        """Record one file (``entry``: name, size, media_type, and sha256, note or
        location); ``chunks``: its bytes, kept in the store, in one transaction with its
        row (the sha256 may be filled in as they are read: the row is written last)."""
        with self._write() as conn:
            if chunks is not None:
                for seq, piece in enumerate(chunks):
                    conn.execute(
                        file_chunks.insert().values(
                            execution_id=execution_id, name=entry["name"], seq=seq, data=piece
                        )
                    )
            conn.execute(
                run_files.insert().values(
                    execution_id=execution_id,
                    attempt=attempt,
                    created_at=utcnow(),
                    **{k: entry.get(k) for k in FILE_COLUMNS if k != "attempt"},
                )
            )

    def files(self, execution_id: str) -> list[dict[str, Any]]:
        """A run's files, by name: kept (``note`` None) or not, with why."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(*[run_files.c[k] for k in FILE_COLUMNS])
                .where(run_files.c.execution_id == execution_id)
                .order_by(run_files.c.name)
            ).mappings()
            return [dict(r) for r in rows]

    def file_counts(self, ids: Iterable[str]) -> dict[str, int]:
        """How many files each of these runs kept (runs with none left out)."""
        from sqlalchemy import func

        with self.engine.connect() as conn:
            rows = conn.execute(
                select(run_files.c.execution_id, func.count())
                .where(run_files.c.execution_id.in_(list(ids)), run_files.c.note.is_(None))
                .group_by(run_files.c.execution_id)
            ).all()
        return {r[0]: int(r[1]) for r in rows}

    def file_entry(self, execution_id: str, name: str) -> dict[str, Any]:
        """One kept file's row; FileNotKept when there is none, or it was not kept."""
        for entry in self.files(execution_id):
            if entry["name"] == name:
                if entry["note"] is not None:
                    raise FileNotKept(
                        f"run {execution_id[:8]}: {name!r} was not kept ({entry['note']})"
                    )
                return entry
        raise FileNotKept(f"run {execution_id[:8]} has no file {name!r}")

    def file_chunks(self, execution_id: str, name: str) -> Iterator[bytes]:
        """A file's bytes as kept in the store, in pieces (a connection per piece: a slow
        reader holds no transaction open)."""
        seq = 0
        while True:
            with self.engine.connect() as conn:
                piece = conn.execute(
                    select(file_chunks.c.data).where(
                        file_chunks.c.execution_id == execution_id,
                        file_chunks.c.name == name,
                        file_chunks.c.seq == seq,
                    )
                ).scalar()
            if piece is None:
                return
            yield bytes(piece)
            seq += 1

    def read_file_bytes(self, execution_id: str, name: str) -> Iterator[bytes]:
        """A kept file's bytes, wherever they are kept."""
        entry = self.file_entry(execution_id, name)
        if entry["location"]:
            from jupyter_scriptrun.store.objects import read

            return read(entry["location"])
        return self.file_chunks(execution_id, name)
