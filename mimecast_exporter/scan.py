"""One poll of one (account, queue): read what the request budget allows, count the rest.

Requests ask for the oldest messages first (``sortOrder: ascending``, by
``sortBy: createTime``; :mod:`mimecast_exporter.mimecast.dialect`). A
queue that fits the budget is read completely, page by page, and every
figure comes from the messages themselves. A queue too large for the budget
(``meta.pagination.totalCount`` says how large) is not walked: after the
first page, the exporter asks

- for each route, one message (``pageSize`` 1, ``filterBy: [{"route": R}]``):
  the answer's ``totalCount`` is the route's count, its message the route's
  oldest;
- once more for the whole queue (``pageSize`` 1): its ``totalCount`` and the
  first page's tell how much the queue moved during the poll.

Nothing the server may have ignored is trusted. Counts are served only when
every answer carried a ``totalCount``, each route's message is on that route,
the route counts add up to the queue's total (allowing for what moved), and
they hold the messages read: the window only loses messages and every loss
shows in ``totalCount``, so no more can have been read than the first page's
``totalCount``, nor gone of a route than its fall.
Oldest ages of routes the scan did not see in full are served only when the
pages read were in ascending date order, and the route requests were too (a
route both read and requested must give the same oldest message). A figure in
doubt is left out, never guessed, and a warning says why, once per account and
reason.

At default settings a poll makes at most 15 find requests (``poll.max_pages``):
up to 10 pages of 100 messages, or 1 page, 4 route counts and 1 total.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from mimecast_exporter.aggregate import Prefix, QueueAggregator
from mimecast_exporter.config import PollConfig
from mimecast_exporter.dates import parse_mimecast_date
from mimecast_exporter.mimecast.budget import RequestBudget
from mimecast_exporter.mimecast.client import MimecastClient, Query
from mimecast_exporter.mimecast.errors import PollError
from mimecast_exporter.mimecast.filters import requested_routes
from mimecast_exporter.mimecast.pages import Message, Page
from mimecast_exporter.snapshot import ROUTES, UNKNOWN_ROUTE, QueueSnapshot, RouteStats, route_key

log = logging.getLogger(__name__)

# How far the route counts may exceed the queue's total, beyond what the total
# itself moved during the poll, as a fraction of the total: messages that came
# and went between two requests. A server that ignores filterBy answers the
# whole queue for every route, which is several times the total.
ROUTE_SUM_SLACK = 0.1


class WarnOnce:
    """Warnings said once per account and reason; shared by an account's queues."""

    def __init__(self) -> None:
        self._said: set[str] = set()
        self._lock = threading.Lock()

    def warn(self, reason: str, message: str, context: Mapping[str, Any]) -> None:
        with self._lock:
            first = reason not in self._said
            self._said.add(reason)
        level = logging.WARNING if first else logging.DEBUG
        log.log(level, message, extra={**context, "doubt": reason})


@dataclass(frozen=True)
class _Counts:
    routes: Mapping[str, int]  # every route in ROUTES
    unknown: int | None  # messages with no known route, when that is exact


