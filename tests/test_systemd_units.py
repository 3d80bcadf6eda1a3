"""The systemd units in deploy/systemd/ pass ``systemd-analyze verify`` with nothing to say
(it exits 0 even for an unknown key or signal, and only prints them). They are verified,
not started: no test host here runs systemd as its init."""

from __future__ import annotations

import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parent.parent / "deploy" / "systemd"

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


def installed_as_documented(tmp_path: Path) -> list[Path]:
    """The units as docs/deploy.md installs them, with the venv's programs where this
    host has them (verify checks that ExecStart's program exists and is executable); a
    template as one of its instances."""
    scripts = sysconfig.get_path("scripts")
    units = []
    for unit in sorted(UNITS.glob("*.service")):
        text = unit.read_text().replace("/opt/scriptrun/bin/", f"{scripts}/")
        name = unit.name.replace("@.service", "@scriptrun.service")
        (tmp_path / name).write_text(text)
        units.append(tmp_path / name)
    return units


def test_every_unit_verifies_without_a_word(tmp_path: Path):
    units = installed_as_documented(tmp_path)
    assert {u.name for u in units} == {
        "scriptrun-worker@scriptrun.service",
        "scriptrun-jupyter.service",
        "scriptrun-flower.service",
    }
    for unit in units:
        done = subprocess.run(
            ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout + done.stderr == "", f"{unit.name}: {done.stdout}{done.stderr}"


def test_verify_would_catch_a_mistyped_key_here(tmp_path: Path):
    """The check above can fail: a unit with a typo is reported."""
    unit = installed_as_documented(tmp_path)[0]
    unit.write_text(unit.read_text().replace("Type=simple", "Typ=simple"))
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert "Unknown key 'Typ'" in done.stdout + done.stderr
