"""Snapshots into metric families: zero-fill, freshness, histograms, health series."""

import subprocess
import time

import pytest
from prometheus_client import CollectorRegistry, generate_latest

import mimecast_exporter
from mimecast_exporter.aggregate import QueueAggregator, parse_mimecast_date
from mimecast_exporter.build import build
from mimecast_exporter.collector import MimecastCollector
from mimecast_exporter.config import MetricsConfig
from mimecast_exporter.mimecast.errors import REASONS
from mimecast_exporter.store import SnapshotStore
from tests.fakes import FakeClock, feed
from tests.processes import debian_binary

STALE_AFTER = 300.0


def snapshot(now, *messages):
    agg = QueueAggregator(now)
    feed(agg, list(messages))
    return agg.snapshot()


def msg(route="outbound", size=100, attempts=2, created="2026-11-23T23:00:00Z"):
    return {"routing": route, "size": size, "attempts": attempts, "created": created}


def make_env(metrics=None):
    clock = FakeClock()
    store = SnapshotStore(["acme", "legacy"], ["processing", "bulk_processing"], clock.monotonic)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MimecastCollector(store, STALE_AFTER, clock.time, clock.monotonic, metrics))
    return clock, store, registry


@pytest.fixture
def env():
    return make_env()


@pytest.fixture
def detailed():
    """Every opt-in series: histograms and status classes per route, sizes."""
    return make_env(MetricsConfig(by_route=True, size_histogram=True))


def value(registry, name, **labels):
    return registry.get_sample_value(name, labels)


def test_nothing_about_queues_before_first_poll(env):
    clock, store, registry = env
    assert (
        value(
            registry, "mimecast_queue_messages", account="acme", queue="processing", route="inbound"
        )
        is None
    )
    assert value(registry, "mimecast_up", account="acme") == 0
    assert (
        value(
            registry, "mimecast_last_success_timestamp_seconds", account="acme", queue="processing"
        )
        is None
    )
    for reason in REASONS:
        assert (
            value(
                registry,
                "mimecast_poll_errors_total",
                account="acme",
                queue="processing",
                reason=reason,
            )
            == 0
        )
    assert (
        value(
            registry,
            "mimecast_exporter_build_info",
            version=mimecast_exporter.__version__,
            revision=build().revision,
            pythonversion=build().python_version,
        )
        == 1
    )


def test_zero_fill_for_every_route_after_success(env):
    clock, store, registry = env
    now = clock.time()
    store.record_success("acme", "processing", snapshot(now, msg(), msg(attempts=5)), now, 0.5)
    labels = {"account": "acme", "queue": "processing"}
    assert value(registry, "mimecast_queue_messages", route="outbound", **labels) == 2
    assert value(registry, "mimecast_queue_attempts", route="outbound", **labels) == 7
    assert value(registry, "mimecast_queue_max_attempts", route="outbound", **labels) == 5
    assert value(registry, "mimecast_queue_size_bytes", route="outbound", **labels) == 200
    for route in ("inbound", "internal", "external"):
        assert value(registry, "mimecast_queue_messages", route=route, **labels) == 0
        assert (
            value(registry, "mimecast_queue_oldest_message_age_seconds", route=route, **labels) == 0
        )
        assert (
            value(
                registry,
                "mimecast_queue_oldest_message_created_timestamp_seconds",
                route=route,
                **labels,
            )
            is None
        )
    # The age histogram is per queue by default: the outbound messages.
    assert value(registry, "mimecast_queue_message_age_seconds_gcount", **labels) == 2
    # 'unknown' only once seen
    assert value(registry, "mimecast_queue_messages", route="unknown", **labels) is None
    # the other queue of the account has not succeeded yet: still down
    assert value(registry, "mimecast_up", account="acme") == 0
    store.record_success("acme", "bulk_processing", snapshot(now), now, 0.1)
    assert value(registry, "mimecast_up", account="acme") == 1
    assert value(registry, "mimecast_up", account="legacy") == 0


