"""The fleet on separate hosts: a database host (PostgreSQL, and Redis or RabbitMQ), two
worker hosts with their own hostname, HOME, data dir and scripts folder, and a client host,
made of network namespaces joined by a private bridge (tests/hosts.py).

What a user does happens on the client host, through the product. The test reads the store
and the broker through their Unix sockets, so its own view never depends on the network it
cuts. Long scripts append a line to a journal on the shared disk every 0.2 s while they run,
stamped by the machine's one clock: "never twice at once" and "stopped on time" are checked
from outside the product.
"""

from __future__ import annotations

import collections
import itertools
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_until as wait_for
from hosts import Host, Lan, unavailable
from servers import PrivatePostgres, PrivateRabbitMQ, PrivateRedis, ServerMissing
from sqlalchemy import create_engine, text

from jupyter_scriptrun.contract.registry import file_hash
from jupyter_scriptrun.status import ExecutionStatus
from jupyter_scriptrun.store import Store

WHY_NOT = unavailable()
pytestmark = [
    pytest.mark.skipif(WHY_NOT is not None, reason=f"no test hosts here: {WHY_NOT}"),
    pytest.mark.slow,
    pytest.mark.postgres,
]

WHERE = '''"""Says which host ran it."""
# /// scriptrun
# description = "Where am I"
# ///
import json
import socket

print(json.dumps({"status": "success", "data": {"host": socket.gethostname()}}))
'''

VERSIONED = 'import json\nprint(json.dumps({"status": "success", "data": {"version": N}}))\n'

JOURNALED = '''"""Runs for `seconds`, writing a journal line every 0.2 s."""
# /// scriptrun
# retries = RETRIES
# [parameters.seconds]
# type = "number"
# default = 5
# [parameters.journal]
# type = "string"
# required = true
# ///
import json
import os
import socket
import time

p = json.loads(os.environ["SCRIPT_PARAMETERS"])
me = f"{os.environ['EXECUTION_ID']} {socket.gethostname()} {os.getpid()}"
end = time.monotonic() + p["seconds"]
with open(p["journal"], "a", buffering=1) as journal:
    while time.monotonic() < end:
        journal.write(f"{me} {time.time():.3f}\\n")
        time.sleep(0.2)
print(json.dumps({"status": "success", "data": {"host": socket.gethostname()}}))
'''

SCRIPTS = {
    "where.py": WHERE,
    "journaled.py": JOURNALED.replace("RETRIES", "1"),
    "journaled_once.py": JOURNALED.replace("RETRIES", "0"),
}

CLIENT_PRELUDE = """
import json, time
from jupyter_scriptrun.service.client import Client
c = Client()
def out(value):
    print(json.dumps(value, default=str))
"""


# --------------------------------------------------------------------------- the servers


@pytest.fixture(scope="module")
def lan(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lan]:
    network = Lan(tmp_path_factory.mktemp("hosts"))
    try:
        yield network
    finally:
        network.close()


@pytest.fixture(scope="module")
def db_host(lan: Lan) -> Host:
    host = lan.host("db")
    # As docs/deploy.md asks of a broker host: a connection that has data in flight to a
    # dead peer (a worker's pub/sub subscription) is given up after about 12 s here (the
    # kernel's default, 15 retries, takes about 15 minutes; keepalives do not apply).
    host.sysctl("net.ipv4.tcp_retries2", "5")
    return host


