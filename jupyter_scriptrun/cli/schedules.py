"""``scriptrun schedule add|edit|run|list|pause|resume|delete|next``: schedules from a shell."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from jupyter_scriptrun.params import build_params
from jupyter_scriptrun.timing import options

if TYPE_CHECKING:
    from jupyter_scriptrun.service.client import Client

ACTIONS = ("add", "edit", "run", "list", "pause", "resume", "delete", "next")


def _options(parser: Any, editing: bool) -> None:
    """The schedule's options (``editing``: none is required, and only those given
    change)."""
    parser.add_argument("params", nargs="*", metavar="key=value", help="parameters, as for run")
    parser.add_argument("--params", dest="params_json", metavar="JSON", help="parameters as JSON")
    parser.add_argument("--name", help="the schedule's name (default: script and a suffix)")
    options.add_arguments(parser, timing_required=not editing)


def _given(args: Any) -> dict[str, Any]:
    """The schedule options given on this command line, in ScheduleSpec's words."""
    return options.from_args(args)


def add_schedule_command(sub: Any) -> None:
    """The ``schedule`` command and its actions."""
    p = sub.add_parser(
        "schedule",
        help="run scripts on cron lines, at intervals or once "
        "(add, edit, run, list, pause, resume, delete, next)",
        description="Schedules fire exactly once per tick while any worker lives; no beat "
        "process. 'add NAME key=value … --cron \"0 7 * * *\" [--tz Europe/Berlin]' or "
        "'--every 5m' or '--at 2027-01-31T09:00'; 'edit ID-or-name --every 10m …'; "
        "'run ID-or-name'; 'list'; 'pause|resume|delete|next ID-or-name'.",
    )
    actions = p.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="schedule a script")
    add.add_argument("script", help="script name (see 'scriptrun list')")
    _options(add, editing=False)
    edit = actions.add_parser("edit", help="change a schedule (only the options given)")
    edit.add_argument("schedule", help="its id or name")
    _options(edit, editing=True)
    run = actions.add_parser("run", help="run a schedule's script now, recorded as its run")
    run.add_argument("schedule", help="its id or name")
    listing = actions.add_parser("list", help="every schedule")
    listing.add_argument("--json", action="store_true")
    for action in ("pause", "resume", "delete"):
        one = actions.add_parser(action, help=f"{action} a schedule")
        one.add_argument("schedule", help="its id or name")
    nxt = actions.add_parser("next", help="a schedule's next fire times")
    nxt.add_argument("schedule", help="its id or name")
    nxt.add_argument("-n", type=int, default=5, help="how many (default 5)")


def schedule_command(args: argparse.Namespace, client: Client) -> int:
    """Run one ``schedule`` action; 0 on success (errors raise, as for every command)."""
    if args.action == "add":
        params = build_params(args.params_json, args.params, option="--params")
        made = client.schedule(args.script, params, name=args.name, **_given(args))
        print(f"scheduled {made.name} [{made.id[:8]}]; {_next(made)}")
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
    if args.action == "edit":
        changed: dict[str, Any] | None = None
        if args.params or args.params_json:
            changed = build_params(args.params_json, args.params, option="--params")
        name = {"name": args.name} if args.name else {}
        schedule.update(changed, **_given(args), **name)
        print(f"changed {schedule.name} [{schedule.id[:8]}]; {_next(schedule)}")
        return 0
    if args.action == "run":
        run = schedule.run_now()
        print(f"{run.id} queued for {schedule.name} (scriptrun status {run.id[:8]})")
        return 0
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


def _next(schedule: Any) -> str:
    """``next: <time>``, or why there is none."""
    if schedule.row["state"] != "active":
        return schedule.row["state"]
    upcoming = schedule.next_runs(1)
    return f"next: {upcoming[0].isoformat()}" if upcoming else "no tick left"
