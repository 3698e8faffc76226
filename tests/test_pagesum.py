"""The C sums of a page (mimecast_exporter/_pagesum.c) against the Python loop.

QueueAggregator.add hands a page of well-formed messages to the C extension
and any other page to add_each, the loop. Both must give the same figures to
the last bit, and the C side must refuse (None) every value it does not take
exactly as the loop would, so that the loop sees it.
"""

from __future__ import annotations

import json
import math
import os
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mimecast_exporter import aggregate
from mimecast_exporter.aggregate import QueueAggregator
from mimecast_exporter.mimecast.pages import Message, decode_page

NOW = 1_795_478_400.25  # 2026-11-24T00:00:00.25Z: a fraction, as time.time() has
pagesum = aggregate._pagesum


def test_the_extension_is_built_where_the_tests_run():
    """make test builds it (MIMECAST_EXPORTER_REQUIRE_C=1); without it every
    page takes the loop, correct but at several times the CPU."""
    if os.environ.get("MIMECAST_EXPORTER_ALLOW_NO_C") == "1":
        pytest.skip("told that this environment has no C compiler")
    assert pagesum is not None


needs_c = pytest.mark.skipif(pagesum is None, reason="mimecast_exporter._pagesum not built")


def _date(seconds: float, style: str) -> str:
    when = datetime.fromtimestamp(seconds, UTC)
    text = when.strftime("%Y-%m-%dT%H:%M:%S")
    return {
        "z4": text + "+0000",
        "colon": text + "+00:00",
        "Z": text + "Z",
        "bare": text,
        "space": text.replace("T", " ") + "+0000",
        # What the C side refuses and the loop parses or rejects itself:
        "fraction": text + ".500Z",
        "east": (when + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S") + "+0200",
        "feb30": "2026-02-30T10:00:00+0000",
        "hour24": text[:11] + "24" + text[13:] + "+0000",
        "junk": "yesterday",
    }[style]


GOOD_STYLES = ["z4", "colon", "Z", "bare", "space"]
BAD_STYLES = ["fraction", "east", "feb30", "hour24", "junk"]
GOOD_ROUTES = ["inbound", "outbound", "internal", "external", "INBOUND", "Outbound"]
INFOS = [
    "Queued for delivery",
    "Remote server refused: 421 4.7.0 Try again later",
    "451 Internal resource is temporarily unavailable",
    "No MX records are available",
    "",
    None,
]


# Values on and next to the bucket bounds, where a comparison the wrong way shows.
EDGE_SIZES = [int(b) + d for b in aggregate.SIZE_BUCKETS for d in (-1, 0, 1)]
EDGE_AGES = [int(b) + d for b in aggregate.AGE_BUCKETS for d in (-1, 0, 1)]


def good_message(draw: st.DrawFn) -> dict:
    age = draw(
        st.one_of(st.integers(min_value=-120, max_value=900_000), st.sampled_from(EDGE_AGES))
    )
    created = math.floor(NOW) - age
    message = {
        "routing": draw(st.sampled_from(GOOD_ROUTES)),
        "size": draw(
            st.one_of(st.integers(min_value=0, max_value=60_000_000), st.sampled_from(EDGE_SIZES))
        ),
        "attempts": draw(st.integers(min_value=0, max_value=40)),
        "created": _date(created, draw(st.sampled_from(GOOD_STYLES))),
        "info": draw(st.sampled_from(INFOS)),
        "to": [{"emailAddress": f"user@d{draw(st.integers(0, 3))}.example"}],
    }
    for field in ("nextAttempt", "lockedUntil"):
        choice = draw(st.sampled_from(["date", "date", "null", "missing"]))
        if choice == "date":
            offset = draw(st.one_of(st.integers(-5000, 5000), st.sampled_from([-900, 0])))
            message[field] = _date(math.floor(NOW) + offset, "z4")
        elif choice == "null":
            message[field] = None
    return message


def spoil(draw: st.DrawFn, message: dict) -> dict:
    """One value the C side must leave to the loop."""
    field, value = draw(
        st.sampled_from(
            [
                ("routing", "Inbound "),
                ("routing", "unknown"),
                ("routing", None),
                ("size", -1),
                ("size", 2**60),
                ("size", True),
                ("size", 10.0),
                ("size", "123"),
                ("attempts", None),
                ("created", _date(NOW - 100, draw(st.sampled_from(BAD_STYLES)))),
                ("created", None),
                ("lockedUntil", "2026-11-24T01:00:00+0100"),
                ("lockedUntil", "soon"),
                ("nextAttempt", 5),
            ]
        )
    )
    return {**message, field: value}


@st.composite
def pages(draw: st.DrawFn) -> list[list[dict]]:
    result = []
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        page = [good_message(draw) for _ in range(draw(st.integers(min_value=0, max_value=30)))]
        if page and draw(st.booleans()) and draw(st.booleans()):
            index = draw(st.integers(min_value=0, max_value=len(page) - 1))
            page[index] = spoil(draw, page[index])
        result.append(page)
    return result


def _decoded(page: list[dict]) -> list[Message]:
    body = json.dumps({"data": [{"messages": page}]}).encode()
    return decode_page(body, 1, "test", 1 << 20).messages


def _figures(agg: QueueAggregator) -> tuple:
    return agg.snapshot(), agg.prefix(), agg.ascending, agg.scanned


@needs_c
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pages(),
    st.integers(min_value=0, max_value=3),
    st.sampled_from([0.0, 900.0, 7200.0]),
    st.sampled_from([NOW, math.floor(NOW)]),  # whole seconds: ages right on the bounds
)
def test_c_and_the_loop_give_the_same_figures(pages, top_domains, overdue_after, now):
    both = [
        QueueAggregator(now, top_domains=top_domains, retry_overdue_after=overdue_after)
        for _ in range(2)
    ]
    for page in pages:
        body = json.dumps({"data": [{"messages": page}]}).encode()
        decoded = decode_page(body, 1, "test", 1 << 20)
        both[0].add(decoded.messages, decoded.details)
        both[1].add_each(decoded.messages, decoded.details)
    assert _figures(both[0]) == _figures(both[1])
    # Not just equal but equal to the bit, the float sums included.
    for route, stats in both[0].snapshot().routes.items():
        other = both[1].snapshot().routes[route]
        assert math.copysign(1, stats.sums.age.total) == math.copysign(1, other.sums.age.total)
        assert stats.sums.age.total.hex() == other.sums.age.total.hex()


