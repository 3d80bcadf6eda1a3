"""A stream's output kept within a cap: its first and its last part, and how much was
dropped between them."""

from __future__ import annotations

from collections import deque


class CappedBuffer:
    """Keeps the first and the last part of a stream, at most ``cap`` bytes in all."""

    def __init__(self, cap: int) -> None:
        self.head_cap = cap // 2
        self.tail_cap = cap - self.head_cap
        self.head = bytearray()
        self.tail: deque[bytes] = deque()
        self.tail_len = 0
        self.total = 0

    def add(self, data: bytes) -> None:
        """Append a chunk, dropping the middle of the stream beyond the cap."""
        self.total += len(data)
        room = self.head_cap - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if not data:
            return
        self.tail.append(data)
        self.tail_len += len(data)
        while self.tail and self.tail_len - len(self.tail[0]) >= self.tail_cap:
            self.tail_len -= len(self.tail.popleft())

    @property
    def truncated(self) -> bool:
        """True when part of the stream was dropped."""
        return self.total > self.head_cap + self.tail_cap

    def text(self) -> str:
        """The kept bytes as text, with a marker where the middle was dropped."""
        tail = b"".join(self.tail)
        if len(tail) > self.tail_cap:
            tail = tail[len(tail) - self.tail_cap :]
        if not self.truncated:
            return (bytes(self.head) + tail).decode("utf-8", "replace")
        dropped = self.total - len(self.head) - len(tail)
        return (
            bytes(self.head).decode("utf-8", "replace")
            + f"\n[… {dropped} bytes of output dropped …]\n"
            + tail.decode("utf-8", "replace")
        )
