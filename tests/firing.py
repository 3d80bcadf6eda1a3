"""Schedules fired on a clock of the test's own: the clock, the fixtures, the runs."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from jupyter_scriptrun.config import Settings
from jupyter_scriptrun.fleet.scheduler import Scheduler
from jupyter_scriptrun.service.client import Client


class Clock:
    def __init__(self, store, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = store.db_now()
        monkeypatch.setattr(store, "db_now", lambda: self.now)  # the store's clock is ours
        real = store.due_schedules
        monkeypatch.setattr(store, "due_schedules", lambda: real(self.now))

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_client(request, settings: Settings) -> Client:
    """The client on SQLite, or on the private PostgreSQL server (shared by the session:
    schedule names there are made unique)."""
    if request.param == "postgres":
        settings = settings.with_(database_url=request.getfixturevalue("postgres_url"))
    return Client(settings)


@pytest.fixture
def fleet(client: Client, monkeypatch: pytest.MonkeyPatch):
    """A client that does not start a local worker, a clock, and schedulers whose sends
    are recorded (no worker: the runs stay queued)."""
    monkeypatch.setattr(Client, "ensure_scheduler", lambda self: None)
    clock = Clock(client.store, monkeypatch)
    sent: list[str] = []

    def scheduler(name: str = "w1") -> Scheduler:
        return Scheduler(
            client.store,
            client.registry,
            client.settings,
            lambda execution_id, queue, script: sent.append(execution_id),
            name,
        )

    return client, clock, scheduler, sent


def runs_of(client: Client, schedule) -> list[dict]:
    records = [client.get(i).record() for i in schedule.runs()["id"]]
    return sorted(records, key=lambda r: r["scheduled_for"])  # oldest tick first
