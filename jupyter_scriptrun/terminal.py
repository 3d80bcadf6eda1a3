"""A run followed on a terminal: its output as it comes, or one status line redrawn in place."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from jupyter_scriptrun.exceptions import ExecutionTimeout


def follow(execution: Any) -> None:
    """Copy the run's output to ours as the worker records it, until the run ends; on a
    terminal, its progress as one line redrawn in place on stderr (never into a file)."""
    from jupyter_scriptrun.display import progress_text

    tty = sys.stderr.isatty()
    shown = False
    for chunk in execution.follow():
        if chunk["stream"] == "progress":
            if tty:
                line = progress_text(json.loads(chunk["text"]))
                sys.stderr.write(f"\r\x1b[2K[progress] {line}")
                sys.stderr.flush()
                shown = True
            continue
        if shown:  # the output goes where the progress line was
            sys.stderr.write("\r\x1b[2K")
            shown = False
        stream = sys.stderr if chunk["stream"] == "stderr" else sys.stdout
        stream.write(chunk["text"])
        stream.flush()
    if shown:
        sys.stderr.write("\r\x1b[2K")


def wait_showing_progress(execution: Any) -> None:
    """Wait for the run, with one line on the terminal redrawn in place: its status,
    elapsed time and progress (cleared at the end, so what follows reads as without)."""
    from jupyter_scriptrun.display import summary_line

    started = time.monotonic()
    try:
        while True:
            try:
                execution.wait(0.5)
                return
            except ExecutionTimeout:
                line = summary_line(execution.record(), time.monotonic() - started)
                sys.stderr.write(f"\r\x1b[2K{line}")
                sys.stderr.flush()
    finally:
        sys.stderr.write("\r\x1b[2K")
        sys.stderr.flush()