def test_oldest_age_is_computed_at_scrape_time(env):
    clock, store, registry = env
    now = clock.time()
    store.record_success("acme", "processing", snapshot(now, msg()), now, 0.5)
    labels = {"account": "acme", "queue": "processing", "route": "outbound"}
    assert value(registry, "mimecast_queue_oldest_message_age_seconds", **labels) == 3600
    assert (
        value(registry, "mimecast_queue_oldest_message_created_timestamp_seconds", **labels)
        == now - 3600
    )
    clock.advance(100)
    assert value(registry, "mimecast_queue_oldest_message_age_seconds", **labels) == 3700


def test_histograms_are_rebuilt_not_accumulated(detailed):
    clock, store, registry = detailed
    now = clock.time()
    labels = {"account": "acme", "queue": "processing", "route": "outbound"}
    store.record_success("acme", "processing", snapshot(now, msg(), msg(), msg()), now, 0.5)
    assert value(registry, "mimecast_queue_message_age_seconds_gcount", **labels) == 3
    assert value(registry, "mimecast_queue_message_size_bytes_gsum", **labels) == 300
    store.record_success("acme", "processing", snapshot(now, msg()), now, 0.5)
    assert value(registry, "mimecast_queue_message_age_seconds_gcount", **labels) == 1
    assert value(registry, "mimecast_queue_message_age_seconds_bucket", le="3600.0", **labels) == 1
    assert value(registry, "mimecast_queue_message_size_bytes_gsum", **labels) == 100


@pytest.mark.parametrize("step", [-3600.0, -86400.0 * 365, 3600.0])
def test_staleness_ignores_wall_clock_steps(env, step):
    """Ages of the exporter's own events are on the monotonic clock: a wall-clock
    step (NTP, a VM resumed) neither keeps stale data nor drops fresh data."""
    clock, store, registry = env
    now = clock.time()
    store.record_success("acme", "processing", snapshot(now, msg()), now, 0.5)
    labels = {"account": "acme", "queue": "processing", "route": "outbound"}
    clock.step_wall(step)
    assert value(registry, "mimecast_queue_messages", **labels) == 1  # still fresh
    clock.advance(STALE_AFTER + 1)
    assert value(registry, "mimecast_queue_messages", **labels) is None  # stale, step or not


def test_stale_series_expire_but_health_stays(env):
    clock, store, registry = env
    now = clock.time()
    store.record_success("acme", "processing", snapshot(now, msg()), now, 0.5)
    labels = {"account": "acme", "queue": "processing"}
    clock.advance(STALE_AFTER)
    assert value(registry, "mimecast_queue_messages", route="outbound", **labels) == 1
    store.record_failure("acme", "processing", "timeout", 30)
    clock.advance(1)
    assert value(registry, "mimecast_queue_messages", route="outbound", **labels) is None
    assert value(registry, "mimecast_queue_message_age_seconds_gcount", **labels) is None
    assert value(registry, "mimecast_last_success_timestamp_seconds", **labels) == now
    assert value(registry, "mimecast_up", account="acme") == 0
    assert value(registry, "mimecast_poll_errors_total", reason="timeout", **labels) == 1


def test_failure_keeps_last_complete_snapshot(env):
    clock, store, registry = env
    now = clock.time()
    store.record_success("acme", "processing", snapshot(now, msg(), msg()), now, 0.5)
    store.record_failure("acme", "processing", "http_5xx", 2.0)
    labels = {"account": "acme", "queue": "processing"}
    assert value(registry, "mimecast_queue_messages", route="outbound", **labels) == 2
    assert value(registry, "mimecast_poll_duration_seconds", **labels) == 2.0


def test_api_request_counters_and_rate_limit(env):
    clock, store, registry = env
    store.record_response("acme", "find-processing-messages", 200, 99)
    store.record_response("acme", "token", 200, None)
    store.record_response("acme", "find-processing-messages", 429, 0)
    find = {"account": "acme", "endpoint": "find-processing-messages"}
    assert value(registry, "mimecast_api_requests_total", code="200", **find) == 1
    assert value(registry, "mimecast_api_requests_total", code="429", **find) == 1
    token = {"account": "acme", "endpoint": "token"}
    assert value(registry, "mimecast_api_requests_total", code="200", **token) == 1
    assert value(registry, "mimecast_api_rate_limit_remaining", account="acme") == 0
    assert value(registry, "mimecast_api_rate_limit_remaining", account="legacy") is None


