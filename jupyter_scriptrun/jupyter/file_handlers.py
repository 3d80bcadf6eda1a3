"""REST handlers for the files a run wrote: ``GET executions/{id}/files`` (the list) and
``GET executions/{id}/files/{name}`` (the bytes, streamed in pieces)."""

from __future__ import annotations

import urllib.parse

from jupyter_server.auth.decorator import authorized
from tornado import web

from jupyter_scriptrun.jupyter.handlers import PREFIX, BaseHandler, mapped_errors

# What a browser may render of a file a script wrote, from the server's own origin: only
# these, and never as a page that runs code (the rest downloads).
SHOWN_INLINE = ("image/png", "image/jpeg", "image/gif", "image/webp", "text/plain", "text/csv")


class FilesHandler(BaseHandler):
    """``GET /executions/{id}/files``: the run's files, kept or not (with why)."""

    @web.authenticated
    @authorized
    @mapped_errors
    async def get(self, execution_id: str) -> None:
        execution = await self.call(self.client.get, execution_id)
        files = await self.call(execution.files)
        base = f"{self.base_url.rstrip('/')}{PREFIX}/executions/{execution.id}/files"
        self.send(
            [
                {
                    **{k: v for k, v in entry.items() if k != "location"},
                    "kept": entry["note"] is None,
                    "url": f"{base}/{urllib.parse.quote(entry['name'])}"
                    if entry["note"] is None
                    else None,
                }
                for entry in files
            ]
        )


class FileHandler(BaseHandler):
    """``GET /executions/{id}/files/{name}``: one kept file's bytes, with its media type,
    ``Content-Disposition`` and its checksum as the ETag."""

    @web.authenticated
    @authorized
    @mapped_errors
    async def get(self, execution_id: str, name: str) -> None:
        execution = await self.call(self.client.get, execution_id)
        name = urllib.parse.unquote(name)
        if self.get_argument("as", "") == "html":  # an executed notebook, as a page
            page = await self.call(execution.notebook_html, name)
            self.set_header("X-Content-Type-Options", "nosniff")
            # Its outputs are a script's: shown, but no script of theirs runs here.
            self.set_header("Content-Security-Policy", "sandbox; script-src 'none'")
            # (Jupyter's API handlers answer JSON unless told otherwise.)
            self.finish(page, set_content_type="text/html; charset=utf-8")
            return
        entry, pieces = await self.call(execution.open_file, name)
        media = entry["media_type"]
        inline = self.get_argument("download", "0") in ("0", "false") and media in SHOWN_INLINE
        self.set_header("Content-Type", media)
        self.set_header("Content-Length", str(entry["size"]))
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Content-Security-Policy", "sandbox; default-src 'none'")
        if entry["sha256"]:
            self.set_header("ETag", f'"{entry["sha256"]}"')
        leaf = urllib.parse.quote(name.rpartition("/")[2])
        disposition = "inline" if inline else "attachment"
        self.set_header("Content-Disposition", f"{disposition}; filename*=UTF-8''{leaf}")
        while (piece := await self.call(next, pieces, None)) is not None:
            self.write(piece)
            await self.flush()  # a piece at a time: the server never holds a whole file
        self.finish(set_content_type=media)  # an empty file's headers are still to go


def routes() -> list[tuple[str, type[BaseHandler]]]:
    """The files' URL patterns (before the API's catch-all)."""
    ident = r"(?P<execution_id>[^/]+)"
    return [
        (rf"{PREFIX}/executions/{ident}/files/?", FilesHandler),
        (rf"{PREFIX}/executions/{ident}/files/(?P<name>.+)", FileHandler),
    ]
