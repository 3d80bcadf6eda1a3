"""When a schedule fires: a cron line or an interval, in an IANA time zone, as UTC instants.

Cron lines are read by croniter (5 fields, standard semantics) on the zone's wall clock,
then each wall-clock time becomes one instant with the standard library's ``zoneinfo``:

- a time that does not exist (the hour skipped when clocks go forward) fires when the
  clock jumps, shifted by the gap: ``30 2 * * *`` in Europe/Berlin fires at 03:30 CEST on
  2026-03-29;
- a time that exists twice (the hour repeated when clocks go back) fires once, at its
  first occurrence: ``30 2 * * *`` fires at 02:30 CEST on 2026-10-25, not again at 02:30 CET;
- except, as in cron itself (Vixie cron, cronie: "jobs that run more frequently are
  scheduled normally"), a line with ``*`` in its minute or hour field (``0 * * * *``,
  ``*/15 * * * *``, ``*/5 2 * * *``): its times in the repeated hour fire at both
  occurrences, so an hourly run stays an hour apart in real time.

So a daily run is neither skipped nor doubled. Intervals (``every``) count elapsed time
from the schedule's start, whatever the clocks do.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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
    """The cron line, checked (5 fields); ValueError saying what is wrong."""
    from croniter import croniter

    if not isinstance(line, str) or len(line.split()) != CRON_FIELDS:
        raise ValueError(f"cron must have 5 fields (minute hour day month weekday), not {line!r}")
    if not croniter.is_valid(line):
        raise ValueError(f"cron {line!r} is not a valid cron line")
    return " ".join(line.split())


def _changes(tz: ZoneInfo, start: datetime, end: datetime) -> bool:
    """Whether ``tz``'s offset from UTC differs between two instants (less than a day
    apart, so a change between them shows)."""
    return start.astimezone(tz).utcoffset() != end.astimezone(tz).utcoffset()


def _offset(aware: datetime) -> timedelta:
    return aware.utcoffset() or timedelta(0)


def problems(cron: object, every: object, timezone: object) -> list[str]:
    """Every problem with a schedule's timing, at once (empty: fine)."""
    found = []
    if (cron is None) == (every is None):
        found.append("give exactly one of cron (a 5-field line) and every (an interval)")
    for check, value in ((check_cron, cron), (parse_every, every)):
        if value is not None:
            try:
                check(value)
            except ValueError as exc:
                found.append(str(exc))
    try:
        zone(timezone)
    except ValueError as exc:
        found.append(str(exc))
    return found


@dataclass(frozen=True)
class Timetable:
    """A schedule's ticks. ``anchor`` (UTC) is where intervals count from."""

    cron: str | None
    every_s: float | None
    timezone: str
    anchor: datetime

    def after(self, when: datetime) -> datetime:
        """The first tick strictly after ``when`` (aware), in UTC."""
        when = when.astimezone(UTC)
        if self.every_s is not None:
            step = timedelta(seconds=self.every_s)
            if when < self.anchor:
                return self.anchor + step  # the start itself is not a tick
            k = math.floor((when - self.anchor) / step) + 1
            tick = self.anchor + k * step
            return tick if tick > when else tick + step
        return self._cron_after(when)

    def _cron_after(self, when: datetime) -> datetime:
        from croniter import croniter

        tz = zone(self.timezone)
        wall = when.astimezone(tz).replace(tzinfo=None)
        if not _changes(tz, when - NEAR, when + NEAR):
            # The usual case, no clock change near: the wall clock's next time, if near.
            times = croniter(self.cron or "", wall - timedelta(minutes=1), ret_type=datetime)
            for _ in range(2):
                tick = times.get_next(datetime).replace(tzinfo=tz).astimezone(UTC)
                if tick > when:
                    if tick - when <= NEAR:
                        return tick
                    break
        # Near a change, a time behind the wall clock may fire first (moved out of the
        # gap, or repeated), and a time ahead may not be where the wall clock says.
        return self._earliest_after(when, tz, wall - NEAR)

    def _earliest_after(self, when: datetime, tz: ZoneInfo, start: datetime) -> datetime:
        """The earliest tick after ``when`` among the wall-clock times from ``start``
        (naive), walking until no later time can fire earlier than the best found."""
        from croniter import croniter

        folds = (0, 1) if self.repeats else (0,)
        times = croniter(self.cron or "", start, ret_type=datetime)
        best: datetime | None = None
        best_wall = start
        for _ in range(100_000):  # a line that matches nothing ends croniter's own search
            naive = times.get_next(datetime)
            if best is not None and naive > best_wall + NEAR:
                return best
            for fold in folds:
                aware = naive.replace(tzinfo=tz, fold=fold)
                # fold=1 is a second instant only in a repeated hour, where it has the
                # smaller offset (in a gap it has the larger one, an earlier instant).
                if fold and _offset(aware) >= _offset(naive.replace(tzinfo=tz)):
                    continue
                tick = aware.astimezone(UTC)
                if tick > when and (best is None or tick < best):
                    best, best_wall = tick, naive
        raise ValueError(f"cron {self.cron!r} has no time after {when.isoformat()}")

    @property
    def repeats(self) -> bool:
        """Whether the line fires in both occurrences of a repeated hour (``*`` in its
        minute or hour field, as cron's "wildcard" jobs)."""
        fields = (self.cron or "").split()
        return len(fields) >= 2 and (fields[0].startswith("*") or fields[1].startswith("*"))

    def between(self, start: datetime, end: datetime, limit: int) -> list[datetime]:
        """The ticks in ``(start, end]``, oldest first, at most ``limit`` (the newest
        ``limit`` when there are more)."""
        ticks: list[datetime] = []
        tick = self.after(start)
        if self.every_s is not None and tick <= end:
            # Intervals: jump straight to the last ``limit`` ticks instead of walking.
            count = math.floor((end - tick) / timedelta(seconds=self.every_s)) + 1
            first = tick + max(count - limit, 0) * timedelta(seconds=self.every_s)
            return [first + i * timedelta(seconds=self.every_s) for i in range(min(count, limit))]
        while tick <= end:
            ticks.append(tick)
            if len(ticks) > limit:
                ticks.pop(0)
            tick = self.after(tick)
        return ticks

    def next_runs(self, n: int, after: datetime) -> list[datetime]:
        """The next ``n`` ticks after ``after``, as aware datetimes in the schedule's zone."""
        tz = zone(self.timezone)
        out, tick = [], after
        for _ in range(n):
            tick = self.after(tick)
            out.append(tick.astimezone(tz))
        return out