@pytest.mark.parametrize("metrics", [None, MetricsConfig(by_route=True, size_histogram=True)])
def test_exposition_passes_promtool(metrics):
    promtool = debian_binary("promtool", "prometheus")
    clock, store, registry = make_env(metrics)
    now = clock.time()
    store.record_success("acme", "processing", snapshot(now, msg(), msg(route="weird")), now, 0.5)
    store.record_failure("legacy", "processing", "auth", 0.2)
    store.record_response("acme", "find-processing-messages", 200, 10)
    text = generate_latest(registry)
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == b"" and result.stderr.strip() == b"", result.stderr


def test_distributions_are_gauge_histograms_in_both_formats(detailed):
    """A snapshot of the queue, not events since start: _gcount and _gsum, never
    _count and _sum (which rate() would take for counters)."""
    from prometheus_client.openmetrics.exposition import generate_latest as openmetrics

    clock, store, registry = detailed
    now = clock.time()
    store.record_success("acme", "processing", snapshot(now, msg(), msg(size=5000)), now, 0.5)
    text, om = generate_latest(registry).decode(), openmetrics(registry).decode()
    for name in ("mimecast_queue_message_age_seconds", "mimecast_queue_message_size_bytes"):
        assert f"# TYPE {name} gaugehistogram" in om
        for exposition in (text, om):
            assert f"{name}_gcount{{" in exposition and f"{name}_gsum{{" in exposition
            assert f"{name}_count{{" not in exposition and f"{name}_sum{{" not in exposition
            assert f"{name}_bucket{{" in exposition


def test_messages_by_status_per_route_zero_filled(detailed):
    from mimecast_exporter.status import STATUSES

    clock, store, registry = detailed
    now = clock.time()
    messages = [
        {**msg(), "info": "host mx.partner.example said: 550 5.1.1 User unknown"},
        {**msg(), "info": "connect to mx.partner.example:25: Connection refused"},
        {**msg(), "info": "Connection refused"},
        {**msg(route="inbound"), "info": "Queued for Processing"},
        msg(route="inbound"),  # no info at all
    ]
    store.record_success("acme", "processing", snapshot(now, *messages), now, 0.5)
    labels = {"account": "acme", "queue": "processing"}
    name = "mimecast_queue_messages_by_status"
    outbound = {**labels, "route": "outbound"}
    assert value(registry, name, status="connection_refused", **outbound) == 2
    assert value(registry, name, status="rejected_permanent", **outbound) == 1
    inbound = {**labels, "route": "inbound"}
    assert value(registry, name, status="processing", **inbound) == 1
    assert value(registry, name, status="none", **inbound) == 1
    for route in ("inbound", "outbound", "internal", "external"):
        total = sum(value(registry, name, status=s, route=route, **labels) for s in STATUSES)
        assert total == value(registry, "mimecast_queue_messages", route=route, **labels)


def test_locked_and_retry_overdue_messages(env):
    clock, store, registry = env
    now = clock.time()  # 2026-11-24T00:00:00Z

    def at(offset):
        return time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(now + offset))

    def m(locked=None, next_attempt=None, **extra):
        return {**msg(**extra), "lockedUntil": locked, "nextAttempt": next_attempt}

    messages = [
        m(locked=at(600), next_attempt=at(60)),  # locked, retry soon
        m(locked=at(-600), next_attempt=at(-3600)),  # lock over; retry an hour overdue
        m(next_attempt=at(-600)),  # 10 min late: within the grace
        m(route="inbound"),  # nulls: neither locked nor delayed
    ]
    store.record_success("acme", "processing", snapshot(now, *messages), now, 0.5)
    labels = {"account": "acme", "queue": "processing"}
    assert value(registry, "mimecast_queue_locked_messages", route="outbound", **labels) == 1
    assert value(registry, "mimecast_queue_retry_overdue_messages", route="outbound", **labels) == 1
    assert value(registry, "mimecast_queue_locked_messages", route="inbound", **labels) == 0
    assert value(registry, "mimecast_queue_locked_messages", route="internal", **labels) == 0