def c_context(cut: float = math.inf) -> tuple:
    """The C sums' arguments after the page's messages: a fresh aggregator's at
    NOW, with an empty status cache (every info a miss) and the given cut."""
    return (
        aggregate._ROUTE_INDEX,
        {},
        msgspec.UNSET,
        NOW,
        aggregate._microseconds(NOW),
        aggregate._microseconds(NOW - 900),
        aggregate.SIZE_BUCKETS,
        aggregate.AGE_BUCKETS,
        2**53,
        len(aggregate.STATUSES),
        aggregate.OLDEST_MESSAGES,
        -math.inf,
        False,
        cut,
        (0.0, 0.0, 0.0, 0.0),
    )


def _summarize(messages: list[Message], *, cut: float = math.inf):
    return pagesum.summarize(messages, Message, *c_context(cut))


def _one(**fields) -> dict:
    message = {
        "routing": "outbound",
        "size": 2048,
        "attempts": 3,
        "created": "2026-11-23T23:00:00+0000",
        "info": "Queued for delivery",
    }
    return {**message, **fields}


@needs_c
def test_a_clean_page_is_summed_in_c():
    """Not vacuous: the pages the tests above call clean do take the C path."""
    page = [_one(), _one(routing="INBOUND", lockedUntil="2026-11-24T01:00:00Z")]
    routes, newest, falls, older = _summarize(_decoded(page))
    outbound, inbound = routes[aggregate.ROUTES.index("outbound")], routes[0]
    assert outbound[:4] == (1, 2048, 3, 3) and inbound[:4] == (1, 2048, 3, 3)
    assert inbound[10] == 1  # locked
    assert newest == NOW - 0.25 - 3600 and falls is False
    assert [index for _, index in older] == [0, 1]


