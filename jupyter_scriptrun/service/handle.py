"""The handle of one run (:class:`Execution`): its status, record, output as it comes,
results, the files it wrote, and cancel."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from jupyter_scriptrun.exceptions import ExecutionFailed, ExecutionTimeout, FileNotKept
from jupyter_scriptrun.fleet import control
from jupyter_scriptrun.models import AttemptRecord, ExecutionRecord, FileRecord, OutputPage
from jupyter_scriptrun.status import ExecutionStatus

log = logging.getLogger(__name__)
NOTEBOOK_TYPE = "application/x-ipynb+json"

if TYPE_CHECKING:
    import pandas as pd

    from jupyter_scriptrun.store import Store


class RunBackend(Protocol):
    """What a run's handle needs (the Client is one): the store that records runs, the
    Celery app whose control channel reaches workers, and a way to wait for a run's end
    (notices, a laptop's local worker). The handle knows nothing else of the client."""

    @property
    def store(self) -> Store: ...

    @property
    def app(self) -> Any: ...

    def wait_for(self, execution_id: str, timeout: float | None = None) -> ExecutionStatus: ...


@dataclass
class OutputCursor:
    """Where a follower of a run's output stands: the attempt and the next chunk."""

    attempt: int | None = None
    offset: int = 0


@dataclass
class OutputNews:
    """What :meth:`Execution.read_new` found: the status, new chunks (``{"attempt",
    "seq", "stream", "text"}``), and whether a retry began (output starts again)."""

    status: ExecutionStatus
    chunks: list[dict[str, Any]]
    retried: bool = False


@dataclass
class LiveTail:
    """A run's output so far as one text, for a view that follows it: progress updates
    left out, a retry marked, the last ``keep`` characters kept."""

    keep: int = 200_000
    cursor: OutputCursor = field(default_factory=OutputCursor)
    text: str = ""

    def read(self, execution: Execution) -> ExecutionStatus:
        """Add what arrived since the last read; the run's status."""
        news = execution.read_new(self.cursor)
        text = self.text
        if news.retried:
            text += f"\n--- attempt {self.cursor.attempt} ---\n"
        text += "".join(c["text"] for c in news.chunks if c["stream"] != "progress")
        self.text = text[-self.keep :]
        return news.status


class Execution:
    """The handle of one execution: its id, live status, and (once ended) its results."""

    def __init__(
        self, client: RunBackend, execution_id: str, created: ExecutionRecord | None = None
    ) -> None:
        self.client = client
        self.id = execution_id
        self.created = created
        """The record as submitted (``queued``), for a handle this client submitted."""
        self.sent_at: float | None = None
        """When this client handed the run's message to the broker (``time.time()``, this
        host's clock), for a handle it submitted: where a run's wait for a worker begins."""
        self._attempts: list[AttemptRecord] | None = None

    def __repr__(self) -> str:
        return f"<Execution {self.id[:8]} {self.record().get('script')} {self.status.value}>"

    def _repr_html_(self) -> str:
        from jupyter_scriptrun.display import execution_html

        rec = self.record()
        frame = self.frame() if rec["status"] == "succeeded" else None
        failed = rec["status"] != "succeeded"
        return execution_html(
            rec,
            self.data,
            frame,
            self.stdout,
            self.stderr if failed else "",
            files=self.file_views(),
        )

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        from jupyter_scriptrun.display import summary_line

        printer.text(summary_line(self.record()))

    @property
    def status(self) -> ExecutionStatus:
        """The status now (read from the store)."""
        return self.client.store.status(self.id)

    def record(self) -> ExecutionRecord:
        """The execution's record: the history columns and a few more."""
        return self.client.store.get(self.id)

    def wait(self, timeout: float | None = None) -> Execution:
        """Block until the run ends (``timeout`` in seconds; ExecutionTimeout after it)."""
        self.client.wait_for(self.id, timeout)
        self._attempts = None
        return self

    def attempts(self) -> list[AttemptRecord]:
        """Every attempt, with its output, result, traceback and metrics."""
        if self._attempts is None or not self.status.is_final:
            self._attempts = self.client.store.attempts(self.id)
        return self._attempts

    def _last(self) -> Mapping[str, Any]:
        tried = self.attempts()
        return tried[-1] if tried else {}

    @property
    def result(self) -> Any:
        """The JSON document the script printed (None if it printed none)."""
        return self._last().get("result")

    @property
    def data(self) -> Any:
        """The result's ``data`` (or the whole JSON output when it is not shaped)."""
        return self._last().get("data")

    @property
    def stdout(self) -> str:
        """Captured standard output of the last attempt."""
        return self._last().get("stdout") or ""

    @property
    def stderr(self) -> str:
        """Captured standard error of the last attempt."""
        return self._last().get("stderr") or ""

    @property
    def traceback(self) -> str | None:
        """The traceback of a failed last attempt, if one was printed."""
        return self._last().get("traceback")

    def output(self, offset: int = 0) -> OutputPage:
        """Output of the latest attempt as it arrives: ``{"attempt", "chunks",
        "next_offset"}`` from chunk ``offset`` on (pass ``next_offset`` back for more)."""
        return self.client.store.output(self.id, offset)

    def read_new(self, cursor: OutputCursor) -> OutputNews:
        """The status and the output that arrived since ``cursor`` (which moves on): the
        one way every front end follows a run without blocking."""
        # Status first: a run seen final has all its output already written (the last
        # chunks go in the same transaction as the final status).
        status = self.status
        page = self.client.store.output(self.id, cursor.offset if cursor.attempt else 0)
        previous = cursor.attempt
        if previous is not None and page["attempt"] != previous:
            page = self.client.store.output(self.id, 0, page["attempt"])
        cursor.attempt, cursor.offset = page["attempt"], page["next_offset"]
        return OutputNews(
            status,
            [{"attempt": cursor.attempt, **chunk} for chunk in page["chunks"]],
            retried=bool(previous) and previous != cursor.attempt,
        )

    def follow(
        self, interval: float = 0.25, ticks: bool = False
    ) -> Iterator[dict[str, Any] | None]:
        """Yield output chunks (``{"attempt", "seq", "stream", "text"}``) as they arrive,
        until the run ends; a retry starts again from its own first chunk. With ``ticks``,
        also yield None every ``interval`` (for a live clock)."""
        cursor = OutputCursor()
        while True:
            news = self.read_new(cursor)
            yield from news.chunks
            if news.status.is_final:
                return
            if ticks:
                yield None
            with contextlib.suppress(ExecutionTimeout):
                self.wait(interval)

    def frame(self, name: str | None = None) -> pd.DataFrame | None:
        """``data`` as a DataFrame when it is tabular, else None; with ``name``, that file
        of the run's (CSV, TSV, Parquet or JSON) as a DataFrame."""
        from jupyter_scriptrun.service.frames import data_frame, file_frame

        if name is not None:
            return file_frame(name, self.read_file(name))
        return data_frame(self.data)

    def files(self) -> list[FileRecord]:
        """The files the run left in its output folder (its last attempt's), by name:
        name, size, media_type, sha256, and ``note`` saying why one was not kept."""
        return cast("list[FileRecord]", self.client.store.files(self.id))

    def read_file(self, name: str) -> bytes:
        """One kept file's bytes (FileNotKept when it has none of that name, or did not
        keep it)."""
        return b"".join(self.open_file(name)[1])

    def file_views(self, each: int = 1 << 20, total: int = 4 << 20) -> list[dict[str, Any]]:
        """The files as a card shows them: each with its ``content`` when it is at most
        ``each`` bytes and all carried so far at most ``total`` (a card is saved in the
        notebook: it stays small)."""
        views: list[dict[str, Any]] = []
        carried = 0
        for entry in self.files():
            view: dict[str, Any] = dict(entry)
            if entry["note"] is None and entry["size"] <= each and carried + entry["size"] <= total:
                view["content"] = self.read_file(entry["name"])
                carried += entry["size"]
                if entry["media_type"] == NOTEBOOK_TYPE:
                    view["html"] = self._rendered(view["content"])
            views.append(view)
        return views

    def notebook_html(self, name: str | None = None) -> str:
        """The executed notebook (``name``, else the run's first) as a standalone HTML
        page (nbconvert); FileNotKept when the run kept none."""
        if name is None:
            notebooks = [f["name"] for f in self.files() if f["media_type"] == NOTEBOOK_TYPE]
            if not notebooks:
                raise FileNotKept(f"run {self.id[:8]} kept no notebook")
            name = notebooks[0]
        from jupyter_scriptrun.service.rendering import notebook_page

        return notebook_page(self.read_file(name))

    @staticmethod
    def _rendered(content: bytes) -> str | None:
        """A card's view of an executed notebook (None when it cannot be read as one)."""
        from jupyter_scriptrun.service.rendering import notebook_frame

        try:
            return notebook_frame(content)
        except Exception:  # a file named .ipynb that is none: offered as a file only
            log.debug("not rendered as a notebook", exc_info=True)
            return None

    def open_file(self, name: str) -> tuple[FileRecord, Iterator[bytes]]:
        """One kept file's record and its bytes in pieces, for a reader that streams
        them (FileNotKept as for :meth:`read_file`)."""
        entry = cast("FileRecord", self.client.store.file_entry(self.id, name))
        return entry, self.client.store.read_file_bytes(self.id, name)

    def save_files(self, folder: str | os.PathLike[str]) -> list[Path]:
        """Write every kept file below ``folder`` (made if missing, subfolders kept), read
        in pieces; the paths written."""
        written = []
        root = Path(folder)
        for entry in self.files():
            if entry["note"] is not None:
                continue
            parts = entry["name"].split("/")
            if any(part in ("", ".", "..") for part in parts):
                continue  # not a name the worker keeps: nothing is written outside folder
            target = root.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as out:
                for piece in self.client.store.read_file_bytes(self.id, entry["name"]):
                    out.write(piece)
            written.append(target)
        return written

    def cancel(self) -> ExecutionStatus:
        """Cancel: a queued run never starts; a running one has its process tree ended.

        Returns the status after the request (``cancelled``, or ``running`` while its
        worker is ending it). Raises ExecutionConflict if the run already ended otherwise.
        """
        status = self.client.store.request_cancel(self.id)
        try:
            if status is ExecutionStatus.CANCELLED:
                # The message may still sit in the broker: let workers drop it.
                control.drop_queued(self.client.app, self.id)
            else:
                # Running: its worker learns it from the store within a second; told
                # directly, it stops the run at its next tick (a quarter of that).
                control.stop_run(self.client.app, self.id)
        except Exception:
            log.debug("the cancel of %s was not broadcast", self.id, exc_info=True)
        return status

    def raise_for_status(self) -> Execution:
        """Raise ExecutionFailed unless the run succeeded."""
        rec = self.record()
        if rec["status"] != ExecutionStatus.SUCCEEDED.value:
            raise ExecutionFailed(
                self.id,
                rec["script"],
                rec["status"],
                rec["error_type"],
                rec["message"],
                rec["exit_code"],
                self.stderr[-2000:],
            )
        return self
