"""Every metric the exporter serves, built from the store.

This is the only place metric names live. Nothing here does I/O: a scrape
reads the latest snapshots, so it is fast and never calls Mimecast, and
prometheus_client's own encoder formats it.

A figure is exact or absent. Message counts and oldest ages are exact at any
backlog size (where Mimecast honours sortOrder, filterBy and sends
totalCount); sums and histograms are served only when the poll read the whole
queue (mimecast_queue_scan_complete 1). See :mod:`mimecast_exporter.scan`.

Series, for each configured account and queue type::

    mimecast_queue_messages{account,queue,route}                      gauge
    mimecast_queue_size_bytes{account,queue,route}                    gauge
    mimecast_queue_attempts{account,queue,route}                      gauge
    mimecast_queue_max_attempts{account,queue,route}                  gauge
    mimecast_queue_oldest_message_age_seconds{account,queue,route}    gauge
    mimecast_queue_oldest_message_created_timestamp_seconds{...}      gauge (routes with messages)
    mimecast_queue_message_age_seconds{account,queue}                 gaugehistogram
    mimecast_queue_messages_by_status{account,queue,status}           gauge
    mimecast_queue_message_size_bytes{account,queue}                  gaugehistogram (opt-in)
    mimecast_queue_locked_messages{account,queue,route}               gauge
    mimecast_queue_retry_overdue_messages{account,queue,route}        gauge
    mimecast_queue_messages_by_domain{account,queue,route,domain}     gauge (top_domains)
    mimecast_queue_domain_oldest_message_age_seconds{...,domain}      gauge (top_domains)
    mimecast_queue_scan_complete{account,queue}                       gauge
    mimecast_queue_scanned_messages{account,queue}                    gauge
    mimecast_up{account}                                              gauge
    mimecast_last_success_timestamp_seconds{account,queue}            gauge
    mimecast_poll_duration_seconds{account,queue}                     gauge
    mimecast_poll_errors_total{account,queue,reason}                  counter
    mimecast_api_requests_total{account,endpoint,code}                counter
    mimecast_api_rate_limit_remaining{account}                        gauge
    mimecast_exporter_build_info{version,revision,pythonversion}      gauge

With ``metrics.by_route``, the age histogram, the size histogram and the
status counts carry a route label too (docs/metrics.md says why not by default).
"""

from __future__ import annotations

import functools
import operator
import time
from collections.abc import Callable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from mimecast_exporter.aggregate import MAX_DOMAINS, RETRY_OVERDUE_SECONDS
from mimecast_exporter.build import build
from mimecast_exporter.config import MetricsConfig
from mimecast_exporter.snapshot import Histogram, QueueSnapshot
from mimecast_exporter.status import STATUSES
from mimecast_exporter.store import ApiStats, QueueState, SnapshotStore

QUEUE_LABELS = ["account", "queue", "route"]
_FROM_POLL = (
    " Read from Mimecast by a background poll every poll.interval, not at scrape time;"
    " see mimecast_last_success_timestamp_seconds for when. Absent before the first"
    " successful poll and once no poll has succeeded for poll.stale_after."
)


def _queue_gauge(name: str, what: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, what + _FROM_POLL, labels=QUEUE_LABELS)


class MimecastCollector(Collector):
    """The Mimecast series, read from the store at every scrape."""

    def __init__(
        self,
        store: SnapshotStore,
        stale_after: float,
        now: Callable[[], float],
        monotonic: Callable[[], float] = time.monotonic,
        metrics: MetricsConfig | None = None,
    ) -> None:
        self.store = store
        self.stale_after = stale_after
        self.now = now  # wall clock: message ages
        self.monotonic = monotonic  # staleness: the store's successes are stamped on it
        self.metrics = metrics or MetricsConfig()  # replaced on reload

    def describe(self) -> list[Metric]:
        # The families without samples: lets the registry know every name
        # (for ?name[]= filtering) without reading the store.
        return [*_QueueFamilies(self.metrics).all(), *_HealthFamilies().all(), _build_info()]

    def collect(self) -> Iterator[Metric]:
        view = self.store.view()
        now, monotonic = self.now(), self.monotonic()
        queues, health = _QueueFamilies(self.metrics), _HealthFamilies()
        for (account, queue), state in view.queues.items():
            snapshot = state.fresh_snapshot(monotonic, self.stale_after)
            if snapshot is not None:
                queues.add(account, queue, snapshot, now)
        for account in view.accounts:
            health.add_account(account, view.account_up(account), view.api[account])
            for queue in view.queue_types:
                health.add_queue(account, queue, view.queues[(account, queue)])
        yield from queues.all()
        yield from health.all()
        yield _build_info()


