"""Messages, page by page, into an immutable per-route summary of one queue.

Only running totals are kept, never the messages, so a queue of a million
messages costs as much memory as an empty one. Upstream data is not trusted:
a message with a missing, null or malformed field still counts, the bad value
is skipped, and a debug log says why.

A figure is exact or absent. The sums (sizes, attempts, histograms) are only
published from a scan that saw the whole queue (:meth:`QueueAggregator.snapshot`);
a route's oldest age only when every message of the route had a usable date.
For a scan that stopped early, :mod:`mimecast_exporter.scan` builds the snapshot from
what this aggregator knows about the part it saw (:class:`Prefix`).
"""

from __future__ import annotations

import itertools
import logging
import math
from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from mimecast_exporter import recipients
from mimecast_exporter.dates import parse_mimecast_date, parse_mimecast_datetime
from mimecast_exporter.logs import scrub_and_cut
from mimecast_exporter.mimecast.pages import Message
from mimecast_exporter.snapshot import (
    ROUTES,
    UNKNOWN_ROUTE,
    Histogram,
    OldMessage,
    QueueSnapshot,
    RouteStats,
    RouteSums,
    route_key,
)
from mimecast_exporter.status import INDEX_CACHE, STATUSES, status_index

log = logging.getLogger(__name__)

