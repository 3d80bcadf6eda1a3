"""jupyter_scriptrun: run registered scripts from Jupyter on a Celery worker fleet.

``import jupyter_scriptrun as sr`` stays light: Celery, pandas and ipywidgets load only
when a function needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jupyter_scriptrun._version import __version__
from jupyter_scriptrun.config import Settings
from jupyter_scriptrun.exceptions import (
    ExecutionConflict,
    ExecutionFailed,
    ExecutionNotFound,
    ExecutionTimeout,
    InvalidParameters,
    ScriptMetadataError,
    ScriptNotFound,
    ScriptrunError,
    WorkerUnavailable,
)
from jupyter_scriptrun.status import ExecutionStatus

if TYPE_CHECKING:
    import pandas as pd

    from jupyter_scriptrun.contract.registry import Script
    from jupyter_scriptrun.service.client import Client, Execution
    from jupyter_scriptrun.service.scheduling import Schedule

__all__ = [
    "ExecutionConflict",
    "ExecutionFailed",
    "ExecutionNotFound",
    "ExecutionStatus",
    "ExecutionTimeout",
    "InvalidParameters",
    "ScriptMetadataError",
    "ScriptNotFound",
    "ScriptrunError",
    "Settings",
    "WorkerUnavailable",
    "__version__",
    "cancel",
    "cancel_queued",
    "dashboard",
    "default_client",
    "get",
    "history",
    "panel",
    "run",
    "schedule",
    "schedules",
    "scripts",
    "submit",
]


def default_client() -> Client:
    """The process-wide client, configured from the environment."""
    from jupyter_scriptrun.service import warmup

    warmup.wait()  # before importing what the background imports are importing
    from jupyter_scriptrun.service.client import default_client

    return default_client()


def submit(script: str, params: dict[str, Any] | None = None, **options: Any) -> Execution:
    """Queue a run of ``script``; returns its handle (``.id``, ``.status``, ``.wait()``…).

    Options: ``page_context``, ``timeout`` (seconds), ``queue``.
    """
    return default_client().submit(script, params, **options)


def run(script: str, params: dict[str, Any] | None = None, **options: Any) -> Execution:
    """Submit and wait for the run to end; ``check=True`` raises if it did not succeed."""
    return default_client().run(script, params, **options)


def get(execution_id: str) -> Execution:
    """The handle of an execution by id (or a unique prefix of it)."""
    return default_client().get(execution_id)


def cancel(execution_id: str) -> ExecutionStatus:
    """Cancel an execution by id."""
    return default_client().cancel(execution_id)


def cancel_queued(script: str | None = None, queue: str | None = None) -> list[str]:
    """Cancel every run not started yet (only ``script``'s, on ``queue``, when given);
    their ids. Use this, not ``celery purge``, to drop queued runs."""
    return default_client().cancel_queued(script, queue)


def history(server: str | None = None, token: str | None = None, **filters: Any) -> pd.DataFrame:
    """The run history as a DataFrame (filters: script, status, since, until, limit…).

    With ``server`` (a Jupyter server URL, e.g. ``http://host:8888/``) and its ``token``,
    the history is read over that server's REST API instead of from the local store.
    """
    if server is not None:
        from jupyter_scriptrun.service.remote import remote_history

        return remote_history(server, token, **filters)
    return default_client().history(**filters)


def schedule(script: str, params: dict[str, Any] | None = None, **options: Any) -> Schedule:
    """Run ``script`` on a cron line or at an interval, exactly once per tick while any
    worker lives; returns the schedule (``.pause()``, ``.resume()``, ``.delete()``,
    ``.next_runs(n)``, ``.runs()``).

    Options: ``cron`` ("0 7 * * *") or ``every`` (seconds, "30s", "5m", "1h"), ``timezone``
    (IANA, default "UTC"), ``name``, ``catchup`` ("latest", "none", "all"), ``overlap``
    ("skip", "queue", "allow"), ``queue``, ``timeout``.
    """
    return default_client().schedule(script, params, **options)


def schedules() -> pd.DataFrame:
    """Every schedule as a DataFrame (script, spec, zone, state, last and next fire, runs,
    failures)."""
    return default_client().schedules()


def scripts() -> list[Script]:
    """The registered scripts."""
    return default_client().scripts()


def panel(**options: Any) -> Any:
    """The widget panel (ipywidgets): pick a script, fill its form, run and watch it,
    browse the history. Display it as a cell's last expression."""
    from jupyter_scriptrun.jupyter.panel import Panel

    return Panel(default_client(), **options)


def dashboard(refresh_s: float = 5.0, window: str = "1 h") -> Any:
    """The fleet live (ipywidgets and bqplot): workers and their runs, queues, figures per
    script over a window, charts, recent failures. Refreshed in the background; display
    it as a cell's last expression, ``.close()`` to stop it."""
    from jupyter_scriptrun.jupyter.dashboard import Dashboard

    return Dashboard(default_client(), refresh_s=refresh_s, window=window)


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    """Where jupyter-server finds the extension (imported only by the server)."""
    from jupyter_scriptrun.jupyter.extension import ScriptrunExtension

    return [{"module": "jupyter_scriptrun.jupyter.extension", "app": ScriptrunExtension}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where JupyterLab finds the built extension (``jupyter labextension develop .``;
    a wheel installs it under share/jupyter/labextensions/jupyter-scriptrun)."""
    return [{"src": "labextension", "dest": "jupyter-scriptrun"}]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext jupyter_scriptrun``: registers the ``%scriptrun`` magics."""
    from jupyter_scriptrun.jupyter.magics import ScriptrunMagics
    from jupyter_scriptrun.service import warmup

    ipython.register_magics(ScriptrunMagics)
    # While the user types the first command: the heavy imports, then the store opened
    # and, after a reboot, the embedded default's active schedules firing again.
    warmup.start(then=_resume_schedules)


def _resume_schedules() -> None:
    # A client of its own: the process's default is made at the first command, so that
    # settings changed after %load_ext still count (the Store it opens is shared per URL).
    from jupyter_scriptrun.service.client import Client

    Client().resume_schedules()
