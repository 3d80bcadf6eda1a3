"""Script discovery: names, files, interpreters and metadata in the configured folders."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shlex
import shutil
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyter_scriptrun.contract import notebooks
from jupyter_scriptrun.contract.metadata import ScriptMeta, parse_metadata
from jupyter_scriptrun.exceptions import ScriptMetadataError, ScriptNotFound

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$")
"""A script name: a file stem, with no path separator, no leading dot and no NUL."""

# Interpreters by file extension; the first is preferred when two files share a stem.
EXTENSIONS: dict[str, tuple[str, ...]] = {
    ".py": ("python",),
    ".sh": ("bash",),
    ".bash": ("bash",),
    ".pl": ("perl",),
    ".rb": ("ruby",),
    ".js": ("node",),
    ".R": ("Rscript",),
    ".ipynb": ("python",),  # papermill, in a child of the worker's own Python
}
NOTEBOOK_RUNNER = ("-m", "jupyter_scriptrun.execution.notebook")
LANGUAGES: dict[str, str] = {
    "python": ".py",
    "bash": ".sh",
    "sh": ".sh",
    "perl": ".pl",
    "ruby": ".rb",
    "node": ".js",
    "javascript": ".js",
    "r": ".R",
    "notebook": notebooks.SUFFIX,
}
"""Languages of ad-hoc scripts (``%%scriptrun --lang``) and the extension that runs each."""
PYTHON_RE = re.compile(r"^python(\d+(\.\d+)?)?$")
MAX_SCRIPT_BYTES = 5 * 1024 * 1024


@dataclass(frozen=True)
class Script:
    """One registered script: where it is, how to run it and what it declares."""

    name: str
    path: Path
    meta: ScriptMeta
    content_hash: str
    """``sha256:<hex>`` of the file's bytes when it was read."""

    @property
    def description(self) -> str:
        """The one-line description from the metadata block."""
        return self.meta.description

    def command(self) -> list[str]:
        """The argv that runs this script (no shell, no parameters)."""
        return [*interpreter_for(self.path, self.meta), str(self.path)]

    def __repr__(self) -> str:
        count = len(self.meta.parameters)
        what = f"{count} parameter{'s' if count != 1 else ''}" if count else "free-form parameters"
        about = f" {_cut(self.description, 60)}" if self.description else ""
        return f"<Script {self.name} ({language_of(self.path, self.meta)}, {what}){about}>"

    def to_dict(self) -> dict[str, object]:
        """JSON-ready description of the script."""
        return {
            "name": self.name,
            "path": str(self.path),
            "language": language_of(self.path, self.meta),
            "content_hash": self.content_hash,
            **self.meta.to_dict(),
        }


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


class ScriptList(list[Script]):
    """The registered scripts: a plain list, shown as a small table (text and HTML)."""

    def _rows(self) -> list[tuple[str, str, str, str]]:
        return [
            (
                s.name,
                language_of(s.path, s.meta),
                ", ".join(s.meta.parameters) or "—",
                s.description,
            )
            for s in self
        ]

    def __repr__(self) -> str:
        if not self:
            return "no scripts (set SCRIPTRUN_SCRIPTS_PATH to a folder of scripts)"
        headers = ("name", "language", "parameters", "description")
        rows = [(n, lang, _cut(p, 30), _cut(d, 50)) for n, lang, p, d in self._rows()]
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
        lines = [
            "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in (headers, *rows)
        ]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        import html

        cell = "style='text-align:left;padding:2px 8px'"
        head = "".join(f"<th {cell}>{h}</th>" for h in ("name", "language", "parameters", ""))
        body = "".join(
            "<tr>" + "".join(f"<td {cell}>{html.escape(v)}</td>" for v in row) + "</tr>"
            for row in self._rows()
        )
        return f"<table><tr>{head}</tr>{body}</table>"


def language_of(path: Path, meta: ScriptMeta) -> str:
    """A short language label ("python", "bash", …) for listings."""
    if path.suffix == notebooks.SUFFIX:
        return "notebook"
    argv = interpreter_for(path, meta)
    if argv and argv[0] == sys.executable:
        return "python"
    if argv and Path(argv[0]).name == "env":  # '#!/usr/bin/env bash': the program env runs
        argv = [a for a in argv[1:] if not a.startswith("-") and "=" not in a]
    return Path(argv[0]).name if argv else "executable"