# Upper bounds (seconds) for message age: a healthy queue holds messages for
# minutes; a destination that is down makes them hours to days old.
AGE_BUCKETS: tuple[float, ...] = (
    60,  # 1 minute
    300,
    900,
    3600,  # 1 hour: the mixin's oldest-message threshold
    14400,
    86400,  # 1 day
    259200,
    604800,  # 7 days: the default lookback
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


_NOTHING: Any = object()  # matches no date text
# A retry whose time passed longer ago than this is overdue: retries are not
# happening (mimecast_queue_retry_overdue_messages); poll.retry_overdue_after.
RETRY_OVERDUE_SECONDS = 900.0
# The oldest messages a snapshot keeps, for the status page.
OLDEST_MESSAGES = 10
# Distinct recipient domains counted per queue (top_domains). More cannot be
# ranked exactly within bounded memory: the domain series are then left out.
MAX_DOMAINS = 10_000
OTHER_DOMAIN = "other"  # never a domain: those have a dot (mimecast_exporter.recipients)
NO_DOMAIN = ""  # a message without a valid recipient domain: counted in "other"
# (account, queue) already warned of too many domains: once per process, not per poll.
_WARNED_DOMAINS: set[tuple[object, ...]] = set()


def _by_age(entry: tuple[float, int, Any]) -> tuple[float, int]:
    """Oldest first; among equal dates, the first seen."""
    return entry[0], entry[1]


class _RouteTotals:
    __slots__ = (
        "age_counts",
        "age_sum",
        "attempts",
        "by_status",
        "domains",
        "lock_unknown",
        "locked",
        "max_attempts",
        "oldest",
        "overdue",
        "retry_unknown",
        "size",
        "size_counts",
        "undated",
    )

    def __init__(self) -> None:
        self.size = 0
        self.attempts = 0
        self.max_attempts = 0
        self.oldest = math.inf  # inf: no dated message yet
        self.undated = 0  # messages without a usable date: the oldest is then unknown
        self.age_counts = [0] * (len(AGE_BUCKETS) + 1)
        self.age_sum = 0.0
        self.size_counts = [0] * (len(SIZE_BUCKETS) + 1)
        self.by_status = [0] * len(STATUSES)
        self.locked = 0  # lockedUntil after the poll's time
        self.overdue = 0  # nextAttempt passed by more than retry_overdue_after
        self.lock_unknown = 0  # lockedUntil absent or not a date: locked or not, unknown
        self.retry_unknown = 0  # nextAttempt absent or not a date
        self.domains: dict[str, list[float]] = {}  # domain -> [messages, oldest created]

    @property
    def messages(self) -> int:
        return sum(self.by_status)  # every message has exactly one status

    @property
    def oldest_created(self) -> float | None:
        return None if self.oldest == math.inf else self.oldest

    @property
    def oldest_known(self) -> bool:
        return self.messages == 0 or (self.undated == 0 and self.oldest != math.inf)

    def freeze(self, top_domains: int) -> RouteStats:
        return RouteStats(
            messages=self.messages,
            oldest_created=self.oldest_created,
            oldest_known=self.oldest_known,
            sums=RouteSums(
                size_bytes=self.size,
                attempts=self.attempts,
                max_attempts=self.max_attempts,
                age=Histogram(AGE_BUCKETS, tuple(self.age_counts), self.age_sum),
                size=Histogram(SIZE_BUCKETS, tuple(self.size_counts), float(self.size)),
                by_status=tuple(self.by_status),
                locked=None if self.lock_unknown else self.locked,
                retry_overdue=None if self.retry_unknown else self.overdue,
                by_domain=self._top_domains(top_domains) if top_domains else None,
            ),
        )

    def _top_domains(self, k: int) -> tuple[tuple[str, int, float | None], ...]:
        """The k domains with the most messages (ties by name), then "other": the
        rest, and the messages without a valid recipient domain."""
        dated = self.undated == 0  # else no domain's oldest is certain

        def oldest(created: float) -> float | None:
            return created if dated and created != math.inf else None

        named = [item for item in self.domains.items() if item[0] != NO_DOMAIN]
        named.sort(key=lambda item: (-item[1][0], item[0]))
        rest = [entry for _, entry in named[k:]]
        if NO_DOMAIN in self.domains:
            rest.append(self.domains[NO_DOMAIN])
        top = [(domain, int(count), oldest(first)) for domain, (count, first) in named[:k]]
        other = int(sum(count for count, _ in rest))
        top.append((OTHER_DOMAIN, other, oldest(min((f for _, f in rest), default=math.inf))))
        return tuple(top)


@dataclass(frozen=True)
class Prefix:
    """What a scan that stopped early saw: the first ``scanned`` messages.

    ``ascending`` is True when the dates seen rose at least once and never
    fell: only then is the part seen the oldest part of the queue, so that a
    route's oldest message, if the route was seen, is among them.
    """

    scanned: int
    ascending: bool
    newest: float | None  # the latest date seen
    seen: Mapping[str, int]  # messages read per route, for routes with at least one
    oldest: Mapping[str, float]  # per route seen with every message dated
    # Routes seen with a message without a usable date: it could be the route's
    # oldest, so the route has no oldest age (as when the queue is read whole).
    undated: frozenset[str] = frozenset()


class QueueAggregator:
    """Feed each page's messages to :meth:`add`, then take the :meth:`snapshot`."""

    def __init__(
        self,
        now: float,
        context: Mapping[str, str] | None = None,
        *,
        top_domains: int = 0,
        details: bool = False,
        retry_overdue_after: float = RETRY_OVERDUE_SECONDS,
    ) -> None:
        """``top_domains``: rank recipient domains (K, 0 for off); ``details``: keep
        subjects, addresses and info texts of the oldest messages."""
        self.now = now
        self._context = dict(context or {})
        self.top_domains = top_domains
        self.details = details
        self.retry_overdue_after = retry_overdue_after
        self._distinct_domains: set[str] = set()
        self._domains_dropped = False
        # (created, order seen, OldMessage): the oldest so far, at most OLDEST_MESSAGES
        self._oldest: list[tuple[float, int, OldMessage]] = []
        self._cut = math.inf  # a message older than this is among the oldest
        self._order = itertools.count()  # ties between equal dates: the first seen wins
        self._routes = {route: _RouteTotals() for route in ROUTES}
        self.scanned = 0
        # Order evidence: the latest date so far, and whether a date ever fell below it.
        self._newest = -math.inf
        self._falls = False

    def add(self, messages: list[Message]) -> None:
        """Count one page of messages, however malformed. Written for speed:
        this runs once per message."""
        routes, now, max_count = self._routes, self.now, _MAX_COUNT
        size_bounds, age_bounds = SIZE_BUCKETS, AGE_BUCKETS
        parse_datetime = parse_mimecast_datetime
        newest, falls = self._newest, self._falls
        status_cache = INDEX_CACHE
        now_dt = datetime.fromtimestamp(now, UTC)
        overdue_dt = datetime.fromtimestamp(now - self.retry_overdue_after, UTC)
        last_text: Any = _NOTHING
        created: float | None = None
        age, bucket = 0.0, 0
        cut = self._cut
        candidates: list[tuple[float, int, Message]] = []
        for message in messages:
            routing = message.routing  # any JSON value: an object or array is not hashable
            totals = routes.get(routing) if type(routing) is str else None
            if totals is None:
                totals = self._totals_for(message)

            info = message.info
            status = status_cache.get(info) if type(info) is str else None
            if status is None:
                status = status_index(info)
            totals.by_status[status] += 1

            # Retry state, as the console's Locked / Delayed: null means none;
            # absent (UNSET) or not a date, unknown.
            # Compared as datetimes: no epoch seconds needed.
            locked_until = message.locked_until
            if locked_until is not None:
                until = parse_datetime(locked_until)
                if until is None:
                    totals.lock_unknown += 1
                elif until > now_dt:
                    totals.locked += 1
            next_attempt = message.next_attempt
            if next_attempt is not None:
                when = parse_datetime(next_attempt)
                if when is None:
                    totals.retry_unknown += 1
                elif when < overdue_dt:
                    totals.overdue += 1

            size = message.size
            if type(size) is not int or not 0 <= size <= max_count:
                size = self._slow_count("size", message)
            if size is not None:
                totals.size += size
                totals.size_counts[bisect_left(size_bounds, size)] += 1

            attempts = message.attempts
            if type(attempts) is not int or not 0 <= attempts <= max_count:
                attempts = self._slow_count("attempts", message)
            if attempts is not None:
                totals.attempts += attempts
                if attempts > totals.max_attempts:
                    totals.max_attempts = attempts

            # Neighbours often share a second: then the date, its age and its
            # bucket are those just computed.
            text = message.created
            if text != last_text:
                moment = parse_datetime(text)
                created = None if moment is None else moment.timestamp()
                if created is not None:
                    # A message "from the future" (clock skew) is as young as can be.
                    age = now - created if created < now else 0.0
                    bucket = bisect_left(age_bounds, age)
                last_text = text
            if created is None:
                totals.undated += 1
                self._skip("created missing or not a date", text)
                continue
            if created < totals.oldest:
                totals.oldest = created
            if created < cut:  # among the oldest so far: kept aside, a few at a time
                candidates.append((created, next(self._order), message))
                if len(candidates) >= 2 * OLDEST_MESSAGES:
                    candidates.sort(key=_by_age)
                    del candidates[OLDEST_MESSAGES:]
                    cut = min(cut, candidates[-1][0])
            if created >= newest:
                newest = created
            else:
                falls = True  # not in ascending order
            totals.age_sum += age
            totals.age_counts[bucket] += 1
        self._newest, self._falls = newest, falls
        if candidates:
            self._keep_oldest(candidates)
        if self.top_domains and not self._domains_dropped:
            self._count_domains(messages)
        self.scanned += len(messages)

    def _keep_oldest(self, candidates: list[tuple[float, int, Message]]) -> None:
        """The OLDEST_MESSAGES oldest of those kept and this page's candidates;
        only the new ones among them are described (a few per page at most)."""
        pool: list[tuple[float, int, Any]] = [*self._oldest, *candidates]
        pool.sort(key=_by_age)
        self._oldest = [
            (created, seen, item if isinstance(item, OldMessage) else self._describe(item, created))
            for created, seen, item in pool[:OLDEST_MESSAGES]
        ]
        if len(self._oldest) == OLDEST_MESSAGES:
            self._cut = self._oldest[-1][0]

    def _describe(self, message: Message, created: float) -> OldMessage:
        to = recipients.addresses(message.to)
        domain = next((d for d in map(recipients.domain_of, to) if d is not None), None)
        detail: dict[str, Any] = {}
        if self.details:
            detail = {
                "subject": recipients.text(message.subject, recipients.SUBJECT_CHARS),
                "sender": recipients.sender(message.from_env),
                "to": tuple(to[:5]),
                "info": recipients.text(message.info, recipients.INFO_CHARS),
            }
        return OldMessage(
            created=created,
            route=route_key(message.routing),
            status=STATUSES[status_index(message.info)],
            attempts=_count(message.attempts),
            domain=domain,
            recipients=len(to),
            next_attempt=parse_mimecast_date(message.next_attempt),
            locked_until=parse_mimecast_date(message.locked_until),
            **detail,
        )

    def _count_domains(self, messages: list[Message]) -> None:
        """Count each message under each of its recipient domains (top_domains):
        a pass of its own, paid for only when asked for."""
        for message in messages:
            totals = self._totals_for(message)
            try:
                domains = recipients.domains(message.to)
            except recipients.Unknown as unknown:  # no ranking can be exact
                self._drop_domains(unknown.reason, unknown.why)
                return
            created = parse_mimecast_date(message.created)
            for domain in domains or {NO_DOMAIN}:
                entry = totals.domains.get(domain)
                if entry is None:
                    self._distinct_domains.add(domain)  # the same domain on two routes is one
                    if len(self._distinct_domains) > MAX_DOMAINS:
                        self._drop_domains(
                            "too_many",
                            f"more than {MAX_DOMAINS} distinct recipient domains in the "
                            "queue (they could not be ranked exactly)",
                        )
                        return
                    entry = totals.domains[domain] = [0, math.inf]
                entry[0] += 1
                if created is not None and created < entry[1]:
                    entry[1] = created

    def _drop_domains(self, reason: str, why: str) -> None:
        """Serve no domain series for this poll (they could not be exact), saying
        why once per (account, queue) and reason for the life of the process."""
        self._domains_dropped = True
        self._distinct_domains.clear()
        for totals in self._routes.values():
            totals.domains.clear()
        key = (reason, *sorted(self._context.items()))
        if key not in _WARNED_DOMAINS:
            _WARNED_DOMAINS.add(key)
            log.warning(
                f"{why}: mimecast_queue_messages_by_domain is not served; said once",
                extra=self._context,
            )

    def _totals_for(self, message: Message) -> _RouteTotals:
        routing = message.routing
        totals = self._routes.get(routing) if type(routing) is str else None
        if totals is not None:
            return totals
        key = route_key(routing)
        if key == UNKNOWN_ROUTE:
            self._skip("routing missing or unknown, counted as route 'unknown'", message.routing)
        return self._routes.setdefault(key, _RouteTotals())

    def _slow_count(self, field: str, message: Message) -> int | None:
        value = getattr(message, field)
        count = _count(value)
        if count is None:
            self._skip(f"{field} missing or not a count", value)
        return count

    def _skip(self, why: str, value: Any) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                f"bad message field: {why}",
                extra={**self._context, "value": scrub_and_cut(repr(value), 100)},
            )

    @property
    def fell(self) -> bool:
        """A date fell below an earlier one: the messages came not oldest first."""
        return self._falls

    @property
    def ascending(self) -> bool:
        """The dates seen rose at least once and never fell."""
        first = min(totals.oldest for totals in self._routes.values())
        return not self._falls and self._newest > first

    def prefix(self) -> Prefix:
        return Prefix(
            scanned=self.scanned,
            ascending=self.ascending,
            newest=None if self._newest == -math.inf else self._newest,
            seen=MappingProxyType(
                {route: t.messages for route, t in self._routes.items() if t.messages}
            ),
            oldest=MappingProxyType(
                {
                    route: totals.oldest
                    for route, totals in self._routes.items()
                    if totals.messages and totals.oldest_known
                }
            ),
            undated=frozenset(route for route, totals in self._routes.items() if totals.undated),
        )

    def snapshot(self) -> QueueSnapshot:
        """The snapshot of a scan that read the whole queue: every figure exact."""
        return QueueSnapshot(
            taken_at=self.now,
            routes=MappingProxyType(
                {
                    route: totals.freeze(0 if self._domains_dropped else self.top_domains)
                    for route, totals in self._routes.items()
                }
            ),
            complete=True,
            scanned=self.scanned,
            oldest_messages=self.oldest_messages(),
        )

    def oldest_messages(self) -> tuple[OldMessage, ...]:
        """The oldest messages seen so far, oldest first."""
        return tuple(item for _, _, item in self._oldest)
