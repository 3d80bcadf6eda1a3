"""The store on SQLite and PostgreSQL: migrations, the life of a run, concurrency."""

from __future__ import annotations

import multiprocessing
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import inspect

from jupyter_scriptrun.exceptions import ExecutionConflict, ExecutionNotFound
from jupyter_scriptrun.status import ExecutionStatus
from jupyter_scriptrun.store import HEAD_REVISION, Store, get_store, new_execution_id
from jupyter_scriptrun.store.engine import MIGRATIONS
from jupyter_scriptrun.store.tables import metadata
from tests.conftest import queued_run


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        return Store(f"sqlite:///{tmp_path / 'store.db'}")
    url = request.getfixturevalue("postgres_url")
    s = Store(url)
    with s.engine.begin() as conn:  # a clean slate per test on the shared database
        for table in reversed(metadata.sorted_tables):  # every table, children first
            conn.execute(table.delete())
    return s


def create(store: Store, script: str = "s", **extra: object) -> str:
    return queued_run(
        store,
        script,
        script_id=store.ensure_script(script, "sha256:x"),
        parameters={"a": 1},
        timeout_s=10.0,
        content_hash="sha256:x",
        **extra,
    )


def test_head_revision_is_the_newest_migration():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(cfg).get_current_head() == HEAD_REVISION


def test_a_new_database_is_migrated_to_head(store: Store):
    assert store.revision() == HEAD_REVISION
    assert {"scripts", "executions", "attempts"} <= set(inspect(store.engine).get_table_names())


def test_opening_again_is_a_no_op(store: Store):
    Store(store.url).migrate()
    assert store.revision() == HEAD_REVISION