DOMAIN_LABELS = [*QUEUE_LABELS, "domain"]


def _age(created: float | None, now: float) -> float:
    """Seconds since ``created`` at ``now``: 0 for an empty route, and for a date
    from the future (clock skew)."""
    return now - created if created is not None and created < now else 0.0


def _build_info() -> Metric:
    info = build()
    family = GaugeMetricFamily(
        "mimecast_exporter_build_info",
        "A metric with a constant '1' value labelled by the version, revision and Python"
        " version from which mimecast-exporter was built, as Go exporters' *_build_info.",
        labels=["version", "revision", "pythonversion"],
    )
    family.add_metric([info.version, info.revision, info.python_version], 1)
    return family


def _oldest_age_family() -> GaugeMetricFamily:
    """The one figure read at scrape time: the age moves with the clock."""
    return _queue_gauge(
        "mimecast_queue_oldest_message_age_seconds",
        "Seconds since the oldest queued message was created, computed at scrape time;"
        " 0 when the route is empty. Exact at any backlog size; absent when it is not"
        " certain (a message without a usable date, or answers not oldest first).",
    )


def _domain_age_family() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "mimecast_queue_domain_oldest_message_age_seconds",
        "Seconds since the oldest queued message to the recipient domain was created,"
        " computed at scrape time, for the domains of mimecast_queue_messages_by_domain"
        ' (domain="other": the oldest of the rest). Only with top_domains, when the poll'
        " read the whole queue and every message of the route had a usable date." + _FROM_POLL,
        labels=DOMAIN_LABELS,
    )