def interpreter_for(path: Path, meta: ScriptMeta) -> list[str]:
    """The interpreter argv for a script (without the script itself).

    Python always runs on the worker's own ``sys.executable``: a PATH shim (pyenv, conda)
    could pick another environment, and the runs would not be reproducible.
    """
    if path.suffix == notebooks.SUFFIX:
        return [sys.executable, *NOTEBOOK_RUNNER]
    if meta.interpreter:
        return _pythonize(list(meta.interpreter))
    if path.suffix == ".py":
        return [sys.executable]
    shebang = read_shebang(path)
    if shebang:
        return _pythonize(shebang)
    if path.suffix in EXTENSIONS:
        program = EXTENSIONS[path.suffix][0]
        return [shutil.which(program) or program]
    if os.access(path, os.X_OK):
        return []
    raise ScriptNotFound(
        f"{path.name}: no way to run it (no known extension, no '#!' line, not executable)"
    )


def _pythonize(argv: list[str]) -> list[str]:
    """Replace a Python interpreter named in a '#!' line by the worker's own."""
    if argv and Path(argv[0]).name == "env":
        rest = [a for a in argv[1:] if a != "-S"]
        if rest and PYTHON_RE.match(rest[0]):
            return [sys.executable, *rest[1:]]
        return argv
    if argv and PYTHON_RE.match(Path(argv[0]).name):
        return [sys.executable, *argv[1:]]
    return argv


def read_shebang(path: Path) -> list[str] | None:
    """The '#!' line of a file as argv, or None."""
    try:
        with path.open("rb") as f:
            first = f.readline(512)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    line = first[2:].decode("utf-8", "replace").strip()
    return shlex.split(line) or None


