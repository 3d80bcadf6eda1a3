"""The embedded default's local worker never runs a client's runs with other settings."""

from __future__ import annotations

from pathlib import Path

from jupyter_scriptrun.client import Client
from jupyter_scriptrun.config import Settings
from jupyter_scriptrun.fleet.local import LocalWorker, local_fingerprint
from jupyter_scriptrun.status import ExecutionStatus


def test_a_client_with_other_settings_gets_a_local_worker_of_its_own(
    settings: Settings, tmp_path: Path
):
    """``scriptrun demo``, then ``SCRIPTRUN_SCRIPTS_PATH=/my/scripts scriptrun run greet``:
    the run went to the demo's worker, which did not know ``greet``."""
    mine = tmp_path / "my-scripts"
    mine.mkdir()
    (mine / "greet.py").write_text('import json; print(json.dumps({"status": "success"}))\n')
    other = settings.with_(scripts_path=(mine, *settings.scripts_path))
    try:
        first = Client(settings).run("example_script", wait_timeout=120)
        assert first.status is ExecutionStatus.SUCCEEDED
        second = Client(other).run("greet", wait_timeout=120)
        assert second.status is ExecutionStatus.SUCCEEDED, second.record()["message"]
        workers = LocalWorker.all_pids(settings.data_dir)
        assert len(workers) == 2
        assert {LocalWorker(settings).pid(), LocalWorker(other).pid()} == set(workers.values())
        # The same settings again: the same worker, not a third.
        Client(settings).run("example_script", wait_timeout=120)
        assert len(LocalWorker.all_pids(settings.data_dir)) == 2
    finally:
        assert LocalWorker.stop_all(settings.data_dir) >= 1
    assert LocalWorker.all_pids(settings.data_dir) == {}


def test_the_fingerprint_follows_every_setting_the_worker_reads(settings: Settings):
    same = Settings.from_env(settings.to_env())
    assert local_fingerprint(same) == local_fingerprint(settings)
    for change in (
        {"default_timeout_s": 5.0},
        {"allow_adhoc": False},
        {"default_runner": "warm"},
        {"scripts_path": (Path("/elsewhere"),)},
    ):
        assert local_fingerprint(settings.with_(**change)) != local_fingerprint(settings)