@pytest.fixture(scope="module")
def pg(db_host: Host) -> Iterator[PrivatePostgres]:
    # Server-side keepalives, as docs/deploy.md asks, short here: a dead host's sessions
    # must end without waiting for its goodbye.
    keepalives = "-c tcp_keepalives_idle=3 -c tcp_keepalives_interval=1 -c tcp_keepalives_count=3"
    try:
        server = PrivatePostgres(host=db_host, options=keepalives)
    except ServerMissing as exc:
        pytest.skip(str(exc))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def redis(db_host: Host, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    try:
        server = PrivateRedis(
            tmp_path_factory.mktemp("redis"),
            host=db_host,
            options=("--tcp-keepalive", "3"),
            password="fleet-secret",  # a Redis on the network refuses guests (protected mode)
        )
    except ServerMissing as exc:
        pytest.skip(str(exc))
    server.start()
    yield server
    server.kill()


CONSUMER_TIMEOUT_S = 4


@pytest.fixture(scope="module")
def rabbitmq(db_host: Host, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRabbitMQ]:
    """RabbitMQ on the database host, with a short consumer timeout."""
    try:
        server = PrivateRabbitMQ.with_consumer_timeout(
            tmp_path_factory.mktemp("rabbit"), CONSUMER_TIMEOUT_S, host=db_host
        )
    except ServerMissing as exc:
        pytest.skip(str(exc))
    server.start()
    yield server
    server.stop()


# --------------------------------------------------------------------------- the fleet


class Fleet:
    """One test's fleet: its own database and queue on the shared servers, two worker hosts
    and a client host, each with its own scripts folder, data dir and HOME."""

    def __init__(
        self,
        lan: Lan,
        pg: PrivatePostgres,
        broker_url: str,
        journal: Path,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.lan, self.pg, self.journal = lan, pg, journal
        self.database = f"fleet_{uuid.uuid4().hex[:8]}"
        admin = create_engine(pg.socket_url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {self.database}"))
        admin.dispose()
        self.queue = f"fleet-{uuid.uuid4().hex[:6]}"
        self.settings = {
            "SCRIPTRUN_BROKER_URL": broker_url,
            "SCRIPTRUN_DATABASE_URL": (
                f"postgresql://postgres@{pg.address}:{pg.port}/{self.database}"
            ),
            "SCRIPTRUN_QUEUE": self.queue,
            **(settings or {}),
        }
        self.client = self._host("client", SCRIPTS)
        self.w1 = self._host("w1", SCRIPTS)
        self.w2 = self._host("w2", SCRIPTS)
        self.workers: dict[str, Any] = {}
        self._store: Store | None = None

    def _host(self, name: str, scripts: dict[str, str]) -> Host:
        host = self.lan.host(name)
        folder = host.home / "scripts"
        folder.mkdir()
        for file, source in scripts.items():
            (folder / file).write_text(source)
        return host

    def env(self, host: Host) -> dict[str, str]:
        """What the operator exports on ``host``: the shared settings, its own folders."""
        return host.env(
            {
                **self.settings,
                "SCRIPTRUN_SCRIPTS_PATH": str(host.home / "scripts"),
                "SCRIPTRUN_DATA_DIR": str(host.home / "data"),
            }
        )

    def start_worker(self, host: Host, slots: int = 2) -> None:
        """``scriptrun worker --concurrency N`` on ``host``, as the README's recipe says."""
        log = host.home / "worker.log"
        proc = host.popen(
            [sys.executable, "-m", "jupyter_scriptrun", "worker", "--concurrency", str(slots)],
            self.env(host),
            log,
        )
        self.workers[host.name] = proc

        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"worker on {host.name} exited: {log.read_text()[-3000:]}")
            return b" ready." in log.read_bytes()

        try:
            wait_for(ready, 60, f"the worker on {host.name}")
        except pytest.fail.Exception as exc:
            pytest.fail(f"{exc}; its log:\n{log.read_text()[-3000:]}")

    def on_client(self, code: str, timeout: float = 300) -> Any:
        """Run ``code`` (after a prelude giving ``c``, a Client, and ``out``) on the client
        host; returns what it passed to ``out``."""
        return self.client.python(CLIENT_PRELUDE + code, self.env(self.client), timeout)

    def submit(self, script: str, params: dict[str, Any] | None = None, **kw: Any) -> str:
        code = f"out(c.submit({script!r}, {params!r}, **{kw!r}).id)"
        return self.on_client(code)

    def wait_until_both_run_quick_runs(self, timeout: float = 90) -> None:
        """Submit batches of quick runs until both worker hosts have run some."""
        seen: set[str] = set()

        def both() -> bool:
            code = 'out([r.wait(60).data["host"] for r in [c.submit("where") for _ in range(8)]])'
            seen.update(self.on_client(code))
            return seen >= {"w1", "w2"}

        wait_for(both, timeout, "both worker hosts run quick runs")

    @property
    def store(self) -> Store:
        """The store, read through PostgreSQL's Unix socket."""
        if self._store is None:
            self._store = Store(self.pg.socket_url(self.database))
        return self._store

    def record(self, id: str) -> dict[str, Any]:
        return dict(self.store.get(id))

    def attempts(self, id: str) -> list[dict[str, Any]]:
        return [dict(a) for a in self.store.attempts(id)]

    def ended(self, id: str) -> dict[str, Any] | None:
        rec = self.record(id)
        return rec if ExecutionStatus(rec["status"]).is_final else None

    def spans(self, id: str) -> list[tuple[str, float, float]]:
        """(host, first line, last line) of every process that ran ``id``, by start."""
        times: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
        if self.journal.exists():
            for line in self.journal.read_text().splitlines():
                run, host, pid, stamp = line.split()
                if run == id:
                    times[(host, pid)].append(float(stamp))
        return sorted((host, min(t), max(t)) for (host, _), t in times.items())

    def running_on(self, id: str, host: Host) -> bool:
        return any(h == host.name for h, _, _ in self.spans(id))

    def pg_sessions(self) -> collections.Counter[str]:
        """This fleet's PostgreSQL sessions by client address."""
        with self.store.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT host(client_addr) FROM pg_stat_activity "
                    "WHERE datname = :db AND client_addr IS NOT NULL"
                ),
                {"db": self.database},
            ).all()
        return collections.Counter(r[0] for r in rows)

    def close(self) -> None:
        for host in (self.client, self.w1, self.w2):
            host.remove()
        if self._store is not None:
            self._store.engine.dispose()


