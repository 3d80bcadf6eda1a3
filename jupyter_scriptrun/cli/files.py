"""``scriptrun files ID [--get NAME | --out DIR]``: the files a run wrote, listed or saved."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_scriptrun.display import file_size

if TYPE_CHECKING:
    from jupyter_scriptrun.service.client import Client


def add_files_command(sub: Any) -> None:
    """The ``files`` command."""
    p = sub.add_parser(
        "files",
        help="list the files a run wrote, or save them",
        description="Lists what the run left in SCRIPTRUN_OUTPUT_DIR (and why a file was not "
        "kept); --get NAME writes one file's bytes to stdout, --out DIR saves every kept file.",
    )
    p.add_argument("id", help="execution id (or a unique prefix of 4+ characters)")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--get", metavar="NAME", help="write this file's bytes to stdout")
    how.add_argument("--out", metavar="DIR", type=Path, help="save every kept file below DIR")


def files_command(args: argparse.Namespace, client: Client) -> int:
    """Run ``files``; 0 on success (errors raise, as for every command)."""
    run = client.get(args.id)
    if args.get:
        content = run.read_file(args.get)
        sys.stdout.buffer.write(content)
        sys.stdout.flush()
        return 0
    if args.out:
        for path in run.save_files(args.out):
            print(path)
        return 0
    files = run.files()
    if not files:
        print(f"run {run.id[:8]} kept no files (scripts write them to $SCRIPTRUN_OUTPUT_DIR)")
        return 0
    width = max(len(f["name"]) for f in files)
    for entry in files:
        if entry["note"] is None:
            print(f"{entry['name']:<{width}}  {file_size(entry['size']):>9}  {entry['media_type']}")
        else:
            print(f"{entry['name']:<{width}}  {'-':>9}  not kept: {entry['note']}")
    return 0


def print_kept_files(run: Any) -> None:
    """After a run's summary: the files it kept, and how to get them (nothing if none)."""
    names = [f["name"] for f in run.files() if f["note"] is None]
    if names:
        shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
        print(f"files: {shown} (scriptrun files {run.id[:8]} --out DIR)")
