"""History read from SQLite as Arrow tables (ADBC), slices in parallel: the fast path for
big histories.

The ``sqlite3`` module builds a Python object per value (about 6 s per million runs here);
ADBC's SQLite driver fills Arrow columns in C and lets go of the GIL while it does, so
two slices read on two connections take one core each. Used only where it applies (a
SQLite file, ``adbc_driver_sqlite`` importable); the caller falls back to SQLAlchemy.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.engine import make_url

T = TypeVar("T")

# The driver guesses a column's type from the first batch of rows: a batch as large as the
# result means it sees every value (a column NULL in its first rows is not taken for int).
BATCH_ROWS_OPTION = "adbc.sqlite.query.batch_rows"
BUSY_TIMEOUT_MS = 60_000


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL, None for other databases and in-memory ones."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    if parsed.database == ":memory:" or parsed.database.startswith("file:"):
        return None
    path = Path(parsed.database)
    return path if path.is_file() else None


def available() -> bool:
    """Whether the ADBC SQLite driver and pyarrow can be imported."""
    try:
        import adbc_driver_sqlite.dbapi  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def read_slices(
    path: Path,
    slices: list[str],
    rows: int,
    convert: Callable[[Any], T],
    threads: int | None = None,
) -> list[T]:
    """Run each SQL slice on a connection of its own, ``threads`` at a time, and return
    ``convert(table)`` of each, in the order of ``slices``.

    Converting in the same thread overlaps one slice's Python work (parsing JSON) with the
    next slice's read, which runs without the GIL.
    """
    import adbc_driver_sqlite.dbapi as adbc

    def read(sql: str) -> T:
        with adbc.connect(str(path)) as conn, conn.cursor() as cur:
            # Wait for a writer's lock as the store's own connections do.
            cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            cur.adbc_statement.set_options(**{BATCH_ROWS_OPTION: str(max(rows, 1) + 1)})
            cur.execute(sql)
            table = cur.fetch_arrow_table()
        return convert(table)

    workers = threads or min(len(slices), os.cpu_count() or 1)
    if workers <= 1 or len(slices) == 1:
        return [read(sql) for sql in slices]
    with ThreadPoolExecutor(workers, thread_name_prefix="scriptrun-history") as pool:
        return list(pool.map(read, slices))
