"""The PostgreSQL store behind PgBouncer in transaction mode, as docs/deploy.md suggests
for large fleets: more clients than server connections, and no session state kept
between transactions (no session advisory locks, no prepared statements)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
from servers import PrivatePgBouncer, ServerMissing
from sqlalchemy import create_engine, text

from jupyter_scriptrun.config import Settings
from jupyter_scriptrun.service.client import Client
from jupyter_scriptrun.status import ExecutionStatus
from jupyter_scriptrun.store.engine import HEAD_REVISION

POOL_SIZE = 2


@pytest.fixture
def bounced(postgres_admin_url: str) -> Iterator[tuple[PrivatePgBouncer, str]]:
    """A fresh database behind a PgBouncer of its own (2 server connections at most)."""
    name = f"bounced_{uuid.uuid4().hex[:8]}"
    admin = create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    upstream = postgres_admin_url.split("@", 1)[1].split("/", 1)[0]
    try:
        bouncer = PrivatePgBouncer(upstream, mode="transaction", pool_size=POOL_SIZE)
    except ServerMissing as exc:
        pytest.skip(str(exc))
    bouncer.start()
    yield bouncer, name
    bouncer.stop()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def server_connections(admin_url: str, database: str) -> int:
    engine = create_engine(admin_url)
    with engine.connect() as conn:
        count = conn.execute(
            text("SELECT count(*) FROM pg_stat_activity WHERE datname = :db"), {"db": database}
        ).scalar()
    engine.dispose()
    return int(count or 0)


def test_the_store_runs_through_pgbouncer_in_transaction_mode(
    bounced, postgres_admin_url: str, redis_settings: Settings, start_worker
):
    bouncer, database = bounced
    url = bouncer.url(database) + "?prepare_threshold=none"  # as docs/deploy.md says

    # Three processes migrate the empty database at once: one does, the others find the
    # schema at head (a session advisory lock would leak on a pooled server connection).
    migrate = f"from jupyter_scriptrun.store import Store; Store({url!r})"
    procs = [subprocess.Popen([sys.executable, "-c", migrate]) for _ in range(3)]
    assert [p.wait(120) for p in procs] == [0, 0, 0]

    fleet = redis_settings.with_(database_url=url)
    start_worker(fleet, concurrency=2)
    start_worker(fleet, concurrency=2)
    client = Client(fleet)
    assert client.store.revision() == HEAD_REVISION
    # Enough runs that every statement is executed many times over (a driver that
    # prepared statements on the server would meet another connection's session).
    runs = [client.submit("example_script", {"multiplier": i % 7 + 1}) for i in range(40)]
    for run in runs:
        assert run.wait(90).status is ExecutionStatus.SUCCEEDED, run.record()["message"]

    frame = client.history()
    assert len(frame) == 40 and (frame["status"] == "succeeded").all()
    assert frame["worker"].nunique() == 2
    # Four slots, two kernels' worth of clients, and never more than the pool's
    # connections on the server.
    assert server_connections(postgres_admin_url, database) <= POOL_SIZE


def test_a_bad_prepare_threshold_in_the_store_url_is_named():
    from jupyter_scriptrun.store.engine import make_engine

    with pytest.raises(ValueError, match="prepare_threshold='maybe' in the store URL"):
        make_engine("postgresql+psycopg://postgres@127.0.0.1:1/db?prepare_threshold=maybe")
    engine = make_engine("postgresql+psycopg://postgres@127.0.0.1:1/db?prepare_threshold=none")
    assert "prepare_threshold" not in str(engine.url)  # libpq would refuse it
