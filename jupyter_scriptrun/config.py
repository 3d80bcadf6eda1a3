"""Settings: one declaration, read from ``SCRIPTRUN_*`` variables, the CLI's options and
the server's traitlets alike (each a different way to give the same variables)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from jupyter_scriptrun import defaults
from jupyter_scriptrun.exceptions import ConfigurationError
from jupyter_scriptrun.queues import parse_queues, queue_problem

PACKAGE_DIR = Path(__file__).resolve().parent


def examples_dir() -> Path:
    """The example scripts: inside the installed wheel, or ``scripts/`` of a source checkout."""
    shipped = PACKAGE_DIR / "examples"
    return shipped if shipped.is_dir() else PACKAGE_DIR.parent / "scripts"


def default_data_dir() -> Path:
    """``<jupyter data dir>/scriptrun``: where the SQLite store and embedded broker live."""
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir()) / "scriptrun"


# -- how one variable's text becomes a value, and back --------------------------------


@dataclass(frozen=True)
class Kind:
    """How a setting is written as text: ``parse`` raises ValueError naming the problem."""

    parse: Callable[[str], Any]
    dump: Callable[[Any], str] = str
    many: bool = False
    """A list (a path or comma-separated names): a list trait on the server."""
    separator: str = ","
    """Between a list's items in the variable."""


def _positive(kind: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise ValueError(f"not a valid {kind.__name__}") from None
        if value <= 0:
            raise ValueError("must be positive")
        return value

    return parse


def _port(text: str) -> int:
    """A TCP port number (1-65535)."""
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a port number") from None
    if not 0 < value < 65536:
        raise ValueError(f"{value} is not a port number (1-65535)")
    return value


def _queue(text: str) -> str:
    if problem := queue_problem(text):
        raise ValueError(problem)
    return text


def _queues(text: str) -> tuple[str, ...]:
    names = parse_queues(text)
    if problems := [p for p in map(queue_problem, names) if p]:
        raise ValueError("; ".join(problems))
    return names


def _flag(text: str) -> bool:
    value = text.lower()
    if value not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
        raise ValueError("use 1 or 0")
    return value in ("1", "true", "yes", "on")


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text.lower() not in choices:
            raise ValueError("use " + " or ".join(choices))
        return text.lower()

    return parse


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.replace(",", " ").split() if n.strip())


def _env_allow(text: str) -> tuple[str, ...]:
    return defaults.ENV_ALLOW + _names(text)


def _paths(text: str) -> tuple[Path, ...]:
    return tuple(Path(p).expanduser().resolve() for p in text.split(os.pathsep) if p.strip())


TEXT = Kind(str)
PATH = Kind(lambda t: Path(t).expanduser().resolve())
PATHS = Kind(_paths, lambda v: os.pathsep.join(map(str, v)), many=True, separator=os.pathsep)
QUEUE = Kind(_queue)
QUEUES = Kind(_queues, ",".join, many=True)
SECONDS = Kind(_positive(float))
MEBIBYTES = DAYS = Kind(_positive(float))
BYTES = Kind(_positive(int))
MEGABYTES = Kind(_positive(float))
FLAG = Kind(_flag, lambda v: "1" if v else "0")
NAMES = Kind(_names, ",".join, many=True)


def _runner(text: str) -> str:
    # Checked when read, not at import: plug-in runners are found then.
    return _choice(*defaults.runner_names())(text)


RUNNER = Kind(_runner)
PORT = Kind(_port)
# Only the names beyond the built-in allowlist are written out: reading adds those back.
ENV_ALLOW = Kind(
    _env_allow, lambda v: ",".join(n for n in v if n not in defaults.ENV_ALLOW), many=True
)


