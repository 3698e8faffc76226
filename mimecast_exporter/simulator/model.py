"""Queue dynamics: what one tenant's processing queues hold at a given moment.

Each tenant has one :class:`QueueModel` with two queues, ``processing`` and
``bulk_processing``. A live queue is a small discrete-event simulation in model
time: messages arrive per route as Poisson processes, wait for a first delivery
attempt, and are retried on a backoff schedule while their destination defers
them; they leave when delivered or when they reach the give-up age (bounced).

The simulation only advances when somebody looks (a request arrives), but it
always processes the same events in the same order, so the queue at a given
model time depends only on the seed and that time, not on how often it was
looked at. Times in answers are projected onto the wall clock (see
:meth:`QueueModel.snapshot`).
"""

from __future__ import annotations

import base64
import copy
import heapq
import math
import random
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from mimecast_exporter.simulator.backlog import Backlog
from mimecast_exporter.simulator.clock import ModelClock, format_mc_date
from mimecast_exporter.simulator.query import Query, matches, select
from mimecast_exporter.simulator.scenarios import QUEUES, ROUTES, Scenario

QUEUE_CAP = 5000  # messages per queue, to keep memory small whatever the scenario
GIVE_UP_AGE = 5 * 86400.0  # a message still queued after this long bounces
BACKOFF_FIRST = 300.0  # 5m, 10m, 20m, 40m, then every hour
BACKOFF_CAP = 3600.0
LOCK_SPAN = 90 * 60.0  # lockedUntil = created + 90 min, as in Mimecast's sample answer
# A gap longer than this is not replayed event by event: every message alive
# before it would have bounced anyway, so the queue restarts empty at its start.
_MAX_CATCHUP = GIVE_UP_AGE + 86400.0