def test_threads_opening_new_databases_at_once_each_get_a_migrated_one(tmp_path: Path):
    # Alembic keeps its running migration in module globals: unguarded, eight threads
    # migrating eight databases fail with KeyError('config') or "table already exists".
    stores: list[Store] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def open_one(i: int) -> None:
        start.wait()
        try:
            stores.append(Store(f"sqlite:///{tmp_path / f'{i}.db'}"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [s.revision() for s in stores] == [HEAD_REVISION] * 8


def test_threads_asking_for_one_url_at_once_share_one_store(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    got: list[Store] = []
    start = threading.Barrier(6)

    def ask() -> None:
        start.wait()
        got.append(get_store(url))

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 6 and len({id(s) for s in got}) == 1
    assert got[0].revision() == HEAD_REVISION


def test_script_ids_are_stable_integers(store: Store):
    first = store.ensure_script("alpha", "sha256:1")
    assert store.ensure_script("alpha", "sha256:2") == first
    assert store.ensure_script("beta", None) != first


def test_the_life_of_a_run(store: Store):
    eid = create(store)
    rec = store.get(eid)
    assert rec["status"] == "queued" and rec["queued_at"].tzinfo is not None

    claimed = store.claim(eid, 1, "w1")
    assert claimed and claimed["status"] == "running"
    assert store.claim(eid, 1, "w2") is None, "a second delivery must not run it again"

    store.finish(
        eid,
        1,
        ExecutionStatus.SUCCEEDED,
        record={"duration_s": 0.5, "exit_code": 0, "peak_rss_mb": 12.5},
        output={
            "stdout": "out",
            "stderr": "",
            "result": {"x": "你好"},
            "data": "你好",
        },
    )
    rec = store.get(eid)
    assert rec["status"] == "succeeded" and rec["duration_s"] == 0.5 and rec["worker"] == "w1"
    assert rec["queue_s"] is not None and rec["queue_s"] >= 0
    assert rec["finished_at"] >= rec["started_at"] >= rec["queued_at"]
    [attempt] = store.attempts(eid)
    assert attempt["stdout"] == "out" and attempt["result"] == {"x": "你好"}


def test_a_claim_retried_after_its_lost_commit_still_gets_the_run(store: Store):
    from jupyter_scriptrun.store import utcnow

    eid = create(store)
    now = utcnow()
    first = store._claim(eid, 1, "host/1", now)
    # The connection dropped after the commit: the retry repeats the claim, same instant.
    again = store._claim(eid, 1, "host/1", now)
    assert first and again and again["id"] == eid and again["status"] == "running"
    assert store.claim(eid, 1, "host/1") is None, "another delivery to the same worker"
    assert len(store.attempts(eid)) == 1


def test_each_attempt_of_a_retried_run_is_kept(store: Store):
    eid = create(store)
    store.claim(eid, 1, "w")
    store.finish(eid, 1, ExecutionStatus.RETRYING, record={"exit_code": 75}, output={})
    assert store.status(eid) is ExecutionStatus.RETRYING
    assert store.claim(eid, 1, "w") is None
    store.claim(eid, 2, "w")
    store.finish(eid, 2, ExecutionStatus.SUCCEEDED, record={"exit_code": 0}, output={})
    rec = store.get(eid)
    assert rec["attempt"] == 2 and rec["status"] == "succeeded"
    assert [a["status"] for a in store.attempts(eid)] == ["retrying", "succeeded"]


def test_cancelling_a_queued_run_ends_it_and_it_never_starts(store: Store):
    eid = create(store)
    assert store.request_cancel(eid) is ExecutionStatus.CANCELLED
    assert store.claim(eid, 1, "w") is None
    assert store.get(eid)["finished_at"] is not None


def test_cancelling_a_running_run_flags_it_for_its_worker(store: Store):
    eid = create(store)
    store.claim(eid, 1, "w")
    assert store.request_cancel(eid) is ExecutionStatus.RUNNING
    assert store.tick(eid, 1, [], heartbeat=True) is True  # its worker is told to stop


def test_cancelling_a_finished_run_is_a_conflict(store: Store):
    eid = create(store)
    store.claim(eid, 1, "w")
    store.finish(eid, 1, ExecutionStatus.FAILED, record={}, output={})
    with pytest.raises(ExecutionConflict, match="already ended: failed"):
        store.request_cancel(eid)


def test_a_silent_running_run_is_declared_lost(store: Store):
    eid = create(store)
    store.claim(eid, 1, "w-dead")
    assert store.stale_running(60) == []
    assert [r["id"] for r in store.stale_running(0)] == [eid]
    assert store.mark_lost(eid, 1, retry=False, lost_after_s=0)
    rec = store.get(eid)
    assert rec["status"] == "lost" and rec["error_type"] == "WorkerLost"
    assert "w-dead" in rec["message"]
    assert not store.mark_lost(eid, 1, retry=False, lost_after_s=0)


def test_ids_resolve_from_a_unique_prefix(store: Store):
    eid = create(store)
    assert store.resolve(eid[:8]) == eid
    assert store.resolve(eid.upper()) == eid
    for bad in ("zz", "abc", "../x", "0" * 32):
        with pytest.raises(ExecutionNotFound):
            store.resolve(bad)


def test_history_filters(store: Store):
    a, b = create(store, "alpha"), create(store, "beta")
    store.request_cancel(b)
    assert [r["id"] for r in store.history_rows(script="alpha")] == [a]
    assert [r["id"] for r in store.history_rows(status="cancelled")] == [b]
    assert [r["id"] for r in store.history_rows(limit=1)] == [b]


def _submit_many(url: str, n: int) -> list[str]:
    store = Store(url)
    ids = []
    for _ in range(n):
        eid = create(store)
        store.claim(eid, 1, "w")
        store.finish(eid, 1, ExecutionStatus.SUCCEEDED, record={}, output={})
        ids.append(eid)
    return ids


def test_several_processes_write_at_once_without_locking_errors(store: Store):
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        results = pool.starmap(_submit_many, [(store.url, 50)] * 4)
    ids = [i for chunk in results for i in chunk]
    assert len(ids) == len(set(ids)) == 200
    assert store.count("succeeded") == 200


def test_upgrading_from_the_first_revision_keeps_every_run(tmp_path: Path):
    from alembic import command
    from alembic.config import Config

    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = Store(url, migrate=False)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with old.engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        conn.commit()
    assert old.revision() == "0001"
    with old.engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO executions (id, script, status, page_context, parameters, queued_at,"
            " attempt, cancel_requested) VALUES ('a'||hex(randomblob(15)), 's', 'succeeded', '',"
            " '{}', '2026-01-01 00:00:00', 1, 0)"
        )
        eid = conn.exec_driver_sql("SELECT id FROM executions").scalar()
        conn.exec_driver_sql(
            "INSERT INTO attempts (execution_id, attempt, status, started_at, stdout)"
            f" VALUES ('{eid}', 1, 'succeeded', '2026-01-01 00:00:00', 'kept')"
        )
    old.dispose()

    upgraded = Store(url)
    assert upgraded.revision() == HEAD_REVISION
    assert upgraded.attempts(eid)[0]["stdout"] == "kept"
    assert upgraded.get(eid)["idempotency_key"] is None


def test_an_idempotency_key_admits_one_run(store: Store):
    first = create(store, idempotency_key="nightly-2026-11-28")
    with pytest.raises(ExecutionConflict, match="already used") as caught:
        create(store, idempotency_key="nightly-2026-11-28")
    assert caught.value.execution_id == first
    assert store.count() == 1
    create(store)
    create(store)  # runs without a key never conflict
    assert store.count() == 3


def test_live_output_is_read_incrementally_per_attempt(store: Store):
    eid = create(store)
    store.claim(eid, 1, "w")
    store.tick(eid, 1, [(0, "stdout", "line 1\n"), (1, "stderr", "warn\n")], heartbeat=False)
    first = store.output(eid)
    assert first["attempt"] == 1 and first["next_offset"] == 2
    assert [(c["stream"], c["text"]) for c in first["chunks"]] == [
        ("stdout", "line 1\n"),
        ("stderr", "warn\n"),
    ]
    assert store.output(eid, first["next_offset"])["chunks"] == []
    store.finish(
        eid,
        1,
        ExecutionStatus.SUCCEEDED,
        record={},
        output={"stdout": "line 1\nline 2\n"},
        chunks=[(2, "stdout", "line 2\n")],
    )
    rest = store.output(eid, first["next_offset"])
    assert [c["text"] for c in rest["chunks"]] == ["line 2\n"] and rest["next_offset"] == 3
    with pytest.raises(ExecutionNotFound):
        store.output(new_execution_id())


def test_history_columns_make_the_typed_frame_on_both_databases(store: Store):
    from jupyter_scriptrun.service.frames import history_frame

    for _ in range(3):
        create(store, script="alpha")
    frame = history_frame(store.history_columns())
    assert len(frame) == 3 and str(frame["queued_at"].dt.tz) == "UTC"
    assert frame["parameters"].tolist() == [{"a": 1}] * 3
    assert frame["status"].dtype.name == "category" and frame["attempt"].dtype == "float64"
    empty = history_frame(store.history_columns(script="nope"))
    assert empty.empty and list(empty.columns) == list(frame.columns)


def test_unclaimed_queued_runs_are_handed_out_once_per_period(store: Store):
    import time

    eid = create(store)
    assert store.unclaimed(60) == []
    time.sleep(0.3)
    [row] = store.unclaimed(0.2)
    assert row["id"] == eid and row["queue"] == "q"
    assert store.unclaimed(0.2) == []  # just marked as sent again
    store.claim(eid, 1, "w")
    time.sleep(0.3)
    assert store.unclaimed(0.2) == []  # claimed runs are never re-sent


def test_a_superseded_attempt_never_writes_the_runs_state_and_keeps_its_own_row(store: Store):
    """A partition: attempt 1's worker is cut off, the run is declared lost and run again
    as attempt 2; attempt 1 then ends. The run speaks for attempt 2 only; attempt 1's row
    says truthfully how it ended, and that it no longer counted."""
    eid = create(store)
    store.claim(eid, 1, "cut-off")
    time.sleep(0.05)
    assert store.mark_lost(eid, 1, retry=True, lost_after_s=0.01)
    assert store.claim(eid, 2, "other")
    rec = store.get(eid)
    assert (rec["status"], rec["attempt"], rec["error_type"]) == ("running", 2, None)
    assert store.tick(eid, 1, [], heartbeat=True) is True, "attempt 1 must stop"
    assert store.tick(eid, 2, [], heartbeat=True) is False

    counted = store.finish(eid, 1, ExecutionStatus.SUCCEEDED, record={"exit_code": 0}, output={})
    assert counted is False, "the caller learns that the run moved on without it"
    rec = store.get(eid)
    assert (rec["status"], rec["attempt"], rec["worker"]) == ("running", 2, "other")
    first, second = store.attempts(eid)
    assert (first["status"], first["error_type"]) == ("succeeded", "Superseded")
    assert "declared lost" in first["message"] and second["status"] == "running"

    # Had it asked for a retry (its own end: lost), its row says lost, not retrying.
    store.finish(
        eid, 1, ExecutionStatus.RETRYING, record={}, output={}, ended_as=ExecutionStatus.LOST
    )
    assert store.attempts(eid)[0]["status"] == "lost"

    for _ in range(2):  # a retried finish (its first commit's answer lost) is no supersession
        assert store.finish(eid, 2, ExecutionStatus.SUCCEEDED, record={"exit_code": 0}, output={})
    rec = store.get(eid)
    assert (rec["status"], rec["attempt"]) == ("succeeded", 2)
    assert store.attempts(eid)[1]["error_type"] is None


def test_heartbeats_use_the_databases_clock(store: Store, monkeypatch: pytest.MonkeyPatch):
    """A worker whose clock runs an hour behind still renews its lease on PostgreSQL:
    heartbeats are written and compared on the database's clock, not the worker's."""
    if store.engine.dialect.name != "postgresql":
        pytest.skip("SQLite lives on one host: that host's clock is the database's")
    from datetime import timedelta

    from jupyter_scriptrun.store import engine, runs

    eid = create(store)
    real = engine.utcnow
    for module in (engine, runs):  # this process's clock, an hour behind
        monkeypatch.setattr(module, "utcnow", lambda: real() - timedelta(hours=1))
    store.claim(eid, 1, "w")
    store.tick(eid, 1, [], heartbeat=True)
    assert store.stale_running(lost_after_s=30) == []
    assert store.get(eid)["heartbeat_at"] > real() - timedelta(seconds=30)


def test_prune_removes_old_ended_runs_in_batches_and_keeps_their_counts(store: Store):
    from datetime import timedelta

    from sqlalchemy import update

    from jupyter_scriptrun.store.tables import executions

    ended = [create(store, "old") for _ in range(5)]
    for eid in ended:
        store.claim(eid, 1, "w")
        store.finish(eid, 1, ExecutionStatus.SUCCEEDED, record={"exit_code": 0}, output={})
    still_running = create(store, "old")
    store.claim(still_running, 1, "w")
    recent = create(store, "new")
    long_ago = datetime.now(UTC) - timedelta(days=40)
    with store.engine.begin() as conn:  # as if they had ended 40 days ago
        conn.execute(
            update(executions).where(executions.c.id.in_(ended)).values(finished_at=long_ago)
        )
    assert store.prune(timedelta(days=30), dry_run=True) == 5
    assert store.prune(timedelta(days=30), batch=2) == 5  # three batches
    assert store.count() == 2 and store.get(still_running)["status"] == "running"
    assert store.get(recent)["script"] == "new"
    assert store.pruned() == {("old", "succeeded"): 5}
    assert store.attempts(ended[0]) == []
    assert store.prune(timedelta(days=30)) == 0 and store.pruned() == {("old", "succeeded"): 5}


def test_a_history_query_names_every_problem_with_its_filters(settings):
    from jupyter_scriptrun.service.client import Client

    client = Client(settings)
    with pytest.raises(ValueError) as caught:
        client.history(scrip="x", status=["succeeded", "bogus"], since="yesterday", offset=-1)
    message = str(caught.value)
    for words in (
        "unknown filter 'scrip' (filters: script, status",
        "status 'bogus' is not one of",
        "since must be a datetime",
        "offset must be a whole number",
    ):
        assert words in message, (words, message)
    assert client.history(script="example_script", status="succeeded").empty
    assert client.count_runs(status=("queued", "running")) == 0
