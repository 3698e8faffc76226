"""Time for the simulator: wall clock vs model clock, and Mimecast's date formats.

The simulator never reads the system clock itself: it is handed a zero-argument
callable returning epoch seconds (``time.time`` by default, a fake in tests).
The queue model runs on *model time*, which moves ``speed`` times faster than
the wall clock, so a demo at ``--speed 60`` shows an hour of queue life in a
minute.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

Clock = Callable[[], float]

# `yyyy-MM-dd'T'HH:mm:ssZ` as Mimecast writes it, e.g. 2015-11-16T14:49:18+0000.
_MC_FORMAT = "%Y-%m-%dT%H:%M:%S+0000"
# What we accept on input: the documented form, plus `+00:00`, `Z`, other
# offsets and optional fractions, since clients differ in how they format ISO 8601.
_ISO_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d+)?"
    r"(?:(Z)|([+-])(\d{2}):?(\d{2}))$"
)
# `Tue, 24 Nov 2015 12:50:11 UTC`. The reference samples also produce `GMT`
# (C#'s "R" format) and a one-digit day (Java's `d`); both are accepted.
_HDR_RE = re.compile(
    r"^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d{1,2}) "
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (\d{4}) "
    r"(\d{2}):(\d{2}):(\d{2}) (?:UTC|GMT)$"
)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class ModelClock:
    """Maps wall-clock time to model time: ``t0 + (wall - t0) * speed``.

    ``t0`` is the wall time at construction, so model time starts equal to
    wall time and then runs ``speed`` times faster.
    """

    def __init__(self, wall: Clock, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.wall = wall
        self.speed = float(speed)
        self.t0 = float(wall())

    def model_time(self, wall_now: float) -> float:
        return self.t0 + (wall_now - self.t0) * self.speed


class ManualClock:
    """A clock that only moves when told to; pass its bound ``time`` as the clock."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = float(start)

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def format_mc_date(ts: float) -> str:
    """Epoch seconds -> ``2015-11-16T14:49:18+0000``."""
    return datetime.fromtimestamp(ts, UTC).strftime(_MC_FORMAT)


def parse_mc_date(text: object) -> float | None:
    """An ISO 8601 date as Mimecast documents it -> epoch seconds, or None if unparseable."""
    if not isinstance(text, str):
        return None
    m = _ISO_RE.match(text.strip())
    if not m:
        return None
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    if m.group(7):
        tz = UTC
    else:
        sign = -1 if m.group(8) == "-" else 1
        tz = timezone(sign * timedelta(hours=int(m.group(9)), minutes=int(m.group(10))))
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=tz).timestamp()
    except ValueError:  # e.g. month 13
        return None


def parse_header_date(text: str) -> float | None:
    """An ``x-mc-date`` value -> epoch seconds, or None if unparseable."""
    m = _HDR_RE.match(text.strip())
    if not m:
        return None
    day, mon, year, hour, minute, second = m.groups()
    try:
        d = datetime(
            int(year),
            _MONTHS.index(mon) + 1,
            int(day),
            int(hour),
            int(minute),
            int(second),
            tzinfo=UTC,
        )
    except ValueError:
        return None
    return d.timestamp()
