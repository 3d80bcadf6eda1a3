"""IPython magics: ``%scriptrun NAME key=value …`` and its subcommands."""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from typing import Any, TextIO

from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.display import display

from jupyter_scriptrun.display import status_html, summary_line
from jupyter_scriptrun.exceptions import ScriptrunError
from jupyter_scriptrun.params import build_params

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
    """The live status line: a chip and a progress bar in a notebook, words as text."""

    def __init__(self, rec: dict[str, Any], elapsed_s: float | None = None) -> None:
        self.rec = rec
        self.elapsed_s = elapsed_s

    def __repr__(self) -> str:
        return summary_line(self.rec, self.elapsed_s)

    def _repr_html_(self) -> str:
        return status_html(self.rec, self.elapsed_s)


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


@magics_class
class ScriptrunMagics(Magics):
    """``%scriptrun``: run registered scripts from a notebook."""

    def __init__(self, shell: Any = None, client: Any = None) -> None:
        super().__init__(shell)
        self._client = client

    @property
    def client(self) -> Any:
        """The client the magics use (the process-wide one unless given)."""
        if self._client is None:
            from jupyter_scriptrun.client import default_client

            self._client = default_client()
        return self._client

    @magic_arguments()
    @argument(
        "name",
        nargs="?",
        help="a script name, or a subcommand: list | history | status ID | logs ID | "
        "cancel ID | schedule SCRIPT … --cron/--every | schedules | pause|resume|delete SCHEDULE",
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
    @argument("--context", help="page context recorded with the run (default: the notebook)")
    @argument("--json", dest="params_json", metavar="PARAMS", help="parameters as one JSON object")
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
    @argument("--cron", help='schedule: a 5-field cron line, e.g. "0 7 * * 1-5"')
    @argument("--every", help="schedule: an interval (seconds, or 30s, 5m, 1h, 1d)")
    @argument("--tz", default="UTC", help="schedule: the cron line's IANA time zone")
    @argument("--catchup", default="latest", help="schedule: latest | none | all")
    @argument("--overlap", default="skip", help="schedule: skip | queue | allow")
    @argument(
        "--lang",
        default="python",
        help="cell mode: the cell's language (python, bash, sh, perl, ruby, node, r)",
    )
    @argument("--script", action="append", help="history: only this script (repeatable)")
    @argument("--status", action="append", help="history: only this status (repeatable)")
    @argument("--limit", type=int, default=50, help="history: at most this many rows")
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
            from jupyter_scriptrun.unreachable import unreachable_message

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
        script, *assignments = args.args
        schedule = self.client.schedule(
            script,
            build_params(args.params_json, assignments, option="--json"),
            cron=args.cron,
            every=args.every,
            timezone=args.tz,
            name=args.cell_name,
            catchup=args.catchup,
            overlap=args.overlap,
            queue=args.queue,
            timeout=args.timeout,
        )
        print(f"scheduled {schedule.name}; next: {schedule.next_runs(1)[0].isoformat()}")
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
        params = build_params(args.params_json, args.args, option="--json")
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
        params = build_params(args.params_json, assignments, option="--json")
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

    def _follow(self, execution: Any) -> Any:
        """Show the status line and the output as it comes; a kernel interrupt cancels.
        Returns the execution."""
        started = time.monotonic()
        # A status line updated in place needs a front end that can (a notebook); a
        # terminal would print every update, so there only the output is shown.
        live = (
            display(StatusLine(execution.record(), 0.0), display_id=True)
            if self._in_kernel()
            else None
        )
        echo = Echo()
        last_update = 0.0
        try:
            for chunk in execution.follow(REFRESH_S, ticks=True):
                if chunk is not None:
                    echo.write(chunk)
                now = time.monotonic()
                if live is not None and now - last_update >= REFRESH_S:
                    last_update = now
                    live.update(StatusLine(execution.record(), now - started))
        except KeyboardInterrupt:
            status = execution.cancel()
            print(
                f"interrupted: run {execution.id[:8]} {status.value}; its process tree is "
                "being ended",
                file=sys.stderr,
            )
            execution.wait(30)
        echo.finish(execution.result if execution.status.is_final else None)
        if live is not None:
            live.update(StatusLine(execution.record()))
        return execution

    def _in_kernel(self) -> bool:
        return self.shell is not None and getattr(self.shell, "kernel", None) is not None

    def _page_context(self) -> str:
        ns = self.shell.user_ns if self.shell is not None else {}
        return str(ns.get("__session__") or os.environ.get("JPY_SESSION_NAME") or "ipython")
