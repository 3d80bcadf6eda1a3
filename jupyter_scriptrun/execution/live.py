"""Live output: a run's output as text chunks, batched for the store and capped."""

from __future__ import annotations

import codecs
import threading


class LiveOutput:
    """Collects output as it arrives and hands it over in numbered ``(seq, stream, text)``
    chunks; consecutive output of one stream is merged so a tick costs one row or two.

    Args:
        cap_bytes: live output kept in all; past it a last note says where the rest is.
    """

    def __init__(self, cap_bytes: int) -> None:
        self.cap_bytes = cap_bytes
        self.sent_bytes = 0
        self.stopped = False
        self._seq = 0
        self._pending: list[list[str]] = []
        self._decoders = {
            name: codecs.getincrementaldecoder("utf-8")("replace") for name in ("stdout", "stderr")
        }
        # add() runs on the supervisor's loop, take() on the lease's thread.
        self._lock = threading.Lock()

    def add(self, stream: str, data: bytes) -> None:
        """Take a chunk of raw output from ``stream`` ("stdout" or "stderr")."""
        with self._lock:
            if self.stopped:
                return
            room = self.cap_bytes - self.sent_bytes
            if len(data) > room:
                data = data[:room]
                self.stopped = True
            self.sent_bytes += len(data)
            self._append(stream, self._decoders[stream].decode(data))
            if self.stopped:
                self._append(
                    "stderr",
                    f"\n[live output stops after {self.cap_bytes} bytes; the run goes on "
                    "and its record keeps the start and the end of its output]\n",
                )

    def add_progress(self, update: str) -> None:
        """Take one progress update (a JSON object's text): a chunk of its own, in order
        with the output, not counted against the cap (``Progress`` limits how many)."""
        with self._lock:
            self._pending.append(["progress", update])

    def note(self, text: str) -> None:
        """Add a note of the product's own to the live stderr (not counted in the cap)."""
        with self._lock:
            if not self.stopped:
                self._append("stderr", text)

    def _append(self, stream: str, text: str) -> None:
        if not text:
            return
        if self._pending and self._pending[-1][0] == stream != "progress":
            self._pending[-1][1] += text
        else:
            self._pending.append([stream, text])

    def take(self, final: bool = False) -> list[tuple[int, str, str]]:
        """The chunks gathered since the last call, numbered; ``final`` also flushes
        partial UTF-8 sequences held back by the decoders."""
        with self._lock:
            if final:
                for name, decoder in self._decoders.items():
                    self._append(name, decoder.decode(b"", final=True))
            out = []
            for stream, text in self._pending:
                out.append((self._seq, stream, text))
                self._seq += 1
            self._pending.clear()
            return out
