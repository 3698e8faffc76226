"""Every metric the exporter serves, built fresh at each scrape from the store.

This is the only place metric names live. Nothing here does I/O: a scrape
reads the latest snapshots, so it is fast and never calls Mimecast.

A figure is exact or absent. Message counts and oldest ages are exact at any
backlog size (where Mimecast honours sortOrder, filterBy and sends
totalCount); sums and histograms are served only when the poll read the whole
queue (mimecast_queue_scan_complete 1). See :mod:`exporter.scan`.

Series, for each configured account and queue type::

    mimecast_queue_messages{account,queue,route}                      gauge
    mimecast_queue_size_bytes{account,queue,route}                    gauge
    mimecast_queue_attempts{account,queue,route}                      gauge
    mimecast_queue_max_attempts{account,queue,route}                  gauge
    mimecast_queue_oldest_message_age_seconds{account,queue,route}    gauge
    mimecast_queue_oldest_message_created_timestamp_seconds{...}      gauge (routes with messages)
    mimecast_queue_message_age_seconds{account,queue,route}           gaugehistogram
    mimecast_queue_message_size_bytes{account,queue,route}            gaugehistogram
    mimecast_queue_messages_by_status{account,queue,route,status}     gauge
    mimecast_queue_locked_messages{account,queue,route}               gauge
    mimecast_queue_retry_overdue_messages{account,queue,route}        gauge
    mimecast_queue_scan_complete{account,queue}                       gauge
    mimecast_queue_scanned_messages{account,queue}                    gauge
    mimecast_up{account}                                              gauge
    mimecast_last_success_timestamp_seconds{account,queue}            gauge
    mimecast_poll_duration_seconds{account,queue}                     gauge
    mimecast_poll_errors_total{account,queue,reason}                  counter
    mimecast_api_requests_total{account,endpoint,code}                counter
    mimecast_api_rate_limit_remaining{account}                        gauge
    mimecast_exporter_build_info{version}                             gauge
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from types import MappingProxyType

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.aggregate import RETRY_OVERDUE_SECONDS, QueueSnapshot, RouteStats
from exporter.status import STATUSES
from exporter.store import SnapshotStore, StoreView

QUEUE_LABELS = ["account", "queue", "route"]
_FROM_POLL = (
    " Read from Mimecast by a background poll every poll.interval, not at scrape time;"
    " see mimecast_last_success_timestamp_seconds for when. Absent before the first"
    " successful poll and once no poll has succeeded for poll.stale_after."
)


def _queue_gauge(name: str, what: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, what + _FROM_POLL, labels=QUEUE_LABELS)


class MimecastCollector(Collector):
    def __init__(
        self,
        store: SnapshotStore,
        stale_after: float,
        now: Callable[[], float],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.stale_after = stale_after
        self.now = now  # wall clock: message ages
        self.monotonic = monotonic  # staleness: the store's successes are stamped on it

    def describe(self) -> list[Metric]:
        # The families without samples: lets the registry know every name
        # (for ?name[]= filtering) without reading the store.
        empty = StoreView(MappingProxyType({}), MappingProxyType({}), (), (), False)
        return [*self._queue_metrics(empty, 0.0), *self._health_metrics(empty), self._build_info()]

    def collect(self) -> Iterator[Metric]:
        view = self.store.view()
        now = self.now()
        yield from self._queue_metrics(view, now)
        yield from self._health_metrics(view)
        yield self._build_info()

    def _build_info(self) -> Metric:
        build = GaugeMetricFamily(
            "mimecast_exporter_build_info",
            "A metric with a constant '1' value labelled by the exporter's version.",
            labels=["version"],
        )
        build.add_metric([__version__], 1)
        return build

    def _fresh_snapshots(
        self, view: StoreView, now: float
    ) -> Iterator[tuple[str, str, QueueSnapshot]]:
        for (account, queue), state in view.queues.items():
            snapshot = state.fresh_snapshot(self.monotonic(), self.stale_after)
            if snapshot is not None:
                yield account, queue, snapshot

    def _queue_metrics(self, view: StoreView, now: float) -> Iterator[Metric]:
        messages = _queue_gauge(
            "mimecast_queue_messages",
            "Messages in the processing queue. Exact at any backlog size: read message by"
            " message, or counted by Mimecast (totalCount) when the queue is too large to read"
            " within poll.max_pages; absent when Mimecast's answers cannot be trusted for it.",
        )
        size = _queue_gauge(
            "mimecast_queue_size_bytes",
            "Sum of the sizes of queued messages. Only when the poll read the whole queue"
            " (mimecast_queue_scan_complete 1).",
        )
        attempts = _queue_gauge(
            "mimecast_queue_attempts",
            "Sum of the processing attempts of queued messages. Only when the poll read the"
            " whole queue (mimecast_queue_scan_complete 1).",
        )
        max_attempts = _queue_gauge(
            "mimecast_queue_max_attempts",
            "Highest processing attempt count of a queued message. Only when the poll read the"
            " whole queue (mimecast_queue_scan_complete 1).",
        )
        oldest_age = _queue_gauge(
            "mimecast_queue_oldest_message_age_seconds",
            "Seconds since the oldest queued message was created, computed at scrape time;"
            " 0 when the route is empty. Exact at any backlog size; absent when it is not"
            " certain (a message without a usable date, or answers not oldest first).",
        )
        oldest_created = _queue_gauge(
            "mimecast_queue_oldest_message_created_timestamp_seconds",
            "Creation time (Unix seconds) of the oldest queued message; only for routes"
            " with messages. Exact at any backlog size; absent when it is not certain.",
        )
        # Gauge histograms: a snapshot of the queue, not events counted since start
        # (_gcount and _gsum, no _count or _sum; never rate() them).
        age_hist = GaugeHistogramMetricFamily(
            "mimecast_queue_message_age_seconds",
            "Age of queued messages at the time of the poll: a snapshot rebuilt at every"
            " poll, not accumulated. Only when the poll read the whole queue." + _FROM_POLL,
            labels=QUEUE_LABELS,
        )
        size_hist = GaugeHistogramMetricFamily(
            "mimecast_queue_message_size_bytes",
            "Size of queued messages: a snapshot rebuilt at every poll, not accumulated. Only"
            " when the poll read the whole queue." + _FROM_POLL,
            labels=QUEUE_LABELS,
        )
        complete = GaugeMetricFamily(
            "mimecast_queue_scan_complete",
            "1 when the latest poll read every message of the queue, so that every figure,"
            " sums and histograms included, is served; 0 when the queue was too large for"
            " poll.max_pages and only counts and oldest ages are." + _FROM_POLL,
            labels=["account", "queue"],
        )
        scanned = GaugeMetricFamily(
            "mimecast_queue_scanned_messages",
            "Messages the latest poll read one by one (all of them when the scan is"
            " complete)." + _FROM_POLL,
            labels=["account", "queue"],
        )
        by_status = GaugeMetricFamily(
            "mimecast_queue_messages_by_status",
            "Messages in the queue by why they are stuck: Mimecast's info text as one of a"
            " few classes (processing, connection_refused, timeout, dns_failure, tls_failure,"
            " greylisted, throttled, mailbox_full, rejected_permanent, deferred_temporary,"
            " other, none); every class served, 0 when empty. Only when the poll read the"
            " whole queue (mimecast_queue_scan_complete 1).",
            labels=[*QUEUE_LABELS, "status"],
        )
        locked = _queue_gauge(
            "mimecast_queue_locked_messages",
            "Messages whose lockedUntil was after the time of the poll (the console's"
            " Locked). Only when the poll read the whole queue, and absent when a message"
            " of the route did not say (no lockedUntil, or not a date).",
        )
        overdue = _queue_gauge(
            "mimecast_queue_retry_overdue_messages",
            "Messages whose nextAttempt had passed by more than"
            f" {RETRY_OVERDUE_SECONDS / 60:g} minutes at the time of"
            " the poll: retries are not happening. Only when the poll read the whole queue,"
            " and absent when a message of the route did not say (no nextAttempt, or not a"
            " date).",
        )
        for account, queue, snapshot in self._fresh_snapshots(view, now):
            complete.add_metric([account, queue], 1 if snapshot.complete else 0)
            scanned.add_metric([account, queue], snapshot.scanned)
            for route, stats in snapshot.routes.items():
                labels = [account, queue, route]
                if stats.messages is not None:
                    messages.add_metric(labels, stats.messages)
                if stats.oldest_known:
                    oldest_age.add_metric(labels, _oldest_age(stats, now))
                    if stats.oldest_created is not None:
                        oldest_created.add_metric(labels, stats.oldest_created)
                sums = stats.sums
                if sums is not None:
                    size.add_metric(labels, sums.size_bytes)
                    attempts.add_metric(labels, sums.attempts)
                    max_attempts.add_metric(labels, sums.max_attempts)
                    age_hist.add_metric(labels, sums.age.cumulative(), sums.age.total)
                    size_hist.add_metric(labels, sums.size.cumulative(), sums.size.total)
                    for status, count in zip(STATUSES, sums.by_status, strict=True):
                        by_status.add_metric([*labels, status], count)
                    if sums.locked is not None:
                        locked.add_metric(labels, sums.locked)
                    if sums.retry_overdue is not None:
                        overdue.add_metric(labels, sums.retry_overdue)
        yield from (messages, size, attempts, max_attempts, oldest_age, oldest_created)
        yield from (age_hist, size_hist, by_status, locked, overdue, complete, scanned)

    def _health_metrics(self, view: StoreView) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "mimecast_up",
            "1 when the latest background poll of every queue of the account succeeded, else 0.",
            labels=["account"],
        )
        last_success = GaugeMetricFamily(
            "mimecast_last_success_timestamp_seconds",
            "When (Unix seconds) the latest successful background poll of the queue finished.",
            labels=["account", "queue"],
        )
        duration = GaugeMetricFamily(
            "mimecast_poll_duration_seconds",
            "How long the latest background poll of the queue took, all pages and retries.",
            labels=["account", "queue"],
        )
        errors = CounterMetricFamily(
            "mimecast_poll_errors",
            "Background polls of the queue that failed, by reason.",
            labels=["account", "queue", "reason"],
        )
        requests = CounterMetricFamily(
            "mimecast_api_requests",
            "HTTP requests made to the Mimecast API by background polls, by endpoint (token:"
            " OAuth token requests; find-processing-messages: the queue) and status code.",
            labels=["account", "endpoint", "code"],
        )
        remaining = GaugeMetricFamily(
            "mimecast_api_rate_limit_remaining",
            "X-RateLimit-Remaining of the latest Mimecast answer to a background poll.",
            labels=["account"],
        )
        for account in view.accounts:
            up.add_metric([account], 1 if view.account_up(account) else 0)
            for queue in view.queue_types:
                state = view.queues[(account, queue)]
                if state.last_success is not None:
                    last_success.add_metric([account, queue], state.last_success)
                if state.last_duration is not None:
                    duration.add_metric([account, queue], state.last_duration)
                for reason, count in state.errors.items():
                    errors.add_metric([account, queue, reason], count)
            api = view.api[account]
            for (endpoint, code), count in sorted(api.requests.items()):
                requests.add_metric([account, endpoint, code], count)
            if api.rate_limit_remaining is not None:
                remaining.add_metric([account], api.rate_limit_remaining)
        yield from (up, last_success, duration, errors, requests, remaining)


def _oldest_age(stats: RouteStats, now: float) -> float:
    if stats.oldest_created is None:  # a known-empty route
        return 0.0
    return max(0.0, now - stats.oldest_created)