def assert_never_twice_at_once(spans: list[tuple[str, float, float]]) -> None:
    for (_, _, before_end), (_, start, _) in itertools.pairwise(spans):
        assert start > before_end, f"two runs at once: {spans}"


@pytest.fixture
def make_fleet(lan: Lan, pg: PrivatePostgres, tmp_path: Path) -> Iterator[Any]:
    made: list[Fleet] = []

    def make(broker_url: str, **settings: str) -> Fleet:
        fleet = Fleet(lan, pg, broker_url, tmp_path / "journal.txt", settings)
        made.append(fleet)
        return fleet

    yield make
    for fleet in made:
        fleet.close()


@pytest.fixture(params=["redis", "rabbitmq"])
def broker_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(request.param).url


# --------------------------------------------------------------------------- the cases


def test_the_recipe_runs_200_runs_over_both_hosts(make_fleet, broker_url: str):
    fleet = make_fleet(broker_url)
    fleet.start_worker(fleet.w1)
    fleet.start_worker(fleet.w2)
    done = fleet.on_client(
        """
runs = [c.submit("where") for _ in range(200)]
out([[r.id, r.wait(240).status.value, (r.data or {}).get("host")] for r in runs])
"""
    )
    assert [status for _, status, _ in done] == ["succeeded"] * 200
    split = collections.Counter(host for _, _, host in done)
    print(f"recipe: 200 runs split {dict(split)}")
    assert set(split) == {"w1", "w2"} and min(split.values()) >= 20, split
    history = fleet.on_client('out(c.history(script="where", limit=None)["id"].tolist())')
    assert sorted(history) == sorted(id for id, _, _ in done), "history holds every run"
    workers = {fleet.record(id)["worker"].split("@")[1].split("/")[0] for id, _, _ in done}
    assert workers == {"w1", "w2"}, "each run records the host that ran it"


def test_version_skew_runs_the_submitted_version_on_every_host(make_fleet, redis):
    fleet = make_fleet(redis.url)
    for host, n in ((fleet.client, 3), (fleet.w1, 1), (fleet.w2, 2)):
        (host.home / "scripts" / "versioned.py").write_text(VERSIONED.replace("N", str(n)))
    submitted = file_hash(VERSIONED.replace("N", "3").encode())
    fleet.start_worker(fleet.w1)
    fleet.start_worker(fleet.w2)
    done = fleet.on_client(
        """
runs = [c.submit("versioned") for _ in range(20)]
out([[r.id, r.wait(120).status.value, r.data] for r in runs])
"""
    )
    assert [(status, data) for _, status, data in done] == [("succeeded", {"version": 3})] * 20
    hosts = collections.Counter()
    for id, _, _ in done:
        rec, (attempt,) = fleet.record(id), fleet.attempts(id)
        assert rec["content_hash"] == attempt["content_hash"] == submitted
        hosts[attempt["worker"].split("@")[1].split("/")[0]] += 1
    assert set(hosts) == {"w1", "w2"}, f"both hosts ran the submitted version: {hosts}"


