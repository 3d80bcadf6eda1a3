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


def print_logs(execution: Any, attempt: int | None = None) -> None:
    """Print a run's output (of ``attempt``, else the last): what was recorded once it
    ended, or the output so far of one still going, with a line saying so on stderr."""
    attempts = execution.attempts()
    if not attempts:
        print(f"run {execution.id[:8]} has not started yet ({execution.status.value})")
        return
    chosen = (
        attempts[-1]
        if attempt is None
        else next((a for a in attempts if a["attempt"] == attempt), None)
    )
    if chosen is None:
        raise ValueError(f"run {execution.id[:8]} has no attempt {attempt}")
    if chosen.get("status") != "running":
        sys.stdout.write(chosen.get("stdout") or "")
        sys.stderr.write(chosen.get("stderr") or "")
        return
    for chunk in execution.output()["chunks"]:  # recorded live, a store tick behind
        if chunk["stream"] in ("stdout", "stderr"):
            (sys.stdout if chunk["stream"] == "stdout" else sys.stderr).write(chunk["text"])
    sys.stdout.flush()
    short = execution.id[:8]
    print(
        f"scriptrun: run {short} is still running (this is its output so far); "
        f"'scriptrun logs {short} --follow' prints the rest as it comes",
        file=sys.stderr,
    )


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
