"""Shared fixtures: real Redis, real PostgreSQL, real worker processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from servers import (
    PrivatePostgres,
    PrivateRabbitMQ,
    PrivateRedis,
    PrivateS3,
    ServerMissing,
    free_port,
)

import jupyter_scriptrun
from jupyter_scriptrun.config import Settings, examples_dir
from jupyter_scriptrun.fleet.local import LocalWorker, worker_argv
from jupyter_scriptrun.service.client import Client

pytest_plugins = ["pytest_jupyter.jupyter_server", "tests.firing"]

TESTS = Path(__file__).resolve().parent
TEST_SCRIPTS = TESTS / "scripts"
# SCRIPTRUN_TEST_REDIS_URL / _PG_URL / _AMQP_URL point the suite at servers of your own
# instead of the private ones it starts: only then does it touch a server it did not start.


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests configure through Settings objects, never through a developer's SCRIPTRUN_*."""
    for key in list(os.environ):
        if key.startswith("SCRIPTRUN_") and not key.startswith("SCRIPTRUN_TEST_"):
            monkeypatch.delenv(key)


def _server(variable: str, make: Callable[[], Any], missing: Callable[[str], Any]) -> Iterator[str]:
    """The URL in ``variable`` when set (a server of yours); else a private server that
    ``make`` builds, started now and stopped at the end whatever happens. ``missing`` (fail
    or skip) says what to install when the server's program is not there."""
    if url := os.environ.get(variable):
        yield url
        return
    try:
        server = make()
    except ServerMissing as exc:
        missing(f"{exc}; or set {variable}")
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis of the session's own, on a free port. Tests keep apart by queue names of
    their own, so nothing is ever flushed."""
    make = lambda: PrivateRedis(tmp_path_factory.mktemp("redis"))  # noqa: E731
    yield from _server("SCRIPTRUN_TEST_REDIS_URL", make, pytest.fail)


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """A PostgreSQL cluster of the session's own (its superuser's URL)."""
    yield from _server("SCRIPTRUN_TEST_PG_URL", PrivatePostgres, pytest.fail)


@pytest.fixture(scope="session")
def rabbitmq_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A RabbitMQ node of the session's own, started when a test first asks for one;
    skipped where RabbitMQ is not installed."""
    make = lambda: PrivateRabbitMQ(tmp_path_factory.mktemp("rabbitmq"))  # noqa: E731
    yield from _server("SCRIPTRUN_TEST_AMQP_URL", make, pytest.skip)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """An S3 API of the session's own (moto's server), its endpoint URL."""
    yield from _server("SCRIPTRUN_TEST_S3_ENDPOINT", PrivateS3, pytest.fail)


@pytest.fixture(scope="session")
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database of our own for this session, dropped at the end."""
    from sqlalchemy import create_engine, text

    name = f"scriptrun_test_{os.getpid()}"
    admin = create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        pytest.fail(f"PostgreSQL is needed at {postgres_admin_url} ({exc})")
    url = postgres_admin_url.rsplit("/", 1)[0] + "/" + name
    yield url
    from jupyter_scriptrun.store import _stores

    for key in [k for k in _stores if k == url]:
        _stores.pop(key).dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Embedded-default settings in a private data folder, with the test scripts."""
    return Settings(
        data_dir=tmp_path / "data",
        scripts_path=(TEST_SCRIPTS, examples_dir()),
        queue=f"sr-test-{uuid.uuid4().hex[:8]}",
        kill_grace_s=1.0,
        heartbeat_s=0.5,
        lost_after_s=3.0,
        reap_every_s=0.5,
        local_idle_timeout_s=30.0,
    )


@pytest.fixture
def redis_settings(settings: Settings, redis_url: str) -> Settings:
    """The same, on the real Redis broker."""
    return settings.with_(broker_url=redis_url)


