"""The embedded default's local worker never runs a client's runs with other settings."""

from __future__ import annotations

from pathlib import Path

from jupyter_scriptrun.config import Settings
from jupyter_scriptrun.fleet.local import LocalWorker, local_fingerprint
from jupyter_scriptrun.service.client import Client
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


def test_the_same_environment_by_another_name_is_the_same_worker(
    settings: Settings, tmp_path: Path, monkeypatch
):
    """A kernel runs ``venv/bin/python``, the ``scriptrun`` command ``venv/bin/python3``
    (its shebang): one interpreter, so one local worker, not one each."""
    import sys

    from jupyter_scriptrun.fleet import local

    alias = tmp_path / "python"
    alias.symlink_to(sys.executable)
    before = local_fingerprint(settings)
    local._code_stamp.cache_clear()
    monkeypatch.setattr(sys, "executable", str(alias))
    try:
        assert local_fingerprint(settings) == before
    finally:
        local._code_stamp.cache_clear()


def test_started_from_a_source_checkout_the_local_worker_imports_the_clients_package(
    settings: Settings, tmp_path: Path, monkeypatch
):
    """``pip install . && scriptrun demo`` from the checkout: ``python -m celery`` put the
    working directory first on sys.path, so the local worker imported the checkout's
    package (another path: another fingerprint, another broker folder) and the demo's runs
    waited 30 s for the reaper. Here the working directory holds a package of the same
    name that cannot be imported; the worker must not see it."""
    import time

    checkout = tmp_path / "checkout"
    (checkout / "jupyter_scriptrun").mkdir(parents=True)
    (checkout / "jupyter_scriptrun" / "__init__.py").write_text(
        "raise ImportError(\"the checkout's package, not the client's\")\n"
    )
    monkeypatch.chdir(checkout)
    try:
        started = time.monotonic()
        run = Client(settings).run("example_script", wait_timeout=60)
        assert run.status is ExecutionStatus.SUCCEEDED
        assert time.monotonic() - started < 20  # not after the reaper's 30 s
    finally:
        LocalWorker.stop_all(settings.data_dir)
