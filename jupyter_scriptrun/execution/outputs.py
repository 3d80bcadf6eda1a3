"""The files a run leaves in its output folder (``SCRIPTRUN_OUTPUT_DIR``): found, checked
against the limits and read in pieces, never following a link out of the folder.

The folder is the script's to fill, so nothing in it is trusted: a link (to a file or a
folder, even the folder itself replaced by one) is listed and not read, a FIFO or device
is skipped, every file is opened one folder at a time with ``O_NOFOLLOW``, and sizes come
from the listing, so a 1 GiB file over the limit is never read and costs the worker
nothing. Files are read in pieces straight into the store or object storage.
"""

from __future__ import annotations

import hashlib
import logging
import math
import mimetypes
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from jupyter_scriptrun import defaults
from jupyter_scriptrun.contract.protocol import OUTPUT_DIR_ENV
from jupyter_scriptrun.store.objects import Objects, remove

if TYPE_CHECKING:
    from jupyter_scriptrun.config import Settings
    from jupyter_scriptrun.store import Store

log = logging.getLogger(__name__)

MB = 1024 * 1024
MAX_NAME = 1000
MAX_LISTED = 10 * defaults.MAX_FILE_COUNT
"""Entries listed at most; what is past them is one line saying so."""
MEDIA_TYPES = {
    ".ipynb": "application/x-ipynb+json",
    ".parquet": "application/vnd.apache.parquet",
    ".csv": "text/csv",
    ".json": "application/json",
    ".md": "text/markdown",
    ".log": "text/plain",
}


@dataclass
class Found:
    """One entry of the folder: to keep (``note`` None) or listed with why it is not."""

    name: str
    size: int
    media_type: str
    note: str | None = None

    @property
    def kept(self) -> bool:
        return self.note is None

    def chunks(self, folder: str) -> Iterator[bytes]:
        """The file's bytes in pieces, at most the size it was listed with (a file still
        growing is kept as it was then). It is opened one folder at a time from ``folder``
        without following a link, so one swapped in since the listing is not read."""
        fd = _open_below(folder, self.name.split("/"))
        with os.fdopen(fd, "rb") as handle:
            yield from read_chunks(handle, self.size)


def read_chunks(handle: BinaryIO, limit: int | None = None) -> Iterator[bytes]:
    """``handle``'s bytes in pieces, at most ``limit`` of them."""
    left = math.inf if limit is None else limit
    while left > 0:
        piece = handle.read(int(min(left, defaults.FILE_CHUNK_BYTES)))
        if not piece:
            return
        left -= len(piece)
        yield piece


def media_type(name: str) -> str:
    """A file's media type by its name (``application/octet-stream`` when unknown)."""
    suffix = os.path.splitext(name)[1].lower()
    return MEDIA_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def collect(
    folder: str,
    max_total_mb: float,
    max_file_mb: float,
    max_count: int = defaults.MAX_FILE_COUNT,
) -> list[Found]:
    """Every entry of ``folder`` by name (``a/b.csv`` below a subfolder), each to keep or
    with why not: a link, not a plain file, a name too long or not UTF-8, over the
    per-file or per-run limit, past ``max_count``."""
    try:
        top = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return []
    except OSError:
        return [Found(".", 0, "inode/symlink", "the output folder was replaced by a link")]
    found: list[Found] = []
    try:
        _walk(top, "", found)
    finally:
        os.close(top)
    found.sort(key=lambda f: f.name)
    return _limit(found, max_total_mb * MB, max_file_mb * MB, max_count)


