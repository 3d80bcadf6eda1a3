"""Private servers for the tests: Redis, PostgreSQL and RabbitMQ on free loopback ports, in
folders of their own, started and stopped by the tests — never the machine's own services,
whose data may be somebody's.

Why not pytest-redis / pytest-postgresql: pytest-postgresql runs ``initdb`` as the current
user, which PostgreSQL refuses for root (CI runs as root); these helpers run it as the
``postgres`` user there. Redis and RabbitMQ follow the same small pattern, so one module
starts all three the same way.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hosts import Host


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port``."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


class ServerMissing(RuntimeError):
    """The server's program is not installed on this machine."""


class PrivateRedis:
    """redis-server on a free loopback port, without persistence (a restart loses all); or on
    a test host's address (see hosts.py), with ``options`` added to its command line."""

    def __init__(
        self,
        folder: Path,
        host: Host | None = None,
        options: tuple[str, ...] = (),
        password: str | None = None,
    ) -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise ServerMissing("redis-server is not installed (Debian: apt install redis-server)")
        self.port = free_port()
        self.folder = folder
        self.host = host
        self.address = host.address if host else "127.0.0.1"
        self.options = options
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.address}:{self.port}/0"

    @property
    def socket(self) -> Path:
        """Its Unix socket: the test's own way in, whatever becomes of the network."""
        return self.folder / "redis.sock"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        argv = [
            self.binary,
            "--bind",
            self.address,
            "--port",
            str(self.port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.folder),
            "--unixsocket",
            str(self.socket),
            *(("--requirepass", self.password) if self.password else ()),
            *self.options,
        ]
        self.proc = subprocess.Popen(
            self.host.argv(argv) if self.host else argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        _wait(_ready(self.host, self.port), 10, f"redis-server on port {self.port}", self.proc)

    def kill(self) -> None:
        """SIGKILL: what a crash looks like."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    stop = kill  # nothing to keep: no persistence


class PrivatePostgres:
    """A PostgreSQL cluster of its own (initdb + pg_ctl) on a free loopback port. As root it
    runs as the ``postgres`` user, since initdb refuses root. On a test host (hosts.py) it
    listens on the host's address, with ``options`` (``-c name=value …``) added."""

    def __init__(self, host: Host | None = None, options: str = "") -> None:
        self.bindir = pg_bindir()
        # Not under pytest's tmp_path: its parents are private to root.
        self.folder = Path(tempfile.mkdtemp(prefix="scriptrun-pg-"))
        self.data = self.folder / "pgdata"
        self.port = free_port()
        self.host = host
        self.address = host.address if host else "127.0.0.1"
        self.options = options

    @property
    def url(self) -> str:
        """The superuser's URL, to the ``postgres`` database."""
        return f"postgresql+psycopg://postgres@{self.address}:{self.port}/postgres"

    def socket_url(self, database: str = "postgres") -> str:
        """A URL through its Unix socket: the test's own way in, whatever becomes of the
        network."""
        return f"postgresql+psycopg://postgres@/{database}?host={self.folder}&port={self.port}"

    def _as_owner(self, *argv: str) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        full = [*prefix, *argv]
        return subprocess.run(
            self.host.argv(full) if self.host else full, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip

    def start(self) -> None:
        """initdb (once) and start."""
        if not self.data.exists():
            self.data.mkdir()
            if os.geteuid() == 0:
                shutil.chown(self.folder, "postgres")
                shutil.chown(self.data, "postgres")
            init = self._as_owner(
                f"{self.bindir}/initdb",
                "-D",
                str(self.data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "--no-instructions",
            )
            if init.returncode != 0:
                raise RuntimeError(f"initdb failed: {init.stderr}")
            if self.host is not None:  # the other test hosts, on the host's /24
                network = self.address.rsplit(".", 1)[0] + ".0/24"
                with open(self.data / "pg_hba.conf", "a") as hba:
                    hba.write(f"host all all {network} trust\n")
        self.ctl("start")

    def ctl(self, action: str) -> None:
        """``pg_ctl start|stop|restart`` (fast shutdown, waiting)."""
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses={self.address} -c fsync=off "
            f"{self.options}"
        )
        out = self._as_owner(
            f"{self.bindir}/pg_ctl",
            "-D",
            str(self.data),
            "-l",  # the server's output to a file, not to our pipe (run() would wait on it)
            str(self.folder / "server.log"),
            "-o",
            options,
            "-w",
            "-m",
            "fast",
            action,
        )
        if out.returncode != 0:
            raise RuntimeError(f"pg_ctl {action} failed: {out.stderr}{out.stdout}")

    def stop(self) -> None:
        """Stop at once and remove the cluster."""
        self._as_owner(f"{self.bindir}/pg_ctl", "-D", str(self.data), "-m", "immediate", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)


class PrivatePgBouncer:
    """PgBouncer of its own on a free loopback port, in front of a PostgreSQL server
    (``host:port``), pooling in ``mode`` with at most ``pool_size`` server connections
    per database. As root it runs as the ``postgres`` user (it refuses root)."""

    def __init__(self, upstream: str, mode: str = "transaction", pool_size: int = 2) -> None:
        program = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        if not os.access(program, os.X_OK):
            raise ServerMissing("pgbouncer is not installed (apt install pgbouncer)")
        self.program = program
        self.folder = Path(tempfile.mkdtemp(prefix="scriptrun-pgbouncer-"))
        self.port = free_port()
        host, port = upstream.rsplit(":", 1)
        (self.folder / "users.txt").write_text('"postgres" ""\n')
        (self.folder / "pgbouncer.ini").write_text(
            f"""[databases]
* = host={host} port={port}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = trust
auth_file = {self.folder}/users.txt
pool_mode = {mode}
default_pool_size = {pool_size}
max_client_conn = 500
logfile = {self.folder}/pgbouncer.log
"""
        )
        if os.geteuid() == 0:
            for path in (self.folder, *self.folder.iterdir()):
                shutil.chown(path, "postgres")
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.proc = subprocess.Popen(
            [*prefix, self.program, str(self.folder / "pgbouncer.ini")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = self.folder / "pgbouncer.log"
                raise RuntimeError(f"pgbouncer exited: {log.read_text() if log.exists() else ''}")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        raise RuntimeError("pgbouncer did not listen within 30 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        shutil.rmtree(self.folder, ignore_errors=True)


def pg_bindir() -> str:
    """Where initdb and pg_ctl are: ``pg_config --bindir``, Debian's versioned folder, or
    PATH."""
    candidates = []
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        candidates.append(out.stdout.strip())
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    if initdb := shutil.which("initdb"):
        candidates.append(str(Path(initdb).parent))
    for folder in candidates:
        if folder and os.access(f"{folder}/initdb", os.X_OK):
            return folder
    raise ServerMissing("PostgreSQL's server programs are not installed (apt install postgresql)")


class PrivateRabbitMQ:
    """A RabbitMQ node of its own: its own node name, ports, epmd and folders (about 5 s
    to start, so only the tests that need it pay); or on a test host's address (hosts.py),
    with ``conf`` lines added to its rabbitmq.conf."""

    SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"

    def __init__(
        self, folder: Path, host: Host | None = None, conf: str = "", advanced: str = ""
    ) -> None:
        self.server = self.SERVER if os.access(self.SERVER, os.X_OK) else None
        if self.server is None:
            which = shutil.which("rabbitmq-server")
            if which is None:
                raise ServerMissing(
                    "rabbitmq-server is not installed (apt install rabbitmq-server)"
                )
            self.server = which
        self.folder = folder
        self.port, self.dist_port, self.epmd_port = free_port(), free_port(), free_port()
        self.host = host
        self.address = host.address if host else "127.0.0.1"
        self.conf, self.advanced = conf, advanced
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def with_consumer_timeout(
        cls, folder: Path, seconds: float, host: Host | None = None
    ) -> PrivateRabbitMQ:
        """A node whose ``consumer_timeout`` is ``seconds``, checked every second (the
        channel tick is a minute by default)."""
        return cls(
            folder,
            host=host,
            conf=f"consumer_timeout = {int(seconds * 1000)}\n",
            advanced="[{rabbit, [{channel_tick_interval, 1000}]}].\n",
        )

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@{self.address}:{self.port}//"

    def _env(self) -> dict[str, str]:
        f = self.folder
        return {
            **os.environ,
            "HOME": str(f),  # the Erlang cookie
            "RABBITMQ_CONF_ENV_FILE": "/dev/null",  # not the machine's node name and port
            "RABBITMQ_CONFIG_FILE": str(f / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(f / "advanced.config"),
            "RABBITMQ_NODENAME": f"scriptrun-test-{os.getpid()}@localhost",
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_MNESIA_BASE": str(f / "mnesia"),
            "RABBITMQ_LOG_BASE": str(f / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(f / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(f / "rabbit.pid"),
        }

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = {self.address}:{self.port}\nloopback_users = none\n"
            f"{self.conf}"
        )
        (self.folder / "enabled_plugins").write_text("[].\n")
        (self.folder / "advanced.config").write_text(self.advanced or "[].\n")
        with open(self.folder / "server.log", "wb") as log:
            self.proc = subprocess.Popen(
                self.host.argv([self.server]) if self.host else [self.server],
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait(_ready(self.host, self.port), 60, f"RabbitMQ on port {self.port}", self.proc)

    def stop(self) -> None:
        """The node's process group, then its own epmd (a daemon outside the group)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        epmd = shutil.which("epmd") or next(
            iter(glob.glob("/usr/lib/erlang/erts-*/bin/epmd")), None
        )
        if epmd:
            subprocess.run(
                self.host.argv([epmd, "-kill"]) if self.host else [epmd, "-kill"],
                env={**os.environ, "ERL_EPMD_PORT": str(self.epmd_port)},
                capture_output=True,
                timeout=10,
            )
        shutil.rmtree(self.folder, ignore_errors=True)


def _ready(host: Host | None, port: int):
    """A check that the server accepts connections: on loopback here, or on its host."""
    if host is None:
        return lambda: port_open(port)
    return lambda: host.reaches(host.address, port)


def _wait(ready, timeout: float, what: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise RuntimeError(f"{what}: the server exited (code {proc.returncode})")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not up after {timeout:g} s")
        time.sleep(0.02)


class PrivatePrometheus:
    """A Prometheus server on a free loopback port, scraping ``scrape_configs`` every
    second, its data in a folder of its own (Debian's ``prometheus`` package)."""

    def __init__(self, folder: Path, scrape_configs: list[dict]) -> None:
        self.binary = shutil.which("prometheus")
        if self.binary is None:
            raise ServerMissing("prometheus is not installed (Debian: apt install prometheus)")
        self.folder = folder
        self.port = free_port()
        self.scrape_configs = scrape_configs
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        import json

        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.folder / "prometheus.yml"
        # JSON is YAML: no YAML writer needed.
        config.write_text(
            json.dumps(
                {
                    "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                    "scrape_configs": self.scrape_configs,
                }
            )
        )
        self.log = self.folder / "prometheus.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={self.folder / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        _wait(lambda: self._ready(), 30, f"prometheus on port {self.port}", self.proc)

    def _ready(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    def query(self, promql: str) -> list[dict]:
        """An instant query through Prometheus' HTTP API: its result vector."""
        import json
        import urllib.parse
        import urllib.request

        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        with urllib.request.urlopen(url, timeout=5) as response:
            answer = json.loads(response.read())
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def targets(self) -> list[tuple[str, str, str]]:
        """(scrape URL, health, last error) of every active target: what a failing test
        shows."""
        import json
        import urllib.request

        with urllib.request.urlopen(f"{self.url}/api/v1/targets", timeout=5) as response:
            answer = json.loads(response.read())
        return [
            (t["scrapeUrl"], t["health"], t["lastError"]) for t in answer["data"]["activeTargets"]
        ]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class PrivateS3:
    """An S3 API (moto's server mode) on a free loopback port: the same requests as AWS
    or MinIO, its buckets in memory, gone when it stops."""

    def __init__(self) -> None:
        import importlib.util

        if importlib.util.find_spec("moto") is None:
            raise ServerMissing("moto is not installed (pip install 'moto[server]')")
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        import sys

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        _wait(lambda: port_open(self.port), 30, f"moto S3 on port {self.port}", self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
