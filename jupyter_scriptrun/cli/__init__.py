"""The ``scriptrun`` command: run, list, history, status, logs, cancel, worker, demo."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from jupyter_scriptrun.cli.files import add_files_command, files_command, print_kept_files
from jupyter_scriptrun.cli.history import add_history_command, history_command
from jupyter_scriptrun.cli.schedules import add_schedule_command, schedule_command
from jupyter_scriptrun.cli.settings import add_setting_options, apply_setting_options, unrecognized
from jupyter_scriptrun.cli.terminal import follow, print_logs, wait_showing_progress
from jupyter_scriptrun.exceptions import (
    ExecutionConflict,
    ExecutionTimeout,
    ScriptrunError,
    StoreUnavailable,
    WorkerUnavailable,
)
from jupyter_scriptrun.params import build_params, parse_assignments

if TYPE_CHECKING:
    from jupyter_scriptrun.service.client import Client

__all__ = ["build_params", "main", "parse_assignments"]

EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_BROKEN_PIPE = 141
"""What a shell reports for a program ended by SIGPIPE (128 + 13): ``| head`` closed early."""


def _dumps(value: Any) -> str:
    from jupyter_scriptrun.display import json_default

    return json.dumps(value, ensure_ascii=False, indent=2, default=json_default)


def _add_fleet_commands(sub: Any) -> None:
    """``worker``, ``workers`` and ``health``: running and watching the fleet."""
    p = sub.add_parser(
        "worker",
        help="start a worker in the foreground",
        description="Start a Celery worker for scriptrun; extra arguments go "
        "to 'celery worker' unchanged.",
    )
    p.add_argument("--concurrency", "-c", type=int, help="parallel runs (default: CPU count)")
    p.add_argument("--pool", "-P", help="Celery pool: threads (default) or prefork")
    p.add_argument("--queues", "-Q", help="comma-separated queues (default: 'scriptrun')")
    p.add_argument("--loglevel", "-l", default="INFO")
    p.add_argument(
        "--metrics-port",
        type=int,
        help="serve this worker's Prometheus metrics on this port (/metrics)",
    )
    p.add_argument("--metrics-address", help="the address the metrics listen on (default: 0.0.0.0)")

    p = sub.add_parser("workers", help="list the online workers and the runs they hold")
    p.add_argument("--timeout", type=float, default=1.0, help="seconds to wait for answers")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser(
        "top", help="the fleet live: workers, queues, figures per script, recent failures"
    )
    p.add_argument("--once", action="store_true", help="print one plain frame and exit")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between frames")
    p.add_argument(
        "--window", type=parse_age, default="1h", metavar="AGE", help="e.g. 15m, 1h, 24h"
    )

    p = sub.add_parser(
        "health",
        help="check the store, the broker and a consuming worker (exit 0 healthy, 1 no "
        "worker, 3 store or broker unreachable): a liveness probe",
    )
    p.add_argument("--queue", help="the queue a worker must consume (default: the default)")
    p.add_argument("--this-host", action="store_true", help="a worker on this host")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for answers")
    p.add_argument("--json", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (one sub-command per action)."""
    from jupyter_scriptrun._version import __version__

    parser = argparse.ArgumentParser(
        prog="scriptrun",
        description="Run registered scripts on Celery workers; every run is recorded.",
    )
    parser.add_argument("--version", action="version", version=f"scriptrun {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _add_run_command(sub)

    p = sub.add_parser("list", help="list the registered scripts")
    p.add_argument("--json", action="store_true", help="print JSON (with parameter schemas)")

    add_history_command(sub)
    add_files_command(sub)

    p = sub.add_parser("status", help="show one run's record")
    p.add_argument("id", help="execution id (or a unique prefix of 4+ characters)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("logs", help="print one run's captured stdout and stderr")
    p.add_argument("id")
    p.add_argument("--attempt", type=int, help="which attempt (default: the last)")
    p.add_argument(
        "--follow", "-f", action="store_true", help="print output as it comes until the run ends"
    )

    p = sub.add_parser("cancel", help="cancel a run, or with --queued those not started yet")
    p.add_argument("id", nargs="?", help="the run's id (or a unique prefix)")
    p.add_argument(
        "--queued",
        action="store_true",
        help="cancel every run not started yet "
        "(use it, not 'celery purge', which the reaper undoes)",
    )
    p.add_argument("--script", help="with --queued: only this script's runs")
    p.add_argument("--queue", help="with --queued: only the runs on this queue")

    _add_fleet_commands(sub)
    add_schedule_command(sub)

    p = sub.add_parser(
        "prune", help="remove runs that ended long ago (their counts per script are kept)"
    )
    p.add_argument(
        "--older-than", required=True, type=parse_age, metavar="AGE", help="e.g. 30d, 12h, 90m"
    )
    p.add_argument("--dry-run", action="store_true", help="only say how many would go")

    p = sub.add_parser("settings", help="the settings in effect here, and their variables")
    p.add_argument("--json", action="store_true", help="as SCRIPTRUN_* variables in JSON")

    p = sub.add_parser("local", help="the embedded default's local workers")
    p.add_argument(
        "action",
        choices=("status", "start", "stop"),
        help="start: a local worker now (it fires schedules; it also starts with a run)",
    )

    sub.add_parser("demo", help="run the example scripts end to end and show the history")
    sub.add_parser(
        "migrate",
        help="bring the store's schema up to this version (a deployment's migration job)",
    )
    add_setting_options(parser)
    return parser


def _add_run_command(sub: Any) -> None:
    """``scriptrun run NAME key=value … [options]``."""
    p = sub.add_parser("run", help="run a script and wait for its result")
    p.add_argument("name", help="script name (see 'scriptrun list')")
    p.add_argument(
        "params",
        nargs="*",
        metavar="key=value",
        help="parameters; values are JSON where they parse (3, true, [1,2]) else text",
    )
    p.add_argument(
        "--params",
        dest="params_json",
        metavar="JSON",
        help="parameters as one JSON object (merged under key=value ones)",
    )
    p.add_argument("--timeout", type=float, help="the run's time limit in seconds")
    p.add_argument(
        "--page-context",
        "--context",
        dest="context",
        default="cli",
        help="page context recorded with the run",
    )
    p.add_argument("--queue", help="Celery queue (default: the script's, else 'scriptrun')")
    p.add_argument(
        "--notify", action="append", metavar="URL", help="an apprise URL to tell (repeatable)"
    )
    p.add_argument(
        "--notify-on",
        metavar="OUTCOMES",
        help="comma-separated: succeeded, failed, timed_out, lost, cancelled "
        "(default failed,timed_out,lost)",
    )
    p.add_argument("--no-wait", action="store_true", help="print the id and return at once")
    p.add_argument(
        "--follow", "-f", action="store_true", help="print the script's output as it comes"
    )
    p.add_argument("--json", action="store_true", help="print the whole record as JSON")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status: 0 ok, 1 a run did not succeed, 2 bad input,
    3 the store or broker unreachable, 130 interrupted, 141 the output's reader left."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "worker":
        parser.error(unrecognized(extra, args.command))
    try:
        apply_setting_options(args)
        if args.command == "worker":
            return _worker(args, extra)
        rc = COMMANDS[args.command](args)
        sys.stdout.flush()  # here, where a closed pipe is caught, not at exit
        return rc
    except ScriptrunError as exc:
        print(f"scriptrun: {exc}", file=sys.stderr)
        if isinstance(exc, WorkerUnavailable | StoreUnavailable):
            return EXIT_UNAVAILABLE
        return EXIT_USAGE if not isinstance(exc, ExecutionTimeout) else EXIT_RUN_FAILED
    except ValueError as exc:
        print(f"scriptrun: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        # Ctrl-C anywhere (a broadcast waiting for replies, a query): the shell's code for
        # it, one line, no traceback.
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`scriptrun history | head`): not an error of ours. Point
        # stdout at /dev/null so that the interpreter's final flush stays quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception as exc:
        from jupyter_scriptrun.service.unreachable import unreachable_message

        if (message := unreachable_message(exc)) is None:
            raise
        print(f"scriptrun: {message}", file=sys.stderr)
        return EXIT_UNAVAILABLE


def _client() -> Client:
    from jupyter_scriptrun.service.client import default_client

    return default_client()


def _run(args: argparse.Namespace) -> int:
    params = build_params(args.params_json, args.params, option="--params")
    client = _client()
    execution = client.submit(
        args.name,
        params,
        page_context=args.context,
        timeout=args.timeout,
        queue=args.queue,
        notify=args.notify,
        notify_on=args.notify_on.split(",") if args.notify_on else None,
    )
    if args.no_wait:
        print(execution.id)
        return EXIT_OK
    try:
        if args.follow:
            follow(execution)
        elif sys.stderr.isatty():
            wait_showing_progress(execution)
        else:
            execution.wait()
    except KeyboardInterrupt:
        print(f"\ninterrupted: {_cancel_on_interrupt(execution)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    record = execution.record()
    if args.json:
        print(_dumps({**record, "result": execution.result, "data": execution.data}))
    else:
        print(_summary(record))
        if execution.data is not None:
            print(_dumps(execution.data))
        elif record["status"] == "succeeded" and execution.stdout.strip() and not args.follow:
            print(execution.stdout.rstrip())
        print_kept_files(execution)
        if record["status"] != "succeeded" and execution.stderr.strip() and not args.follow:
            print("--- stderr (tail) ---", file=sys.stderr)
            print("\n".join(execution.stderr.rstrip().splitlines()[-20:]), file=sys.stderr)
    return EXIT_OK if record["status"] == "succeeded" else EXIT_RUN_FAILED


def _cancel_on_interrupt(execution: Any) -> str:
    """Cancel a run the user stopped waiting for; say truly where it stands."""
    short = execution.id[:8]
    try:
        with contextlib.suppress(ExecutionConflict):  # it ended on its own meanwhile
            if not execution.cancel().is_final:
                execution.wait(10)
    except (KeyboardInterrupt, ExecutionTimeout):
        return f"run {short} is being cancelled by its worker (scriptrun status {short})"
    return f"run {short} {execution.status.value}"


def _summary(rec: Mapping[str, Any]) -> str:
    """The shared one-line summary, with a successful run's message under it."""
    from jupyter_scriptrun.display import summary_line

    line = summary_line(rec)
    if rec["status"] == "succeeded" and rec.get("message"):
        line += f"\n  {rec['message']}"
    return line


def _list(args: argparse.Namespace) -> int:
    scripts = _client().scripts()
    if args.json:
        print(_dumps([s.to_dict() for s in scripts]))
        return EXIT_OK
    if not scripts:
        print("no scripts found; set SCRIPTRUN_SCRIPTS_PATH to your scripts' folder(s)")
        return EXIT_OK
    width = max(len(s.name) for s in scripts)
    for s in scripts:
        params = ", ".join(
            f"{n}={spec['default']!r}" if "default" in spec else n
            for n, spec in s.meta.parameters.items()
        )
        print(f"{s.name:<{width}}  {s.description}")
        if params:
            print(f"{'':<{width}}    params: {params}")
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    execution = _client().get(args.id)
    record = execution.record()
    if args.json:
        print(_dumps({**record, "result": execution.result, "data": execution.data}))
    else:
        print(_summary(record))
        for key in (
            "page_context",
            "parameters",
            "queued_at",
            "started_at",
            "finished_at",
            "queue_s",
            "cpu_user_s",
            "cpu_system_s",
            "exit_code",
            "worker",
        ):
            print(f"  {key:<13} {record.get(key)}")
    return EXIT_OK


def _logs(args: argparse.Namespace) -> int:
    execution = _client().get(args.id)
    if args.follow:
        try:
            follow(execution)
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED  # stop following; the run goes on
        return EXIT_OK
    print_logs(execution, args.attempt)
    return EXIT_OK


def _cancel(args: argparse.Namespace) -> int:
    if args.queued == bool(args.id) or (not args.queued and (args.script or args.queue)):
        raise ValueError("cancel takes a run's id, or --queued (with --script, --queue)")
    if args.queued:
        ids = _client().cancel_queued(args.script, args.queue)
        print(f"cancelled {len(ids)} queued run{'' if len(ids) == 1 else 's'}")
        for one in ids:
            print(f"  {one[:8]}")
        return EXIT_OK
    execution = _client().get(args.id)
    status = execution.cancel()
    print(
        f"{execution.id[:8]}: {status.value}"
        + (" (its worker is ending it)" if status.value == "running" else "")
    )
    return EXIT_OK


def _worker(args: argparse.Namespace, extra: list[str]) -> int:
    # The worker reads its settings from the environment it is exec'd with.
    if args.metrics_port is not None:
        os.environ["SCRIPTRUN_METRICS_PORT"] = str(args.metrics_port)
    if args.metrics_address:
        os.environ["SCRIPTRUN_METRICS_ADDRESS"] = args.metrics_address
    try:
        argv = _client().worker_command(
            args.queues,
            loglevel=args.loglevel,
            concurrency=args.concurrency,
            pool=args.pool,
            extra=extra,
        )
    except ValueError as exc:
        print(f"scriptrun: {exc}", file=sys.stderr)
        return EXIT_USAGE
    os.execv(sys.executable, argv)
    return EXIT_OK  # pragma: no cover - execv does not return


def _local(args: argparse.Namespace) -> int:
    client = _client()
    if args.action == "stop":
        stopped = client.stop_local_workers()
        print(f"stopped {stopped} local worker(s)" if stopped else "no local worker was running")
        return EXIT_OK
    mine = client.local_worker()
    if args.action == "start":
        mine.ensure()
    running = client.local_workers()
    if not running:
        print("no local worker running (one starts with the first run)")
    for folder, pid in running.items():
        which = (
            "this configuration"
            if folder == mine.dir
            else "other settings or older code; exits when idle"
        )
        print(f"running: pid {pid} ({which}), log {folder / 'worker.log'}")
    return EXIT_OK


def _workers(args: argparse.Namespace) -> int:
    from jupyter_scriptrun.cli.top import worker_lines

    workers = _client().workers(timeout=args.timeout)
    if args.json:
        print(_dumps(workers))
        return EXIT_OK
    print("\n".join(worker_lines(workers, shutil.get_terminal_size((100, 40)).columns)))
    return EXIT_OK


def _top(args: argparse.Namespace) -> int:
    from jupyter_scriptrun.cli.top import run_top

    window = args.window.total_seconds() if isinstance(args.window, timedelta) else 3600.0
    run_top(_client(), window_s=window, interval_s=max(args.interval, 0.2), once=args.once)
    return EXIT_OK


def parse_age(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``3600s`` (or a number of days) as a timedelta."""
    units = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "d")
    try:
        value = float(number)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an age like 30d, 12h or 90m") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: an age must be positive")
    return timedelta(**{units[unit]: value})


def _prune(args: argparse.Namespace) -> int:
    n = _client().prune(args.older_than, dry_run=args.dry_run)
    print(f"{n} run(s) {'would be' if args.dry_run else ''} removed".replace("  ", " "))
    return EXIT_OK


def _health(args: argparse.Namespace) -> int:
    from jupyter_scriptrun.observe.health import check

    health = check(_client(), queue=args.queue, this_host=args.this_host, timeout=args.timeout)
    if args.json:
        print(_dumps({"ok": health.ok, "checks": [vars(c) for c in health.checks]}))
    else:
        for c in health.checks:
            print(f"{'ok  ' if c.ok else 'FAIL'} {c.name:7} {c.detail}")
    if health.ok:
        return EXIT_OK
    return EXIT_UNAVAILABLE if health.unreachable else EXIT_RUN_FAILED


def _settings(args: argparse.Namespace) -> int:
    from jupyter_scriptrun.config import declared, get_settings

    settings = get_settings()
    env = settings.to_env()
    for name in ("SCRIPTRUN_BROKER_URL", "SCRIPTRUN_DATABASE_URL", "SCRIPTRUN_RESULT_BACKEND"):
        if name in env:
            env[name] = _without_password(env[name])
    if args.json:
        print(_dumps(env))
        return EXIT_OK
    for name, (variable, kind, _) in declared().items():
        value = getattr(settings, name)
        shown = "(unset)" if value is None or value == () else kind.dump(value)
        if name in ("broker_url", "database_url", "result_backend") and value:
            shown = _without_password(shown)
        print(f"{variable:30} {shown}")
    return EXIT_OK


def _migrate(args: argparse.Namespace) -> int:
    """Migrate the store once, saying from which revision to which (the migration job of a
    deployment whose workers and servers run with SCRIPTRUN_AUTO_MIGRATE=false)."""
    from jupyter_scriptrun.config import get_settings
    from jupyter_scriptrun.service.schema import migrate

    settings = get_settings()
    before, after = migrate(settings)
    shown = _without_password(settings.effective_database_url)
    if before == after:
        print(f"store {shown}: schema already at revision {after}; nothing to do")
    else:
        print(f"store {shown}: schema migrated from {before or 'none (empty)'} to {after}")
    return EXIT_OK


def _without_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def _demo(args: argparse.Namespace) -> int:
    client = _client()
    settings = client.settings
    where = (
        "embedded broker + local worker"
        if settings.embedded
        else _without_password(settings.broker_url or "")
    )
    store = _without_password(settings.effective_database_url)
    print(f"jupyter_scriptrun demo: {where}; store {store}\n")
    runs: list[tuple[str, dict[str, Any]]] = [
        ("example_script", {"message": "Hello from the demo", "multiplier": 3}),
        ("example_script", {"message": "你好", "multiplier": 2}),
        ("print_test_script", {"count": 2}),
        ("disk_report", {"path": str(settings.data_dir)}),
        ("table_script", {"rows": 5}),
        ("failing_script", {"mode": "json"}),
        ("failing_script", {"mode": "crash"}),
    ]
    handles = [client.submit(name, params, page_context="demo") for name, params in runs]
    for handle in handles:
        handle.wait(120)
        print(_summary(handle.record()))
    table = handles[4].frame()
    if table is not None:
        print("\ntable_script's data as a DataFrame:\n" + table.to_string(index=False))
    try:
        client.submit("example_script", {"multiplier": 0, "colour": "red"})
    except ScriptrunError as exc:
        print(f"\nbad parameters are refused before anything runs:\n{exc}")
    frame = client.history(limit=len(runs))
    print("\nhistory (sr.history()):")
    shown = frame[["script", "status", "duration_s", "peak_rss_mb", "exit_code"]]
    print(shown.astype({"exit_code": "Int64"}).to_string())  # 1, not 1.0
    print(
        "\nall good: the failures above are the example's deliberate ones."
        if [h.status.value for h in handles].count("failed") == 2
        else "\nsomething did not go as expected"
    )
    return EXIT_OK


COMMANDS = {
    "run": _run,
    "list": _list,
    "history": lambda args: history_command(args, _client()),
    "status": _status,
    "logs": _logs,
    "files": lambda args: files_command(args, _client()),
    "cancel": _cancel,
    "local": _local,
    "workers": _workers,
    "top": _top,
    "settings": _settings,
    "health": _health,
    "prune": _prune,
    "demo": _demo,
    "migrate": _migrate,
    "schedule": lambda args: schedule_command(args, _client()),
}
