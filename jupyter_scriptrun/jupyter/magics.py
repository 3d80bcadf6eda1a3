"""IPython magics: ``%scriptrun NAME key=value …`` and its subcommands."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TextIO

from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.display import display

from jupyter_scriptrun import defaults
from jupyter_scriptrun.display import LIVE_TAIL_CHARS, live_html, summary_line
from jupyter_scriptrun.exceptions import ScriptrunError
from jupyter_scriptrun.params import build_params, limit_argument
from jupyter_scriptrun.service.handle import Execution
from jupyter_scriptrun.status import ALL
from jupyter_scriptrun.timing import options

if TYPE_CHECKING:
    from jupyter_scriptrun.service.client import Client

SUBCOMMANDS = (
    "list",
    "history",
    "status",
    "logs",
    "cancel",
    "schedule",
    "schedules",
    "pause",
    "resume",
    "delete",
)


class StatusLine:
    """The live view of a run: a chip, a progress bar and the output so far in a notebook;
    words as text."""

    def __init__(
        self, rec: Mapping[str, Any], elapsed_s: float | None = None, output: str = ""
    ) -> None:
        self.rec = rec
        self.elapsed_s = elapsed_s
        self.output = output

    def __repr__(self) -> str:
        return summary_line(self.rec, self.elapsed_s)

    def _repr_html_(self) -> str:
        return live_html(self.rec, self.elapsed_s, self.output)


class ShownRun(Execution):
    """The handle ``%scriptrun`` returns in a notebook. Its live view already became its
    card in the cell, so the cell's own result does not show the card a second time;
    shown in any later cell (``run``), it is the usual card."""

    def __init__(self, execution: Execution, cell: int) -> None:
        super().__init__(execution.client, execution.id, execution.created)
        self._cell = cell

    def _ipython_display_(self) -> None:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None and shell.execution_count == self._cell:
            return
        display({"text/plain": repr(self), "text/html": self._repr_html_()}, raw=True)


class Echo:
    """Copies a run's output to the cell as it comes, except its result document.

    A line that looks like JSON is held until more output follows it; if it is the last
    and it is the run's result, it is dropped: the result card below shows the data once.
    Progress chunks are not output (the status line shows them)."""

    def __init__(self) -> None:
        self.held = ""

    def write(self, chunk: dict[str, Any]) -> None:
        """Show one chunk of output."""
        if chunk["stream"] == "progress":
            return
        if chunk["stream"] == "stderr":
            self._put(sys.stderr, chunk["text"])
            return
        text = self.held + chunk["text"]
        self.held = ""
        start = text.rfind("\n", 0, len(text) - 1) + 1
        last = text[start:]
        if last.lstrip().startswith(("{", "[")) and last.endswith("\n"):
            text, self.held = text[:start], last
        self._put(sys.stdout, text)

    def finish(self, result: Any) -> None:
        """The run ended: show a held line unless it is the result."""
        if self.held:
            try:
                is_result = result is not None and json.loads(self.held) == result
            except ValueError:
                is_result = False
            if not is_result:
                self._put(sys.stdout, self.held)
            self.held = ""

    @staticmethod
    def _put(stream: TextIO, text: str) -> None:
        if text:
            stream.write(text)
            stream.flush()


REFRESH_S = 0.25


def _schedule_arguments(func: Any) -> Any:
    """Every schedule option, declared once in :mod:`jupyter_scriptrun.timing.options`."""
    # --queue and --timeout are the run's own, and mean the same for a schedule's runs.
    for decorate in options.decorators(argument, "schedule: ", shared=("queue", "timeout")):
        func = decorate(func)
    return func


@magics_class
class ScriptrunMagics(Magics):
    """``%scriptrun``: run registered scripts from a notebook."""

    def __init__(self, shell: Any = None, client: Client | None = None) -> None:
        super().__init__(shell)
        self._client = client

    @property
    def client(self) -> Client:
        """The client the magics use (the process-wide one unless given)."""
        if self._client is None:
            from jupyter_scriptrun.service.client import default_client

            self._client = default_client()
        return self._client

    @magic_arguments()
    @argument(
        "name",
        nargs="?",
        help="a script name, or a subcommand: list | history | status ID | logs ID | "
        "cancel ID | schedule SCRIPT … --cron/--every/--at (--edit: change one) | schedules | "
        "pause|resume|delete SCHEDULE",
    )
    @argument(
        "args",
        nargs="*",
        help="key=value parameters (values are JSON where they parse, else text; "
        "{var} and $var take kernel variables); the id for status/logs/cancel",
    )
    @argument("--no-wait", action="store_true", help="return the handle at once")
    @argument("--timeout", type=float, help="the run's time limit in seconds")
    @argument("--queue", help="the queue to run on (default: the script's, else the default)")
    @argument(
        "--page-context",
        "--context",
        dest="context",
        help="page context recorded with the run (default: the notebook)",
    )
    @argument(
        "--params",
        "--json",
        dest="params_json",
        metavar="JSON",
        help="parameters as one JSON object (--json: the older spelling)",
    )
    @argument(
        "-o",
        "--output",
        dest="var",
        metavar="VAR",
        help="also bind the handle (or the history DataFrame) to this variable",
    )
    @argument(
        "--name",
        dest="cell_name",
        help="cell mode: the name its runs are recorded under; schedule: the schedule's name",
    )
    @_schedule_arguments
    @argument(
        "--edit",
        action="store_true",
        help="schedule: change the schedule named first (only the options given)",
    )
    @argument(
        "--lang",
        default="python",
        help="cell mode: the cell's language (python, bash, sh, perl, ruby, node, r)",
    )
    @argument("--script", action="append", help="history: only this script (repeatable)")
    @argument(
        "--status",
        action="append",
        choices=ALL,
        metavar="STATUS",
        help=f"history: only this status (repeatable): {', '.join(ALL)}",
    )
    @argument(
        "--limit",
        type=limit_argument,
        default=defaults.HISTORY_LIMIT,
        help=f"history: the newest N runs, or 'all' (default: {defaults.HISTORY_LIMIT})",
    )
    @argument("-h", "--help", action="store_true", help="show this help")
    @line_cell_magic
    def scriptrun(self, line: str, cell: str | None = None) -> Any:
        """Run a registered script and show its output live, then its result; or list,
        history, status, logs, cancel. As a cell magic (``%%scriptrun [--lang L]
        [--name N] key=value …``) run the cell's body as an ad-hoc script, recorded like
        any other run. A kernel interrupt while waiting cancels the run (its process tree
        is ended)."""
        try:
            # POSIX splitting, so that message="hello world" is one parameter.
            argv = shlex.split(line)
        except ValueError as exc:
            print(f"scriptrun: cannot read the line: {exc}", file=sys.stderr)
            return None
        args = self.scriptrun.parser.parse_args(argv)
        if args.help:
            print(self.scriptrun.parser.format_help())
            return None
        try:
            if cell is not None:
                value = self._run_cell(args, cell)
            elif not args.name:
                return self._list()
            elif args.name in SUBCOMMANDS:
                value = getattr(self, f"_{args.name}")(args)
            else:
                value = self._run(args)
        except ScriptrunError as exc:
            print(f"scriptrun: {exc}", file=sys.stderr)
            return None
        except ValueError as exc:
            print(f"scriptrun: {exc}", file=sys.stderr)
            return None
        except Exception as exc:
            from jupyter_scriptrun.service.unreachable import unreachable_message

            if (message := unreachable_message(exc, self.client.settings)) is None:
                raise
            print(f"scriptrun: {message}", file=sys.stderr)
            return None
        if args.var and value is not None and self.shell is not None:
            self.shell.user_ns[args.var] = value
        return value

    # -- subcommands -----------------------------------------------------------

    def _list(self, args: Any = None) -> Any:
        import pandas as pd

        rows = [
            {
                "name": s.name,
                "description": s.description,
                "parameters": ", ".join(s.meta.parameters) or "(free-form)",
                "timeout_s": s.meta.timeout,
            }
            for s in self.client.scripts()
        ]
        return pd.DataFrame(rows, columns=["name", "description", "parameters", "timeout_s"])

    def _history(self, args: Any) -> Any:
        return self.client.history(script=args.script, status=args.status, limit=args.limit)

    def _one_id(self, args: Any) -> str:
        if len(args.args) != 1:
            raise ValueError(f"usage: %scriptrun {args.name} ID")
        return args.args[0]

    def _status(self, args: Any) -> Any:
        return self.client.get(self._one_id(args))

    def _logs(self, args: Any) -> None:
        execution = self.client.get(self._one_id(args))
        sys.stdout.write(execution.stdout)
        if execution.stderr:
            sys.stderr.write(execution.stderr)
        return None

    def _cancel(self, args: Any) -> None:
        execution = self.client.get(self._one_id(args))
        print(f"{execution.id[:8]}: {execution.cancel().value}")
        return None

    # -- schedules -------------------------------------------------------------

    def _schedule(self, args: Any) -> Any:
        if not args.args:
            raise ValueError('usage: %scriptrun schedule SCRIPT key=value … --cron "0 7 * * *"')
        target, *assignments = args.args
        options = schedule_options(args)
        params = build_params(args.params_json, assignments, option="--params")
        if args.edit:
            schedule = self.client.get_schedule(target)
            renamed = {"name": args.cell_name} if args.cell_name else {}
            schedule.update(
                params if assignments or args.params_json else None, **options, **renamed
            )
            print(f"changed {schedule.name}; {_next_words(schedule)}")
            return schedule
        schedule = self.client.schedule(target, params, name=args.cell_name, **options)
        print(f"scheduled {schedule.name}; {_next_words(schedule)}")
        return schedule

    def _schedules(self, args: Any) -> Any:
        return self.client.schedules()

    def _pause(self, args: Any) -> Any:
        return self.client.get_schedule(self._one_id(args)).pause()

    def _resume(self, args: Any) -> Any:
        return self.client.get_schedule(self._one_id(args)).resume()

    def _delete(self, args: Any) -> None:
        schedule = self.client.get_schedule(self._one_id(args))
        schedule.delete()
        print(f"deleted {schedule.name} (its runs stay in the history)")

    # -- running ---------------------------------------------------------------

    def _run(self, args: Any) -> Any:
        params = build_params(args.params_json, args.args, option="--params")
        execution = self.client.submit(
            args.name,
            params,
            timeout=args.timeout,
            queue=args.queue,
            page_context=args.context or self._page_context(),
        )
        return execution if args.no_wait else self._follow(execution)

    def _run_cell(self, args: Any, cell: str) -> Any:
        # The positional "name" slot holds the first key=value in cell mode.
        assignments = ([args.name] if args.name else []) + list(args.args)
        params = build_params(args.params_json, assignments, option="--params")
        execution = self.client.submit_source(
            cell,
            params,
            name=args.cell_name or "cell",
            language=args.lang,
            timeout=args.timeout,
            queue=args.queue,
            page_context=args.context or self._page_context(),
        )
        return execution if args.no_wait else self._follow(execution)

    def _follow(self, execution: Execution) -> Execution:
        """Show the run as it goes, then its result; a kernel interrupt cancels.

        In a notebook that is one view updated in place: the status line and the output so
        far, which becomes the run's card when it ends (the data once, the output folded).
        A terminal cannot redraw, so there the output is printed as it comes and the
        returned handle says how it ended."""
        if not self._in_kernel():
            return self._follow_in_terminal(execution)
        started = time.monotonic()
        live = display(StatusLine(execution.record(), 0.0), display_id=True)
        output = ""
        last_update = 0.0
        try:
            for chunk in execution.follow(REFRESH_S, ticks=True):
                if chunk is not None and chunk["stream"] != "progress":
                    output = (output + chunk["text"])[-2 * LIVE_TAIL_CHARS :]
                now = time.monotonic()
                if now - last_update >= REFRESH_S:
                    last_update = now
                    live.update(StatusLine(execution.record(), now - started, output))
        except KeyboardInterrupt:
            self._interrupted(execution)
        live.update(execution)
        return ShownRun(execution, getattr(self.shell, "execution_count", 0))

    def _follow_in_terminal(self, execution: Execution) -> Execution:
        echo = Echo()
        try:
            for chunk in execution.follow(REFRESH_S):
                if chunk is not None:
                    echo.write(chunk)
        except KeyboardInterrupt:
            self._interrupted(execution)
        echo.finish(execution.result if execution.status.is_final else None)
        return execution

    @staticmethod
    def _interrupted(execution: Execution) -> None:
        """A kernel interrupt: cancel the run, wait for its tree to end, say how it ended."""
        execution.cancel()
        with contextlib.suppress(ScriptrunError):
            execution.wait(30)
        print(
            f"interrupted: run {execution.id[:8]} {execution.status.value}",
            file=sys.stderr,
        )

    def _in_kernel(self) -> bool:
        return self.shell is not None and getattr(self.shell, "kernel", None) is not None

    def _page_context(self) -> str:
        ns = self.shell.user_ns if self.shell is not None else {}
        return str(ns.get("__session__") or os.environ.get("JPY_SESSION_NAME") or "ipython")


def _next_words(schedule: Any) -> str:
    """``next: <time>``, or why there is none."""
    upcoming = schedule.next_runs(1) if schedule.row["state"] == "active" else []
    return f"next: {upcoming[0].isoformat()}" if upcoming else schedule.row["state"]


def schedule_options(args: Any) -> dict[str, Any]:
    """The schedule options given on this command line, in ScheduleSpec's words."""
    return options.from_args(args)