class QueueScan:
    """Runs polls of one (account, queue) with one client."""

    def __init__(
        self,
        client: MimecastClient,
        poll: PollConfig,
        warnings: WarnOnce,
        context: Mapping[str, str],
    ) -> None:
        self.client = client
        self.poll = poll
        self.warnings = warnings
        self.context = dict(context)
        self.routes = requested_routes(client.account.filter_by)
        self.requests = 0  # find requests made by the latest poll, for the log

    def run(self, queue: str, now: float, deadline: float) -> QueueSnapshot:
        """One poll; raises PollError when it fails (and then publishes nothing)."""
        budget = RequestBudget(self.poll.max_pages)
        start, end = self.client.window()
        account = self.client.account
        query = Query(queue, start, end, self.poll.page_size)
        try:
            before: _Walk | None = None  # the previous walk of this poll
            for rereads_left in range(MAX_REREADS, -1, -1):
                aggregator = QueueAggregator(
                    now,
                    self.context,
                    top_domains=account.top_domains,
                    details=account.expose_message_details,
                    retry_overdue_after=self.poll.retry_overdue_after,
                )
                walk = self._scan(query, aggregator, budget, deadline)
                if aggregator.fell:  # sortOrder not applied: spelled otherwise from now on
                    self.client.sort_order.ignored(dict(self.context))
                if walk.exact:
                    return aggregator.snapshot()
                # Without totalCount: exact when two reads found the same messages.
                if _same_read(walk, before):
                    return aggregator.snapshot()
                before = walk
                if walk.unreadable or not (
                    walk.complete and rereads_left and self._can_reread(walk, budget)
                ):
                    break  # entries that are not messages would be there again
            if walk.unreadable:
                self._say_unreadable(walk)
            elif walk.complete and (walk.moved or not walk.counted):
                self._say_moved(walk, aggregator, rereads_left)
            return self._count(queue, start, end, aggregator, walk, budget, deadline)
        finally:
            self.requests = budget.used

    # -- reading pages --------------------------------------------------------

    def _scan(
        self, query: Query, aggregator: QueueAggregator, budget: RequestBudget, deadline: float
    ) -> _Walk:
        """Read pages while the queue can be read to the end within the budget."""
        # Digests, not the tokens: what a poll remembers stays small whatever comes back.
        seen_tokens: set[bytes] = set()
        sizes: list[int | None] = []  # each page's totalCount, in order
        total: int | None = None
        ids = 0  # the set of messages read, as a sum of hashes of their ids
        unreadable = 0  # entries of messages[] that were not objects
        number = 0
        while True:
            number += 1
            # A page's retries leave the count requests their share (before the
            # first page, as if the queue were too large to read).
            keep = len(self.routes) + 1
            if number > 1:
                keep = self._reserve(total, aggregator.ascending)
            share = budget.keeping(keep)
            try:
                page = self.client.find(query, budget=share, deadline=deadline, number=number)
            except PollError as error:
                if number == 1 or not _spent(error, share):
                    raise
                # Retries took what reading on needed: count what was not read.
                self._say_spent("a page", error)
                return _Walk(False, number, tuple(sizes), unreadable=unreadable)
            aggregator.add(page.messages)
            unreadable += page.unreadable
            sizes.append(page.total_count)
            if page.total_count is None:  # nothing to count the walk against: remember what
                ids += sum(map(_identity, page.messages))  # it read, for a second walk
            else:
                total = page.total_count
            listed = page.count + page.unreadable
            if not listed or not page.next_token:
                return _Walk(True, number, tuple(sizes), aggregator.scanned, ids, unreadable)
            digest = _digest(page.next_token)
            if digest in seen_tokens:
                raise PollError(
                    "pagination_loop",
                    f"page {number} handed back a page token already followed",
                    request_id=page.request_id,
                )
            seen_tokens.add(digest)
            read = aggregator.scanned + unreadable
            if not self._another_page(budget, total, aggregator.ascending, read, listed):
                return _Walk(False, number, tuple(sizes), unreadable=unreadable)
            query = Query(query.queue, query.start, query.end, query.page_size, page.next_token)

    def _another_page(
        self, budget: RequestBudget, total: int | None, ascending: bool, read: int, page_len: int
    ) -> bool:
        """Whether reading on can finish the queue and still leave the count
        requests; ``read`` entries so far, ``page_len`` in the latest page."""
        left = budget.remaining - self._reserve(total, ascending)
        if left < 1:
            return False
        if total is None:
            return True  # no way to tell: read while the budget allows
        return math.ceil(max(total - read, 1) / page_len) <= left

    def _reserve(self, total: int | None, ascending: bool) -> int:
        """Requests kept for counting: one per route, and the closing total."""
        if total is not None:
            return len(self.routes) + 1
        # Without totalCount, route requests can only tell oldest messages, and
        # only when the server sorts as asked.
        return len(self.routes) if ascending else 0

    def _can_reread(self, walk: _Walk, budget: RequestBudget) -> bool:
        """Whether the budget holds the queue read once more, as many pages as
        before and one more, and still the count requests."""
        return budget.remaining >= walk.pages + 1 + self._reserve(walk.total, True)

    def _say_spent(self, what: str, error: PollError) -> None:
        self.warnings.warn(
            "budget_retries",
            f"retries of {what} spent the rest of the request budget (poll.max_pages="
            f"{self.poll.max_pages}) and it still failed ({error.message}): what was exact "
            "before is served, message counts of what was not read are not",
            {**self.context, **error.log_fields()},
        )

    def _say_unreadable(self, walk: _Walk) -> None:
        self.warnings.warn(
            "unreadable",
            f"Mimecast's answers listed {walk.unreadable} entries in messages[] that are not "
            "message objects: counts and sums that leave them out would not be exact, so "
            "sums, histograms, status, locked, overdue and domain figures are not served for "
            "this poll; counts and oldest ages are where requests exact at an instant give them",
            self.context,
        )

    def _say_moved(self, walk: _Walk, aggregator: QueueAggregator, rereads_left: int) -> None:
        again = "read once more" if walk.counted else "read twice"
        why = (
            f"the queue moved again while it was {again}"
            if rereads_left == 0
            else f"the request budget (poll.max_pages) does not hold it {again}"
        )
        what = (
            "the queue moved while it was read (messages left between pages)"
            if walk.counted
            else "Mimecast's answers carry no totalCount (or not every one does), so a queue "
            "read over several pages is exact only when two reads find the same messages"
        )
        self.warnings.warn(
            "moved",
            f"{what}, and {why}: sums, histograms, status, locked, overdue and domain figures "
            "are not served for this poll; counts and oldest ages are where requests exact at "
            "an instant give them",
            {**self.context, "scanned": aggregator.scanned, "total": walk.total},
        )

    # -- counting what was not read ------------------------------------------------

    def _count(
        self,
        queue: str,
        start: str,
        end: str,
        aggregator: QueueAggregator,
        walk: _Walk,
        budget: RequestBudget,
        deadline: float,
    ) -> QueueSnapshot:
        total = walk.total
        prefix = aggregator.prefix()
        context = {**self.context, "scanned": prefix.scanned, "total": total}
        if not prefix.ascending:
            self.warnings.warn(
                "sort_order",
                "Mimecast did not answer oldest first (sortOrder ignored, or every date "
                "equal): the oldest-message age of queues too large to read is not served",
                context,
            )
        if total is None:
            self.warnings.warn(
                "total_count",
                "Mimecast's answers carry no meta.pagination.totalCount: message counts of "
                "queues too large to read are not served",
                context,
            )
        probes: dict[str, Page] = {}
        closing: Page | None = None
        needed = self._reserve(total, prefix.ascending)
        if needed and budget.remaining < needed:
            self.warnings.warn(
                "budget",
                f"the request budget (poll.max_pages={self.poll.max_pages}, retries included) "
                "ran out before the queue could be counted: message counts are not served; "
                f"poll.max_pages must be at least {len(self.routes) + 2} to count a large queue",
                context,
            )
        elif needed:
            number = 1 + aggregator.scanned // max(self.poll.page_size, 1)
            # Each request's retries may spend only what the ones after it do not
            # need: every count request is made, however many retries come first.
            route: str | None = None
            try:
                for made, route in enumerate(self.routes):
                    number += 1
                    share = budget.keeping(needed - made - 1)
                    probes[route] = self.client.find(
                        Query(queue, start, end, 1, route=route),
                        budget=share,
                        deadline=deadline,
                        number=number,
                    )
                route = None
                if total is not None and all(p.total_count is not None for p in probes.values()):
                    share = budget.keeping(0)
                    closing = self.client.find(
                        Query(queue, start, end, 1),
                        budget=share,
                        deadline=deadline,
                        number=number + 1,
                    )
            except PollError as error:
                if _spent(error, share):
                    self._say_spent("a count request", error)  # counts left out, oldest ages kept
                elif route is not None and error.refused:
                    # The pages were answered, the same request with a route in
                    # filterBy was not (in either shape): the counts need it.
                    self.warnings.warn(
                        "filter_by_refused",
                        f"Mimecast refused the request for route {route!r} ({error.message}): "
                        "per-route counts and the oldest ages they give are not served",
                        {**context, **error.log_fields()},
                    )
                else:
                    raise
                probes, closing = {}, None
        counts = self._route_counts(total, closing, probes, prefix.seen, walk.left, context)
        return QueueSnapshot(
            taken_at=aggregator.now,
            routes=MappingProxyType(
                self._route_stats(prefix, probes, counts, garbled=walk.unreadable > 0)
            ),
            complete=False,
            scanned=prefix.scanned,
            # What was read is the oldest part of the queue only when it came oldest
            # first, and held nothing but messages.
            oldest_messages=(
                aggregator.oldest_messages() if prefix.ascending and not walk.unreadable else None
            ),
        )

    def _route_counts(
        self,
        total: int | None,
        closing: Page | None,
        probes: Mapping[str, Page],
        read: Mapping[str, int],
        left: int | None,
        context: Mapping[str, Any],
    ) -> _Counts | None:
        """Each route's count from its request, unless the answers contradict
        each other or the pages read: ``read`` messages per route, of which at
        most ``left`` left while the pages were read (None: not known)."""
        if total is None or closing is None or closing.total_count is None:
            return None
        for route, probe in probes.items():
            count = probe.total_count
            first = probe.messages[0] if probe.messages else None
            if count is None:
                return None
            if (count == 0) != (first is None) or (first and route_key(first.routing) != route):
                self._filter_not_applied(
                    f"Mimecast answered a request for route {route!r} with a message of another "
                    "route (filterBy ignored?)",
                    {**context, "route": route},
                )
                return None
        routed = sum(p.total_count or 0 for p in probes.values())
        low, high = sorted((total, closing.total_count))
        # The window only loses messages (mimecast_exporter.mimecast.client
        # window), and every loss shows in totalCount. So every message read was
        # in the queue when the first page was answered: more read than that
        # page's totalCount is not the whole query's size (a server sending the
        # page's own length, say).
        read_in_all = sum(read.values())
        if left is not None and read_in_all > total + left:
            self.warnings.warn(
                "total_count_low",
                f"Mimecast's totalCount ({total + left} at the first page) is below the "
                f"{read_in_all} messages read: it is not the size of the whole query, "
                "so message counts of queues too large to read are not served",
                context,
            )
            return None
        # And of the messages read, at most the fall of totalCount from the first
        # page to the closing request are gone: a route counted lower than its
        # messages read less those was not counted as asked (a route matched in
        # one case only: "INBOUND" is not "inbound").
        if left is not None and closing.total_count <= total:
            gone = left + total - closing.total_count
            for route, probe in probes.items():
                if (probe.total_count or 0) + gone < read.get(route, 0):
                    self._filter_not_applied(
                        f"Mimecast counted {probe.total_count} messages of route {route!r}, "
                        f"yet the pages read hold {read[route]} and at most {gone} left the "
                        "queue meanwhile (filterBy not applied as asked?)",
                        {**context, "route": route},
                    )
                    return None
        if routed > high + (high - low) + int(high * ROUTE_SUM_SLACK):
            self._filter_not_applied(
                f"the route counts add up to {routed}, more than the queue's {high} messages "
                "(filterBy ignored?)",
                context,
            )
            return None
        # Exact only when the queue did not move while it was counted.
        unknown = high - routed if low == high and routed <= high else None
        return _Counts(
            MappingProxyType(
                {r: (probes[r].total_count or 0) if r in probes else 0 for r in ROUTES}
            ),
            unknown,
        )

    def _filter_not_applied(self, why: str, context: Mapping[str, Any]) -> None:
        """The route counts were not counted as asked: none is served, this poll's
        warning says why, and the next poll asks in the other filterBy shape."""
        self.client.route_filter.ignored(dict(context))
        self.warnings.warn(
            "filter_by",
            f"{why}: per-route counts of queues too large to read are not served",
            context,
        )

    def _route_stats(
        self,
        prefix: Prefix,
        probes: Mapping[str, Page],
        counts: _Counts | None,
        garbled: bool = False,
    ) -> dict[str, RouteStats]:
        """``garbled``: the pages read listed entries that are not messages, any
        of which may be a route's oldest: a route's oldest read stands only
        where its own request answers the same."""
        stats: dict[str, RouteStats] = {}
        ordered = _probes_ordered(prefix, probes)
        for route in ROUTES:
            count = counts.routes[route] if counts is not None else None
            if count == 0:  # routes the user filtered out are 0 too, as in a full scan
                stats[route] = RouteStats(0, None, True)
            elif route not in self.routes:  # filtered out, but the counts are in doubt
                stats[route] = RouteStats(None, None, False)
            else:
                probe = probes.get(route) if ordered else None
                if garbled and (probe is None or not probe.messages):
                    oldest = None  # nothing confirms the oldest read (ordered: it agrees)
                else:
                    oldest = self._oldest(route, prefix, probe)
                stats[route] = RouteStats(count, oldest, oldest is not None)
        unknown = counts.unknown if counts is not None else None
        # As in a full scan, route "unknown" shows once such a message is seen.
        if unknown == 0 and UNKNOWN_ROUTE in prefix.seen:
            stats[UNKNOWN_ROUTE] = RouteStats(0, None, True)
        elif unknown or UNKNOWN_ROUTE in prefix.seen:
            trusted = prefix.ascending and not garbled  # no request asks for this route
            oldest = prefix.oldest.get(UNKNOWN_ROUTE) if trusted else None
            stats[UNKNOWN_ROUTE] = RouteStats(unknown, oldest, oldest is not None)
        return stats

    @staticmethod
    def _oldest(route: str, prefix: Prefix, probe: Page | None) -> float | None:
        """The route's oldest date when it is certain, else None."""
        if not prefix.ascending or route in prefix.undated:
            return None
        if route in prefix.oldest:  # the pages read hold the oldest messages of the queue
            return prefix.oldest[route]
        first = probe.messages[0] if probe is not None and probe.messages else None
        if first is None or route_key(first.routing) != route:
            return None
        created = parse_mimecast_date(first.created)
        # Not among the oldest messages read, so not older than the newest of them.
        if created is None or (prefix.newest is not None and created < prefix.newest):
            return None
        return created