@pytest.mark.parametrize(
    "bad",
    [
        {},  # the answer does not carry the fields at all
        {"lockedUntil": "soon", "nextAttempt": "later"},
        {"lockedUntil": 12, "nextAttempt": ["x"]},
    ],
)
def test_retry_state_absent_when_a_message_does_not_say(env, bad):
    clock, store, registry = env
    now = clock.time()
    good = {**msg(), "lockedUntil": None, "nextAttempt": None}
    store.record_success("acme", "processing", snapshot(now, good, {**msg(), **bad}), now, 0.5)
    labels = {"account": "acme", "queue": "processing", "route": "outbound"}
    assert value(registry, "mimecast_queue_locked_messages", **labels) is None
    assert value(registry, "mimecast_queue_retry_overdue_messages", **labels) is None
    assert value(registry, "mimecast_queue_messages", **labels) == 2  # still counted


def test_messages_by_domain_and_their_ages_only_with_top_domains_and_complete_scans(env):
    from dataclasses import replace

    clock, store, registry = env
    now = clock.time()
    agg = QueueAggregator(now, top_domains=1)
    feed(
        agg,
        [
            {**msg(created="2026-11-23T20:00:00Z"), "to": [{"emailAddress": "a@slow.example"}]},
            {**msg(), "to": [{"emailAddress": "b@slow.example"}]},
            {**msg(created="2026-11-23T22:00:00Z"), "to": [{"emailAddress": "c@fine.example"}]},
        ],
    )
    store.record_success("acme", "processing", agg.snapshot(), now, 0.5)
    labels = {"account": "acme", "queue": "processing", "route": "outbound"}
    name = "mimecast_queue_messages_by_domain"
    assert value(registry, name, domain="slow.example", **labels) == 2
    assert value(registry, name, domain="other", **labels) == 1
    assert value(registry, name, domain="fine.example", **labels) is None  # K=1: in other
    age = "mimecast_queue_domain_oldest_message_age_seconds"
    before = value(registry, age, domain="slow.example", **labels)
    assert before == now - parse_mimecast_date("2026-11-23T20:00:00Z")
    clock.advance(60)  # computed at scrape time
    assert value(registry, age, domain="slow.example", **labels) == before + 60
    assert value(registry, age, domain="other", **labels) == before + 60 - 7200
    # The same queue, but the scan stopped early: no domain series at all.
    partial = replace(
        agg.snapshot(),
        complete=False,
        routes={route: replace(stats, sums=None) for route, stats in agg.snapshot().routes.items()},
    )
    store.record_success("acme", "processing", partial, now, 0.5)
    text = generate_latest(registry).decode()
    assert "mimecast_queue_messages_by_domain{" not in text and age + "{" not in text


def test_the_overdue_grace_is_poll_retry_overdue_after():
    now = 1_795_478_400.0
    at = lambda offset: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + offset))  # noqa: E731
    messages = [
        {**msg(), "nextAttempt": at(-1200), "lockedUntil": None},  # 20 min late
        {**msg(), "nextAttempt": at(-4000), "lockedUntil": None},  # over an hour late
    ]
    counts = []
    for grace in (900.0, 3600.0):
        agg = QueueAggregator(now, retry_overdue_after=grace)
        feed(agg, messages)
        counts.append(agg.snapshot().routes["outbound"].sums.retry_overdue)
    assert counts == [2, 1]


STATUS_MESSAGES = [
    {**msg(), "info": "host mx.partner.example said: 550 5.1.1 User unknown"},
    {**msg(), "info": "Connection refused"},
    {**msg(route="inbound"), "info": "Connection refused"},
    {**msg(route="inbound", size=7000), "info": "Queued for Processing"},
]


def test_by_default_status_and_age_are_per_queue_and_sizes_not_served(env):
    from mimecast_exporter.status import STATUSES

    clock, store, registry = env
    now = clock.time()
    store.record_success("acme", "processing", snapshot(now, *STATUS_MESSAGES), now, 0.5)
    labels = {"account": "acme", "queue": "processing"}
    name = "mimecast_queue_messages_by_status"
    assert value(registry, name, status="connection_refused", **labels) == 2
    assert value(registry, name, status="rejected_permanent", **labels) == 1
    assert value(registry, name, status="processing", **labels) == 1
    assert sum(value(registry, name, status=s, **labels) for s in STATUSES) == 4
    age = "mimecast_queue_message_age_seconds"
    assert value(registry, f"{age}_gcount", **labels) == 4
    assert value(registry, f"{age}_bucket", le="3600.0", **labels) == 4
    assert value(registry, f"{age}_gsum", **labels) == 4 * 3600
    text = generate_latest(registry).decode()
    assert "mimecast_queue_message_size_bytes" not in text
    assert 'route="' not in "".join(
        line for line in text.splitlines() if line.startswith((name, age))
    )


