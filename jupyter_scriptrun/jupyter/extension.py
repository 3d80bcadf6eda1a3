"""The jupyter-server extension: the REST API under ``/scriptrun/api/``."""

from __future__ import annotations

from pathlib import Path

from jupyter_server.extension.application import ExtensionApp
from traitlets import List, Unicode

from jupyter_scriptrun.client import Client
from jupyter_scriptrun.config import Settings


class ScriptrunExtension(ExtensionApp):
    """Serves scripts, executions and their results to notebooks and other tools.

    Settings come from the same ``SCRIPTRUN_*`` environment as the kernel and the
    workers; the traits below override them from Jupyter's config files.
    """

    name = "jupyter_scriptrun"

    broker_url = Unicode(
        None,
        allow_none=True,
        config=True,
        help="Celery broker URL (default: SCRIPTRUN_BROKER_URL, else embedded)",
    )
    database_url = Unicode(
        None,
        allow_none=True,
        config=True,
        help="SQLAlchemy URL of the store (default: SCRIPTRUN_DATABASE_URL)",
    )
    scripts_path = List(
        Unicode(), config=True, help="Script folders (default: SCRIPTRUN_SCRIPTS_PATH)"
    )
    data_dir = Unicode(
        None,
        allow_none=True,
        config=True,
        help="Data folder of the embedded default (default: SCRIPTRUN_DATA_DIR)",
    )
    queue = Unicode(None, allow_none=True, config=True, help="Default Celery queue")
    queues = List(
        Unicode(),
        config=True,
        help="Queues runs may be sent to besides the default (default: SCRIPTRUN_QUEUES, "
        "else those the registered scripts name)",
    )

    def scriptrun_settings(self) -> Settings:
        """The environment's settings with this app's configured overrides."""
        settings = Settings.from_env()
        changes: dict[str, object] = {}
        if self.broker_url:
            changes["broker_url"] = self.broker_url
        if self.database_url:
            changes["database_url"] = self.database_url
        if self.scripts_path:
            changes["scripts_path"] = tuple(Path(p).resolve() for p in self.scripts_path)
        if self.data_dir:
            changes["data_dir"] = Path(self.data_dir).resolve()
        if self.queue:
            changes["queue"] = self.queue
        if self.queues:
            changes["queues"] = tuple(self.queues)
        return settings.with_(**changes) if changes else settings

    def initialize_settings(self) -> None:
        """Build the one client the handlers share."""
        self.settings["scriptrun_client"] = Client(self.scriptrun_settings())

    def initialize_handlers(self) -> None:
        """Register the REST routes."""
        from jupyter_scriptrun.jupyter.handlers import routes

        self.handlers.extend(routes())

    async def stop_extension(self) -> None:
        """Release the store's connections."""
        client = self.settings.get("scriptrun_client")
        if client is not None and client._store is not None:
            client.store.dispose()
