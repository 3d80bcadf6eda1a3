"""``scriptrun schedule add|list|pause|resume|delete|next``: schedules from a shell."""

from __future__ import annotations

import argparse
import json
from typing import Any

from jupyter_scriptrun.params import build_params

ACTIONS = ("add", "list", "pause", "resume", "delete", "next")


def add_schedule_command(sub: Any) -> None:
    """The ``schedule`` command and its actions."""
    p = sub.add_parser(
        "schedule",
        help="run scripts on cron lines or at intervals (add, list, pause, resume, delete, next)",
        description="Schedules fire exactly once per tick while any worker lives; no beat "
        "process. 'add NAME key=value … --cron \"0 7 * * *\" [--tz Europe/Berlin]' or "
        "'--every 5m'; 'list'; 'pause|resume|delete|next ID-or-name'.",
    )
    actions = p.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="schedule a script")
    add.add_argument("script", help="script name (see 'scriptrun list')")
    add.add_argument("params", nargs="*", metavar="key=value", help="parameters, as for run")
    add.add_argument("--params", dest="params_json", metavar="JSON", help="parameters as JSON")
    when = add.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", help='a 5-field cron line, e.g. "0 7 * * 1-5"')
    when.add_argument("--every", help="an interval: seconds, or 30s, 5m, 1h, 1d")
    add.add_argument("--tz", default="UTC", help="IANA time zone of the cron line (default UTC)")
    add.add_argument("--name", help="the schedule's name (default: script and a suffix)")
    add.add_argument("--catchup", default="latest", choices=("latest", "none", "all"))
    add.add_argument("--overlap", default="skip", choices=("skip", "queue", "allow"))
    add.add_argument("--queue", help="Celery queue (default: the script's, else 'scriptrun')")
    add.add_argument("--timeout", type=float, help="each run's time limit in seconds")
    listing = actions.add_parser("list", help="every schedule")
    listing.add_argument("--json", action="store_true")
    for action in ("pause", "resume", "delete"):
        one = actions.add_parser(action, help=f"{action} a schedule")
        one.add_argument("schedule", help="its id or name")
    nxt = actions.add_parser("next", help="a schedule's next fire times")
    nxt.add_argument("schedule", help="its id or name")
    nxt.add_argument("-n", type=int, default=5, help="how many (default 5)")


def schedule_command(args: argparse.Namespace, client: Any) -> int:
    """Run one ``schedule`` action; 0 on success (errors raise, as for every command)."""
    if args.action == "add":
        params = build_params(args.params_json, args.params, option="--params")
        made = client.schedule(
            args.script,
            params,
            cron=args.cron,
            every=args.every,
            timezone=args.tz,
            name=args.name,
            catchup=args.catchup,
            overlap=args.overlap,
            queue=args.queue,
            timeout=args.timeout,
        )
        print(f"scheduled {made.name} [{made.id[:8]}]; next: {made.next_runs(1)[0].isoformat()}")
        return 0
    if args.action == "list":
        frame = client.schedules()
        if args.json:
            rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
            print(json.dumps(rows, ensure_ascii=False, indent=2, default=str))
        elif frame.empty:
            print("no schedules (add one: scriptrun schedule add NAME --every 5m)")
        else:
            shown = frame.drop(columns=["id"]).astype(object)
            shown = shown.where(shown.notna(), "")
            print(shown.to_string(index=False))
        return 0
    schedule = client.get_schedule(args.schedule)
    if args.action == "next":
        for when in schedule.next_runs(args.n):
            print(when.isoformat())
        return 0
    if args.action == "delete":
        schedule.delete()
        print(f"deleted {schedule.name} (its runs stay in the history)")
        return 0
    getattr(schedule, args.action)()
    state = "paused" if args.action == "pause" else "active"
    print(f"{schedule.name} {state}")
    return 0
