"""The worker's public name: ``celery -A jupyter_scriptrun.worker worker`` (the app lives
in :mod:`jupyter_scriptrun.fleet.worker`; this name is part of the contract)."""

from jupyter_scriptrun.fleet.worker import app, execute

__all__ = ["app", "execute"]
