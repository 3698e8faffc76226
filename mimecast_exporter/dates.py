"""Mimecast's date strings (``2015-10-07T20:03:56+0000``) to epoch seconds.

:func:`parse_mimecast_date` is the definition: every zone style seen in the
wild, fractions, no zone meaning UTC. :class:`DateParser` gives the same
answers for a million messages a poll without building a ``datetime`` per
message: it caches the epoch of each minute it has seen and adds the seconds,
and hands anything that is not in one of the common UTC spellings to
:func:`parse_mimecast_date`.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(\.\d+)?\s*(Z|[+-]\d{2}:?\d{2})?$")


def parse_mimecast_date(value: Any) -> float | None:
    """Epoch seconds from ``2015-10-07T20:03:56+0000`` (also ``+00:00``, ``Z``,
    fractions, no zone = UTC); None when it is not such a date."""
    if not isinstance(value, str):
        return None
    match = _DATE.match(value.strip())
    if not match:
        return None
    day, clock, fraction, zone = match.groups()
    if zone is None or zone == "Z":
        zone = "+00:00"
    elif ":" not in zone:
        zone = f"{zone[:3]}:{zone[3:]}"
    try:
        parsed = datetime.fromisoformat(f"{day}T{clock}{fraction or ''}{zone}")
    except ValueError:
        return None
    # Not astimezone(UTC): it overflows for 0001-01-01 east of UTC and 9999-12-31 west of it.
    return parsed.timestamp()


# "SS" plus a UTC zone spelling, as the tail of a date after "YYYY-MM-DDTHH:MM:".
# Only these take the fast path; every other tail goes through parse_mimecast_date.
UTC_SECONDS: dict[str, int] = {
    f"{second:02d}{zone}": second for second in range(60) for zone in ("+0000", "+00:00", "Z", "")
}
MINUTE = len("2015-10-07T20:03:")
# A week of lookback has 10,080 minutes; past this the cache starts again.
_MAX_CACHED_MINUTES = 16_384
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


class DateParser:
    """``parse_mimecast_date`` with a cache of the minutes seen.

    The cache is shared by every instance (every poll of every account): the
    minutes of a queue's messages are mostly those of the previous poll, and
    those of other accounts. Dict reads and writes are atomic, so threads need
    no lock; at worst two compute the same minute.
    """

    __slots__ = ()

    # "2015-10-07T20:03:" -> epoch of that minute (None: not a date). Read
    # directly by the aggregator's loop, which inlines the common case.
    minutes: dict[str, float | None] = {}  # noqa: RUF012 - shared on purpose

    def __call__(self, value: Any) -> float | None:
        if type(value) is not str:
            return None
        seconds = UTC_SECONDS.get(value[MINUTE:])
        if seconds is None:
            return parse_mimecast_date(value)
        prefix = value[:MINUTE]
        minute = self.minutes.get(prefix, _MISSING)
        if minute is _MISSING:
            minute = _minute_epoch(prefix)
            if len(self.minutes) >= _MAX_CACHED_MINUTES:
                self.minutes.clear()
            self.minutes[prefix] = minute
        if minute is None:  # not a date after all ("2026-02-30T...", "xxxx-..."): say why
            return parse_mimecast_date(value)
        return float(minute + seconds)


def _minute_epoch(prefix: str) -> float | None:
    """Epoch seconds of ``YYYY-MM-DDTHH:MM:`` (or with a space for the T); None if not
    a valid minute. Agrees with parse_mimecast_date (a property test checks)."""
    if (
        len(prefix) != MINUTE
        or prefix[4] != "-"
        or prefix[7] != "-"
        or prefix[10] not in "T "
        or prefix[13] != ":"
        or prefix[16] != ":"
    ):
        return None
    digits = prefix[0:4] + prefix[5:7] + prefix[8:10] + prefix[11:13] + prefix[14:16]
    if not (digits.isascii() and digits.isdigit()):
        return None
    hour, minute = int(prefix[11:13]), int(prefix[14:16])
    if hour > 23 or minute > 59:
        return None
    try:  # one date per minute, not per message; it also checks the day exists
        day = date(int(prefix[0:4]), int(prefix[5:7]), int(prefix[8:10]))
    except ValueError:
        return None
    return float((day.toordinal() - _EPOCH_ORDINAL) * 86400 + hour * 3600 + minute * 60)


_MISSING: Any = object()
