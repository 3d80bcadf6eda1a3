"""4 client processes x 500 submissions at once on the SQLite default: no "database is
locked", no lost row, unique ids. (No worker: this is about the store under writers.)"""

from __future__ import annotations

import multiprocessing

import redis as redis_client

from jupyter_scriptrun.config import Settings
from jupyter_scriptrun.service.client import Client


def _submit_many(settings: Settings, n: int) -> list[str]:
    client = Client(settings)
    return [client.submit("example_script", {"multiplier": i % 9 + 1}).id for i in range(n)]


def test_four_processes_submit_500_each_on_sqlite(redis_settings: Settings):
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        chunks = pool.starmap(_submit_many, [(redis_settings, 500)] * 4)
    ids = [i for chunk in chunks for i in chunk]
    client = Client(redis_settings)
    try:
        assert len(ids) == len(set(ids)) == 2000
        assert client.store.count("queued") == 2000
        assert set(client.history(limit=None)["id"]) == set(ids)
    finally:  # the 2000 messages of this test's private queue: gone with it
        redis_client.Redis.from_url(redis_settings.broker_url).delete(redis_settings.queue)
