"""A schedule's options declared once — words, help, choices, JSON Schema — and projected
to the CLI's and the magics' arguments, the REST body's schema and the panel's choices.

:class:`~jupyter_scriptrun.timing.spec.ScheduleSpec` holds the values and checks them;
this module says how each front end asks for them, so a new option is one entry here and
one field there (``test_every_front_end_names_exactly_the_options_of_the_spec`` holds
every front end to that).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import Any

from jupyter_scriptrun.timing.spec import (
    DEFAULT_NOTIFY_ON,
    MAX_JITTER_S,
    NOTIFY_ON,
    ON_TIME_S,
    ScheduleSpec,
)

_INSTANT = {"type": "string", "format": "date-time"}


@dataclass(frozen=True)
class Option:
    """How one of ScheduleSpec's fields is asked for. ``choices``: (value, what it means)
    pairs, the panel's and the CLI's words for them; ``cli``: the flag when it is not the
    field's name with ``-`` for ``_``; ``aliases``: older flags still accepted."""

    name: str
    help: str
    schema: dict[str, Any]
    cli: str | None = None
    aliases: tuple[str, ...] = ()
    number: bool = False
    repeatable: bool = False
    comma_list: bool = False
    choices: tuple[tuple[str, str], ...] = ()

    @property
    def flags(self) -> tuple[str, ...]:
        return (self.cli or "--" + self.name.replace("_", "-"), *self.aliases)

    @property
    def default(self) -> Any:
        """ScheduleSpec's default (None: the option is unset unless given)."""
        return {f.name: f.default for f in fields(ScheduleSpec)}[self.name]

    def argparse(self, prefix: str = "") -> dict[str, Any]:
        """Keyword arguments for ``add_argument(*self.flags, …)`` (argparse's or IPython's
        ``@argument``); none sets a default, so an edit changes only what is given."""
        kwargs: dict[str, Any] = {"dest": self.name, "help": prefix + self.help}
        if self.number:
            kwargs.update(type=float, metavar="SECONDS")
        if self.schema.get("format") == "date-time":
            kwargs["metavar"] = "TIME"
        if self.repeatable:
            kwargs.update(action="append", metavar="URL")
        if self.comma_list:
            kwargs["metavar"] = "A,B"
        if self.choices:
            kwargs["choices"] = [value for value, _ in self.choices]
            meanings = "; ".join(f"{value}: {means}" for value, means in self.choices)
            kwargs["help"] += f" ({meanings})"
        if self.default not in (None, ()):
            kwargs["help"] += f"; default {self.default}"
        return kwargs


TIMINGS = ("cron", "every", "at")
"""Exactly one of these is given."""

OPTIONS: tuple[Option, ...] = (
    Option(
        "cron",
        'a 5-field cron line, e.g. "0 7 * * 1-5"',
        {"type": "string"},
    ),
    Option(
        "every",
        "an interval: seconds, or 30s, 5m, 1h, 1d (1 s to 366 days)",
        {"type": ["number", "string"]},
    ),
    Option(
        "at",
        "once, at this time (ISO 8601, e.g. 2027-01-31T09:00); then the schedule ends",
        _INSTANT,
    ),
    Option("start", "no tick before this time (ISO 8601); intervals count from it", _INSTANT),
    Option("end", "no tick after this time (ISO 8601); then the schedule ends", _INSTANT),
    Option(
        "timezone",
        "the IANA time zone its cron line and times without an offset are read in",
        {"type": "string"},
        aliases=("--tz",),
    ),
    Option(
        "catchup",
        "after downtime",
        {"type": "string"},
        choices=(
            ("latest", "one run for all missed ticks"),
            ("none", "skip missed ticks"),
            ("all", "every missed tick"),
        ),
    ),
    Option(
        "overlap",
        "previous run still going",
        {"type": "string"},
        choices=(
            ("skip", "skip the tick"),
            ("queue", "run once it ends"),
            ("allow", "run anyway"),
        ),
    ),
    Option(
        "queue",
        "the Celery queue its runs go to (default: the script's, else the default)",
        {"type": "string"},
    ),
    Option(
        "timeout",
        "each run's time limit in seconds",
        {"type": "number", "exclusiveMinimum": 0},
        number=True,
    ),
    Option(
        "jitter",
        "fire each tick up to this many seconds late (the same delay on every worker)",
        {"type": "number", "minimum": 0, "maximum": MAX_JITTER_S},
        number=True,
    ),
    Option(
        "misfire_grace",
        f"a tick this many seconds late is still on time (default {ON_TIME_S:g})",
        {"type": "number", "exclusiveMinimum": 0, "default": ON_TIME_S},
        number=True,
    ),
    Option(
        "notify",
        "an apprise URL told when a run ends as notify_on says (repeatable)",
        {"type": "array", "items": {"type": "string"}},
        repeatable=True,
    ),
    Option(
        "notify_on",
        f"the outcomes that notify, of {', '.join(NOTIFY_ON)} "
        f"(default {','.join(DEFAULT_NOTIFY_ON)})",
        {
            "type": "array",
            "items": {"enum": list(NOTIFY_ON)},
            "default": list(DEFAULT_NOTIFY_ON),
        },
        comma_list=True,
    ),
)


def option(name: str) -> Option:
    """The declaration of one option, by ScheduleSpec's name for it."""
    return next(o for o in OPTIONS if o.name == name)


def add_arguments(parser: Any, *, timing_required: bool = False, prefix: str = "") -> None:
    """Every option as an argparse argument of ``parser``; cron, every and at exclude
    each other (``timing_required``: one of them must be given)."""
    timing = parser.add_mutually_exclusive_group(required=timing_required)
    for declared in OPTIONS:
        target = timing if declared.name in TIMINGS else parser
        target.add_argument(*declared.flags, **declared.argparse(prefix))


def decorators(
    make: Callable[..., Callable[[Any], Any]], prefix: str, shared: tuple[str, ...] = ()
) -> Iterator[Any]:
    """Every option as a decorator made by ``make`` (IPython's ``magic_arguments.argument``),
    in the order to apply them from the bottom up; ``shared``: options the front end
    declares already, in the same words (a run's ``--queue`` and ``--timeout``)."""
    for declared in reversed(OPTIONS):
        if declared.name not in shared:
            yield make(*declared.flags, **declared.argparse(prefix))


def from_args(args: Any) -> dict[str, Any]:
    """The options given on a command line (a CLI's or a magic's parsed arguments), in
    ScheduleSpec's words (``--notify-on`` comma-separated); options not given are left out."""
    given = {o.name: getattr(args, o.name, None) for o in OPTIONS}
    on = given["notify_on"]
    given["notify_on"] = on.split(",") if isinstance(on, str) else on
    return {k: v for k, v in given.items() if v is not None}


def json_properties() -> dict[str, Any]:
    """The options as a REST body's JSON Schema properties (default and choices stated)."""
    properties = {}
    for declared in OPTIONS:
        schema = {**declared.schema, "description": declared.help}
        if declared.choices:
            schema = {
                "enum": [value for value, _ in declared.choices],
                "description": declared.help
                + ": "
                + "; ".join(f"{v}: {m}" for v, m in declared.choices),
            }
        if declared.default not in (None, ()):
            schema["default"] = declared.default
        properties[declared.name] = schema
    return properties


def panel_choices(name: str) -> list[tuple[str, str]]:
    """A choice option as a dropdown's (label, value) pairs: ``after downtime: skip…``."""
    declared = option(name)
    return [(f"{declared.help}: {means}", value) for value, means in declared.choices]
