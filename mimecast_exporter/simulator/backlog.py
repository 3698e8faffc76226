"""A huge, stuck queue: a million messages that are computed, never stored.

Message ``i`` of a backlog of ``n`` was created ``span`` seconds before the
simulator started plus ``i * span / n``: index order is date order, oldest
first. Its route comes from a seeded draw (mostly outbound: a partner that
refuses mail), everything else from the index. Only the route of each message
(one byte) and, per route, the indexes of its messages are kept, so a million
messages take a few megabytes and start in about a second.

A page is rendered when asked for: :meth:`Backlog.select` returns a lazy
sequence that the paging code slices like a list.
"""

from __future__ import annotations

import random
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from typing import Any

from mimecast_exporter.simulator.clock import format_mc_date

ROUTES: tuple[str, ...] = ("inbound", "outbound", "internal", "external")
# Share of each route in the backlog: the stuck partner is on the outbound route.
ROUTE_WEIGHTS: tuple[float, ...] = (0.15, 0.7, 0.1, 0.05)
REFUSING_DOMAIN = "partner.example"
REFUSAL = "Remote server refused: 421 4.7.0 Try again later"
# Ages at which attempts 1..4 happen (5, 10, 20, 40 minutes apart), then one an
# hour, as model.backoff() schedules them.
_FIRST_ATTEMPTS = (300.0, 900.0, 2100.0, 4500.0)
_MAX_ATTEMPTS = 30
_LOCK_SPAN = 90 * 60.0


def attempts_after(age: float) -> int:
    """Delivery attempts a message of ``age`` seconds has been through (at most 30)."""
    if age < _FIRST_ATTEMPTS[-1]:
        return bisect_right(_FIRST_ATTEMPTS, age)
    hourly = int((age - _FIRST_ATTEMPTS[-1]) // 3600.0)
    return min(len(_FIRST_ATTEMPTS) + hourly, _MAX_ATTEMPTS)


class Backlog:
    """``size`` messages created over ``span`` seconds before model time ``t0``."""

    def __init__(self, size: int, t0: float, *, span: float, seed: int | str, domain: str) -> None:
        if size < 0:
            raise ValueError("a backlog cannot hold fewer than 0 messages")
        self.size = size
        self.t0 = t0
        self.span = span
        self.domain = domain
        draw = random.Random(f"{seed}/backlog").choices(range(len(ROUTES)), ROUTE_WEIGHTS, k=size)
        self._routes = bytes(draw)
        del draw
        self._by_route = {
            route: array("I", (i for i, code in enumerate(self._routes) if code == r))
            for r, route in enumerate(ROUTES)
        }

    def created(self, index: int) -> float:
        """Model time message ``index`` was created; rises with the index."""
        return self.t0 - self.span + index * self.span / max(self.size, 1)

    def route_counts(self) -> dict[str, int]:
        return {route: len(indexes) for route, indexes in self._by_route.items()}

    def render(self, index: int, shift: float, now: float) -> dict[str, Any]:
        """Message ``index`` as Mimecast answers it, times moved back by ``shift``."""
        route = ROUTES[self._routes[index]]
        created = self.created(index)
        attempts = attempts_after(now - created)
        mix = (index * 2654435761) & 0xFFFFFFFF  # Knuth's multiplicative hash: spread fields
        sender_domain = self.domain if route in ("outbound", "internal") else "example.net"
        recipient_domain = {
            "outbound": REFUSING_DOMAIN,
            "external": "example.org",
        }.get(route, self.domain)
        sender = {"emailAddress": f"user{mix % 997}@{sender_domain}", "displayableName": "Sender"}
        return {
            "id": f"eNoBacklog{index:09d}",
            "fromEnv": dict(sender),
            "fromHeader": sender,
            "to": [
                {
                    "emailAddress": f"user{mix % 991}@{recipient_domain}",
                    "displayableName": "Recipient",
                }
            ],
            "subject": f"Backlogged message {index}",
            "attachment": mix % 3 == 0,
            "routing": route,
            "size": 2_000 + mix % 2_000_000,
            "remoteIp": f"10.20.{mix % 16}.{1 + mix % 254}",
            "attempts": attempts,
            "nextAttempt": format_mc_date(now - shift + 60.0 + mix % 3000),
            "created": format_mc_date(created - shift),
            "info": REFUSAL if route == "outbound" else "Queued for delivery",
            "lockedUntil": format_mc_date(created + _LOCK_SPAN - shift),
            "priority": "normal",
        }

    def select(
        self,
        routes: frozenset[str] | None,
        start: float,
        end: float,
        descending: bool,
        shift: float,
        now: float,
        keep: Callable[[dict[str, Any]], bool] | None = None,
    ) -> Sequence[dict[str, Any]]:
        """The messages created within [start, end] (wall times) on ``routes`` (None: all),
        in date order; ``keep`` filters rendered messages (slow: it renders them all)."""
        indexes: Sequence[int]
        if routes is None:
            indexes = range(self.size)
        elif len(routes) == 1:
            indexes = self._by_route[next(iter(routes))]
        else:
            indexes = array("I", sorted(i for r in routes for i in self._by_route[r]))

        def wall(i: int) -> float:
            return self.created(i) - shift

        low = bisect_left(indexes, start, key=wall)
        high = bisect_right(indexes, end, key=wall)
        view = _Rendered(self, indexes[low:high], descending, shift, now)
        if keep is None:
            return view
        return [message for message in view if keep(message)]


class _Rendered(Sequence[dict[str, Any]]):
    """Messages by position, rendered only when a page is sliced out."""

    def __init__(
        self, backlog: Backlog, indexes: Sequence[int], descending: bool, shift: float, now: float
    ) -> None:
        self._backlog = backlog
        self._indexes = indexes[::-1] if descending else indexes
        self._shift = shift
        self._now = now

    def __len__(self) -> int:
        return len(self._indexes)

    def __getitem__(self, position: Any) -> Any:
        if isinstance(position, slice):
            return [self._render(i) for i in self._indexes[position]]
        return self._render(self._indexes[position])

    def _render(self, index: int) -> dict[str, Any]:
        return self._backlog.render(index, self._shift, self._now)