def test_a_queue_s_status_and_age_are_absent_when_a_route_has_no_sums(env):
    """They add up every route: one without sums would leave its messages out."""
    from dataclasses import replace

    clock, store, registry = env
    now = clock.time()
    whole = snapshot(now, *STATUS_MESSAGES)
    routes = {**whole.routes, "inbound": replace(whole.routes["inbound"], sums=None)}
    store.record_success("acme", "processing", replace(whole, routes=routes), now, 0.5)
    text = generate_latest(registry).decode()
    assert "mimecast_queue_messages_by_status{" not in text
    assert "mimecast_queue_message_age_seconds_bucket{" not in text
    assert 'mimecast_queue_size_bytes{account="acme",queue="processing",route="outbound"}' in text


def test_opt_in_series_carry_the_route(detailed):
    clock, store, registry = detailed
    now = clock.time()
    store.record_success("acme", "processing", snapshot(now, *STATUS_MESSAGES), now, 0.5)
    inbound = {"account": "acme", "queue": "processing", "route": "inbound"}
    size = "mimecast_queue_message_size_bytes"
    assert value(registry, f"{size}_gsum", **inbound) == 7100
    assert value(registry, f"{size}_bucket", le="4096.0", **inbound) == 1
    assert value(registry, "mimecast_queue_messages_by_status", status="processing", **inbound) == 1
    assert value(registry, "mimecast_queue_message_age_seconds_gcount", **inbound) == 2


def test_an_account_serves_at_most_150_samples_by_default(env):
    """Two queues, four routes, every queue read whole, every figure known, the
    status codes of a troubled account: the series of one account at default
    settings (docs/metrics.md)."""
    clock, store, registry = env
    now = clock.time()
    retry = {"lockedUntil": None, "nextAttempt": "2026-11-23T23:30:00Z"}
    messages = [{**msg(route=r, created=c), **retry}
                for r in ("inbound", "outbound", "internal", "external")
                for c in ("2026-11-23T23:00:00Z", "2026-11-20T00:00:00Z")]  # fmt: skip
    for queue in ("processing", "bulk_processing"):
        store.record_success("acme", queue, snapshot(now, *messages), now, 0.5)
        store.record_failure("acme", queue, "timeout", 30)
        store.record_success("acme", queue, snapshot(now, *messages), now, 0.5)
    for code in (200, 429, 500, 503):
        store.record_response("acme", "find-processing-messages", code, 10)
    for code in (200, 401):
        store.record_response("acme", "token", code, 10)
    samples = [
        sample
        for family in registry.collect()
        for sample in family.samples
        if sample.labels.get("account") == "acme"
    ]
    assert 100 < len(samples) <= 150, len(samples)


def test_a_reload_changes_which_series_are_served():
    from mimecast_exporter.app import Exporter
    from mimecast_exporter.clock import SystemClock
    from mimecast_exporter.config import Config, PollConfig

    exporter = Exporter(Config(PollConfig(), ()), SystemClock(), process_metrics=False)
    now = time.time()
    exporter.store.reconfigure(["acme"], ["processing"])
    exporter.store.record_success("acme", "processing", snapshot(now, *STATUS_MESSAGES), now, 1)
    size = "mimecast_queue_message_size_bytes_gcount"
    labels = {"account": "acme", "queue": "processing"}
    assert exporter.registry.get_sample_value(size, labels) is None
    exporter.reload(Config(PollConfig(), (), MetricsConfig(size_histogram=True)))
    exporter.store.reconfigure(["acme"], ["processing"])  # no accounts: polls nothing
    exporter.store.record_success("acme", "processing", snapshot(now, *STATUS_MESSAGES), now, 1)
    assert exporter.registry.get_sample_value(size, labels) == 4
