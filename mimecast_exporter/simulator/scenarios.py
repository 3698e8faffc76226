"""Named scenarios: the settings that give each simulated tenant its queue behaviour.

A scenario says how fast mail arrives per route and queue, how long a message
waits before its first delivery attempt, which destination domains refuse mail
and when, when inbound bursts happen, and what the queue holds at start.
`model.py` turns these settings into queue dynamics.

Some scenarios are about the API rather than the mail (:class:`ApiBehaviour`):
an exhausted rate limit, expired credentials, slow answers. With them a user
points a staging exporter at the simulator and watches their own alert routing
fire end to end (the fire drill, docs/simulator.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

ROUTES: tuple[str, ...] = ("inbound", "outbound", "internal", "external")
QUEUES: tuple[str, ...] = ("processing", "bulk_processing")


@dataclass(frozen=True)
class Refusal:
    """A destination domain refusing mail from model offset ``start`` to ``end`` (seconds)."""

    domain: str
    start: float = float("-inf")
    end: float = float("inf")
    reply: str = "Remote server refused: 421 4.7.0 Try again later"

    def active(self, offset: float) -> bool:
        return self.start <= offset < self.end


@dataclass(frozen=True)
class Burst:
    """Inbound arrivals multiplied by ``factor`` for ``duration`` s, every ``period`` s."""

    offset: float
    duration: float
    factor: float
    period: float = 3600.0

    def factor_at(self, offset: float) -> float:
        if offset < self.offset:
            return 1.0
        return self.factor if (offset - self.offset) % self.period < self.duration else 1.0


@dataclass(frozen=True)
class ApiBehaviour:
    """How the API itself misbehaves, from start to stop, for every tenant."""

    # The credentials were revoked or lapsed: the token endpoint answers 401
    # invalid_client, bearer tokens 401 token_expired, and API 1.0 keys 418
    # err_xdk_binding_expired (an access key binding past its TTL).
    credentials_expired: bool = False
    # Seconds every find-processing-messages answer takes (a real sleep).
    answer_delay: float = 0.0
    # (requests, window seconds) per credential and endpoint, instead of
    # --rate-limit: a quota that another integration has all but spent.
    rate_limit: tuple[int, float] | None = None


def _frozen(d: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(d))


# Arrival rates in messages per second of model time. Processing is ordinary
# mail; bulk_processing is marketing-style mail: mostly outbound, bigger, slower.
_STEADY_RATES = _frozen(
    {
        "processing": _frozen(
            {"inbound": 0.05, "outbound": 0.03, "internal": 0.02, "external": 0.004}
        ),
        "bulk_processing": _frozen(
            {"inbound": 0.001, "outbound": 0.01, "internal": 0.0005, "external": 0.0}
        ),
    }
)


@dataclass(frozen=True)
class Scenario:
    """Settings for one tenant's queues; see the module docstring."""

    name: str
    description: str
    rates: Mapping[str, Mapping[str, float]] = field(default_factory=lambda: _STEADY_RATES)
    # Mean seconds between arrival and first delivery attempt (scanning, policy).
    first_attempt_delay: Mapping[str, float] = field(
        default_factory=lambda: _frozen({"processing": 20.0, "bulk_processing": 120.0})
    )
    # Chance that an attempt to a willing destination succeeds.
    success_probability: float = 0.97
    refusals: tuple[Refusal, ...] = ()
    bursts: tuple[Burst, ...] = ()
    # Fresh messages present at start: queue -> route -> count.
    prefill: Mapping[str, Mapping[str, int]] = field(default_factory=lambda: _frozen({}))
    # Old, repeatedly retried messages in the processing queue at start (to a refusing domain).
    aged_retries: int = 0
    # A huge, fixed processing queue instead of a live one: this many messages,
    # created over the backlog_span before start (see backlog.py). None: live.
    backlog: int | None = None
    backlog_span: float = 3 * 86400.0
    api: ApiBehaviour = ApiBehaviour()

    def rate(self, queue: str, route: str, offset: float) -> float:
        """Arrivals per second for (queue, route) at ``offset`` s of model time after start."""
        base = self.rates.get(queue, {}).get(route, 0.0)
        if route == "inbound" and queue == "processing":
            for burst in self.bursts:
                base *= burst.factor_at(offset)
        return base

    def max_rate(self, queue: str, route: str) -> float:
        """An upper bound of :meth:`rate` over time (for Poisson thinning)."""
        base = self.rates.get(queue, {}).get(route, 0.0)
        if route == "inbound" and queue == "processing":
            for burst in self.bursts:
                base *= max(1.0, burst.factor)
        return base

    def refusal(self, domain: str, offset: float) -> Refusal | None:
        for refusal in self.refusals:
            if refusal.domain == domain and refusal.active(offset):
                return refusal
        return None


