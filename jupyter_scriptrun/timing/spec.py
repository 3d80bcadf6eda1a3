"""What a schedule is asked to do: its timing and policies, checked together, as columns.

One declaration for every front end: Python's ``sr.schedule(...)`` and ``update(...)``,
the CLI's ``schedule add|edit``, the magics and the REST body all become a ScheduleSpec,
whose ``problems()`` lists everything wrong at once in the words of these fields.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any

from jupyter_scriptrun.exceptions import Problem
from jupyter_scriptrun.timing.cron import FIELD_NAMES
from jupyter_scriptrun.timing.timetable import Timetable, check_cron, parse_every, problems, zone

CATCHUP = ("latest", "none", "all")
OVERLAP = ("skip", "queue", "allow")
NOTIFY_ON = ("succeeded", "failed", "timed_out", "lost", "cancelled")
DEFAULT_NOTIFY_ON = ("failed", "timed_out", "lost")
MAX_JITTER_S = 3600.0
MAX_GRACE_S = 366 * 86400.0
MIN_YEAR, MAX_YEAR = 1970, 2999
"""The years ``at``, ``start`` and ``end`` may fall in (a tick past 9999 overflows)."""
ON_TIME_S = 5.0
"""A tick this late is still on time unless ``misfire_grace`` says otherwise."""


@dataclass(frozen=True)
class ScheduleSpec:
    """A schedule's options. Exactly one of ``cron``, ``every`` and ``at``; ``at``,
    ``start`` and ``end`` are aware datetimes or ISO 8601 text (a time without a zone is
    read in ``timezone``)."""

    cron: str | None = None
    every: float | str | None = None
    at: datetime | str | None = None
    start: datetime | str | None = None
    end: datetime | str | None = None
    timezone: str = "UTC"
    catchup: str = "latest"
    overlap: str = "skip"
    queue: str | None = None
    timeout: float | None = None
    jitter: float | None = None
    misfire_grace: float | None = None
    notify: tuple[str, ...] | list[str] | None = None
    notify_on: tuple[str, ...] | list[str] | None = field(default=None)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The options' names, in declaration order."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ScheduleSpec:
        """The spec a stored schedule was made with."""
        return cls(
            cron=row["cron"],
            every=row["every_s"],
            at=row.get("once_at"),
            start=row.get("start_at"),
            end=row.get("end_at"),
            timezone=row["timezone"],
            catchup=row["catchup"],
            overlap=row["overlap"],
            queue=row["queue"],
            timeout=row["timeout_s"],
            jitter=row.get("jitter_s"),
            misfire_grace=row.get("misfire_grace_s"),
            notify=row.get("notify"),
            notify_on=row.get("notify_on"),
        )

    def changed(self, **changes: Any) -> tuple[ScheduleSpec, list[str]]:
        """This spec with ``changes`` (giving one timing, cron, every or at, drops the
        others; None puts an option back to its default), and the problem of any option
        that is not one."""
        unknown = sorted(set(changes) - set(self.names()))
        defaults: dict[str, Any] = {f.name: f.default for f in fields(self)}
        known = {k: defaults[k] if v is None else v for k, v in changes.items() if k not in unknown}
        if {"cron", "every", "at"} & {k for k, v in known.items() if v is not None}:
            known = {"cron": None, "every": None, "at": None, **known}
        problems = [f"unknown option(s): {', '.join(unknown)}"] if unknown else []
        return replace(self, **known), problems

    def problems(self, now: datetime) -> list[Problem]:
        """Everything wrong with these options at ``now``, at once (empty: fine)."""
        timings = [v for v in (self.cron, self.every, self.at) if v is not None]
        found = (
            []
            if len(timings) == 1
            else [
                "give exactly one of cron (a 5-field line), every (an interval) and at (an instant)"
            ]
        )
        found += problems(self.cron, self.every, self.timezone)
        instants: dict[str, datetime] = {}
        for name in ("at", "start", "end"):
            value = getattr(self, name)
            if value is not None:
                try:
                    instants[name] = instant(value, self.timezone, name)
                except ValueError as exc:
                    found.append(str(exc))
        found += _bounds_problems(instants, now, repeating=self.at is None)
        if self.catchup not in CATCHUP:
            found.append(f"catchup must be one of {', '.join(CATCHUP)}, not {self.catchup!r}")
        if self.overlap not in OVERLAP:
            found.append(f"overlap must be one of {', '.join(OVERLAP)}, not {self.overlap!r}")
        for name, high in (("timeout", math.inf), ("misfire_grace", MAX_GRACE_S)):
            if not _positive(getattr(self, name), high):
                found.append(
                    f"{name} must be a positive number of seconds, not {getattr(self, name)!r}"
                )
        found += self._jitter_problems()
        found += notify_problems(self.notify, self.notify_on)
        return [_about(p) for p in found]

    def _jitter_problems(self) -> list[str]:
        if self.jitter is None:
            return []
        if not _positive(self.jitter, MAX_JITTER_S, zero=True):
            return [f"jitter must be 0 to {MAX_JITTER_S:g} seconds, not {self.jitter!r}"]
        try:
            every = parse_every(self.every) if self.every is not None else None
        except ValueError:
            return []  # said already
        if every is not None and self.jitter >= every:
            return [f"jitter ({self.jitter:g} s) must be shorter than the interval ({every:g} s)"]
        return []

    def columns(self) -> dict[str, Any]:
        """The schedule's stored columns for these (checked) options."""
        tz = self.timezone
        return {
            "cron": check_cron(self.cron) if self.cron is not None else None,
            "every_s": parse_every(self.every) if self.every is not None else None,
            "once_at": instant(self.at, tz, "at") if self.at is not None else None,
            "start_at": instant(self.start, tz, "start") if self.start is not None else None,
            "end_at": instant(self.end, tz, "end") if self.end is not None else None,
            "timezone": zone(tz).key,
            "catchup": self.catchup,
            "overlap": self.overlap,
            "queue": self.queue,
            "timeout_s": float(self.timeout) if self.timeout else None,
            "jitter_s": float(self.jitter) if self.jitter else None,
            "misfire_grace_s": float(self.misfire_grace) if self.misfire_grace else None,
            "notify": list(self.notify) if self.notify else None,
            "notify_on": list(self.notify_on) if self.notify_on else None,
        }