# A walk that saw the queue move is read once more, if the budget holds it:
# movement between two reads of seconds is common, in each of two, rare. Past
# that, the counts (exact at an instant) are served and the sums are not.
MAX_REREADS = 1


@dataclass(frozen=True)
class _Walk:
    """How reading the pages went."""

    complete: bool  # read to the last page
    pages: int
    sizes: tuple[int | None, ...]  # each page's totalCount, in order
    read: int = 0  # messages read, when complete
    ids: int = 0  # without totalCount: the messages read, as a sum of hashes of their ids
    unreadable: int = 0  # entries of messages[] that were not objects: no count omitting
    # them is exact, and reading again would find them again

    @property
    def total(self) -> int | None:
        """The latest totalCount."""
        return next((size for size in reversed(self.sizes) if size is not None), None)

    @property
    def counted(self) -> bool:
        """Complete, and every page carried a totalCount: movement shows in them."""
        return self.complete and None not in self.sizes

    @property
    def hashed(self) -> bool:
        """Complete, no page carried a totalCount, every entry a message: ids
        covers every entry read."""
        return self.complete and set(self.sizes) == {None} and not self.unreadable

    @property
    def moved(self) -> bool:
        """Complete and counted, but the queue moved under it (its sums are no
        one instant's). Pages are offsets into a list that shifts: its pages
        disagree on its size, or it read another number of entries than the
        last page says the queue holds."""
        return self.counted and (
            len(set(self.sizes)) > 1 or self.total != self.read + self.unreadable
        )

    @property
    def left(self) -> int | None:
        """How many messages left the queue while its pages were read, at most:
        the fall of their totalCount, as the window only loses messages. None
        when not known: a page without one, or a total that rose (then as many
        more as arrived may have left)."""
        known = [size for size in self.sizes if size is not None]
        if not known or len(known) < len(self.sizes):
            return None
        if any(later > earlier for earlier, later in itertools.pairwise(known)):
            return None
        return known[0] - known[-1]

    @property
    def exact(self) -> bool:
        """Its figures are one instant's: read whole, every entry a message, and
        its size known and unmoved, or all of it one answer."""
        read_whole = self.complete and not (self.moved or self.unreadable)
        return read_whole and (self.counted or self.pages == 1)