class _QueueFamilies:
    """What polls found in the queues: every family built from snapshots."""

    def __init__(self, metrics: MetricsConfig) -> None:
        self.metrics = metrics
        # Per queue by default: the dashboard sums them over routes anyway.
        detail_labels = QUEUE_LABELS if metrics.by_route else ["account", "queue"]
        self.messages = _queue_gauge(
            "mimecast_queue_messages",
            "Messages in the processing queue. Exact at any backlog size: read message by"
            " message, or counted by Mimecast (totalCount) when the queue is too large to read"
            " within poll.max_pages; absent when Mimecast's answers cannot be trusted for it.",
        )
        self.oldest_created = _queue_gauge(
            "mimecast_queue_oldest_message_created_timestamp_seconds",
            "Creation time (Unix seconds) of the oldest queued message; only for routes"
            " with messages. Exact at any backlog size; absent when it is not certain.",
        )
        self.size = _queue_gauge(
            "mimecast_queue_size_bytes",
            "Sum of the sizes of queued messages. Only when the poll read the whole queue"
            " (mimecast_queue_scan_complete 1).",
        )
        self.attempts = _queue_gauge(
            "mimecast_queue_attempts",
            "Sum of the processing attempts of queued messages. Only when the poll read the"
            " whole queue (mimecast_queue_scan_complete 1).",
        )
        self.max_attempts = _queue_gauge(
            "mimecast_queue_max_attempts",
            "Highest processing attempt count of a queued message. Only when the poll read the"
            " whole queue (mimecast_queue_scan_complete 1).",
        )
        # Gauge histograms: a snapshot of the queue, not events counted since start
        # (_gcount and _gsum, no _count or _sum; never rate() them).
        self.age_hist = GaugeHistogramMetricFamily(
            "mimecast_queue_message_age_seconds",
            "Age of queued messages at the time of the poll: a snapshot rebuilt at every"
            " poll, not accumulated. Only when the poll read the whole queue." + _FROM_POLL,
            labels=detail_labels,
        )
        self.size_hist = GaugeHistogramMetricFamily(
            "mimecast_queue_message_size_bytes",
            "Size of queued messages: a snapshot rebuilt at every poll, not accumulated. Only"
            " when the poll read the whole queue, and with metrics.size_histogram." + _FROM_POLL,
            labels=detail_labels,
        )
        self.complete = GaugeMetricFamily(
            "mimecast_queue_scan_complete",
            "1 when the latest poll read every message of the queue, so that every figure,"
            " sums and histograms included, is served; 0 when the queue was too large for"
            " poll.max_pages and only counts and oldest ages are." + _FROM_POLL,
            labels=["account", "queue"],
        )
        self.scanned = GaugeMetricFamily(
            "mimecast_queue_scanned_messages",
            "Messages the latest poll read one by one (all of them when the scan is"
            " complete)." + _FROM_POLL,
            labels=["account", "queue"],
        )
        self.by_status = GaugeMetricFamily(
            "mimecast_queue_messages_by_status",
            "Messages in the queue by why they are stuck: Mimecast's info text as one of a"
            " few classes (processing, connection_refused, timeout, dns_failure, tls_failure,"
            " greylisted, throttled, mailbox_full, rejected_permanent, deferred_temporary,"
            " other, none); every class served, 0 when empty. Only when the poll read the"
            " whole queue (mimecast_queue_scan_complete 1).",
            labels=[*detail_labels, "status"],
        )
        self.locked = _queue_gauge(
            "mimecast_queue_locked_messages",
            "Messages whose lockedUntil was after the time of the poll (the console's"
            " Locked). Only when the poll read the whole queue, and absent when a message"
            " of the route did not say (no lockedUntil, or not a date).",
        )
        self.overdue = _queue_gauge(
            "mimecast_queue_retry_overdue_messages",
            "Messages whose nextAttempt had passed by more than poll.retry_overdue_after"
            f" ({RETRY_OVERDUE_SECONDS / 60:g} minutes by default) at the time of"
            " the poll: retries are not happening. Only when the poll read the whole queue,"
            " and absent when a message of the route did not say (no nextAttempt, or not a"
            " date).",
        )

        self.by_domain = GaugeMetricFamily(
            "mimecast_queue_messages_by_domain",
            "Messages in the queue by recipient domain: the top_domains domains with the"
            ' most messages, and domain="other" for the rest and for messages without a'
            " valid recipient domain. A message to several domains counts under each, so"
            " these can add up to more than mimecast_queue_messages. Domains are lowercase,"
            " internationalised ones in their IDNA 2008 (xn--) form. Only with top_domains, when"
            " the poll read the whole queue (mimecast_queue_scan_complete 1), and while the"
            f" queue holds at most {MAX_DOMAINS} distinct domains." + _FROM_POLL,
            labels=DOMAIN_LABELS,
        )
        self.oldest_age = _oldest_age_family()
        self.domain_age = _domain_age_family()

    def add(self, account: str, queue: str, snapshot: QueueSnapshot, now: float) -> None:
        self.complete.add_metric([account, queue], 1 if snapshot.complete else 0)
        self.scanned.add_metric([account, queue], snapshot.scanned)
        for route, stats in snapshot.routes.items():
            labels = [account, queue, route]
            if stats.messages is not None:
                self.messages.add_metric(labels, stats.messages)
            if stats.oldest_known:
                self.oldest_age.add_metric(labels, _age(stats.oldest_created, now))
                if stats.oldest_created is not None:
                    self.oldest_created.add_metric(labels, stats.oldest_created)
            sums = stats.sums
            if sums is not None:
                self.size.add_metric(labels, sums.size_bytes)
                self.attempts.add_metric(labels, sums.attempts)
                self.max_attempts.add_metric(labels, sums.max_attempts)
                if sums.locked is not None:
                    self.locked.add_metric(labels, sums.locked)
                if sums.retry_overdue is not None:
                    self.overdue.add_metric(labels, sums.retry_overdue)
                for domain, count, created in sums.by_domain or ():
                    self.by_domain.add_metric([*labels, domain], count)
                    if created is not None:
                        self.domain_age.add_metric([*labels, domain], _age(created, now))
                if self.metrics.by_route:
                    self._add_details(labels, sums.age, sums.size, sums.by_status)
        all_sums = [stats.sums for stats in snapshot.routes.values() if stats.sums is not None]
        # A queue's figures add up every route's: none when a route has no sums.
        every_route = bool(all_sums) and len(all_sums) == len(snapshot.routes)
        if every_route and not self.metrics.by_route:
            self._add_details(
                [account, queue],
                functools.reduce(operator.add, (sums.age for sums in all_sums)),
                functools.reduce(operator.add, (sums.size for sums in all_sums)),
                tuple(map(sum, zip(*(sums.by_status for sums in all_sums), strict=True))),
            )

    def _add_details(
        self, labels: list[str], age: Histogram, size: Histogram, by_status: tuple[int, ...]
    ) -> None:
        """The series of metrics.by_route: per route with it, else per queue."""
        self.age_hist.add_metric(labels, age.cumulative(), age.total)
        if self.metrics.size_histogram:
            self.size_hist.add_metric(labels, size.cumulative(), size.total)
        for status, count in zip(STATUSES, by_status, strict=True):
            self.by_status.add_metric([*labels, status], count)

    def all(self) -> list[Metric]:
        families = [
            self.messages,
            self.oldest_age,
            self.oldest_created,
            self.size,
            self.attempts,
            self.max_attempts,
            self.age_hist,
            self.size_hist,
            self.by_status,
            self.locked,
            self.overdue,
            self.by_domain,
            self.domain_age,
            self.complete,
            self.scanned,
        ]
        return [f for f in families if f is not self.size_hist or self.metrics.size_histogram]