_STEADY = Scenario(
    name="steady",
    description="small queues that come and go; a few messages present most of the time",
)

SCENARIOS: Mapping[str, Scenario] = _frozen(
    {
        "steady": _STEADY,
        "healthy": replace(
            _STEADY,
            name="healthy",
            description="as steady: mail flows, queues stay small; no alert should fire",
        ),
        "rate_limited": replace(
            _STEADY,
            name="rate_limited",
            description=(
                "queues as steady, but the API quota is nearly spent: 2 requests per "
                "credential and endpoint an hour, then 429 with X-RateLimit-Reset"
            ),
            api=ApiBehaviour(rate_limit=(2, 3600.0)),
        ),
        "auth_expired": replace(
            _STEADY,
            name="auth_expired",
            description=(
                "the credentials have lapsed: OAuth token requests get 401 invalid_client, "
                "bearer tokens 401 token_expired, API 1.0 keys 418 binding expired"
            ),
            api=ApiBehaviour(credentials_expired=True),
        ),
        "slow": replace(
            _STEADY,
            name="slow",
            description=(
                "queues as steady, but every queue answer takes 40 s, longer than the "
                "exporter's default poll.timeout (30 s): polls time out"
            ),
            api=ApiBehaviour(answer_delay=40.0),
        ),
        "empty": replace(
            _STEADY,
            name="empty",
            description="nothing is ever queued (the normal answer of a quiet tenant)",
            rates=_frozen({}),
        ),
        "outage": replace(
            _STEADY,
            name="outage",
            description=(
                "partner.example refuses all mail from the start: the outbound "
                "processing queue grows, its oldest message ages, attempts rise"
            ),
            refusals=(Refusal("partner.example"),),
        ),
        "demo": replace(
            _STEADY,
            name="demo",
            description=(
                "steady, pre-filled so every route has messages at once, with aged "
                "retries to legacy.partner.example, which keeps deferring mail"
            ),
            refusals=(
                Refusal(
                    "legacy.partner.example",
                    reply="Remote server refused: 450 4.7.1 Client host rejected: try again later",
                ),
            ),
            prefill=_frozen(
                {
                    "processing": _frozen(
                        {"inbound": 6, "outbound": 4, "internal": 3, "external": 2}
                    ),
                    "bulk_processing": _frozen({"outbound": 3, "inbound": 1}),
                }
            ),
            aged_retries=5,
        ),
        "backlog": replace(
            _STEADY,
            name="backlog",
            description=(
                "a stuck processing queue of a million messages (most of them outbound to "
                "partner.example, which refuses mail) created over the last three days; "
                "bulk_processing as steady"
            ),
            refusals=(Refusal("partner.example"),),
            backlog=1_000_000,
        ),
        "burst": replace(
            _STEADY,
            name="burst",
            description=(
                "steady, with an inbound spike (30x for 5 minutes) one minute in, then hourly"
            ),
            bursts=(Burst(offset=60.0, duration=300.0, factor=30.0),),
        ),
    }
)


def get_scenario(name: str) -> Scenario:
    """The scenario called ``name``; ValueError listing the known names otherwise."""
    try:
        return SCENARIOS[name]
    except KeyError:
        known = ", ".join(sorted(SCENARIOS))
        raise ValueError(f"unknown scenario {name!r} (known: {known})") from None
