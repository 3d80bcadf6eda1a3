"""Cron lines as Vixie cron and cronie read them: 5 fields, parsed here, matched on a wall
clock. No library decides what a line means, so every worker of a fleet agrees.

Fields: minute 0-59, hour 0-23, day of month 1-31, month 1-12 (or ``jan``…), day of week
0-7 (0 and 7 are Sunday, or ``sun``…). Each is ``*``, a number, a range ``a-b``, a step
``*/n``, ``a-b/n`` or ``a/n`` (``a`` to the field's end), or a comma list of those; the
macros ``@yearly`` (``@annually``), ``@monthly``, ``@weekly``, ``@daily`` (``@midnight``)
and ``@hourly``. As in cron, when the day of month or the day of week starts with ``*``
both must match, otherwise either (``0 0 1,15 * 1``: the 1st, the 15th and Mondays).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
NAMES = {
    3: {m.lower(): i for i, m in enumerate(calendar.month_abbr) if m},
    4: {d.lower(): (i + 1) % 7 for i, d in enumerate(calendar.day_abbr)},
}
BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
FIELD_NAMES = ("minute", "hour", "day of month", "month", "day of week")
SEARCH_DAYS = 28 * 366
"""How far ahead a match is looked for: the calendar repeats its weekdays and leap years
every 28 years, so a line with no time in that span has none at all (``0 0 31 2 *``)."""


def _value(text: str, field: int) -> int:
    low, high = BOUNDS[field]
    value = NAMES.get(field, {}).get(text.lower())
    if value is None:
        if not text.isdigit():
            raise ValueError(f"{FIELD_NAMES[field]}: {text!r} is not a number")
        value = int(text)
    if not low <= value <= high:
        raise ValueError(f"{FIELD_NAMES[field]}: {value} is outside {low}-{high}")
    return value


def _field(text: str, field: int) -> frozenset[int]:
    """The values one field allows."""
    low, high = BOUNDS[field]
    allowed: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ValueError(f"{FIELD_NAMES[field]}: {part!r} has a bad step")
            step = int(step_text)
        if body == "*":
            start, end = low, high
        elif "-" in body:
            first, _, last = body.partition("-")
            start, end = _value(first, field), _value(last, field)
            if start > end:
                raise ValueError(f"{FIELD_NAMES[field]}: the range {body!r} runs backwards")
        elif body:
            start = _value(body, field)
            end = high if step_text else start  # "a/n": from a to the field's end
        else:
            raise ValueError(f"{FIELD_NAMES[field]}: an empty part in {text!r}")
        allowed.update(range(start, end + 1, step))
    if field == 4 and 7 in allowed:
        allowed = (allowed - {7}) | {0}
    return frozenset(allowed)


@dataclass(frozen=True)
class CronLine:
    """A parsed line: the values each field allows, and whether its days are ANDed."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    days_and: bool
    """Cron's rule: a day of month or a day of week starting with ``*`` means both must
    match; two restricted fields mean either."""
    wildcard: bool
    """``*`` first in the minute or hour field: cron's "wildcard" jobs, which run in both
    occurrences of a repeated hour and not at all in a skipped one."""

    @classmethod
    def parse(cls, line: object) -> CronLine:
        """Parse ``line``; ValueError naming the field and what is wrong with it."""
        if not isinstance(line, str):
            raise ValueError(f"cron must be a 5-field line, not {line!r}")
        text = " ".join(line.split())
        fields = MACROS.get(text.lower(), text).split()
        if len(fields) != len(BOUNDS):
            raise ValueError(
                f"cron must have 5 fields (minute hour day month weekday), not {line!r}"
            )
        minutes, hours, days, months, weekdays = (_field(f, i) for i, f in enumerate(fields))
        parsed = cls(
            text,
            minutes,
            hours,
            days,
            months,
            weekdays,
            days_and=fields[2].startswith("*") or fields[4].startswith("*"),
            wildcard=fields[0].startswith("*") or fields[1].startswith("*"),
        )
        if parsed.next_day(date(2000, 1, 1)) is None:
            raise ValueError(f"cron {text!r} never fires (no date has such a day)")
        return parsed

    def day_matches(self, day: date) -> bool:
        """Whether the line runs on ``day``."""
        if day.month not in self.months:
            return False
        dom, weekday = day.day, (day.weekday() + 1) % 7
        in_days, in_weekdays = dom in self.days, weekday in self.weekdays
        return in_days and in_weekdays if self.days_and else in_days or in_weekdays

    def matches(self, wall: datetime) -> bool:
        """Whether the wall-clock minute ``wall`` (naive) is one of the line's times."""
        return wall.minute in self.minutes and wall.hour in self.hours and self.day_matches(wall)

    def next_day(self, day: date) -> date | None:
        """The first date on or after ``day`` the line runs on (None within 28 years)."""
        for offset in range(SEARCH_DAYS):
            candidate = day + timedelta(days=offset)
            if self.day_matches(candidate):
                return candidate
        return None

    def next_after(self, wall: datetime) -> datetime:
        """The first wall-clock time strictly after ``wall`` (naive, to the minute)."""
        start = wall.replace(second=0, microsecond=0) + timedelta(minutes=1)
        day = start.date()
        first = True
        while True:
            found = self.next_day(day)
            if found is None:
                raise ValueError(f"cron {self.text!r} has no time after {wall.isoformat()}")
            if found != day:
                first = False
            for hour in sorted(self.hours):
                if first and hour < start.hour:
                    continue
                for minute in sorted(self.minutes):
                    if first and hour == start.hour and minute < start.minute:
                        continue
                    return datetime.combine(found, time(hour, minute))
            day = found + timedelta(days=1)
            first = False

    def count_between(self, low: datetime, high: datetime) -> int:
        """How many of the line's wall-clock times ``t`` have ``low < t <= high`` (naive):
        whole days by the day's count of times, the two end days time by time."""
        if high <= low:
            return 0
        per_day = len(self.hours) * len(self.minutes)

        def on(day: date, after: time | None, upto: time | None) -> int:
            if not self.day_matches(day):
                return 0
            return sum(
                1
                for hour in self.hours
                for minute in self.minutes
                if (after is None or time(hour, minute) > after)
                and (upto is None or time(hour, minute) <= upto)
            )

        first, last = low.date(), high.date()
        if first == last:
            return on(first, low.time(), high.time())
        total = on(first, low.time(), None) + on(last, None, high.time())
        day = first + timedelta(days=1)
        while day < last:
            total += per_day if self.day_matches(day) else 0
            day += timedelta(days=1)
        return total
