"""/metrics from the part cache: the registry's series exactly, re-formatted only on change."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OM_TYPE
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text

from mimecast_exporter.aggregate import QueueAggregator
from mimecast_exporter.collector import MimecastCollector
from mimecast_exporter.exposition import MetricsPage, split_families
from mimecast_exporter.store import SnapshotStore
from tests.fakes import FakeClock, feed

STALE_AFTER = 300.0
FORMATS = [
    ("text", generate_latest, "text/plain; version=0.0.4; charset=utf-8", parse_text),
    ("openmetrics", generate_openmetrics, OM_TYPE, parse_om),
]


def snapshot(now, *routes):
    agg = QueueAggregator(now, top_domains=2)  # the domain series and their ages too
    feed(
        agg,
        [
            {
                "routing": r,
                "size": 10 * i,
                "attempts": i,
                "created": "2026-11-23T23:00:00Z",
                "info": "451 4.7.1 greylisted",
                "nextAttempt": None,
                "lockedUntil": None,
                "to": [{"emailAddress": f"u@d{i % 3}.example"}],
            }
            for i, r in enumerate(routes)
        ],
    )
    return agg.snapshot()


@pytest.fixture
def env():
    clock = FakeClock()
    store = SnapshotStore(["acme", "legacy"], ["processing", "bulk_processing"], clock.monotonic)
    collector = MimecastCollector(store, STALE_AFTER, clock.time, clock.monotonic)
    registry = CollectorRegistry(auto_describe=True)
    registry.register(collector)
    page = MetricsPage(collector, CollectorRegistry(auto_describe=True))
    store.record_success("acme", "processing", snapshot(clock.time(), "outbound", "inbound"), 1, 2)
    store.record_failure("legacy", "processing", "auth", 0.5)
    store.record_response("acme", "find-processing-messages", 200, 42.0)
    return clock, store, collector, registry, page


def samples(text, parse):
    return sorted(
        (s.name, tuple(sorted(s.labels.items())), s.value)
        for family in parse(text)
        for s in family.samples
    )


def families(text, parse):
    return sorted((f.name, f.type, f.documentation) for f in parse(text))


@pytest.mark.parametrize(("fmt", "encoder", "content_type", "parse"), FORMATS)
def test_the_page_serves_exactly_the_registry(env, fmt, encoder, content_type, parse):
    clock, store, collector, registry, page = env
    for _ in range(2):  # the first render fills the cache, the second reads it
        served = page.render(encoder, content_type).decode()
        expected = encoder(registry).decode()
        assert samples(served, parse) == samples(expected, parse)
        assert families(served, parse) == families(expected, parse)
    if fmt == "openmetrics":
        assert served.endswith("# EOF\n") and served.count("# EOF") == 1


def test_a_part_is_formatted_by_the_poll_that_changed_it_not_by_scrapes(env):
    clock, store, collector, registry, page = env
    built = []
    real_parts = collector.parts

    def counting_parts(only=None):
        return [
            type(p)(p.key, p.token, lambda b=p.build, k=p.key: built.append(k) or b())
            for p in real_parts(only)
        ]

    collector.parts = counting_parts
    store.listen(page.changed)
    page.render(generate_latest, "text/plain")
    assert len(built) == 4 + 2 + 1  # every queue, every account, the build info: once
    built.clear()
    for fmt in FORMATS:
        page.render(fmt[1], fmt[2])
    assert built == []  # nothing changed: scrapes join what is formatted
    store.record_success("legacy", "bulk_processing", snapshot(clock.time(), "internal"), 3, 1)
    # Formatted then, in the writer's thread. Legacy stays down (its processing
    # queue failed), so its account part is unchanged and kept.
    assert built == [("queue", "legacy", "bulk_processing")]
    built.clear()
    text = page.render(generate_latest, "text/plain").decode()
    assert built == []
    assert 'account="legacy",queue="bulk_processing",route="internal"' in text
    assert samples(text, parse_text) == samples(generate_latest(registry).decode(), parse_text)
    clock.advance(60)  # the ages move with the clock, and nothing else
    text = page.render(generate_latest, "text/plain").decode()
    assert built == []
    assert samples(text, parse_text) == samples(generate_latest(registry).decode(), parse_text)


def test_stale_and_removed_series_go_from_the_page(env):
    clock, store, collector, registry, page = env
    text = page.render(generate_latest, "text/plain").decode()
    assert 'mimecast_queue_messages{account="acme"' in text
    clock.advance(STALE_AFTER + 1)
    text = page.render(generate_latest, "text/plain").decode()
    assert "mimecast_queue_messages{" not in text  # stale: the token's freshness changed
    store.reconfigure(["acme"], ["processing"])
    text = page.render(generate_latest, "text/plain").decode()
    assert 'account="legacy"' not in text
    assert all(key == ("build",) or key[1] == "acme" for key in page.cache._tokens)
    for formatted in page.cache._formats.values():  # nothing kept of legacy
        assert all(
            key[1] == "acme"
            for by_part in formatted.chunks.values()
            for key in by_part
            if key != ("build",)
        )


def test_split_families_cuts_at_help_lines():
    text = (
        b"# HELP a_total A.\n# TYPE a_total counter\na_total 1.0\n"
        b'# HELP b B.\n# TYPE b gauge\nb{x="1"} 2.0\nb{x="2"} 3.0\n# EOF\n'
    )
    order, headers, chunks = split_families(text)
    assert order == ["a_total", "b"]
    assert headers["b"] == b"# HELP b B.\n# TYPE b gauge\n"
    assert chunks == {"a_total": b"a_total 1.0\n", "b": b'b{x="1"} 2.0\nb{x="2"} 3.0\n'}


def test_label_values_are_escaped_as_the_registry_does():
    clock = FakeClock()
    odd = 'we"ird\\name\nx'  # config refuses such names; the page must not break on them
    store = SnapshotStore([odd], ["processing"], clock.monotonic)
    collector = MimecastCollector(store, STALE_AFTER, clock.time, clock.monotonic)
    registry = CollectorRegistry(auto_describe=True)
    registry.register(collector)
    page = MetricsPage(collector, CollectorRegistry(auto_describe=True))
    store.record_success(odd, "processing", snapshot(clock.time(), "outbound"), 1, 2)
    for _, encoder, content_type, parse in FORMATS:
        served = page.render(encoder, content_type).decode()
        assert samples(served, parse) == samples(encoder(registry).decode(), parse)


def test_the_domain_series_and_their_ages_are_on_the_page(env):
    clock, store, collector, registry, page = env
    text = page.render(generate_latest, "text/plain").decode()
    for name in (
        "mimecast_queue_messages_by_domain",
        "mimecast_queue_domain_oldest_message_age_seconds",
    ):
        lines = [line for line in text.splitlines() if line.startswith(name + "{")]
        assert any('domain="d0.example"' in line and 'route="outbound"' in line for line in lines)
    assert 'domain="other"' in text  # zero messages: a count, and no age


def test_a_failing_listener_does_not_fail_the_poll_that_recorded(env, caplog):
    clock, store, collector, registry, page = env

    def broken(key):
        raise RuntimeError("formatting bug")

    store.listen(broken)
    store.record_success("legacy", "processing", snapshot(clock.time(), "internal"), 5, 1)
    assert store.view().queues[("legacy", "processing")].last_poll_ok is True
    assert any("formatting a changed part" in r.getMessage() for r in caplog.records)
