"""Messages into per-route totals, whatever shape Mimecast's fields come in."""

import logging

import pytest

from mimecast_exporter.aggregate import AGE_BUCKETS, ROUTES, QueueAggregator, parse_mimecast_date
from tests.fakes import feed

NOW = 1_795_478_400.0  # 2026-11-24T00:00:00Z


def message(**fields):
    base = {
        "id": "m1",
        "routing": "outbound",
        "size": 2048,
        "attempts": 3,
        "created": "2026-11-23T23:00:00+0000",
    }
    base.update(fields)
    return base


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-23T23:00:00+0000",
        "2026-11-23T23:00:00+00:00",
        "2026-11-23T23:00:00Z",
        "2026-11-23T23:00:00.000Z",
        "2026-11-23T23:00:00",
        "2026-11-24T01:00:00+0200",
    ],
)
def test_dates_in_every_seen_zone_style(text):
    assert parse_mimecast_date(text) == NOW - 3600


@pytest.mark.parametrize("bad", [None, "", "yesterday", 12345, "2026-13-45T99:00:00+0000", []])
def test_bad_dates_are_none(bad):
    assert parse_mimecast_date(bad) is None


def test_sums_per_route_and_four_routes_always_present():
    agg = QueueAggregator(NOW)
    feed(agg, [message(), message(size=1000, attempts=7, created="2026-11-23T20:00:00Z")])
    feed(agg, [message(routing="inbound", size=10, attempts=1)])
    snap = agg.snapshot()
    assert set(snap.routes) == set(ROUTES)
    out = snap.routes["outbound"]
    assert out.messages == 2
    assert (out.sums.size_bytes, out.sums.attempts, out.sums.max_attempts) == (3048, 10, 7)
    assert out.oldest_created == NOW - 4 * 3600
    assert snap.routes["inbound"].messages == 1
    assert snap.routes["internal"].messages == 0
    assert snap.routes["internal"].oldest_created is None
    assert snap.messages == 3


def test_histograms_bucket_by_age_and_size():
    agg = QueueAggregator(NOW)
    feed(
        agg,
        [
            message(created="2026-11-23T23:59:30Z", size=500),  # 30 s old, 500 B
            message(created="2026-11-23T22:00:00Z", size=3_000_000),
        ],
    )  # 2 h old, 3 MB
    stats = agg.snapshot().routes["outbound"].sums
    cumulative = dict(stats.age.cumulative())
    assert cumulative["60.0"] == 1
    assert cumulative["3600.0"] == 1
    assert cumulative["14400.0"] == 2
    assert cumulative["+Inf"] == 2
    assert stats.age.total == 30 + 7200
    assert len(stats.age.counts) == len(AGE_BUCKETS) + 1
    sizes = dict(stats.size.cumulative())
    assert sizes["1024.0"] == 1 and sizes["1.048576e+06"] == 1 and sizes["4.194304e+06"] == 2
    assert stats.size.total == 3_000_500


@pytest.mark.parametrize(
    "fields",
    [
        {"size": None},
        {"size": "big"},
        {"size": -1},
        {"size": True},
        {"size": 1.5},
        {"attempts": None},
        {"attempts": "three"},
        {"attempts": [1]},
        {"created": None},
        {"created": "not a date"},
        {"created": 1700000000},
        {"routing": None},
        {"routing": 42},
        {"routing": "sideways"},
    ],
)
def test_bad_field_skips_the_value_but_counts_the_message(fields, caplog):
    agg = QueueAggregator(NOW, {"account": "acme", "queue": "processing"})
    with caplog.at_level(logging.DEBUG, logger="mimecast_exporter.aggregate"):
        assert feed(agg, [message(**fields)]) == 1
    snap = agg.snapshot()
    assert snap.messages == 1
    assert any("bad message field" in r.getMessage() for r in caplog.records)


def test_missing_fields_entirely():
    agg = QueueAggregator(NOW)
    feed(agg, [{}])
    snap = agg.snapshot()
    unknown = snap.routes["unknown"]
    assert unknown.messages == 1
    assert (unknown.sums.size_bytes, unknown.sums.attempts, unknown.sums.max_attempts) == (0, 0, 0)
    assert unknown.sums.age.count == 0
    # A message without a date: its route's oldest age is not known, so not served.
    assert unknown.oldest_created is None and not unknown.oldest_known


def test_string_numbers_and_case_are_accepted():
    agg = QueueAggregator(NOW)
    feed(
        agg,
        [message(routing=" Inbound ", size="4096", attempts="2", created="2026-11-23T23:00:00Z")],
    )
    stats = agg.snapshot().routes["inbound"]
    assert (stats.messages, stats.sums.size_bytes, stats.sums.attempts) == (1, 4096, 2)


def test_non_objects_are_not_messages():
    agg = QueueAggregator(NOW)
    assert feed(agg, [None, "x", 3, [], message()]) == 1
    assert agg.snapshot().messages == 1


def test_future_created_is_age_zero():
    agg = QueueAggregator(NOW)
    feed(agg, [message(created="2026-11-24T01:00:00Z")])
    stats = agg.snapshot().routes["outbound"].sums
    assert stats.age.total == 0
    assert dict(stats.age.cumulative())["60.0"] == 1


def test_snapshot_is_immutable():
    snap = QueueAggregator(NOW).snapshot()
    with pytest.raises(TypeError):
        snap.routes["inbound"] = None