class _HealthFamilies:
    """How the polls and API requests went."""

    def __init__(self) -> None:
        self.up = GaugeMetricFamily(
            "mimecast_up",
            "1 when the latest background poll of every queue of the account succeeded, else 0.",
            labels=["account"],
        )
        self.last_success = GaugeMetricFamily(
            "mimecast_last_success_timestamp_seconds",
            "When (Unix seconds) the latest successful background poll of the queue finished.",
            labels=["account", "queue"],
        )
        self.duration = GaugeMetricFamily(
            "mimecast_poll_duration_seconds",
            "How long the latest background poll of the queue took, all pages and retries.",
            labels=["account", "queue"],
        )
        self.errors = CounterMetricFamily(
            "mimecast_poll_errors",
            "Background polls of the queue that failed, by reason.",
            labels=["account", "queue", "reason"],
        )
        self.requests = CounterMetricFamily(
            "mimecast_api_requests",
            "HTTP requests made to the Mimecast API by background polls, by endpoint (token:"
            " OAuth token requests; find-processing-messages: the queue) and status code.",
            labels=["account", "endpoint", "code"],
        )
        self.remaining = GaugeMetricFamily(
            "mimecast_api_rate_limit_remaining",
            "X-RateLimit-Remaining of the latest Mimecast answer to a background poll.",
            labels=["account"],
        )

    def add_account(self, account: str, up: bool, api: ApiStats) -> None:
        self.up.add_metric([account], 1 if up else 0)
        for (endpoint, code), count in sorted(api.requests.items()):
            self.requests.add_metric([account, endpoint, code], count)
        if api.rate_limit_remaining is not None:
            self.remaining.add_metric([account], api.rate_limit_remaining)

    def add_queue(self, account: str, queue: str, state: QueueState) -> None:
        if state.last_success is not None:
            self.last_success.add_metric([account, queue], state.last_success)
        if state.last_duration is not None:
            self.duration.add_metric([account, queue], state.last_duration)
        for reason, count in state.errors.items():
            self.errors.add_metric([account, queue, reason], count)

    def all(self) -> list[Metric]:
        return [
            self.up,
            self.last_success,
            self.duration,
            self.errors,
            self.requests,
            self.remaining,
        ]