class WorkerProcess:
    """A real ``celery -A jupyter_scriptrun.worker worker`` process, started by a test."""

    def __init__(
        self,
        settings: Settings,
        concurrency: int = 2,
        pool: str = "threads",
        extra_env: dict[str, str] | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.settings = settings
        self.log = settings.data_dir / f"worker-{uuid.uuid4().hex[:6]}.log"
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCRIPTRUN_")}
        env.update(settings.to_env())
        env.update(extra_env or {})
        self.hostname = f"test-{uuid.uuid4().hex[:6]}@%h"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                worker_argv(
                    settings.queue,
                    concurrency=concurrency,
                    pool=pool,
                    hostname=self.hostname,
                    extra=("--without-mingle", "--without-gossip", *extra_args),
                ),
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._wait_ready()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log.read_text()[-3000:]}")
            if b" ready." in self.log.read_bytes():
                return
            time.sleep(0.1)
        raise RuntimeError(f"worker not ready after {timeout} s: {self.log.read_text()[-3000:]}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the worker's main process (and only it)."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def stop(self) -> None:
        """Warm shutdown, then SIGKILL to the worker's own process group if it lingers."""
        stop_process(self.proc, 15)


@pytest.fixture
def start_worker() -> Iterator[Callable[..., WorkerProcess]]:
    """Start real workers; every one is stopped at the end of the test."""
    started: list[WorkerProcess] = []

    def start(settings: Settings, **kw: object) -> WorkerProcess:
        worker = WorkerProcess(settings, **kw)  # type: ignore[arg-type]
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def scriptrun_server_config(redis_settings: Settings) -> dict[str, Any]:
    """A Jupyter server's configuration with our extension on ``redis_settings`` (a test
    module uses it as pytest-jupyter's ``jp_server_config``)."""
    return {
        "ServerApp": {"jpserver_extensions": {"jupyter_scriptrun": True}},
        "ScriptrunExtension": {
            "broker_url": redis_settings.broker_url,
            "scripts_path": [str(p) for p in redis_settings.scripts_path],
            "data_dir": str(redis_settings.data_dir),
            "queue": redis_settings.queue,
        },
    }


@pytest.fixture
def client(redis_settings: Settings, start_worker: Callable[..., WorkerProcess]) -> Client:
    """A client on Redis with one real worker (2 threads) behind it."""
    start_worker(redis_settings)
    return Client(redis_settings)


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """This process's environment without SCRIPTRUN_*, plus ``settings`` and ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCRIPTRUN_")}
    env.update(settings.to_env())
    env.update(extra)
    return env


def celery_cli(settings: Settings, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Celery's own command line on our app (``celery -A jupyter_scriptrun.worker …``), as
    an operator types it."""
    return subprocess.run(
        [sys.executable, "-m", "celery", "-A", "jupyter_scriptrun.worker", *args],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> object:
    """Poll ``predicate`` until it returns something true; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:g} s: {what}")
        time.sleep(0.1)


def stop_process(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM a process we started; SIGKILL its own process group after ``grace_s``."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    import psutil

    try:
        return psutil.Process(pid).status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.Error:
        return False


class JupyterLabProcess:
    """A real ``jupyter lab`` (with our extension, on ``settings``) on loopback."""

    def __init__(self, settings: Settings, root: Path) -> None:
        self.settings = settings
        self.root = root
        self.port = free_port()
        self.token = uuid.uuid4().hex
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = root / "jupyterlab.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCRIPTRUN_")}
        env.update(settings.to_env())
        env["JUPYTER_RUNTIME_DIR"] = str(root / "runtime")
        # The JupyterLab extension as built in this checkout (first on JupyterLab's path,
        # before any copy an install put under share/), so the tests see its assets.
        labextensions = root.parent / f"{root.name}-jupyter" / "labextensions"
        labextensions.mkdir(parents=True, exist_ok=True)
        built = Path(jupyter_scriptrun.__file__).parent / "labextension"
        (labextensions / "jupyter-scriptrun").symlink_to(built, target_is_directory=True)
        env["JUPYTER_PATH"] = os.pathsep.join(
            filter(None, [str(labextensions.parent), os.environ.get("JUPYTER_PATH")])
        )
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "jupyterlab",
                    "--no-browser",
                    "--allow-root",  # CI runs as root
                    "--ip=127.0.0.1",
                    f"--port={self.port}",
                    f"--IdentityProvider.token={self.token}",
                    f"--ServerApp.root_dir={root}",
                    "--ServerApp.disable_check_xsrf=False",
                    # Its own workspaces and user settings (a test's theme choice), never
                    # the machine user's ~/.jupyter.
                    f"--LabApp.workspaces_dir={root / 'workspaces'}",
                    f"--LabApp.user_settings_dir={root / 'user-settings'}",
                ],
                env=env,
                cwd=root,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 90.0) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited: {self.log.read_text()[-3000:]}")
            try:
                request = urllib.request.Request(
                    f"{self.url}api/status", headers={"Authorization": f"token {self.token}"}
                )
                with urllib.request.urlopen(request, timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"jupyter lab not ready: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL to its own process group (kernels it started included);
        then the embedded local worker the server started, which has a session of its own."""
        stop_process(self.proc, 20)
        if self.settings.embedded:
            LocalWorker(self.settings).stop()


# -- markers: what a test needs, read from what it uses ---------------------------------

SERVER_MARKERS = {
    "redis_url": "redis",
    "postgres_admin_url": "postgres",
    "postgres_url": "postgres",
    "rabbitmq_url": "rabbitmq",
}
SLOW_FIXTURES = {"start_worker", "jp_serverapp", "jp_fetch", *SERVER_MARKERS}
"""Fixtures that start a worker, a Jupyter server or a private server."""
SLOW_MODULES = {
    # Tests that start the embedded default's local worker, Jupyter, a browser, Flower or
    # kill and restart things: seconds each.
    "test_embedded",
    "test_local_worker",
    "test_notebooks",
    "test_browser",
    "test_lab_extension",
    "test_flower",
    "test_live_and_adhoc",
    "test_end_to_end",
    "test_celery_native",
    "test_magics",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test by what it uses: ``redis``/``postgres``/``rabbitmq`` for a private
    server, ``slow`` for anything that starts a process of seconds (the fast subset,
    ``pytest -m "not slow"``, is the rest)."""
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for fixture, marker in SERVER_MARKERS.items():
            if fixture in used:
                item.add_marker(marker)
        module = item.module.__name__.rpartition(".")[2] if item.module else ""
        in_faults = "faults" in item.nodeid.split("/")
        if used & SLOW_FIXTURES or module in SLOW_MODULES or in_faults:
            item.add_marker("slow")


def queued_run(store: Any, script: str = "s", *, id: str | None = None, **columns: Any) -> str:
    """A queued run written straight to the store (no submit, no broker message): for the
    tests of the store and of what reads it. ``columns``: any of ``Store.create``'s."""
    from jupyter_scriptrun.store import new_execution_id

    execution_id = id or new_execution_id()
    values = {
        "script_id": None,
        "parameters": {},
        "page_context": "test",
        "queue": "q",
        "timeout_s": None,
        "content_hash": None,
        **columns,
    }
    store.create(id=execution_id, script=script, **values)
    return execution_id


def scriptrun_cli(
    settings: Settings, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess:
    """The ``scriptrun`` command as a user types it, on ``settings``, 160 columns wide."""
    return subprocess.run(
        [sys.executable, "-m", "jupyter_scriptrun", *args],
        env=settings_env(settings, COLUMNS="160"),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
