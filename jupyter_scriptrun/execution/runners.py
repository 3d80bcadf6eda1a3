"""How a run's process starts, by name: the registry of runners (``fresh``, ``warm``).

A runner gives the executor a spawner for a script, or None to start it the default way
(a new process of its command). The executor owns timing, state and the kill; a runner
only starts processes, so a new one (a container, a remote host) stays small.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, Protocol, cast

from jupyter_scriptrun import defaults
from jupyter_scriptrun.config import Settings
from jupyter_scriptrun.contract import protocol
from jupyter_scriptrun.contract.registry import NOTEBOOK_RUNNER, Script
from jupyter_scriptrun.execution.child import Child, RunSpec
from jupyter_scriptrun.script import PROGRESS_FD_ENV

Spawn = Callable[[RunSpec], Child]


class Runner(Protocol):
    """Starts the processes of runs."""

    def spawner(self, script: Script) -> Spawn | None:
        """How to start ``script``'s process; None: as a fresh process of its command."""
        ...

    def close(self) -> None:
        """Release what the runner holds (a parent process, connections)."""
        ...


class FreshRunner:
    """A new process per run (a new interpreter for Python): the default."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def spawner(self, script: Script) -> Spawn | None:
        """Always the default way."""
        return None

    def close(self) -> None:
        """Nothing to release."""


class WarmRunner:
    """Python scripts forked from a pre-warmed parent (imports paid once per worker);
    notebooks on a standby child whose kernel is already up (``execution/standby.py``)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._parent: Any = None
        self._standbys: Any = None

    def spawner(self, script: Script) -> Spawn | None:
        """A fork of the warm parent, or a notebook's standby; None (fresh) for what is
        not Python on this interpreter, or asks for interpreter options."""
        command = script.command()
        if command == [sys.executable, *NOTEBOOK_RUNNER, str(script.path)]:
            standbys = self._standbys or self._start_standbys()
            return cast(Spawn, standbys.spawn)
        if command != [sys.executable, str(script.path)]:
            return None
        parent = self._parent or self._start()
        return lambda spec: parent.spawn(
            spec.argv, spec.env, spec.cwd, spec.memory_limit_mb, spec.channel_env
        )

    def _start_standbys(self) -> Any:
        from jupyter_scriptrun.execution.runtag import PLACEHOLDER, RUN_TAG_ENV
        from jupyter_scriptrun.execution.standby import StandbyPool

        env = {**self._env(), RUN_TAG_ENV: PLACEHOLDER}
        self._standbys = StandbyPool(env, PROGRESS_FD_ENV)
        return self._standbys

    def _start(self) -> Any:
        from jupyter_scriptrun.execution.warm import WarmParent

        self._parent = WarmParent(self.settings.warm_preload, self._env())
        return self._parent

    def _env(self) -> dict[str, str]:
        # A warm process's own environment: what a script would get, and where Python's
        # packages are, never the worker's secrets.
        env = protocol.script_env(
            os.environ,
            self.settings.env_allow,
            parameters="{}",
            page_context="",
            script_name="",
            execution_id="",
        )
        for name in ("PYTHONPATH", "VIRTUAL_ENV"):
            if name in os.environ:
                env[name] = os.environ[name]
        return env

    def parent_pid(self) -> int | None:
        """The warm parent's pid while it lives (None before the first warm run)."""
        return None if self._parent is None else self._parent.pid

    def close(self) -> None:
        """Stop the warm parent and the standbys, if they were started."""
        if self._parent is not None:
            self._parent.stop()
        if self._standbys is not None:
            self._standbys.close()


RUNNERS: dict[str, Callable[[Settings], Runner]] = {"fresh": FreshRunner, "warm": WarmRunner}
"""The built-in runners by the name scripts and settings use (``defaults.RUNNERS``)."""
assert tuple(RUNNERS) == defaults.RUNNERS, "a runner's name is missing from defaults.RUNNERS"


def make_runner(name: str, settings: Settings) -> Runner:
    """The runner called ``name``: a built-in one, or a plug-in's from the entry-point
    group ``jupyter_scriptrun.runners`` (``name = module:Class``); ValueError if none."""
    if name in RUNNERS:
        return RUNNERS[name](settings)
    from importlib.metadata import entry_points

    for entry in entry_points(group=defaults.RUNNER_GROUP, name=name):
        return cast(Runner, entry.load()(settings))
    raise ValueError(f"no runner named {name!r} (runners: {', '.join(defaults.runner_names())})")
