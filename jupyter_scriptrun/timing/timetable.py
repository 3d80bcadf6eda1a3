"""When a schedule fires: a cron line or an interval, in an IANA time zone, as UTC instants.

Cron lines are read by ``cron.CronLine`` (Vixie cron's and cronie's grammar and meaning,
parsed here: no library version decides when a fleet fires) on the zone's wall clock, and
each wall-clock time becomes instants as cron itself does around clock changes:

- a time that does not exist (the hour skipped when clocks go forward): a fixed-time line
  (``30 2 * * *``) fires once, right when the clock jumps (03:00 CEST in Europe/Berlin on
  2027-03-28), however many of its times were skipped; a line with ``*`` first in its
  minute or hour field (cron's "wildcard" jobs: ``* 2 * * *``, ``*/15 2 * * *``,
  ``0 * * * *``) does not fire for the skipped times;
- a time that exists twice (the hour repeated when clocks go back): a fixed-time line
  fires once, at the first occurrence; a wildcard line fires at both, so an hourly run
  stays an hour apart in real time.

So a daily run is neither skipped nor doubled, and distinct times never merge (in
America/New_York ``30 1-3 * * *`` fires at 01:30, at 03:00 for the skipped 02:30, and at
03:30). Intervals (``every``) count elapsed time from the schedule's start, whatever the
clocks do.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache, cached_property
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from jupyter_scriptrun.timing.cron import CronLine

EVERY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d)?\s*$")
UNITS = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
MIN_EVERY_S = 1.0
MAX_EVERY_S = 366 * 86400.0
"""A year: longer intervals are a cron line's job (and past about 10**14 s no date holds
them: the first fire overflowed into a 500)."""
CRON_FIELDS = 5
NEAR = timedelta(hours=3)
"""Farther than any daylight-saving shift: a wall-clock time this far behind an instant
can still fire after it (shifted out of a gap, or repeated), and none farther can."""


def parse_every(value: object) -> float:
    """Seconds from ``30``, ``"30s"``, ``"5m"``, ``"1h"``, ``"1d"``; ValueError saying why not."""
    if isinstance(value, bool):
        raise ValueError(f"every must be seconds or a duration such as '5m', not {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := EVERY.match(value)):
        seconds = float(match[1]) * UNITS[match[2]]
    else:
        raise ValueError(f"every must be seconds or a duration such as '5m', not {value!r}")
    if not math.isfinite(seconds) or not MIN_EVERY_S <= seconds <= MAX_EVERY_S:
        raise ValueError(
            f"every must be from {MIN_EVERY_S:g} s to {MAX_EVERY_S / 86400:g} days, not {value!r}"
        )
    return seconds


def zone(name: object) -> ZoneInfo:
    """The IANA time zone ``name``; ValueError naming it when unknown."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"timezone must be an IANA name such as 'Europe/Berlin', not {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r} (an IANA name such as 'Europe/Berlin')"
        ) from None


def check_cron(line: object) -> str:
    """The cron line, checked; ValueError saying what is wrong (a field, or never fires)."""
    return CronLine.parse(line).text


def _jump(naive: datetime, tz: ZoneInfo) -> datetime:
    """The instant the clock jumped over the skipped wall-clock time ``naive``: one minute
    after the last minute before the gap (zones change on the minute)."""
    before = naive - timedelta(minutes=1)
    while before.replace(tzinfo=tz).astimezone(UTC).astimezone(tz).replace(tzinfo=None) != before:
        before -= timedelta(minutes=1)
    return before.replace(tzinfo=tz).astimezone(UTC) + timedelta(minutes=1)


def _changes(tz: ZoneInfo, start: datetime, end: datetime) -> bool:
    """Whether ``tz``'s offset from UTC differs between two instants (less than a day
    apart, so a change between them shows)."""
    return start.astimezone(tz).utcoffset() != end.astimezone(tz).utcoffset()


def problems(cron: object, every: object, timezone: object) -> list[str]:
    """Every problem with a cron line or interval (either may be None) and a zone, at once
    (empty: fine)."""
    found = []
    for check, value in ((check_cron, cron), (parse_every, every)):
        if value is not None:
            try:
                check(value)
            except ValueError as exc:
                found.append(str(exc))
    try:
        zone(timezone)
        if timezone not in iana_names():
            # "localtime" and the like name each host's own /etc/localtime: two workers
            # in different zones would fire the same schedule at different instants.
            found.append(f"timezone must be an IANA name such as 'Europe/Berlin', not {timezone!r}")
    except ValueError as exc:
        found.append(str(exc))
    return found


