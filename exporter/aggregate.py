"""Messages, page by page, into an immutable per-route summary of one queue.

Only running totals are kept, never the messages, so a queue of a hundred
thousand messages costs as much memory as an empty one. Upstream data is not
trusted: a message with a missing, null or malformed field still counts, the
bad value is skipped, and a debug log says why.
"""

from __future__ import annotations

import logging
import math
import re
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any

from prometheus_client.utils import floatToGoString

log = logging.getLogger(__name__)

ROUTES: tuple[str, ...] = ("inbound", "outbound", "internal", "external")
UNKNOWN_ROUTE = "unknown"

# Upper bounds (seconds) for message age: a healthy queue holds messages for
# minutes; a destination that is down makes them hours to days old.
AGE_BUCKETS: tuple[float, ...] = (
    60,
    300,
    900,
    1800,
    3600,
    7200,
    14400,
    28800,
    43200,
    86400,
    172800,
    345600,
    604800,
)
# Upper bounds (bytes) for message size: plain text mail to large attachments.
SIZE_BUCKETS: tuple[float, ...] = (
    1024,
    4096,
    16384,
    65536,
    262144,
    1048576,
    4194304,
    10485760,
    26214400,
    52428800,
)


@dataclass(frozen=True)
class Histogram:
    """Counts per bucket (not cumulative; the last is +Inf) and the sum."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    total: float

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, cumulative count) pairs as Prometheus wants them, +Inf last."""
        pairs, running = [], 0
        for bound, count in zip((*self.bounds, math.inf), self.counts, strict=True):
            running += count
            pairs.append((floatToGoString(bound), running))
        return pairs


@dataclass(frozen=True)
class RouteStats:
    messages: int
    size_bytes: int
    attempts: int
    max_attempts: int
    oldest_created: float | None  # epoch seconds; None when no message had a usable date
    age: Histogram  # at the time of the poll
    size: Histogram


@dataclass(frozen=True)
class QueueSnapshot:
    """What one successful poll of one (account, queue) found."""

    taken_at: float  # epoch seconds, when the poll started
    routes: Mapping[str, RouteStats]  # always the four ROUTES, plus "unknown" when seen

    @property
    def messages(self) -> int:
        return sum(stats.messages for stats in self.routes.values())


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


# Larger "counts" are garbage, and would not fit the float of a sample or a sum.
_MAX_COUNT = 2**53


def _count(value: Any) -> int | None:
    """A non-negative integer from an int, an integral float or a digit string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    # isdecimal, not isdigit: int() refuses "²"; over 100 digits it is too large anyway.
    elif isinstance(value, str) and value.strip().isdecimal() and len(value.strip()) <= 100:
        value = int(value.strip())
    if isinstance(value, int) and 0 <= value <= _MAX_COUNT:
        return value
    return None


class _RouteTotals:
    __slots__ = (
        "age_counts",
        "age_sum",
        "attempts",
        "max_attempts",
        "messages",
        "oldest",
        "size",
        "size_counts",
        "size_sum",
    )

    def __init__(self) -> None:
        self.messages = 0
        self.size = 0
        self.attempts = 0
        self.max_attempts = 0
        self.oldest: float | None = None
        self.age_counts = [0] * (len(AGE_BUCKETS) + 1)
        self.age_sum = 0.0
        self.size_counts = [0] * (len(SIZE_BUCKETS) + 1)
        self.size_sum = 0.0

    def freeze(self) -> RouteStats:
        return RouteStats(
            messages=self.messages,
            size_bytes=self.size,
            attempts=self.attempts,
            max_attempts=self.max_attempts,
            oldest_created=self.oldest,
            age=Histogram(AGE_BUCKETS, tuple(self.age_counts), self.age_sum),
            size=Histogram(SIZE_BUCKETS, tuple(self.size_counts), self.size_sum),
        )


class QueueAggregator:
    """Feed pages with :meth:`add`, then take the :meth:`snapshot`."""

    def __init__(self, now: float, context: Mapping[str, str] | None = None) -> None:
        self.now = now
        self._context = dict(context or {})
        self._routes = {route: _RouteTotals() for route in ROUTES}

    def add(self, messages: Iterable[Any]) -> int:
        """Count the message objects in one page; returns how many there were."""
        added = 0
        for message in messages:
            if not isinstance(message, dict):
                self._skip("message is not an object", type(message).__name__)
                continue
            self._add_one(message)
            added += 1
        return added

    def _add_one(self, message: dict) -> None:
        route = message.get("routing")
        key = route.strip().lower() if isinstance(route, str) else None
        if key not in ROUTES:
            self._skip("routing missing or unknown, counted as route 'unknown'", route, message)
            key = UNKNOWN_ROUTE
        totals = self._routes.setdefault(key, _RouteTotals())
        totals.messages += 1

        size = _count(message.get("size"))
        if size is None:
            self._skip("size missing or not a byte count", message.get("size"), message)
        else:
            totals.size += size
            totals.size_sum += size
            totals.size_counts[bisect_left(SIZE_BUCKETS, size)] += 1

        attempts = _count(message.get("attempts"))
        if attempts is None:
            self._skip("attempts missing or not a count", message.get("attempts"), message)
        else:
            totals.attempts += attempts
            totals.max_attempts = max(totals.max_attempts, attempts)

        created = parse_mimecast_date(message.get("created"))
        if created is None:
            self._skip("created missing or not a date", message.get("created"), message)
        else:
            if totals.oldest is None or created < totals.oldest:
                totals.oldest = created
            # A message "from the future" (clock skew) is as young as can be.
            age = max(0.0, self.now - created)
            totals.age_sum += age
            totals.age_counts[bisect_left(AGE_BUCKETS, age)] += 1

    def _skip(self, why: str, value: Any, message: dict | None = None) -> None:
        if log.isEnabledFor(logging.DEBUG):
            message_id = message.get("id") if message else None
            log.debug(
                f"bad message field: {why}",
                extra={
                    **self._context,
                    "value": repr(value)[:100],
                    "message_id": message_id if isinstance(message_id, str) else None,
                },
            )

    def snapshot(self) -> QueueSnapshot:
        return QueueSnapshot(
            taken_at=self.now,
            routes=MappingProxyType(
                {route: totals.freeze() for route, totals in self._routes.items()}
            ),
        )