def table_of(row: dict[str, Any], anchor: datetime | None = None) -> Timetable:
    """The ticks of a schedule's columns (intervals count from its start, else ``anchor``,
    else its creation)."""
    return Timetable(
        row["cron"],
        row["every_s"],
        row["timezone"],
        row.get("start_at") or anchor or row["created_at"],
        once=row.get("once_at"),
        start=row.get("start_at"),
        end=row.get("end_at"),
    )


def instant(value: object, timezone: str, name: str) -> datetime:
    """An aware UTC datetime from a datetime or ISO 8601 text (without a zone: in
    ``timezone``, or UTC when that is no zone); ValueError naming the option."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"{name} must be a date and time such as '2027-01-31T09:00', not {value!r}"
            ) from None
    if not isinstance(value, datetime):
        raise ValueError(f"{name} must be a date and time, not {value!r}")
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise ValueError(f"{name} must be in the years {MIN_YEAR} to {MAX_YEAR}, not {value.year}")
    if value.tzinfo is None:
        try:
            value = value.replace(tzinfo=zone(timezone))
        except ValueError:  # said already, as the time zone's problem
            value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _about(problem: str) -> Problem:
    """A problem with the option it names first (its text begins with the option's name, or
    says "give exactly one of cron …": about the request as a whole)."""
    first = re.split(r"[^a-z_]", problem, maxsplit=1)[0]
    if problem.startswith(tuple(f"{name}:" for name in FIELD_NAMES)):
        first = "cron"  # "minute: 61 is outside 0-59" is about the cron line
    elif problem.startswith("unknown time zone"):
        first = "timezone"
    return Problem(problem, first if first in _FIELDS else None)


_FIELDS = frozenset(f.name for f in fields(ScheduleSpec))


def _bounds_problems(instants: dict[str, datetime], now: datetime, repeating: bool) -> list[str]:
    found = []
    if "at" in instants and instants["at"] <= now:
        found.append(f"at ({instants['at'].isoformat()}) is in the past")
    if not repeating and ({"start", "end"} & set(instants)):
        found.append("start and end bound a repeating schedule; one with at fires once")
    if "end" in instants and instants["end"] <= now:
        found.append(f"end ({instants['end'].isoformat()}) is in the past")
    if {"start", "end"} <= set(instants) and instants["end"] <= instants["start"]:
        found.append("end must be after start")
    return found


def _positive(value: object, high: float, zero: bool = False) -> bool:
    """Whether ``value`` is None or a finite number in (0, high] (or [0, high])."""
    if value is None:
        return True
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return False
    return (value >= 0 if zero else value > 0) and value <= high


def notify_problems(notify: object, notify_on: object) -> list[str]:
    """What is wrong with notification targets and the outcomes they are for."""
    found = []
    if notify is not None:
        if isinstance(notify, str) or not isinstance(notify, list | tuple):
            found.append(f"notify must be a list of apprise URLs, not {notify!r}")
        else:
            found += [
                f"notify: {url!r} is not an apprise URL apprise can send to (such as "
                "'mailto://user:password@host' or 'json://host/path')"
                for url in notify
                if not _apprise_url(url)
            ]
    if notify_on is not None:
        if isinstance(notify_on, str) or not isinstance(notify_on, list | tuple):
            found.append(f"notify_on must be a list of outcomes, not {notify_on!r}")
        else:
            for outcome in notify_on:
                if outcome not in NOTIFY_ON:
                    found.append(f"notify_on: {outcome!r} is not one of {', '.join(NOTIFY_ON)}")
    return found


def _apprise_url(url: object) -> bool:
    """Whether apprise reads ``url`` as one of its services (imported only here: ~0.1 s)."""
    if not isinstance(url, str) or not url or len(url) > 4096:
        return False
    import apprise

    return apprise.Apprise.instantiate(url) is not None


def first_fire(columns: dict[str, Any], now: datetime, key: str) -> datetime | None:
    """When a new or changed schedule (``key``: its id) first fires after ``now``, jitter
    included (``columns`` without ``created_at``: a new schedule, whose intervals count
    from ``now``); None when it never will."""
    table = table_of(columns, now if "created_at" not in columns else None)
    tick = table.after(now)
    return None if tick is None else table.fire_at(tick, key, columns.get("jitter_s"))
