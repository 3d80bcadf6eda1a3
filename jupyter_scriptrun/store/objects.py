"""A run's file contents outside the database: a folder or object storage (``s3://…``),
by fsspec URL (``SCRIPTRUN_FILES_URL``). Each file is at ``{url}/{execution id}/{name}``
and its full URL is what the store records, so a reader needs no setting to find it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from jupyter_scriptrun import defaults


class Objects:
    """Writes, reads and removes runs' files under one fsspec URL (credentials and
    endpoint from the environment: ``AWS_*`` for S3)."""

    def __init__(self, url: str) -> None:
        from fsspec.core import url_to_fs

        self.url = url
        self.fs: Any
        self.fs, self.root = url_to_fs(url)

    def write(self, execution_id: str, name: str, chunks: Iterable[bytes]) -> str:
        """Store one file's bytes; its full URL."""
        path = f"{self.root.rstrip('/')}/{execution_id}/{name}"
        parent = path.rpartition("/")[0]
        self.fs.makedirs(parent, exist_ok=True)
        with self.fs.open(path, "wb") as handle:
            for piece in chunks:
                handle.write(piece)
        return str(self.fs.unstrip_protocol(path))


def read(location: str) -> Iterator[bytes]:
    """A stored file's bytes, in pieces, from its full URL."""
    import fsspec

    with fsspec.open(location, "rb") as handle:
        while piece := handle.read(defaults.FILE_CHUNK_BYTES):
            yield piece


def remove(locations: Iterable[str]) -> None:
    """Remove files by their full URLs (those already gone are no error)."""
    from fsspec.core import url_to_fs

    for location in locations:
        fs, path = url_to_fs(location)
        if fs.exists(path):
            fs.rm(path)