def _same_read(walk: _Walk, before: _Walk | None) -> bool:
    # Both reads hashed every message: a page with a totalCount (some servers
    # send it on some pages only) is not hashed, and could differ unseen.
    return (
        walk.hashed
        and before is not None
        and before.hashed
        and (walk.read, walk.ids) == (before.read, before.ids)
    )


def _identity(message: Message) -> int:
    """A hash of which message this is: its id, else its fields (a message
    without an id is told apart as well as the answer allows)."""
    key = message.id
    if type(key) is not str:
        key = repr((key, message.routing, message.created, message.size, message.attempts))
    return hash(key) & 0xFFFFFFFFFFFFFFFF


def _spent(error: PollError, share: RequestBudget) -> bool:
    """Whether a request failed only because its retries ran out of budget."""
    return error.retryable and share.remaining <= 0


def _digest(token: str) -> bytes:
    return hashlib.blake2b(token.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _probes_ordered(prefix: Prefix, probes: Mapping[str, Page]) -> bool:
    """Whether the one-message route requests were answered oldest first too.

    The pages read show that the server sorts its pages; not that it sorts a
    page of one filtered message. A route both read and requested tells: its
    requested message must be the oldest one read. Without such a route, or
    when one disagrees (also when that message left the queue meanwhile), no
    route's oldest is taken from its request.
    """
    checked = False
    for route, probe in probes.items():
        if probe.unreadable:  # its first message may not be its first entry
            return False
        if route in prefix.oldest and probe.messages:
            if parse_mimecast_date(probe.messages[0].created) != prefix.oldest[route]:
                return False
            checked = True
    return checked