def setting(variable: str, kind: Kind, help: str, default: Any = None, **kw: Any) -> Any:
    """A field of :class:`Settings`, declared once: its variable, its kind, its help."""
    meta = {"variable": variable, "kind": kind, "help": help}
    if callable(default) and not isinstance(default, type):
        return field(default_factory=default, metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


@dataclass(frozen=True)
class Settings:
    """Configuration shared by the kernel, the worker, the CLI and the server.

    Build it with :meth:`from_env`; :meth:`with_` derives variants for tests. Every field
    is declared once, with the ``SCRIPTRUN_*`` variable that sets it; the CLI's options
    and the server's traits are made from the same declarations (see :func:`declared`).
    """

    broker_url: str | None = setting(
        "SCRIPTRUN_BROKER_URL",
        TEXT,
        "Celery broker URL; unset: the embedded broker and a local worker",
    )
    database_url: str | None = setting(
        "SCRIPTRUN_DATABASE_URL",
        TEXT,
        "SQLAlchemy URL of the store; unset: SQLite in the data folder",
    )
    scripts_path: tuple[Path, ...] = setting(
        "SCRIPTRUN_SCRIPTS_PATH",
        PATHS,
        "folders searched for scripts, in order "
        f"(separated by {os.pathsep!r}); the first holding a name wins",
        default=lambda: (examples_dir(),),
    )
    result_backend: str | None = setting(
        "SCRIPTRUN_RESULT_BACKEND",
        TEXT,
        "Celery result backend for prompt completion "
        "notices ('none': read completion from the store); unset: the broker when it is Redis",
    )
    data_dir: Path = setting(
        "SCRIPTRUN_DATA_DIR",
        PATH,
        "data folder of the embedded default (SQLite store, embedded broker, local worker)",
        default=default_data_dir,
    )
    queue: str = setting(
        "SCRIPTRUN_QUEUE",
        QUEUE,
        "the default queue: where runs go when neither the caller nor the script names one",
        default=defaults.QUEUE,
    )
    queues: tuple[str, ...] = setting(
        "SCRIPTRUN_QUEUES",
        QUEUES,
        "queues runs may be sent to besides the default "
        "(comma-separated); unset: those the registered scripts name",
        default=(),
    )
    default_timeout_s: float = setting(
        "SCRIPTRUN_DEFAULT_TIMEOUT",
        SECONDS,
        "a run's time limit (s) when its metadata and caller name none",
        default=defaults.TIMEOUT_S,
    )
    kill_grace_s: float = setting(
        "SCRIPTRUN_KILL_GRACE",
        SECONDS,
        "seconds between SIGTERM and SIGKILL",
        default=defaults.KILL_GRACE_S,
    )
    max_output_bytes: int = setting(
        "SCRIPTRUN_MAX_OUTPUT_BYTES",
        BYTES,
        "bytes of stdout and of stderr kept per run (head and tail)",
        default=defaults.MAX_OUTPUT_BYTES,
    )
    files_url: str | None = setting(
        "SCRIPTRUN_FILES_URL",
        TEXT,
        "where the files runs write are kept: a folder or an fsspec URL "
        "(s3://bucket/prefix, credentials from AWS_*); unset: in the store",
    )
    max_files_mb: float = setting(
        "SCRIPTRUN_MAX_FILES_MB",
        MEGABYTES,
        "MB of files kept per run (what is over is listed, not kept)",
        default=defaults.MAX_FILES_MB,
    )
    max_file_mb: float = setting(
        "SCRIPTRUN_MAX_FILE_MB",
        MEGABYTES,
        "MB kept of any one file a run writes",
        default=defaults.MAX_FILES_MB,
    )
    env_allow: tuple[str, ...] = setting(
        "SCRIPTRUN_ENV_ALLOW",
        ENV_ALLOW,
        "worker environment variables passed to scripts besides the built-in allowlist",
        default=defaults.ENV_ALLOW,
    )
    heartbeat_s: float = setting(
        "SCRIPTRUN_HEARTBEAT",
        SECONDS,
        "seconds between a running run's heartbeats",
        default=defaults.HEARTBEAT_S,
    )
    lost_after_s: float = setting(
        "SCRIPTRUN_LOST_AFTER",
        SECONDS,
        "seconds without a heartbeat after which a run is lost",
        default=defaults.LOST_AFTER_S,
    )
    reap_every_s: float = setting(
        "SCRIPTRUN_REAP_EVERY",
        SECONDS,
        "seconds between a worker's sweeps for lost runs",
        default=defaults.REAP_EVERY_S,
    )
    requeue_after_s: float = setting(
        "SCRIPTRUN_REQUEUE_AFTER",
        SECONDS,
        "seconds a queued run waits unclaimed before its "
        "message is checked and, if lost, sent again",
        default=defaults.REQUEUE_AFTER_S,
    )
    local_idle_timeout_s: float = setting(
        "SCRIPTRUN_LOCAL_IDLE_TIMEOUT",
        SECONDS,
        "seconds of idleness after which the embedded default's local worker exits",
        default=defaults.LOCAL_IDLE_TIMEOUT_S,
    )
    visibility_timeout_s: float = setting(
        "SCRIPTRUN_VISIBILITY_TIMEOUT",
        SECONDS,
        "Redis broker: seconds before an unacknowledged message is delivered again",
        default=defaults.VISIBILITY_TIMEOUT_S,
    )
    memory_limit_mb: float | None = setting(
        "SCRIPTRUN_MEMORY_LIMIT_MB",
        MEBIBYTES,
        "address-space limit of each run (MiB) when its metadata names none; unset: none",
    )
    default_runner: str = setting(
        "SCRIPTRUN_DEFAULT_RUNNER",
        RUNNER,
        "how Python scripts start when their metadata "
        "does not say: fresh (a new interpreter per run) or warm (forked from a pre-warmed "
        "parent)",
        default=defaults.RUNNER,
    )
    warm_preload: tuple[str, ...] = setting(
        "SCRIPTRUN_WARM_PRELOAD",
        NAMES,
        "modules the warm parent imports once, e.g. pandas,numpy",
        default=(),
    )
    allow_adhoc: bool = setting(
        "SCRIPTRUN_ALLOW_ADHOC",
        FLAG,
        "whether workers run ad-hoc sources (%%scriptrun "
        "cells): whoever can start runs can then run any code on the workers",
        default=True,
    )
    auto_migrate: bool = setting(
        "SCRIPTRUN_AUTO_MIGRATE",
        FLAG,
        "whether this process brings the store's schema up to date itself; false where a "
        "migration job does it (a fleet's rolling upgrade): a process then refuses a "
        "schema behind its own, saying so",
        default=True,
    )
    retain_days: float | None = setting(
        "SCRIPTRUN_RETAIN_DAYS",
        DAYS,
        "days a run is kept after it ended: workers remove older runs once a day (their "
        "counts per script and status are kept); unset: forever",
    )
    metrics_port: int | None = setting(
        "SCRIPTRUN_METRICS_PORT",
        PORT,
        "port on which a worker serves its Prometheus metrics (/metrics); unset: none",
    )
    metrics_address: str = setting(
        "SCRIPTRUN_METRICS_ADDRESS",
        TEXT,
        "address the worker's metrics server listens on",
        default="0.0.0.0",
    )
    worker_idle_exit_s: float | None = setting(
        "SCRIPTRUN_WORKER_IDLE_EXIT",
        SECONDS,
        "seconds of idleness after which a worker "
        "exits (set by the embedded default for its local worker); unset: never",
    )

    def __post_init__(self) -> None:
        if self.lost_after_s <= self.heartbeat_s:
            raise ConfigurationError(
                f"SCRIPTRUN_LOST_AFTER ({self.lost_after_s:g} s) must be longer than "
                f"SCRIPTRUN_HEARTBEAT ({self.heartbeat_s:g} s): a run is declared lost when "
                "its heartbeats stop for that long, and it stops itself one heartbeat sooner"
            )

    @property
    def embedded(self) -> bool:
        """True when no broker is configured: the zero-config laptop mode."""
        return not self.broker_url

    @property
    def effective_database_url(self) -> str:
        """The store's URL, with the SQLite default filled in."""
        if self.database_url:
            return normalize_database_url(self.database_url)
        return f"sqlite:///{self.default_store_file}"

    @property
    def default_store_file(self) -> Path:
        """The SQLite file of the embedded default's store (without a database URL)."""
        return self.data_dir / "scriptrun.db"

    @property
    def effective_broker_url(self) -> str:
        """The broker's URL, with the embedded transport filled in."""
        return self.broker_url or "scriptrun-fs://"

    @property
    def effective_result_backend(self) -> str | None:
        """Where completion notices go, or ``None`` to read completion from the store."""
        if self.result_backend:
            return None if self.result_backend == "none" else self.result_backend
        if self.broker_url and self.broker_url.startswith(("redis://", "rediss://")):
            return self.broker_url
        return None

    def to_env(self) -> dict[str, str]:
        """These settings as ``SCRIPTRUN_*`` variables, for a process started from here
        (unset and empty settings are left out)."""
        env = {}
        for name, (variable, kind, _) in declared().items():
            value = getattr(self, name)
            if value is None or value == ():
                continue
            if text := kind.dump(value):
                env[variable] = text
        return env

    def with_(self, **changes: object) -> Settings:
        """A copy with some fields changed."""
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read ``SCRIPTRUN_*`` variables; unset ones keep their defaults.

        Raises:
            ConfigurationError: naming every variable whose value is wrong, and why.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        problems = []
        for name, (variable, kind, _) in declared().items():
            text = env.get(variable, "").strip()
            if not text and (secret := env.get(f"{variable}_FILE", "").strip()):
                try:  # a secret mounted as a file (Docker's and Kubernetes' convention)
                    text = _read_secret(secret)
                except OSError as exc:
                    problems.append(f"{variable}_FILE: cannot read it ({exc.strerror or exc})")
                    continue
            if not text:
                continue
            try:
                values[name] = kind.parse(text)
            except ValueError as exc:
                problems.append(f"{variable}={text!r}: {exc}")
        if problems:
            raise ConfigurationError("; ".join(problems))
        return cls(**values)


def _read_secret(path: str) -> str:
    """A setting's value from the file ``SCRIPTRUN_X_FILE`` names: its text, stripped."""
    with open(path, encoding="utf-8") as f:
        return f.read().strip()


def declared() -> dict[str, tuple[str, Kind, str]]:
    """Every setting: field name → (variable, kind, help), in declaration order."""
    return {
        f.name: (f.metadata["variable"], f.metadata["kind"], f.metadata["help"])
        for f in fields(Settings)
    }


def normalize_database_url(url: str) -> str:
    """Pick the psycopg 3 driver for a bare ``postgresql://`` URL when psycopg2 is absent."""
    if url.startswith(("postgresql://", "postgres://")):
        from importlib.util import find_spec

        if find_spec("psycopg2") is None:
            return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


_settings: Settings | None = None


def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    global _settings
    if _settings is None:
        _settings = Settings.from_env()
    return _settings


def set_settings(settings: Settings | None) -> None:
    """Replace (or, with ``None``, forget) the process-wide settings."""
    global _settings
    _settings = settings
