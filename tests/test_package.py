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
