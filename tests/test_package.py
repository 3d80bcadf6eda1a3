"""The package itself: a light import, and the public names."""

from __future__ import annotations

import subprocess
import sys

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

    settings = Settings(
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
    )
    assert Settings.from_env(settings.to_env()) == settings