def test_a_host_killed_mid_run_ends_its_runs_lost_or_retried_elsewhere(
    make_fleet, broker_url: str, request: pytest.FixtureRequest
):
    fleet = make_fleet(
        broker_url,
        SCRIPTRUN_HEARTBEAT="1",
        SCRIPTRUN_LOST_AFTER="5",
        SCRIPTRUN_REAP_EVERY="1",
    )
    journal = str(fleet.journal)
    fleet.start_worker(fleet.w1)
    # Long enough to be still going once w2's worker is ready (up to 10 s on a busy
    # machine: with 6 s runs, CI once saw the run end on w1 before the kill).
    retried = fleet.submit("journaled", {"seconds": 20, "journal": journal})
    once = fleet.submit("journaled_once", {"seconds": 20, "journal": journal})
    wait_for(
        lambda: fleet.running_on(retried, fleet.w1) and fleet.running_on(once, fleet.w1),
        60,
        "both runs going on w1",
    )
    fleet.start_worker(fleet.w2)
    before = fleet.pg_sessions()
    assert before[fleet.w1.address] > 0 and before[fleet.w2.address] > 0, before
    assert not fleet.ended(retried) and not fleet.ended(once), "the runs ended before the kill"
    fleet.w1.power_off()
    killed = time.time()

    rec = wait_for(lambda: fleet.ended(retried), 60, "the retried run ends")
    assert rec["status"] == "succeeded" and rec["attempt"] == 2
    first, second = fleet.attempts(retried)
    assert (first["status"], first["error_type"]) == ("lost", "WorkerLost")
    assert "@w1" in first["worker"] and "@w2" in second["worker"]
    assert_never_twice_at_once(fleet.spans(retried))

    rec = wait_for(lambda: fleet.ended(once), 30, "the run without retries ends")
    assert (rec["status"], rec["error_type"]) == ("lost", "WorkerLost")
    assert rec["finished_at"].timestamp() - killed < 15, "declared lost soon after the kill"

    # The dead host's sessions end by the server's keepalives; the live host's stay few.
    sessions = wait_for(
        lambda: (s := fleet.pg_sessions())[fleet.w1.address] == 0 and s,
        30,
        "PostgreSQL drops the dead host's sessions",
    )
    assert 0 < sessions[fleet.w2.address] <= 20, sessions
    print(f"PostgreSQL sessions before {dict(before)}, after {dict(sessions)}")
    if not broker_url.startswith("redis"):
        return  # RabbitMQ drops a dead peer after two missed heartbeats (minutes)
    redis = request.getfixturevalue("redis")
    clients = wait_for(
        lambda: (c := redis_clients(redis))[fleet.w1.address] == 0 and c,
        30,
        "Redis drops the dead host's connections",
    )
    assert 0 < clients[fleet.w2.address] <= 20, clients
    print(f"Redis connections after {dict(clients)}")


def redis_clients(server: PrivateRedis) -> collections.Counter[str]:
    """Redis's client connections by address (read through its Unix socket)."""
    import redis as redis_py

    conn = redis_py.Redis(unix_socket_path=str(server.socket), password=server.password)
    try:
        return collections.Counter(c["addr"].rsplit(":", 1)[0] for c in conn.client_list())
    finally:
        conn.close()


def test_cancel_reaches_a_run_on_another_host_within_a_second(make_fleet, broker_url: str):
    fleet = make_fleet(broker_url)
    fleet.start_worker(fleet.w1)
    run = fleet.submit("journaled_once", {"seconds": 60, "journal": str(fleet.journal)})
    wait_for(lambda: fleet.running_on(run, fleet.w1), 60, "the run going on w1")
    asked, status, seen = fleet.on_client(
        f"""
c.get({run!r}).status  # a notebook's client is warm: its store and broker connections
c.app.control.ping(timeout=0.3)  # are open before the user asks (not timed below)
asked = time.time()
c.cancel({run!r})
status = c.get({run!r}).wait(10).status.value
out([asked, status, time.time()])
"""
    )
    assert status == "cancelled"
    (_, _, last_line), *_ = fleet.spans(run)
    assert last_line - asked < 1.0, f"the script went on for {last_line - asked:.2f} s"
    assert seen - asked < 1.5, f"the client saw the end after {seen - asked:.2f} s"
    print(f"cancel: script stopped {last_line - asked:.2f} s, client saw it {seen - asked:.2f} s")


