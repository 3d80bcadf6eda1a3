"""The jupyter-server extension: the REST API under ``/scriptrun/api/``."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from jupyter_server.extension.application import ExtensionApp
from traitlets import List, TraitType, Unicode

from jupyter_scriptrun.config import Settings, declared
from jupyter_scriptrun.service.client import Client


def _resume_schedules(client: Client, server_log: logging.Logger) -> None:
    try:
        if client.resume_schedules():
            server_log.info("scriptrun: schedules are active; the local worker fires them")
    except Exception:
        server_log.warning("scriptrun: active schedules could not be checked", exc_info=True)


def setting_traits() -> dict[str, TraitType[Any, Any]]:
    """One configurable trait per setting, made from its declaration: a list for list
    settings, else text, parsed and checked like the variable it stands for."""
    traits: dict[str, TraitType[Any, Any]] = {}
    for name, (variable, kind, help) in declared().items():
        text = f"{help} (default: {variable})"
        traits[name] = (
            List(Unicode(), config=True, help=text)
            if kind.many
            else Unicode(None, allow_none=True, config=True, help=text)
        )
    return traits


class ScriptrunExtension(ExtensionApp):
    """Serves scripts, executions and their results to notebooks and other tools.

    Settings come from the same ``SCRIPTRUN_*`` environment as the kernel and the
    workers; every setting is also a trait of this app (``c.ScriptrunExtension.broker_url
    = ...`` in Jupyter's config files), which overrides the environment.
    """

    name = "jupyter_scriptrun"

    # The traits are made from the settings' one declaration (config.Settings).
    locals().update(setting_traits())

    def scriptrun_settings(self) -> Settings:
        """The environment's settings with this app's configured overrides, read as the
        variables they stand for (so they are checked the same way)."""
        import os

        overrides = {}
        for name, (variable, kind, _) in declared().items():
            value = getattr(self, name)
            if value:
                overrides[variable] = kind.separator.join(value) if kind.many else value
        return Settings.from_env({**os.environ, **overrides})

    def initialize_settings(self) -> None:
        """Build the one client the handlers share, and the fleet's metrics."""
        from jupyter_scriptrun.observe.metrics import FleetMetrics

        client = Client(self.scriptrun_settings())
        self.settings["scriptrun_client"] = client
        metrics = FleetMetrics(client)
        metrics.start()  # the totals are read in the background, before the first scrape
        self.settings["scriptrun_metrics"] = metrics
        # After a reboot, opening Jupyter starts the embedded default's firing again.
        threading.Thread(
            target=_resume_schedules,
            args=(client, self.log),
            name="scriptrun-resume",
            daemon=True,
        ).start()

    def initialize_handlers(self) -> None:
        """Register the REST routes."""
        self.handlers.extend(api_routes())

    async def stop_extension(self) -> None:
        """Stop the metrics' background reads; release the store's connections."""
        metrics = self.settings.get("scriptrun_metrics")
        if metrics is not None:
            await asyncio.to_thread(metrics.close)  # it waits for its thread, off the loop
        client = self.settings.get("scriptrun_client")
        if client is not None:
            client.close()


def api_routes() -> list[tuple[str, Any]]:
    """Every REST route, the specific before the API's catch-all (``handlers.routes``
    ends with it)."""
    from jupyter_scriptrun.jupyter.file_handlers import routes as file_routes
    from jupyter_scriptrun.jupyter.handlers import routes
    from jupyter_scriptrun.jupyter.schedule_handlers import routes as schedule_routes
    from jupyter_scriptrun.jupyter.viewset_handlers import routes as viewset_routes

    return [*schedule_routes(), *viewset_routes(), *file_routes(), *routes()]
