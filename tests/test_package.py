"""The package itself: a light import, and the public names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jupyter_scriptrun as sr


def test_import_loads_no_celery_pandas_or_ipywidgets():
    code = (
        "import sys, jupyter_scriptrun; "
        "print([m for m in ('celery', 'pandas', 'ipywidgets', 'sqlalchemy', 'kombu') "
        "if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_public_api_names():
    for name in (
        "submit",
        "run",
        "history",
        "scripts",
        "get",
        "cancel",
        "Settings",
        "ExecutionStatus",
        "ScriptrunError",
    ):
        assert name in sr.__all__ and hasattr(sr, name)


def test_settings_survive_the_trip_to_a_child_process(tmp_path):
    """Every setting a worker or server started from here needs reaches it unchanged."""
    from jupyter_scriptrun.config import Settings

    settings = _every_setting(tmp_path)
    assert Settings.from_env(settings.to_env()) == settings


def _every_setting(tmp_path: Path):
    from jupyter_scriptrun.config import Settings

    return Settings(
        broker_url="redis://127.0.0.1:6379/9",
        database_url="sqlite:///x.db",
        result_backend="none",
        data_dir=tmp_path,
        scripts_path=(tmp_path / "a", tmp_path / "b"),
        queue="q1",
        queues=("q1", "gpu"),
        default_timeout_s=11.0,
        kill_grace_s=2.0,
        max_output_bytes=4096,
        files_url="s3://bucket/runs",
        max_files_mb=20.0,
        max_file_mb=5.0,
        heartbeat_s=0.5,
        lost_after_s=7.0,
        reap_every_s=3.0,
        requeue_after_s=9.0,
        local_idle_timeout_s=12.0,
        visibility_timeout_s=99.0,
        memory_limit_mb=256.0,
        default_runner="warm",
        warm_preload=("json", "csv"),
        allow_adhoc=False,
        env_allow=(*Settings().env_allow, "MY_TOKEN"),
        retain_days=30.0,
        metrics_port=9109,
        metrics_address="127.0.0.1",
        worker_idle_exit_s=5.0,
    )


def test_every_setting_is_declared_once_with_its_own_variable(tmp_path):
    from dataclasses import fields

    from jupyter_scriptrun.config import Settings, declared

    assert list(declared()) == [f.name for f in fields(Settings)]
    variables = [variable for variable, _, _ in declared().values()]
    assert len(set(variables)) == len(variables)
    assert all(v.startswith("SCRIPTRUN_") for v in variables)
    # The sample below sets every setting: a new setting must be added to it.
    assert set(_every_setting(tmp_path).to_env()) == set(variables)


def test_the_command_line_options_act_like_the_variables(tmp_path):
    """``scriptrun --kill-grace 2 … settings``: every setting has an option, and the
    worker or client started from that command sees what the variable would give."""
    settings = _every_setting(tmp_path)
    argv = []
    for variable, value in settings.to_env().items():
        argv += ["--" + variable.removeprefix("SCRIPTRUN_").lower().replace("_", "-"), value]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCRIPTRUN_")}
    out = subprocess.run(
        [sys.executable, "-m", "jupyter_scriptrun", *argv, "settings", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(out) == settings.to_env()

    bad = subprocess.run(
        [sys.executable, "-m", "jupyter_scriptrun", "--kill-grace", "soon", "settings"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "--kill-grace 'soon': not a valid float" in bad.stderr


def test_the_server_has_a_trait_per_setting_that_acts_like_the_variable(tmp_path, monkeypatch):
    from traitlets.config import Config

    from jupyter_scriptrun.config import Settings, declared
    from jupyter_scriptrun.jupyter.extension import ScriptrunExtension

    for name in [k for k in os.environ if k.startswith("SCRIPTRUN_")]:
        monkeypatch.delenv(name)
    settings = _every_setting(tmp_path)
    traits = {}
    for name, (variable, kind, _) in declared().items():
        text = settings.to_env()[variable]
        traits[name] = text.split(kind.separator) if kind.many else text
    app = ScriptrunExtension(config=Config({"ScriptrunExtension": traits}))
    assert app.scriptrun_settings() == settings
    assert ScriptrunExtension().scriptrun_settings() == Settings.from_env({})
