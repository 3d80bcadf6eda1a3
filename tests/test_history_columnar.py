"""The history's fast path (Arrow slices read by ADBC's drivers: from SQLite in a child
process, from a real PostgreSQL in this one) gives exactly the frame of the plain
SQLAlchemy path, for every filter, with ties and NULL-first columns, and never endangers
the database the process itself writes to."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import insert

from jupyter_scriptrun.service.frames import _arrow_frame, history, history_frame
from jupyter_scriptrun.status import ExecutionStatus
from jupyter_scriptrun.store import Store, columnar, new_execution_id
from jupyter_scriptrun.store.tables import executions
from tests.conftest import queued_run

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
ROWS = 3000


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Store:
    """3000 runs: error columns NULL for the first 2000 (more than the driver's default
    batch of 1024, where it would guess int64), 400 runs queued at one same instant,
    non-ASCII text and a ``%``, nested parameters, every status."""
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("columnar") / "history.db"
        store = Store(f"sqlite:///{path}")
    else:
        store = Store(request.getfixturevalue("columnar_pg_url"))
    statuses = ["succeeded", "failed", "lost", "cancelled", "timed_out", "running", "queued"]
    rows = []
    for i in range(ROWS):
        queued = T0 - timedelta(seconds=1000) if 1000 <= i < 1400 else T0 - timedelta(seconds=i)
        failed = i >= 2000 and i % 3 == 0
        running = i % 7 == 5
        rows.append(
            {
                "id": f"{(i * 7919) % 10007:032x}",
                "script": ["alpha", "beta", "gamma"][i % 3],
                "status": "failed" if failed else statuses[i % len(statuses)],
                "page_context": "nb-ü 50%" if i % 2 else "cli",
                "parameters": {"n": i, "nested": {"list": [i, "ß"]}},
                "queued_at": queued,
                "started_at": None if running else queued + timedelta(milliseconds=3),
                "finished_at": None if running else queued + timedelta(milliseconds=50 + i),
                "queue_s": 0.003,
                "duration_s": None if running else 0.05 + i / 1000,
                "cpu_user_s": 0.01,
                "cpu_system_s": None,
                "peak_rss_mb": 12.5,
                "exit_code": 1 if failed else (None if running else 0),
                "attempt": 1 + i % 2,
                "worker": None if i < 2000 else f"w{i % 2}@host",
                "error_type": "ScriptFailed" if failed else None,
                "message": "échec: 'quoted' \"text\"\nline 2" if failed else None,
                "cancel_requested": False,
            }
        )
    with store.engine.begin() as conn:
        conn.execute(insert(executions), rows)
    return store


@pytest.fixture(scope="module")
def columnar_pg_url(postgres_admin_url: str) -> Iterator[str]:
    """A database of this module's own on the session's PostgreSQL (the history counts
    only its runs)."""
    from sqlalchemy import create_engine, text

    name = f"scriptrun_columnar_{os.getpid()}"
    admin = create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield postgres_admin_url.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


FILTERS = [
    {},
    {"script": "alpha"},
    {"script": ["beta", "gamma"], "status": ["failed", "lost"]},
    {"since": T0 - timedelta(seconds=1500)},
    {"until": T0 - timedelta(seconds=999), "page_context": "nb-ü 50%"},
    {"limit": 10, "offset": 995},
    {"status": "succeeded", "limit": 50},
    {"script": "nope"},
]


def test_the_fast_path_applies_to_a_sqlite_file_and_to_postgresql(store: Store):
    assert columnar.available() and columnar.available("postgresql")
    if store.engine.dialect.name == "sqlite":
        assert columnar.sqlite_file(store.url) is not None
    else:
        assert columnar.postgres_uri(store.url).startswith("postgresql://")
    assert columnar.sqlite_file("sqlite://") is None
    assert columnar.sqlite_file("postgresql://localhost/test") is None
    assert columnar.postgres_uri("sqlite:///x.db") is None
    uri = columnar.postgres_uri("postgresql+psycopg://u:p%40ss@db:5433/s")
    assert uri == "postgresql://u:p%40ss@db:5433/s"


@pytest.mark.parametrize("filters", FILTERS, ids=lambda f: ",".join(f) or "all")
def test_fast_and_plain_paths_give_the_same_frame(store: Store, filters: dict):
    fast = history(store, columnar_from=0, **filters)
    plain = history_frame(store.history_columns(**filters))
    pd.testing.assert_frame_equal(fast, plain)
    if filters == {}:
        assert len(fast) == ROWS and fast["id"].is_unique
        assert fast["error_type"].iloc[-1] is None  # NULL-first column kept as text/None
        failed = sum(1 for i in range(2000, ROWS) if i % 3 == 0)
        assert (fast["error_type"] == "ScriptFailed").sum() == failed


@pytest.mark.parametrize("parts", [1, 2, 3, 7])
def test_slices_cover_every_run_once_in_order(store: Store, parts: int):
    rows = store.history_count()
    slices = store.history_slices(parts, rows)
    assert rows == ROWS and 1 <= len(slices) <= parts
    if store.engine.dialect.name == "sqlite":
        frames = columnar.read(columnar.sqlite_file(store.url), slices, rows, _arrow_frame)
    else:
        frames = columnar.read_postgres(columnar.postgres_uri(store.url), slices, _arrow_frame)
    joined = pd.concat(frames, ignore_index=True)
    pd.testing.assert_frame_equal(joined, history_frame(store.history_columns()))
    # The 400 runs queued at one instant sit in one slice, whatever the cut points.
    tied = T0 - timedelta(seconds=1000)
    assert sum(bool((f["queued_at"] == tied).any()) for f in frames) == 1


def test_a_history_with_a_limit_is_read_as_one_slice(store: Store):
    slices = store.history_slices(4, store.history_count(limit=10), limit=10)
    assert len(slices) == 1 and "LIMIT" in slices[0]


def test_small_histories_take_the_plain_path(store: Store, monkeypatch: pytest.MonkeyPatch):
    def fail(*args: object) -> None:
        raise AssertionError("the child reader was started")

    monkeypatch.setattr(columnar, "read", fail)
    monkeypatch.setattr(columnar, "read_postgres", fail)
    assert len(history(store, limit=5)) == 5  # 3000 runs < COLUMNAR_FROM_ROWS


def test_reading_fast_loses_nothing_this_process_writes(tmp_path: Path):
    """Two copies of SQLite in one process share POSIX locks: with the driver's copy in
    this process, its reads beside this process's writes deleted the WAL under them or
    died of SIGBUS on a truncated -shm (seen). The read runs in a child process, so fast
    reads in a thread while this process writes lose nothing."""
    store = Store(f"sqlite:///{tmp_path / 'live.db'}")
    sid = store.ensure_script("s", None)

    def add() -> str:
        eid = new_execution_id()
        return queued_run(store, "s", id=eid, script_id=sid, page_context="t")

    written = [add()]
    store.claim(written[0], 1, "w")  # a connection of this process holds the database open
    done = threading.Event()
    seen: list[int] = []

    def read() -> None:
        while not done.is_set():
            seen.append(len(history(store, columnar_from=0)))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        while len(seen) < 3:
            written.append(add())
    finally:
        done.set()
        reader.join(60)
    store.finish(written[0], 1, ExecutionStatus.SUCCEEDED, record={}, output={})
    assert seen == sorted(seen) and seen[-1] <= len(written)
    assert len(history(store, columnar_from=0)) == len(written)
    store.dispose()
    reopened = Store(store.url)  # what another process sees
    assert {r["id"] for r in reopened.history_rows()} == set(written)
    assert reopened.get(written[0])["status"] == "succeeded"