HOST_ZONES = frozenset({"localtime", "posixrules", "Factory"})
"""Files of a tz folder that are no zone of their own: the host's, or placeholders."""


@cache
def iana_names() -> frozenset[str]:
    """The IANA zone names of this host's tz database (read once), without the host's own
    ``localtime`` and the like."""
    return frozenset(
        name
        for name in available_timezones()
        if name not in HOST_ZONES and not name.startswith(("posix/", "right/"))
    )


@dataclass(frozen=True)
class Timetable:
    """A schedule's ticks: a cron line, an interval (counted from ``anchor``, UTC) or one
    instant (``once``), none before ``start`` or after ``end``."""

    cron: str | None
    every_s: float | None
    timezone: str
    anchor: datetime
    once: datetime | None = None
    start: datetime | None = None
    end: datetime | None = None

    @cached_property
    def line(self) -> CronLine:
        """The cron line, parsed once (a frozen dataclass keeps it in its ``__dict__``)."""
        return CronLine.parse(self.cron)

    def after(self, when: datetime) -> datetime | None:
        """The first tick strictly after ``when`` (aware), in UTC; None when none is left."""
        when = when.astimezone(UTC)
        if self.start is not None and when < self.start:
            when = self.start - EPSILON  # the start itself may be a tick
        if self.once is not None:
            tick: datetime | None = self.once if self.once > when else None
        elif self.every_s is not None:
            tick = self._every_after(when)
        else:
            tick = self._cron_after(when)
        return tick if tick is None or self.end is None or tick <= self.end else None

    def _every_after(self, when: datetime) -> datetime:
        step = timedelta(seconds=self.every_s or 0)
        if when < self.anchor:
            return self.anchor + step  # the start itself is not a tick
        k = math.floor((when - self.anchor) / step) + 1
        tick = self.anchor + k * step
        return tick if tick > when else tick + step

    def _cron_after(self, when: datetime) -> datetime:
        tz = zone(self.timezone)
        wall = when.astimezone(tz).replace(tzinfo=None)
        if not _changes(tz, when - NEAR, when + NEAR):
            # The usual case, no clock change near: the wall clock's next time, if near.
            tick = self.line.next_after(wall).replace(tzinfo=tz).astimezone(UTC)
            if when < tick <= when + NEAR:
                return tick
        # Near a change, a time behind the wall clock may fire first (skipped, or
        # repeated), and a time ahead may not be where the wall clock says.
        return self._earliest_after(when, tz, wall - NEAR)

    def _earliest_after(self, when: datetime, tz: ZoneInfo, start: datetime) -> datetime:
        """The earliest tick after ``when`` among the wall-clock times after ``start``
        (naive), walking until no later time can fire earlier than the best found."""
        best: datetime | None = None
        best_wall = naive = start
        while True:  # next_after raises when the line has no later time at all
            naive = self.line.next_after(naive)
            if best is not None and naive > best_wall + NEAR:
                return best
            for tick in self._instants(naive, tz):
                if tick > when and (best is None or tick < best):
                    best, best_wall = tick, naive

    def _instants(self, naive: datetime, tz: ZoneInfo) -> list[datetime]:
        """The instants a wall-clock time of the line fires at, by cron's rules (module
        docstring): one, two (a wildcard line in a repeated hour) or none (a wildcard
        line in a skipped hour)."""
        first = naive.replace(tzinfo=tz).astimezone(UTC)
        if first.astimezone(tz).replace(tzinfo=None) != naive:  # skipped by a jump
            return [] if self.line.wildcard else [_jump(naive, tz)]
        second = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
        return [first, second] if second != first and self.line.wildcard else [first]

    def _cron_window(self, low: datetime, high: datetime) -> list[datetime]:
        """The cron line's ticks in ``(low, high]``, oldest first, found from the wall-clock
        times around the span (each time's instants by cron's rules), not tick by tick."""
        tz = zone(self.timezone)
        naive = low.astimezone(tz).replace(tzinfo=None) - NEAR
        last = high.astimezone(tz).replace(tzinfo=None) + NEAR
        found: set[datetime] = set()
        while (naive := self.line.next_after(naive)) <= last:
            found.update(t for t in self._instants(naive, tz) if low < t <= high)
        return sorted(found)

    @property
    def repeats(self) -> bool:
        """Whether the line fires in both occurrences of a repeated hour (``*`` first in
        its minute or hour field, as cron's "wildcard" jobs)."""
        return self.cron is not None and self.line.wildcard

    def _bounds(self, start: datetime, end: datetime) -> tuple[datetime, datetime]:
        """``(start, end]`` narrowed to the schedule's own start and end."""
        if self.start is not None:
            start = max(start, self.start - EPSILON)
        if self.end is not None:
            end = min(end, self.end)
        return start, end

    def between(self, start: datetime, end: datetime, limit: int) -> list[datetime]:
        """The ticks in ``(start, end]``, oldest first, at most ``limit`` (the newest
        ``limit`` when there are more); costs the ``limit`` ticks, not the span."""
        start, end = self._bounds(start.astimezone(UTC), end.astimezone(UTC))
        if end <= start:
            return []
        if self.once is not None:
            return [self.once] if start < self.once <= end else []
        if self.every_s is not None:
            tick = self._every_after(start)
            if tick > end:
                return []
            step = timedelta(seconds=self.every_s)
            count = math.floor((end - tick) / step) + 1
            first = tick + max(count - limit, 0) * step
            return [first + i * step for i in range(min(count, limit))]
        # Cron: look back from the end over a span that doubles until it holds enough.
        span = timedelta(hours=1)
        while True:
            low = max(start, end - span)
            ticks = self._cron_window(low, end)
            if len(ticks) >= limit or low == start:
                return ticks[-limit:] if limit else []
            span *= 2

    def latest(self, start: datetime, end: datetime) -> datetime | None:
        """The newest tick in ``(start, end]``, whatever the span (no walk through it)."""
        ticks = self.between(start, end, 1)
        return ticks[0] if ticks else None

    def count(self, start: datetime, end: datetime) -> int:
        """How many ticks are in ``(start, end]``: arithmetic for intervals; for cron
        lines, the wall clock's times counted day by day, and the days near a clock
        change counted tick by tick (where cron's rules add or drop some)."""
        start, end = self._bounds(start.astimezone(UTC), end.astimezone(UTC))
        if end <= start:
            return 0
        if self.once is not None:
            return int(start < self.once <= end)
        if self.every_s is not None:
            tick = self._every_after(start)
            return (
                0 if tick > end else math.floor((end - tick) / timedelta(seconds=self.every_s)) + 1
            )
        tz = zone(self.timezone)
        total = self.line.count_between(_wall(start, tz), _wall(end, tz))
        for low, high in _changing_spans(tz, start, end):
            # Here the wall clock's count is not the ticks': count those for real.
            total += len(self._cron_window(low, high))
            total -= self.line.count_between(_wall(low, tz), _wall(high, tz))
        return total

    def fire_at(self, tick: datetime, key: str, jitter_s: float | None) -> datetime:
        """When ``tick`` fires with ``jitter_s``: later by a fraction of it drawn from the
        schedule's ``key`` and the tick, so every worker of a fleet draws the same."""
        if not jitter_s:
            return tick
        digest = hashlib.sha256(f"{key}|{tick.isoformat()}".encode()).digest()
        return tick + timedelta(seconds=jitter_s * int.from_bytes(digest[:8]) / 2**64)

    def next_runs(self, n: int, after: datetime) -> list[datetime]:
        """The next ``n`` ticks after ``after`` (fewer when it ends), as aware datetimes
        in the schedule's zone."""
        tz = zone(self.timezone)
        out: list[datetime] = []
        tick: datetime | None = after
        for _ in range(n):
            tick = self.after(tick) if tick is not None else None
            if tick is None:
                break
            out.append(tick.astimezone(tz))
        return out


EPSILON = timedelta(microseconds=1)


def _wall(instant: datetime, tz: ZoneInfo) -> datetime:
    """The naive wall-clock time of ``instant`` in ``tz``."""
    return instant.astimezone(tz).replace(tzinfo=None)


def _changing_spans(
    tz: ZoneInfo, start: datetime, end: datetime
) -> list[tuple[datetime, datetime]]:
    """Parts of ``(start, end]`` within ``NEAR`` of a change of ``tz``'s offset (found a day
    at a time, merged when they touch): outside them each instant is its wall-clock time
    at one offset, and cron's gap and repeat rules play no part."""
    spans: list[tuple[datetime, datetime]] = []
    day = timedelta(days=1)
    probe = start - day
    while probe < end + day:
        if _changes(tz, probe, probe + day):
            low, high = max(start, probe - NEAR), min(end, probe + day + NEAR)
            if low < high:
                if spans and low <= spans[-1][1]:
                    spans[-1] = (spans[-1][0], high)
                else:
                    spans.append((low, high))
        probe += day
    return spans