def _walk(dir_fd: int, prefix: str, found: list[Found]) -> None:
    for entry in sorted(os.listdir(dir_fd)):
        if len(found) >= MAX_LISTED:  # a folder of a million files is not read to the end
            if found[-1].name != "…":
                found.append(Found("…", 0, "inode/directory", f"more than {MAX_LISTED} entries"))
            return
        name = prefix + entry
        if not _printable(entry):
            found.append(Found(repr(name), 0, "application/octet-stream", "a name not in UTF-8"))
            continue
        if len(name) > MAX_NAME:
            found.append(Found(name[:MAX_NAME], 0, media_type(name), "a name over 1000 characters"))
            continue
        info = os.stat(entry, dir_fd=dir_fd, follow_symlinks=False)
        if stat.S_ISLNK(info.st_mode):
            found.append(Found(name, 0, "inode/symlink", "a link (links are not followed)"))
        elif stat.S_ISDIR(info.st_mode):
            try:
                sub = os.open(entry, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
            except OSError:
                found.append(Found(name + "/", 0, "inode/directory", "a folder it cannot read"))
                continue
            try:
                _walk(sub, name + "/", found)
            finally:
                os.close(sub)
        elif not stat.S_ISREG(info.st_mode):
            found.append(Found(name, 0, "application/octet-stream", "not a plain file"))
        else:
            found.append(Found(name, info.st_size, media_type(name)))


def _open_below(folder: str, parts: list[str]) -> int:
    """A descriptor of ``folder/parts…``, each folder and the file opened without
    following links; OSError for a link or anything but a plain file."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for part in parts[:-1]:
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = inner
        leaf = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(os.fstat(leaf).st_mode):
        os.close(leaf)
        raise OSError(f"{'/'.join(parts)} is not a plain file any more")
    return leaf


def _limit(found: list[Found], total: float, each: float, count: int) -> list[Found]:
    """Keep files in name order while they fit; say why of the others."""
    used, kept = 0, 0
    for item in found:
        if not item.kept:
            continue
        if kept >= count:
            item.note = f"past the {count} files kept per run"
        elif item.size > each:
            item.note = f"{item.size / MB:.1f} MB, over the {each / MB:g} MB kept of one file"
        elif used + item.size > total:
            item.note = f"{item.size / MB:.1f} MB would pass the {total / MB:g} MB kept per run"
        else:
            used += item.size
            kept += 1
    return found


def _printable(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # surrogate escapes: bytes that are not UTF-8
        return False
    return True


def hashed(chunks: Iterator[bytes], digest: Any) -> Iterator[bytes]:
    """``chunks`` passed on, each added to ``digest`` on the way."""
    for piece in chunks:
        digest.update(piece)
        yield piece


def keep(
    store: Store, settings: Settings, execution_id: str, attempt: int, env: dict[str, str]
) -> None:
    """Keep what an attempt left in its output folder (``env``'s ``SCRIPTRUN_OUTPUT_DIR``),
    replacing an earlier attempt's files: in the store, or under ``SCRIPTRUN_FILES_URL``.
    Never raises: a file that cannot be kept is listed with why, and the run's own
    outcome stands."""
    folder = env.get(OUTPUT_DIR_ENV)
    if not folder:
        return
    try:
        found = collect(folder, settings.max_files_mb, settings.max_file_mb)
    except OSError:
        log.warning("execution %s: could not list its output folder", execution_id, exc_info=True)
        return
    if not found and attempt <= 1:
        return  # nothing written, and no earlier attempt's files to replace: no write at all
    try:
        # A retry's files replace the earlier attempt's (a first attempt has none).
        stale = store.clear_files(execution_id) if attempt > 1 else []
        objects = Objects(settings.files_url) if settings.files_url else None
        for item in found:
            _keep_one(store, objects, execution_id, attempt, item, folder)
        if stale:
            remove(stale)
    except Exception:
        log.warning("execution %s: could not keep its files", execution_id, exc_info=True)


def _keep_one(
    store: Store,
    objects: Objects | None,
    execution_id: str,
    attempt: int,
    item: Found,
    folder: str,
) -> None:
    entry: dict[str, Any] = {"name": item.name, "size": item.size, "media_type": item.media_type}
    if not item.kept:
        store.add_file(execution_id, attempt, {**entry, "note": item.note})
        return
    digest = hashlib.sha256()
    try:
        if objects is not None:
            location = objects.write(execution_id, item.name, hashed(item.chunks(folder), digest))
            store.add_file(
                execution_id,
                attempt,
                {**entry, "sha256": digest.hexdigest(), "location": location},
            )
        else:
            row = {**entry}
            store.add_file(execution_id, attempt, row, _then_hash(item.chunks(folder), digest, row))
    except Exception as exc:  # one file that cannot be kept does not lose the others
        log.warning("execution %s: could not keep %s", execution_id, item.name, exc_info=True)
        store.add_file(execution_id, attempt, {**entry, "note": f"could not be kept: {exc}"})


def _then_hash(chunks: Iterator[bytes], digest: Any, row: dict[str, Any]) -> Iterator[bytes]:
    """The file's pieces; once read, its checksum is set in ``row`` (written after them)."""
    yield from hashed(chunks, digest)
    row["sha256"] = digest.hexdigest()