@needs_c
@pytest.mark.parametrize(
    "fields",
    [
        {"routing": "inbound "},
        {"routing": 1},
        {"size": -1},
        {"size": 2**53 + 1},
        {"size": True},
        {"attempts": 1.0},
        {"created": "2026-11-23T23:00:00.5Z"},
        {"created": "2026-11-23T23:00:00+0100"},
        {"created": "2026-11-23T23:00:60Z"},
        {"created": "2025-02-29T00:00:00Z"},
        {"created": "0000-01-01T00:00:00Z"},
        {"created": "\uff12026-11-23T23:00:00Z"},  # a full-width digit
        {"created": None},
        {"lockedUntil": "2026-11-23T23:00:00+0100"},  # a date, but not in UTC
        {"nextAttempt": "tomorrow"},
    ],
)
def test_values_the_loop_must_see_send_the_page_to_it(fields):
    assert _summarize(_decoded([_one(), _one(**fields)])) is None


@needs_c
@pytest.mark.parametrize(
    "created, seconds",
    [
        ("2024-02-29T12:00:00Z", datetime(2024, 2, 29, 12, tzinfo=UTC).timestamp()),
        ("2000-02-29 00:00:00", datetime(2000, 2, 29, tzinfo=UTC).timestamp()),
        ("0001-01-01T00:00:00+00:00", datetime(1, 1, 1, tzinfo=UTC).timestamp()),
        ("9999-12-31T23:59:59+0000", datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()),
        ("1969-07-20T20:17:40Z", datetime(1969, 7, 20, 20, 17, 40, tzinfo=UTC).timestamp()),
    ],
)
def test_dates_far_and_near_parse_as_python_does(created, seconds):
    routes, newest, _, _ = _summarize(_decoded([_one(created=created)]))
    assert newest == seconds
    assert routes[aggregate.ROUTES.index("outbound")][7] == seconds  # oldest


@needs_c
def test_a_datetime_in_another_zone_is_left_to_the_loop():
    """msgspec decodes +0100 to a datetime whose zone is not UTC."""
    east = datetime(2026, 11, 24, 1, tzinfo=timezone(timedelta(hours=1)))
    messages = _decoded([_one()])
    messages.append(msgspec.structs.replace(messages[0], locked_until=east))
    assert _summarize(messages) is None


@needs_c
def test_the_oldest_candidates_are_the_smallest_below_the_cut_first_seen_first():
    dates = [f"2026-11-23T2{hour}:00:00Z" for hour in (3, 1, 1, 2, 0)]
    page = [_one(created=date) for date in dates]
    _, _, _, older = _summarize(_decoded(page), cut=NOW - 0.25 - 2 * 3600)  # 22:00
    assert [index for _, index in older] == [4, 1, 2]  # 23:00 and 22:00 are not below


@needs_c
def test_bad_arguments_are_errors_not_crashes():
    with pytest.raises(TypeError):
        pagesum.summarize([], Message)
    with pytest.raises(ValueError, match="one per route"):
        pagesum.summarize(
            [], Message, {}, {}, None, NOW, 0, 0, (), (), 1, 1, 1, 0.0, False, 0.0, (0.0,)
        )
    fields = ("routing", "size", "attempts", "created", "info", "next_attempt", "locked_until")
    other = type("Other", (), dict.fromkeys(fields, 0))  # class attributes, not slots
    with pytest.raises(TypeError, match="not a plain struct field"):
        pagesum.summarize(
            [], other, {}, {}, None, NOW, 0, 0, (), (), 1, 1, 1, 0.0, False, 0.0, (0.0,) * 4
        )


def test_without_the_extension_every_page_takes_the_loop(monkeypatch):
    page = _decoded([_one(), _one(routing="inbound")])
    with_c = QueueAggregator(NOW)
    with_c.add(page)
    monkeypatch.setattr(aggregate, "_pagesum", None)
    without = QueueAggregator(NOW)
    without.add(page)
    assert with_c.snapshot() == without.snapshot()