def file_hash(data: bytes) -> str:
    """Content hash recorded with every run."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def unchanged_source(script: Script) -> bytes | None:
    """The script file's bytes when they are still the version that was validated (None:
    edited since, or gone): what the store keeps so that every worker runs exactly it."""
    try:
        data = script.path.read_bytes()
    except OSError:
        return None
    return data if file_hash(data) == script.content_hash else None


def keep_version(store: Any, script: Script) -> None:
    """Have ``store`` keep the version of ``script`` that was validated, so that any
    worker runs exactly it (``store``: its ``kept`` and ``keep_version``). Nothing when
    kept already, or when edited since or gone (a worker with that version still runs it)."""
    if store.kept(script.content_hash):
        return
    if (data := unchanged_source(script)) is not None:
        store.keep_version(script.content_hash, script.name, script.path.name, data)


class Registry:
    """Finds scripts by name in an ordered list of folders.

    The folders are read on each lookup (cheaply, with a cache keyed on file size and
    modification time), so a script saved a moment ago is found without any reload.
    """

    def __init__(self, folders: Iterable[Path]) -> None:
        self.folders: tuple[Path, ...] = tuple(Path(f).resolve() for f in folders)
        self._cache: dict[Path, tuple[tuple[int, int], Script]] = {}

    def scripts(self) -> ScriptList:
        """Every runnable script, by name (the first folder holding a name wins).

        A script with a broken metadata block is listed nowhere but logged; asking for it
        by name gives the full error.
        """
        found: dict[str, Script] = {}
        for name, path in self._candidates():
            if name in found:
                continue
            try:
                found[name] = self._load(name, path)
            except (ScriptMetadataError, ScriptNotFound) as exc:
                log.warning("skipping %s: %s", path, exc)
        return ScriptList(found[n] for n in sorted(found))

    def get(self, name: str) -> Script:
        """The script called ``name`` (a file stem, or a file name with its extension).

        Raises:
            ScriptNotFound: the name is malformed, tries to leave the folders, or matches
                no file.
            ScriptMetadataError: the script's metadata block is malformed.
        """
        check_name(name)
        stem = name
        suffix = None
        if Path(name).suffix in EXTENSIONS:
            stem, suffix = Path(name).stem, Path(name).suffix
        for folder in self.folders:
            for ext in (suffix,) if suffix else (*EXTENSIONS, ""):
                path = folder / f"{stem}{ext}"
                if _is_script_file(path, folder, require_exec=(ext == "")):
                    return self._load(stem, path.resolve())
        # Names only: the message reaches REST clients, who have no business with the
        # server's folders (`scriptrun settings` shows them to whoever runs the worker).
        known = ", ".join(s.name for s in self.scripts()[:20]) or "none"
        raise ScriptNotFound(f"no script named {name!r} (known: {known})")

    def _candidates(self) -> Iterable[tuple[str, Path]]:
        for folder in self.folders:
            try:
                entries = sorted(folder.iterdir(), key=_preference)
            except OSError as exc:
                log.warning("cannot list script folder %s: %s", folder, exc)
                continue
            for path in entries:
                exts = path.suffix in EXTENSIONS
                if (
                    NAME_RE.match(path.stem)
                    and not path.name.startswith(("_", "."))
                    and _is_script_file(path, folder, require_exec=not exts)
                ):
                    yield path.stem, path.resolve()

    def _load(self, name: str, path: Path) -> Script:
        try:
            st = path.stat()
            if st.st_size > MAX_SCRIPT_BYTES:
                raise ScriptNotFound(f"{path.name}: larger than {MAX_SCRIPT_BYTES} bytes")
            key = (st.st_mtime_ns, st.st_size)
            cached = self._cache.get(path)
            if cached and cached[0] == key:
                return cached[1]
            data = path.read_bytes()
        except FileNotFoundError:
            raise ScriptNotFound(f"script {name!r} vanished from its folder") from None
        except OSError as exc:
            raise ScriptNotFound(f"script {name!r} cannot be read: {exc.strerror}") from None
        script = _script(name, path, data)
        self._cache[path] = (key, script)
        return script

    def load(self, name: str, path: Path) -> Script:
        """A script file outside the folders (a kept version of ``name``), read as a
        registered one (not cached: such files live as long as one attempt)."""
        return _script(name, path, path.read_bytes())


def _script(name: str, path: Path, data: bytes) -> Script:
    if path.suffix == notebooks.SUFFIX:
        meta = notebooks.notebook_meta(data, source=str(path))
    else:
        meta = parse_metadata(data.decode("utf-8", "replace"), source=str(path))
    interpreter_for(path, meta)  # fail now, not on the worker, for an unrunnable file
    return Script(name=name, path=path, meta=meta, content_hash=file_hash(data))


def adhoc_script(name: str, source: str, language: str, folder: Path | None = None) -> Script:
    """An ad-hoc script (a notebook cell's text) as a Script, to be written in ``folder``.

    Its own ``# /// scriptrun`` block, if any, declares parameters and limits as in a file.

    Raises:
        ScriptNotFound: a malformed name, an unknown language or an over-long source.
        ScriptMetadataError: a malformed metadata block.
    """
    check_name(name)
    suffix = LANGUAGES.get(str(language).lower())
    if suffix is None:
        raise ScriptNotFound(
            f"unknown language {language!r} (one of: {', '.join(sorted(LANGUAGES))})"
        )
    data = source.encode("utf-8", "surrogatepass")
    if len(data) > MAX_SCRIPT_BYTES:
        raise ScriptNotFound(f"ad-hoc script {name!r} is larger than {MAX_SCRIPT_BYTES} bytes")
    path = (folder or Path.cwd()) / f"{name}{suffix}"
    if suffix == notebooks.SUFFIX:
        meta = notebooks.notebook_meta(data, source=f"ad-hoc notebook {name!r}")
    else:  # its interpreter is the worker's business: the client may not have it
        meta = parse_metadata(source, source=f"ad-hoc script {name!r}")
    return Script(name=name, path=path, meta=meta, content_hash=file_hash(data))


def check_name(name: object) -> None:
    """Reject names that are not plain script names (``..``, paths, NUL, over-long)."""
    if not isinstance(name, str) or not name:
        raise ScriptNotFound("a script name must be a non-empty string")
    if "\x00" in name or "/" in name or "\\" in name or name.startswith("."):
        raise ScriptNotFound(
            f"invalid script name {name[:80]!r}: a name is a file stem, not a path"
        )
    if not NAME_RE.match(name):
        raise ScriptNotFound(
            f"invalid script name {name[:80]!r}: use letters, digits, '_', '-', '.' "
            "(at most 128 characters)"
        )


def _preference(path: Path) -> tuple[str, int]:
    order = list(EXTENSIONS)
    rank = order.index(path.suffix) if path.suffix in order else len(order)
    return (path.stem, rank)


def _is_script_file(path: Path, folder: Path, require_exec: bool) -> bool:
    """A regular file that really lives inside ``folder`` (symlinks may not lead out)."""
    try:
        if not path.is_file():
            return False
        real = path.resolve(strict=True)
    except OSError:
        return False
    if not real.is_relative_to(folder):
        log.warning("ignoring %s: it points outside its folder %s", path, folder)
        return False
    if require_exec:
        return os.access(real, os.X_OK) and read_shebang(real) is not None
    return True


def default_registry(folders: Sequence[Path] | None = None) -> Registry:
    """A registry over the configured folders."""
    if folders is None:
        from jupyter_scriptrun.config import get_settings

        folders = get_settings().scripts_path
    return Registry(folders)
