"""What one poll of one (account, queue) found: the model every reader shares.

The aggregator and the scan build snapshots; the store keeps the latest of
each queue; the collector, the status page and the dashboard read them. They
are immutable, so a scrape reads one without a lock while a poll builds the
next.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client.utils import floatToGoString

# Mimecast's routes: the values of a message's ``routing``, and of filterBy's route.
ROUTES: tuple[str, ...] = ("inbound", "outbound", "internal", "external")
UNKNOWN_ROUTE = "unknown"  # a message whose routing is missing or none of ROUTES


def route_key(route: Any) -> str:
    """One of ROUTES (any case, spaces around), else UNKNOWN_ROUTE."""
    key = route.strip().lower() if isinstance(route, str) else None
    return key if key in ROUTES else UNKNOWN_ROUTE


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
            pairs.append((floatToGoString(bound), running))  # type: ignore[no-untyped-call]
        return pairs

    def __add__(self, other: Histogram) -> Histogram:
        """Both together (same bounds): a queue's histogram from its routes'."""
        counts = tuple(a + b for a, b in zip(self.counts, other.counts, strict=True))
        return Histogram(self.bounds, counts, self.total + other.total)


@dataclass(frozen=True)
class RouteSums:
    """Sums over every message of a route: only ever taken from a complete scan."""

    size_bytes: int
    attempts: int
    max_attempts: int
    age: Histogram  # at the time of the poll
    size: Histogram
    by_status: tuple[int, ...] = ()  # messages per mimecast_exporter.status.STATUSES, in that order
    locked: int | None = None  # None: a message did not say whether it is locked
    retry_overdue: int | None = None  # None: a message did not say when its next try is
    # With top_domains K: the K recipient domains with the most messages, then
    # "other"; (domain, messages, oldest creation time or None when not certain).
    # None: not asked for, or too many distinct domains to count exactly.
    by_domain: tuple[tuple[str, int, float | None], ...] | None = None


@dataclass(frozen=True)
class RouteStats:
    messages: int | None  # None: not known exactly this poll
    oldest_created: float | None  # epoch seconds; None when unknown or the route is empty
    oldest_known: bool  # the oldest age is exact (0 for an empty route)
    sums: RouteSums | None = None  # None unless the scan saw the whole queue


@dataclass(frozen=True)
class OldMessage:
    """One of the oldest messages of a queue, as the status page lists it.

    Without ``expose_message_details`` only the first four lines of fields are
    filled: no subject, no address, no info text (it can quote addresses).
    """

    created: float  # Unix seconds
    route: str
    status: str  # mimecast_exporter.status class of its info
    attempts: int | None
    domain: str | None  # of its first recipient with a valid domain
    recipients: int  # how many addresses its `to` lists
    next_attempt: float | None
    locked_until: float | None
    subject: str | None = None
    sender: str | None = None
    to: tuple[str, ...] = ()
    info: str | None = None


@dataclass(frozen=True)
class QueueSnapshot:
    """What one successful poll of one (account, queue) found."""

    taken_at: float  # epoch seconds, when the poll started
    routes: Mapping[str, RouteStats]  # the four ROUTES, plus "unknown" when seen
    complete: bool = True  # the scan read every message of the queue
    scanned: int = 0  # messages read by the scan
    # The oldest messages, oldest first (at most OLDEST_MESSAGES); None when
    # not certain (a scan that stopped early on a server not sorting as asked).
    oldest_messages: tuple[OldMessage, ...] | None = None

    @property
    def messages(self) -> int | None:
        """Messages in the queue; None when a route's count is not known."""
        counts = [stats.messages for stats in self.routes.values()]
        return None if None in counts else sum(c for c in counts if c is not None)
