"""Live output: chunks numbered in order, streams merged, UTF-8 kept whole, a hard cap."""

from __future__ import annotations

from jupyter_scriptrun.execution.live import LiveOutput


def test_consecutive_output_of_a_stream_is_one_chunk():
    live = LiveOutput(1000)
    live.add("stdout", b"a\n")
    live.add("stdout", b"b\n")
    live.add("stderr", b"warn\n")
    live.add("stdout", b"c\n")
    assert live.take() == [(0, "stdout", "a\nb\n"), (1, "stderr", "warn\n"), (2, "stdout", "c\n")]
    assert live.take() == []
    live.add("stdout", b"d\n")
    assert live.take() == [(3, "stdout", "d\n")]


def test_a_character_split_between_reads_arrives_whole():
    live = LiveOutput(1000)
    data = "你好\n".encode()
    live.add("stdout", data[:2])
    assert live.take() == []
    live.add("stdout", data[2:])
    assert live.take() == [(0, "stdout", "你好\n")]


def test_a_truncated_sequence_is_flushed_at_the_end():
    live = LiveOutput(1000)
    live.add("stdout", "é".encode()[:1])
    assert live.take(final=True) == [(0, "stdout", "\ufffd")]


def test_live_output_stops_at_the_cap_with_a_note():
    live = LiveOutput(10)
    live.add("stdout", b"0123456789abcdef")
    live.add("stdout", b"more")
    chunks = live.take()
    assert chunks[0] == (0, "stdout", "0123456789")
    assert chunks[1][1] == "stderr" and "live output stops after 10 bytes" in chunks[1][2]
    assert len(chunks) == 2 and live.take() == []
