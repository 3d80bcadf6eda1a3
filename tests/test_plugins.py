"""Plug-ins: a runner from another package, found through the ``jupyter_scriptrun.runners``
entry-point group, runs scripts on a real worker with no edit to this package."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from jupyter_scriptrun.config import Settings
from jupyter_scriptrun.exceptions import ConfigurationError
from jupyter_scriptrun.service.client import Client
from jupyter_scriptrun.status import ExecutionStatus

PLUGIN = textwrap.dedent(
    """
    import os
    from pathlib import Path

    from jupyter_scriptrun.execution.runners import FreshRunner


    class MarkingRunner(FreshRunner):
        \"\"\"Starts runs as the fresh runner does, and leaves a mark of each.\"\"\"

        def spawner(self, script):
            with open(os.environ["MARKS"], "a") as marks:
                marks.write(script.name + "\\n")
            return None
    """
)


@pytest.fixture
def plugin_path(tmp_path: Path) -> Path:
    """A package installed the way pip leaves one: its module and its dist-info with
    an entry point (found by importlib.metadata on the path)."""
    site = tmp_path / "site"
    (site / "marking_runner-0.1.dist-info").mkdir(parents=True)
    (site / "marking_runner.py").write_text(PLUGIN)
    info = site / "marking_runner-0.1.dist-info"
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: marking-runner\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[jupyter_scriptrun.runners]\nmarking = marking_runner:MarkingRunner\n"
    )
    return site


def test_a_runner_plugin_runs_scripts_once_installed(
    redis_settings: Settings, start_worker, plugin_path: Path, tmp_path: Path, monkeypatch
):
    marks = tmp_path / "marks.txt"
    monkeypatch.setenv("PYTHONPATH", str(plugin_path))
    monkeypatch.setenv("MARKS", str(marks))
    start_worker(redis_settings.with_(default_runner="marking"))
    run = Client(redis_settings).run("example_script", {"message": "plugged"}, wait_timeout=60)
    assert run.status is ExecutionStatus.SUCCEEDED, run.record()["message"]
    assert marks.read_text() == "example_script\n"


def test_an_unknown_runner_is_refused_naming_those_there_are():
    with pytest.raises(ConfigurationError, match="use fresh or warm"):
        Settings.from_env({"SCRIPTRUN_DEFAULT_RUNNER": "turbo"})
