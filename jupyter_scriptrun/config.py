"""Settings: the one place where environment variables are read."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

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


@dataclass(frozen=True)
class Settings:
    """Configuration shared by the kernel, the worker, the CLI and the server.

    Build it with :meth:`from_env`; ``dataclasses.replace`` derives variants for tests.
    """

    broker_url: str | None = None
    """Celery broker URL; ``None`` selects the embedded broker and a local worker."""
    database_url: str | None = None
    """SQLAlchemy URL of the store; ``None`` is SQLite in :attr:`data_dir`."""
    scripts_path: tuple[Path, ...] = field(default_factory=lambda: (examples_dir(),))
    """Folders searched for scripts, in order; the first holding a name wins."""
    result_backend: str | None = None
    """Celery result backend used only for prompt completion notices. Defaults to the
    broker when it is Redis; otherwise completion is read from the store."""
    data_dir: Path = field(default_factory=default_data_dir)
    queue: str = defaults.QUEUE
    """The default queue: where runs go when neither the caller nor the script names one."""
    queues: tuple[str, ...] = ()
    """Queues runs may be sent to besides :attr:`queue` (``SCRIPTRUN_QUEUES``); empty: the
    queues registered scripts name in their metadata (see ``queues.allowed_queues``)."""
    default_timeout_s: float = defaults.TIMEOUT_S
    kill_grace_s: float = defaults.KILL_GRACE_S
    max_output_bytes: int = defaults.MAX_OUTPUT_BYTES
    env_allow: tuple[str, ...] = defaults.ENV_ALLOW
    heartbeat_s: float = defaults.HEARTBEAT_S
    lost_after_s: float = defaults.LOST_AFTER_S
    reap_every_s: float = defaults.REAP_EVERY_S
    requeue_after_s: float = defaults.REQUEUE_AFTER_S
    local_idle_timeout_s: float = defaults.LOCAL_IDLE_TIMEOUT_S
    visibility_timeout_s: float = defaults.VISIBILITY_TIMEOUT_S
    memory_limit_mb: float | None = None
    """Address-space limit of each run (MiB) when its metadata names none; None: none."""
    default_runner: str = "fresh"
    """How Python scripts start when their metadata does not say (``runner = ...``):
    ``fresh`` (a new interpreter per run) or ``warm`` (forked from a pre-warmed parent)."""
    warm_preload: tuple[str, ...] = ()
    """Modules the warm parent imports once, e.g. ``pandas,numpy``."""
    allow_adhoc: bool = True
    """Whether workers run ad-hoc sources (``%%scriptrun`` cells). Whoever can start runs
    can then run any code on the workers; a fleet serving people who may only run the
    registered scripts turns this off (``SCRIPTRUN_ALLOW_ADHOC=0``)."""

    @property
    def embedded(self) -> bool:
        """True when no broker is configured: the zero-config laptop mode."""
        return not self.broker_url

    @property
    def effective_database_url(self) -> str:
        """The store's URL, with the SQLite default filled in."""
        if self.database_url:
            return normalize_database_url(self.database_url)
        return f"sqlite:///{self.data_dir / 'scriptrun.db'}"

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
        """These settings as ``SCRIPTRUN_*`` variables, for a process started from here."""
        env = {
            "SCRIPTRUN_DATA_DIR": str(self.data_dir),
            "SCRIPTRUN_SCRIPTS_PATH": os.pathsep.join(str(p) for p in self.scripts_path),
            "SCRIPTRUN_QUEUE": self.queue,
            "SCRIPTRUN_DEFAULT_TIMEOUT": str(self.default_timeout_s),
            "SCRIPTRUN_KILL_GRACE": str(self.kill_grace_s),
            "SCRIPTRUN_MAX_OUTPUT_BYTES": str(self.max_output_bytes),
            "SCRIPTRUN_HEARTBEAT": str(self.heartbeat_s),
            "SCRIPTRUN_LOST_AFTER": str(self.lost_after_s),
            "SCRIPTRUN_REAP_EVERY": str(self.reap_every_s),
            "SCRIPTRUN_REQUEUE_AFTER": str(self.requeue_after_s),
            "SCRIPTRUN_LOCAL_IDLE_TIMEOUT": str(self.local_idle_timeout_s),
            "SCRIPTRUN_VISIBILITY_TIMEOUT": str(self.visibility_timeout_s),
            "SCRIPTRUN_ALLOW_ADHOC": "1" if self.allow_adhoc else "0",
            "SCRIPTRUN_DEFAULT_RUNNER": self.default_runner,
        }
        if self.memory_limit_mb:
            env["SCRIPTRUN_MEMORY_LIMIT_MB"] = str(self.memory_limit_mb)
        if self.queues:
            env["SCRIPTRUN_QUEUES"] = ",".join(self.queues)
        if self.warm_preload:
            env["SCRIPTRUN_WARM_PRELOAD"] = ",".join(self.warm_preload)
        extra = [n for n in self.env_allow if n not in defaults.ENV_ALLOW]
        if extra:
            env["SCRIPTRUN_ENV_ALLOW"] = ",".join(extra)
        for key, value in (
            ("SCRIPTRUN_BROKER_URL", self.broker_url),
            ("SCRIPTRUN_DATABASE_URL", self.database_url),
            ("SCRIPTRUN_RESULT_BACKEND", self.result_backend),
        ):
            if value:
                env[key] = value
        return env

    def with_(self, **changes: object) -> Settings:
        """A copy with some fields changed."""
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read ``SCRIPTRUN_*`` variables; unset ones keep their defaults."""
        env = os.environ if environ is None else environ
        kw: dict[str, object] = {}
        if v := env.get("SCRIPTRUN_BROKER_URL", "").strip():
            kw["broker_url"] = v
        if v := env.get("SCRIPTRUN_DATABASE_URL", "").strip():
            kw["database_url"] = v
        if v := env.get("SCRIPTRUN_RESULT_BACKEND", "").strip():
            kw["result_backend"] = v
        if v := env.get("SCRIPTRUN_SCRIPTS_PATH", "").strip():
            kw["scripts_path"] = tuple(
                Path(p).expanduser().resolve() for p in v.split(os.pathsep) if p.strip()
            )
        if v := env.get("SCRIPTRUN_DATA_DIR", "").strip():
            kw["data_dir"] = Path(v).expanduser().resolve()
        if v := env.get("SCRIPTRUN_QUEUE", "").strip():
            if problem := queue_problem(v):
                raise ConfigurationError(f"SCRIPTRUN_QUEUE: {problem}")
            kw["queue"] = v
        if v := env.get("SCRIPTRUN_QUEUES", "").strip():
            names = parse_queues(v)
            if problems := [p for p in map(queue_problem, names) if p]:
                raise ConfigurationError("SCRIPTRUN_QUEUES: " + "; ".join(problems))
            kw["queues"] = names
        if v := env.get("SCRIPTRUN_ENV_ALLOW", "").strip():
            extra = tuple(n.strip() for n in v.replace(",", " ").split() if n.strip())
            kw["env_allow"] = defaults.ENV_ALLOW + extra
        if v := env.get("SCRIPTRUN_ALLOW_ADHOC", "").strip().lower():
            if v not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ConfigurationError(f"SCRIPTRUN_ALLOW_ADHOC={v!r}: use 1 or 0")
            kw["allow_adhoc"] = v in ("1", "true", "yes", "on")
        if v := env.get("SCRIPTRUN_DEFAULT_RUNNER", "").strip().lower():
            if v not in ("fresh", "warm"):
                raise ConfigurationError(f"SCRIPTRUN_DEFAULT_RUNNER={v!r}: use fresh or warm")
            kw["default_runner"] = v
        if v := env.get("SCRIPTRUN_WARM_PRELOAD", "").strip():
            kw["warm_preload"] = tuple(m.strip() for m in v.split(",") if m.strip())
        numbers = {
            "SCRIPTRUN_DEFAULT_TIMEOUT": ("default_timeout_s", float),
            "SCRIPTRUN_KILL_GRACE": ("kill_grace_s", float),
            "SCRIPTRUN_MAX_OUTPUT_BYTES": ("max_output_bytes", int),
            "SCRIPTRUN_HEARTBEAT": ("heartbeat_s", float),
            "SCRIPTRUN_LOST_AFTER": ("lost_after_s", float),
            "SCRIPTRUN_REAP_EVERY": ("reap_every_s", float),
            "SCRIPTRUN_REQUEUE_AFTER": ("requeue_after_s", float),
            "SCRIPTRUN_LOCAL_IDLE_TIMEOUT": ("local_idle_timeout_s", float),
            "SCRIPTRUN_VISIBILITY_TIMEOUT": ("visibility_timeout_s", float),
            "SCRIPTRUN_MEMORY_LIMIT_MB": ("memory_limit_mb", float),
        }
        for name, (attr, kind) in numbers.items():
            if v := env.get(name, "").strip():
                try:
                    value = kind(v)
                except ValueError:
                    raise ConfigurationError(
                        f"{name}={v!r} is not a valid {kind.__name__}"
                    ) from None
                if value <= 0:
                    raise ConfigurationError(f"{name}={v!r} must be positive")
                kw[attr] = value
        return cls(**kw)  # type: ignore[arg-type]


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