_FIRST = ("Alice", "Bob", "Carol", "Dan", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy")
_LAST = ("Smith", "Jones", "Taylor", "Brown", "Wilson", "Evans", "Thomas", "Roberts")
_EXTERNAL_SENDERS = ("example.net", "mail.example.org", "customer.example", "supplier.example")
# Outbound destinations with their share of outbound mail.
_OUTBOUND_DESTINATIONS = (
    ("partner.example", 0.25),
    ("customer.example", 0.25),
    ("supplier.example", 0.2),
    ("example.net", 0.26),
    ("legacy.partner.example", 0.04),
)
_SUBJECTS = {
    "processing": (
        "Re: Quarterly figures",
        "Invoice 2024-0113",
        "Meeting notes",
        "Fwd: contract draft",
        "Delivery schedule",
        "Your order has shipped",
        "Lunch on Friday?",
        "Updated proposal",
    ),
    "bulk_processing": (
        "Spring newsletter",
        "Your monthly statement",
        "Product update: what's new",
        "Webinar invitation",
        "Customer survey",
    ),
}
_TEMP_FAILURES = (
    "Remote server refused: 451 4.3.0 Temporary local problem - please try later",
    "Remote server refused: 452 4.2.2 Mailbox full",
    "Connection timed out",
    "Remote server refused: 421 4.7.0 Try again later",
)
_QUEUED_INFO = "Queued for delivery"


def backoff(attempts: int) -> float:
    """Seconds before the next try after ``attempts`` failed attempts (before jitter)."""
    return float(min(BACKOFF_FIRST * 2 ** max(attempts - 1, 0), BACKOFF_CAP))


@dataclass
class SimMessage:
    """One queued message; times are model time."""

    id: str
    route: str
    sender: tuple[str, str]  # (address, display name)
    recipient: tuple[str, str]
    subject: str
    attachment: bool
    size: int
    remote_ip: str
    priority: str
    created: float
    next_attempt: float
    attempts: int = 0
    info: str = _QUEUED_INFO

    @property
    def domain(self) -> str:
        return self.recipient[0].rpartition("@")[2]

    def render(self, shift: float) -> dict[str, Any]:
        """The message as Mimecast answers it, times moved back by ``shift`` seconds."""
        sender = {"emailAddress": self.sender[0], "displayableName": self.sender[1]}
        return {
            "id": self.id,
            "fromEnv": dict(sender),
            "fromHeader": sender,
            "to": [{"emailAddress": self.recipient[0], "displayableName": self.recipient[1]}],
            "subject": self.subject,
            "attachment": self.attachment,
            "routing": self.route,
            "size": self.size,
            "remoteIp": self.remote_ip,
            "attempts": self.attempts,
            "nextAttempt": format_mc_date(self.next_attempt - shift),
            "created": format_mc_date(self.created - shift),
            "info": self.info,
            "lockedUntil": format_mc_date(self.created + LOCK_SPAN - shift),
            "priority": self.priority,
        }


class _LiveQueue:
    """The event simulation of one queue of one tenant."""

    def __init__(
        self, queue: str, scenario: Scenario, rng: random.Random, t0: float, domain: str
    ) -> None:
        self.queue = queue
        self.scenario = scenario
        self.rng = rng
        self.t0 = t0
        self.domain = domain
        self.now = t0
        self.messages: dict[str, SimMessage] = {}  # insertion order = arrival order
        self._events: list[tuple[float, int, str, str]] = []  # (time, seq, kind, ref)
        self._seq = 0
        self._schedule_arrivals(t0)

    # --- events -------------------------------------------------------------------------
    def _push(self, when: float, kind: str, ref: str) -> None:
        self._seq += 1
        heapq.heappush(self._events, (when, self._seq, kind, ref))

    def _schedule_arrivals(self, start: float) -> None:
        for route in ROUTES:
            rate = self.scenario.max_rate(self.queue, route)
            if rate > 0:
                self._push(start + self.rng.expovariate(rate), "arrive", route)

    def advance(self, until: float) -> None:
        if until - self.now > _MAX_CATCHUP:
            self.messages.clear()
            self._events.clear()
            self.now = until - _MAX_CATCHUP
            self._schedule_arrivals(self.now)
        while self._events and self._events[0][0] <= until:
            when, _, kind, ref = heapq.heappop(self._events)
            self.now = when
            if kind == "arrive":
                self._arrive(when, ref)
            else:
                self._attempt(when, ref)
        self.now = max(self.now, until)

    def _arrive(self, when: float, route: str) -> None:
        # Poisson arrivals with a time-varying rate, by thinning a process at the peak rate.
        peak = self.scenario.max_rate(self.queue, route)
        self._push(when + self.rng.expovariate(peak), "arrive", route)
        if self.rng.random() * peak >= self.scenario.rate(self.queue, route, when - self.t0):
            return
        if len(self.messages) >= QUEUE_CAP:
            return
        delay = self.rng.expovariate(1.0 / self.scenario.first_attempt_delay[self.queue])
        self._add(self.new_message(route, created=when, next_attempt=when + delay))

    def _attempt(self, when: float, msg_id: str) -> None:
        msg = self.messages.get(msg_id)
        if msg is None:
            return
        if when - msg.created >= GIVE_UP_AGE:
            del self.messages[msg_id]  # bounced
            return
        refusal = self.scenario.refusal(msg.domain, when - self.t0)
        if refusal is None and self.rng.random() < self.scenario.success_probability:
            del self.messages[msg_id]  # delivered
            return
        msg.attempts += 1
        msg.info = refusal.reply if refusal else self.rng.choice(_TEMP_FAILURES)
        msg.next_attempt = when + backoff(msg.attempts) * self.rng.uniform(0.9, 1.1)
        self._push(msg.next_attempt, "attempt", msg.id)

    # --- message generation -------------------------------------------------------------
    def _person(self, domain: str) -> tuple[str, str]:
        first, last = self.rng.choice(_FIRST), self.rng.choice(_LAST)
        return f"{first}.{last}@{domain}".lower(), f"{first} {last}"

    def _destination(self, route: str) -> str:
        if route == "outbound":
            domains = [domain for domain, _ in _OUTBOUND_DESTINATIONS]
            weights = [weight for _, weight in _OUTBOUND_DESTINATIONS]
            return self.rng.choices(domains, weights)[0]
        if route == "external":
            return self.rng.choice(_EXTERNAL_SENDERS)
        return self.domain

    def _remote_ip(self, route: str) -> str:
        if route in ("inbound", "external"):  # documentation ranges: public senders
            net = self.rng.choice(("192.0.2", "198.51.100", "203.0.113"))
            return f"{net}.{self.rng.randint(1, 254)}"
        return f"10.20.{self.rng.randint(0, 15)}.{self.rng.randint(1, 254)}"

    def new_message(
        self, route: str, *, created: float, next_attempt: float, to_domain: str | None = None
    ) -> SimMessage:
        """A fresh message on ``route``; draws everything from the queue's RNG."""
        rng = self.rng
        sender_domain = self.domain if route in ("outbound", "internal") else None
        sender = self._person(sender_domain or rng.choice(_EXTERNAL_SENDERS))
        recipient = self._person(to_domain or self._destination(route))
        bulk = self.queue == "bulk_processing"
        attachment = rng.random() < (0.5 if bulk else 0.3)
        # Log-normal sizes: typical mail is tens of KB, bulk mail hundreds; a few are MBs.
        median = 200_000 if bulk else 25_000
        size = rng.lognormvariate(0, 1.2) * median * (4 if attachment else 1)
        return SimMessage(
            id="eNo" + base64.urlsafe_b64encode(rng.randbytes(42)).decode().rstrip("="),
            route=route,
            sender=sender,
            recipient=recipient,
            subject=rng.choice(_SUBJECTS[self.queue]),
            attachment=attachment,
            size=int(min(max(size, 900), 30_000_000)),
            remote_ip=self._remote_ip(route),
            priority="low" if bulk else ("high" if rng.random() < 0.05 else "normal"),
            created=created,
            next_attempt=next_attempt,
        )

    def prefill(self) -> None:
        """Messages present at start: fresh ones per route, and aged retries."""
        t0, rng = self.t0, self.rng
        counts = self.scenario.prefill.get(self.queue, {})
        for route in ROUTES:
            for _ in range(counts.get(route, 0)):
                msg = self.new_message(
                    route, created=t0 - rng.uniform(5, 600), next_attempt=t0 + rng.uniform(5, 240)
                )
                if rng.random() < 0.3:  # some have already been deferred once or twice
                    msg.attempts = rng.randint(1, 2)
                    msg.info = rng.choice(_TEMP_FAILURES)
                self._add(msg)
        refusing = [r for r in self.scenario.refusals if r.active(0.0)]
        aged = self.scenario.aged_retries if refusing and self.queue == "processing" else 0
        for _ in range(aged):
            refusal = rng.choice(refusing)
            created = t0 - rng.uniform(2 * 3600, 36 * 3600)
            msg = self.new_message(
                "outbound", created=created, next_attempt=created, to_domain=refusal.domain
            )
            while msg.next_attempt <= t0:  # the retries it went through before start
                msg.attempts += 1
                msg.next_attempt += backoff(msg.attempts)
            msg.info = refusal.reply
            self._add(msg)

    def _add(self, msg: SimMessage) -> None:
        self.messages[msg.id] = msg
        self._push(msg.next_attempt, "attempt", msg.id)


@dataclass(frozen=True)
class Churn:
    """A queue that moves while it is read: before each find request, ``leave``
    messages leave from anywhere in the queue (delivered, bounced) and
    ``arrive`` new ones arrive (the newest). As Mimecast's pages are offsets
    into a list that shifts, a departure before a reader's cursor makes it skip
    a message that stayed. Applies to live and fixed queues, not to a backlog."""

    leave: int = 0
    arrive: int = 0

    @classmethod
    def from_dict(cls, raw: Any) -> Churn:
        if not isinstance(raw, dict) or not set(raw) <= {"leave", "arrive"}:
            raise ValueError("churn is an object with keys among ['arrive', 'leave']")
        if not all(type(v) is int and 0 <= v <= 10_000 for v in raw.values()):
            raise ValueError("leave and arrive are whole numbers from 0 to 10000")
        return cls(**raw)


class QueueModel:
    """The queues of one tenant: live simulations, or fixed lists set by a test."""

    def __init__(
        self,
        scenario: Scenario,
        clock: ModelClock,
        *,
        seed: int | str,
        domain: str = "example.com",
    ) -> None:
        self.scenario = scenario
        self.clock = clock
        self.domain = domain
        self._lock = threading.Lock()
        self._live: dict[str, _LiveQueue] = {}
        self._fixed: dict[str, list[dict[str, Any]]] = {}
        self._backlog: dict[str, Backlog] = {}
        self._churn_rng = random.Random(f"{seed}/churn")
        self._churned = 0  # messages made to arrive so far: their ids
        for queue in QUEUES:
            if queue == "processing" and scenario.backlog is not None:
                self._backlog[queue] = Backlog(
                    scenario.backlog,
                    clock.t0,
                    span=scenario.backlog_span,
                    seed=seed,
                    domain=domain,
                )
                continue
            live = _LiveQueue(queue, scenario, random.Random(f"{seed}/{queue}"), clock.t0, domain)
            live.prefill()
            self._live[queue] = live

    def set_messages(self, queue: str, messages: Iterable[dict[str, Any]]) -> None:
        """Serve exactly ``messages`` (raw, possibly malformed) for ``queue`` from now on."""
        if queue not in QUEUES:
            raise ValueError(f"unknown queue {queue!r}")
        with self._lock:
            self._fixed[queue] = copy.deepcopy(list(messages))
            self._live.pop(queue, None)
            self._backlog.pop(queue, None)

    def select(self, q: Query, wall_now: float) -> Sequence[Any]:
        """The messages ``q`` selects at ``wall_now``, in its order (a lazy sequence
        for a backlog, which renders only the page sliced out of it)."""
        backlog = self._backlog.get(q.queue)
        if backlog is None:
            return select(self.snapshot(q.queue, wall_now), q)
        model_now = self.clock.model_time(wall_now)
        slow_filter = q.search_field is not None or q.attachments is not None
        return backlog.select(
            q.routes,
            q.start,
            q.end,
            q.descending,
            shift=model_now - wall_now,
            now=model_now,
            keep=(lambda message: matches(message, q)) if slow_filter else None,
        )

    def churn(self, queue: str, churn: Churn, wall_now: float) -> None:
        """Let ``churn.leave`` messages of ``queue`` leave and ``churn.arrive`` arrive."""
        rng = self._churn_rng
        with self._lock:
            live = self._advanced(queue, wall_now)
            if live is not None:
                for msg_id in rng.sample(list(live.messages), min(churn.leave, len(live.messages))):
                    del live.messages[msg_id]
                model_now = self.clock.model_time(wall_now)
                for _ in range(churn.arrive):
                    route = rng.choice(ROUTES)
                    live._add(live.new_message(route, created=model_now, next_attempt=model_now))
                return
            fixed = self._fixed.get(queue)
            if fixed is None:
                return  # a backlog is computed, not stored
            for _ in range(min(churn.leave, len(fixed))):
                del fixed[rng.randrange(len(fixed))]
            for _ in range(churn.arrive):
                self._churned += 1
                template = copy.deepcopy(rng.choice(fixed)) if fixed else {"routing": "outbound"}
                template.update(id=f"churn-{self._churned}", created=format_mc_date(wall_now))
                fixed.append(template)

    def _advanced(self, queue: str, wall_now: float) -> _LiveQueue | None:
        """The live queue brought up to ``wall_now``; None if fixed. Caller holds the lock."""
        live = self._live.get(queue)
        if live is not None:
            live.advance(self.clock.model_time(wall_now))
        return live

    def snapshot(self, queue: str, wall_now: float) -> list[dict[str, Any]]:
        """The messages of ``queue`` at wall time ``wall_now``, as Mimecast answers them.

        Model time runs ``speed`` times faster than the wall clock; timestamps are
        shifted so that "now" in the model is ``wall_now``. A message's age as seen
        by a client is thus its age in model time, which is what a demo at high
        speed should show, and start/end filters from the client still make sense.
        """
        with self._lock:
            shift = self.clock.model_time(wall_now) - wall_now
            backlog = self._backlog.get(queue)
            if backlog is not None:
                everything = (-math.inf, math.inf)
                return list(backlog.select(None, *everything, False, shift, wall_now + shift))
            live = self._advanced(queue, wall_now)
            if live is None:
                return copy.deepcopy(self._fixed[queue])
            return [m.render(shift) for m in live.messages.values()]

    def sizes(self, wall_now: float) -> dict[str, int]:
        """Number of messages per queue at ``wall_now``."""
        with self._lock:
            return {
                q: self._backlog[q].size
                if q in self._backlog
                else len(live.messages if (live := self._advanced(q, wall_now)) else self._fixed[q])
                for q in QUEUES
            }

    def live_messages(self, queue: str, wall_now: float) -> list[SimMessage]:
        """The model's own message objects (model times), e.g. for inspection in tests."""
        with self._lock:
            live = self._advanced(queue, wall_now)
            return list(live.messages.values()) if live else []