@pytest.mark.timeout(600)
def test_a_30s_link_cut_keeps_timeouts_and_durations_true(make_fleet, redis):
    """Defaults (heartbeat 10 s, lost after 60 s): a 30 s cut costs nothing but waiting."""
    fleet = make_fleet(redis.url, SCRIPTRUN_REAP_EVERY="5")
    journal = str(fleet.journal)
    fleet.start_worker(fleet.w1)
    timed = fleet.submit("journaled", {"seconds": 600, "journal": journal}, timeout=10)
    long = fleet.submit("journaled", {"seconds": 40, "journal": journal})
    wait_for(
        lambda: fleet.running_on(timed, fleet.w1) and fleet.running_on(long, fleet.w1),
        60,
        "both runs going on w1",
    )
    fleet.start_worker(fleet.w2)  # ready to take over, should anything be declared lost
    fleet.w1.cut()
    time.sleep(30)
    fleet.w1.heal()

    rec = wait_for(lambda: fleet.ended(timed), 60, "the timed-out run is recorded")
    (_, start, end), *more = fleet.spans(timed)
    assert not more and rec["status"] == "timed_out"
    assert 9.5 < end - start < 11.0, f"killed {end - start:.1f} s after its start, not 10 s"
    assert 9.5 < rec["duration_s"] < 11.5, rec["duration_s"]
    print(f"30 s cut: timeout 10 s fired after {end - start:.2f} s ({rec['duration_s']:.2f} s)")

    rec = wait_for(lambda: fleet.ended(long), 60, "the 40 s run is recorded")
    (_, start, end), *more = fleet.spans(long)
    assert not more and rec["status"] == "succeeded" and rec["attempt"] == 1
    assert 39.5 < rec["duration_s"] < 42, rec["duration_s"]
    assert [a["status"] for a in fleet.attempts(long)] == ["succeeded"]
    print(f"30 s cut: the 40 s run recorded {rec['duration_s']:.2f} s")


@pytest.mark.timeout(600)
def test_a_90s_link_cut_fences_the_cut_off_attempt_and_runs_it_once_elsewhere(make_fleet, redis):
    """Defaults (heartbeat 10 s, lost after 60 s): the cut-off attempt stops its script
    before the run can be declared lost; the retry runs on the other host; the first
    attempt's late report, after the link returns, changes nothing but its own row."""
    fleet = make_fleet(redis.url, SCRIPTRUN_REAP_EVERY="5")
    fleet.start_worker(fleet.w1)
    run = fleet.submit("journaled", {"seconds": 60, "journal": str(fleet.journal)})
    wait_for(lambda: fleet.running_on(run, fleet.w1), 60, "the run going on w1")
    fleet.start_worker(fleet.w2)
    fleet.w1.cut()
    cut = time.time()

    wait_for(lambda: fleet.running_on(run, fleet.w2), 100, "the retry going on w2")
    during = fleet.record(run)
    assert (during["status"], during["attempt"], during["error_type"]) == ("running", 2, None)
    remaining = 90 - (time.time() - cut)
    if remaining > 0:
        time.sleep(remaining)
    fleet.w1.heal()

    rec = wait_for(lambda: fleet.ended(run), 120, "the run ends")
    time.sleep(5)  # the first attempt's queued report, if any, lands after the link returns
    rec = fleet.record(run)
    assert (rec["status"], rec["attempt"]) == ("succeeded", 2)
    first, second = fleet.attempts(run)
    assert "@w1" in first["worker"] and "@w2" in second["worker"]
    assert first["status"] == "lost" and "lease lapsed" in first["message"], first["message"]
    assert second["status"] == "succeeded"
    spans = fleet.spans(run)
    assert_never_twice_at_once(spans)
    assert spans[0][0] == "w1" and spans[0][2] - cut < 55, "fenced before it could be lost"
    print(
        f"90 s cut: attempt 1 stopped {spans[0][2] - cut:.1f} s after the cut, attempt 2 "
        f"started {spans[1][1] - cut:.1f} s after it on {spans[1][0]}"
    )

    fleet.wait_until_both_run_quick_runs()  # the cut-off host is back in service


def test_runs_longer_than_rabbitmqs_consumer_timeout_run_once(make_fleet, rabbitmq):
    fleet = make_fleet(rabbitmq.url)
    fleet.start_worker(fleet.w1)
    fleet.start_worker(fleet.w2)
    long = CONSUMER_TIMEOUT_S * 4
    runs = [
        fleet.submit("journaled", {"seconds": long, "journal": str(fleet.journal)})
        for _ in range(3)
    ]
    for run in runs:
        rec = wait_for(lambda run=run: fleet.ended(run), long + 60, "the long run ends")
        assert (rec["status"], rec["attempt"]) == ("succeeded", 1)
        (span,) = fleet.spans(run)
        assert span[2] - span[1] > long - 1
    # The channel the broker closed cost no worker: both are alive and consume again.
    assert all(proc.poll() is None for proc in fleet.workers.values()), "a worker exited"
    fleet.wait_until_both_run_quick_runs(timeout=60)
