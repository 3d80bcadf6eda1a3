"""``scriptrun history``: past runs as a table aligned by display width, CSV or JSON."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

from jupyter_scriptrun import defaults
from jupyter_scriptrun.params import limit_argument
from jupyter_scriptrun.status import ALL

if TYPE_CHECKING:
    from jupyter_scriptrun.service.client import Client


def add_history_command(sub: Any) -> None:
    """The ``history`` command and its filters."""
    p = sub.add_parser("history", help="show past runs, newest first")
    p.add_argument("--script", action="append", help="only this script (repeatable)")
    p.add_argument(
        "--status",
        action="append",
        choices=ALL,
        metavar="STATUS",
        help=f"only this status (repeatable): {', '.join(ALL)}",
    )
    p.add_argument("--since", type=datetime.fromisoformat, help="ISO time, e.g. 2026-01-31")
    p.add_argument(
        "--limit",
        type=limit_argument,
        default=defaults.HISTORY_LIMIT,
        help=f"the newest N runs, or 'all' (default: {defaults.HISTORY_LIMIT})",
    )
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")


def history_command(args: argparse.Namespace, client: Client) -> int:
    """Print the history as a table, CSV or JSON; exit status 0."""
    frame = client.history(
        script=args.script, status=args.status, since=args.since, limit=args.limit
    )
    from jupyter_scriptrun.service.frames import history_csv, history_json

    if args.format == "csv":
        sys.stdout.write(history_csv(frame))
    elif args.format == "json":
        sys.stdout.write(history_json(frame))
        sys.stdout.write("\n")
    elif frame.empty:
        print(_no_runs(client, args))
    else:
        from tabulate import tabulate

        view = frame[
            [
                "id",
                "script",
                "status",
                "queued_at",
                "duration_s",
                "peak_rss_mb",
                "exit_code",
                "message",
            ]
        ].copy()
        view["id"] = view["id"].str[:8]
        view["queued_at"] = view["queued_at"].dt.strftime("%Y-%m-%d %H:%M:%S UTC")
        view["exit_code"] = view["exit_code"].astype("Int64").astype(object)
        view["message"] = view["message"].fillna("").astype(str).str.slice(0, 40)
        view = view.astype(object).where(view.notna(), None)
        # tabulate with wcwidth: columns aligned by display width (CJK takes two cells).
        print(
            tabulate(
                view.values.tolist(),
                headers=list(view.columns),
                tablefmt="plain",
                missingval="—",
                floatfmt=("", "", "", "", ".3f", ".1f", "", ""),
                disable_numparse=[0, 1, 2, 3, 7],  # ids and messages stay text
            )
        )
    return 0


def _no_runs(client: Client, args: argparse.Namespace) -> str:
    """Why a history is empty: no run at all, or none that the filters (or limit) let in."""
    total = client.count_runs()
    if not total:
        return "no runs yet; try: scriptrun run example_script message=hi"
    asked = [f"script {', '.join(args.script)}" if args.script else ""]
    asked += [f"status {', '.join(args.status)}" if args.status else ""]
    asked += [f"since {args.since.isoformat()}" if args.since else ""]
    asked += ["--limit 0" if args.limit == 0 else ""]
    return f"no runs match {'; '.join(a for a in asked if a)} ({total} runs in all)"
