"""Big histories read as Arrow columns (ADBC): the fast path to a DataFrame of a million
runs. SQLite is read in a child process, PostgreSQL in this one.

The ``sqlite3`` module builds a Python object per value (about 6 s per million runs here);
ADBC's SQLite driver fills Arrow columns in C and lets go of the GIL, so slices read on
connections of their own take one core each.

Why a child process: the driver carries its own copy of SQLite. Two copies of SQLite in
one process must never open the same database (sqlite.org/howtocorrupt.html, 2.2.1):
POSIX locks belong to the process, so when one copy closes its file the other copy's
locks go too, and a copy that believes itself the last connection deletes the WAL the
other still writes to — committed runs vanish. In a child of its own the driver is just
another process on the database, which SQLite is made for. The child streams Arrow IPC
on its stdout; the parent converts each slice as it arrives.

    python -m jupyter_scriptrun.store.columnar < {"path": ..., "rows": N, "slices": [SQL, ...]}

PostgreSQL is a server: ADBC's driver is one more client of it, so its slices are read on
connections of their own in threads of this process (libpq fills Arrow columns in C and the
driver lets go of the GIL), with no child in between.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from jupyter_scriptrun.models import FLOAT_COLUMNS, TIME_COLUMNS

T = TypeVar("T")

# The driver guesses a column's type from the first batch of rows: a batch as large as the
# result means it sees every value (a column NULL in its first rows is not taken for int).
BATCH_ROWS_OPTION = "adbc.sqlite.query.batch_rows"
BUSY_TIMEOUT_MS = 60_000

# Below this many runs the plain path is faster than starting the child.
COLUMNAR_FROM_ROWS = 50_000


class ColumnarError(RuntimeError):
    """The child reader failed (the caller falls back to the plain path)."""


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL, None for other databases and in-memory ones."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    if parsed.database == ":memory:" or parsed.database.startswith("file:"):
        return None
    path = Path(parsed.database)
    return path if path.is_file() else None


def postgres_uri(url: str) -> str | None:
    """The libpq URI of a PostgreSQL store URL (without SQLAlchemy's driver name), None for
    other databases."""
    from sqlalchemy.engine import make_url

    from jupyter_scriptrun.store.engine import PREPARE_OPTION

    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return None
    parsed = parsed.difference_update_query([PREPARE_OPTION])  # psycopg's, not libpq's
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def available(database: str = "sqlite") -> bool:
    """Whether ADBC's driver for ``database`` (``sqlite``, ``postgresql``) and pyarrow are
    installed."""
    from importlib.util import find_spec

    driver = find_spec(f"adbc_driver_{database}") is not None
    return driver and find_spec("pyarrow") is not None


def reader(url: str) -> Callable[[list[str], int, Callable[[Any], T]], list[T]] | None:
    """The fast reader of a store URL, ``(slices, rows, convert) -> converted slices``: a
    SQLite file's (a child process) or PostgreSQL's (this process); None when neither
    applies or the driver is not installed."""
    path = sqlite_file(url)
    if path is not None and available():
        return lambda slices, rows, convert: read(path, slices, rows, convert)
    uri = postgres_uri(url)
    if uri is not None and available("postgresql"):
        return lambda slices, rows, convert: read_postgres(uri, slices, convert)
    return None


def read_postgres(uri: str, slices: list[str], convert: Callable[[Any], T]) -> list[T]:
    """Run the SQL slices against PostgreSQL at ``uri`` in threads of this process;
    ``convert`` each slice's Arrow table, in the order of ``slices``.

    Raises:
        ColumnarError: the driver failed; its error is in the message.
    """
    import adbc_driver_postgresql.dbapi as adbc

    def one(sql: str) -> Any:
        with adbc.connect(uri) as conn, conn.cursor() as cur:
            cur.execute(sql)
            return _typed(cur.fetch_arrow_table())

    try:
        return [convert(table) for table in _in_threads(one, slices)]
    except adbc.Error as exc:
        raise ColumnarError(str(exc)) from exc


def read(path: Path, slices: list[str], rows: int, convert: Callable[[Any], T]) -> list[T]:
    """Run the SQL slices against ``path`` in a child process; ``convert`` each slice's
    Arrow table as it arrives, in the order of ``slices``.

    Raises:
        ColumnarError: the child failed; its error is in the message.
    """
    import pyarrow as pa

    spec = json.dumps({"path": str(path), "rows": rows, "slices": slices})
    proc = subprocess.Popen(
        [sys.executable, "-m", __name__],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    try:
        proc.stdin.write(spec.encode())
        proc.stdin.close()
        converted = []
        try:
            with pa.ipc.open_stream(proc.stdout) as reader:
                for batch in reader:
                    converted.append(convert(pa.Table.from_batches([batch])))
        except (pa.ArrowInvalid, OSError) as exc:
            raise ColumnarError(f"{exc}; {proc.stderr.read().decode(errors='replace')}") from exc
        if proc.wait() != 0:
            raise ColumnarError(proc.stderr.read().decode(errors="replace")[-2000:])
        return converted
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def _read_slices(path: str, slices: list[str], rows: int) -> Iterator[Any]:
    """Each slice as an Arrow table of the history's types, in order; read in threads."""
    import adbc_driver_sqlite.dbapi as adbc

    def one(sql: str) -> Any:
        with adbc.connect(path) as conn, conn.cursor() as cur:
            # Wait for a writer's lock as the store's own connections do.
            cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            cur.adbc_statement.set_options(**{BATCH_ROWS_OPTION: str(max(rows, 1) + 1)})
            cur.execute(sql)
            return _typed(cur.fetch_arrow_table())

    yield from _in_threads(one, slices)


def _in_threads(one: Callable[[str], T], slices: list[str]) -> Iterator[T]:
    """``one`` of each slice, a thread per core, in the order of ``slices``."""
    workers = min(len(slices), os.cpu_count() or 1)
    if workers <= 1:
        yield from map(one, slices)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="scriptrun-history") as pool:
        yield from pool.map(one, slices)


def _typed(table: Any) -> Any:
    """The table with the history's Arrow types: times as UTC timestamps, numbers as
    float64, the rest text (a column NULL throughout comes from the driver as int64)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    columns = []
    for name in table.column_names:
        column = table[name]
        if name in TIME_COLUMNS:
            column = pc.assume_timezone(column.cast(pa.timestamp("us")), "UTC")
        elif name in FLOAT_COLUMNS:
            column = column.cast(pa.float64())
        else:
            column = column.cast(pa.string())
        columns.append(column)
    return pa.table(columns, names=table.column_names)


def main() -> int:
    """The child: a JSON spec on stdin, one Arrow IPC stream of every slice on stdout."""
    import pyarrow as pa

    spec = json.load(sys.stdin)
    out = sys.stdout.buffer
    writer = None
    for table in _read_slices(spec["path"], spec["slices"], spec["rows"]):
        if writer is None:
            writer = pa.ipc.new_stream(out, table.schema)
        for batch in table.to_batches():
            writer.write_batch(batch)
    if writer is not None:
        writer.close()
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
