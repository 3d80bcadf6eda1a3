"""Finding scripts: names, folders, interpreters, and names that try to escape."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from jupyter_scriptrun.config import examples_dir
from jupyter_scriptrun.contract.registry import Registry
from jupyter_scriptrun.exceptions import ScriptMetadataError, ScriptNotFound


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "scripts"
    d.mkdir()
    (d / "hello.py").write_text("print('hi')\n")
    (d / "deploy.sh").write_text("echo hi\n")
    (d / "tool").write_text("#!/usr/bin/env perl\nprint 1;\n")
    (d / "tool").chmod(0o755)
    (d / "pyshebang").write_text("#!/usr/bin/env python3\nprint(1)\n")
    (d / "pyshebang").chmod(0o755)
    (d / "notes.txt").write_text("not a script\n")
    (d / "_private.py").write_text("print(1)\n")
    return d


def test_the_shipped_examples_are_registered():
    names = [s.name for s in Registry([examples_dir()]).scripts()]
    for name in (
        "example_script",
        "print_test_script",
        "disk_report",
        "failing_script",
        "slow_script",
        "table_script",
    ):
        assert name in names


def test_scripts_are_listed_by_stem_and_non_scripts_are_not(folder: Path):
    names = [s.name for s in Registry([folder]).scripts()]
    assert names == ["deploy", "hello", "pyshebang", "tool"]


def test_python_runs_on_the_workers_own_interpreter_never_a_path_shim(folder: Path):
    reg = Registry([folder])
    assert reg.get("hello").command() == [sys.executable, str(folder / "hello.py")]
    assert reg.get("pyshebang").command()[0] == sys.executable


def test_shell_and_other_shebangs_are_honoured(folder: Path):
    reg = Registry([folder])
    assert Path(reg.get("deploy").command()[0]).name == "bash"
    assert reg.get("tool").command()[:2] == ["/usr/bin/env", "perl"]


def test_a_name_with_its_extension_also_resolves(folder: Path):
    assert Registry([folder]).get("hello.py").name == "hello"


def test_the_first_folder_holding_a_name_wins(folder: Path, tmp_path: Path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "hello.py").write_text("print('other')\n")
    assert Registry([other, folder]).get("hello").path == (other / "hello.py").resolve()


def test_content_hash_follows_the_file(folder: Path):
    reg = Registry([folder])
    before = reg.get("hello").content_hash
    (folder / "hello.py").write_text("print('changed')\n")
    os.utime(folder / "hello.py", ns=(1, 1))
    after = reg.get("hello").content_hash
    assert before.startswith("sha256:") and before != after


@pytest.mark.parametrize(
    "name",
    [
        "../hello",
        "/etc/passwd",
        "sub/hello",
        "..",
        ".hidden",
        "a\x00b",
        "x" * 200,
        "",
        "hello;rm -rf /",
        "$(id)",
    ],
)
def test_names_that_are_not_plain_names_are_refused(folder: Path, name: str):
    with pytest.raises(ScriptNotFound):
        Registry([folder]).get(name)


def test_a_symlink_leading_outside_the_folder_is_not_a_script(folder: Path, tmp_path: Path):
    secret = tmp_path / "outside.py"
    secret.write_text("print('outside')\n")
    (folder / "escape.py").symlink_to(secret)
    reg = Registry([folder])
    with pytest.raises(ScriptNotFound):
        reg.get("escape")
    assert "escape" not in [s.name for s in reg.scripts()]


def test_an_unknown_name_lists_the_known_ones(folder: Path):
    with pytest.raises(ScriptNotFound, match=r"no script named 'nope'.*known: deploy, hello"):
        Registry([folder]).get("nope")


def test_a_vanished_folder_is_not_a_crash(tmp_path: Path):
    reg = Registry([tmp_path / "missing"])
    assert reg.scripts() == []
    with pytest.raises(ScriptNotFound):
        reg.get("anything")


def test_a_broken_metadata_block_is_reported_on_lookup_and_skipped_in_listings(folder: Path):
    (folder / "broken.py").write_text("# /// scriptrun\n# timeout = 'soon'\n# ///\n")
    reg = Registry([folder])
    with pytest.raises(ScriptMetadataError, match=r"broken\.py.*timeout"):
        reg.get("broken")
    assert "broken" not in [s.name for s in reg.scripts()]


def test_in_plain_python_the_scripts_read_as_a_small_table_and_a_script_as_one_line(
    tmp_path: Path,
):
    scripts = Registry([examples_dir()]).scripts()
    assert isinstance(scripts, list) and scripts[0].name == "disk_report"  # still a list
    lines = repr(scripts).splitlines()
    assert lines[0].split() == ["name", "language", "parameters", "description"]
    assert len(lines) == len(scripts) + 1
    example = next(line for line in lines if line.startswith("example_script "))
    assert "python" in example and "message, multiplier, delay" in example
    assert max(len(line) for line in lines) < 130  # no wall of dataclass fields
    one = repr(Registry([examples_dir()]).get("example_script"))
    assert one.startswith("<Script example_script (python, 3 parameters) Repeats a message")
    assert "\n" not in one and len(one) < 120
    html = scripts._repr_html_()
    assert html.startswith("<table>") and html.count("<tr>") == len(scripts) + 1
    (tmp_path / "odd.py").write_text(
        '# /// scriptrun\n# description = "a <b>bold</b> one"\n# ///\n'
    )
    assert "&lt;b&gt;" in Registry([tmp_path]).scripts()._repr_html_()  # escaped
    assert "no scripts" in repr(Registry([tmp_path / "empty"]).scripts())
