"""Decoding pages: the typed fast path, the tolerant path, and the memory bound."""

from __future__ import annotations

import json
import tracemalloc

import pytest

from mimecast_exporter.aggregate import QueueAggregator
from mimecast_exporter.mimecast.errors import PollError
from mimecast_exporter.mimecast.filters import requested_routes, route_filter
from mimecast_exporter.mimecast.pages import (
    COST_PER_ELEMENT,
    ELEMENTS_FACTOR,
    NOT_A_SCALAR,
    UNREAD,
    decode_page,
)

CAP = 32 * 1024 * 1024


def decode(obj_or_bytes, cap=CAP):
    raw = obj_or_bytes if isinstance(obj_or_bytes, bytes) else json.dumps(obj_or_bytes).encode()
    return decode_page(raw, 1, "rid", cap)


def envelope(messages, **pagination):
    return {"meta": {"pagination": pagination}, "data": [{"messages": messages}], "fail": []}


def test_only_the_four_fields_are_kept():
    page = decode(envelope([{"routing": "inbound", "size": 5, "to": {"x": [1, 2]}, "id": "m"}]))
    (message,) = page.messages
    assert (message.routing, message.size, message.attempts, message.created) == (
        "inbound",
        5,
        None,
        None,
    )


def test_a_page_the_typed_decode_rejects_is_read_tolerantly_with_the_same_result():
    messages = [
        {"routing": "outbound", "size": {"bytes": 10}, "attempts": [1], "created": "x"},
        "not a message",
        7,
        {"routing": "inbound", "size": "12", "attempts": 2.0},
    ]
    page = decode(envelope(messages))
    assert [m.routing for m in page.messages] == ["outbound", "inbound"]
    assert page.messages[0].size is NOT_A_SCALAR and page.messages[0].attempts is NOT_A_SCALAR
    fast, plain = QueueAggregator(0.0), QueueAggregator(0.0)
    fast.add(page.messages)
    assert plain.add_json(messages) == 2
    assert fast.snapshot() == plain.snapshot()


@pytest.mark.parametrize(
    ("pagination", "expected"),
    [
        ({"next": "abc", "totalCount": 12}, ("abc", 12)),
        ({"next": 17}, ("17", None)),
        ({"next": "", "totalCount": 0}, (None, 0)),
        ({"totalCount": "12"}, (None, None)),  # not a number: not trusted
        ({"totalCount": -1}, (None, None)),
        ({"totalCount": 1.5}, (None, None)),
        ({"totalCount": True}, (None, None)),
        ({"totalCount": 2**60}, (None, None)),
    ],
)
def test_next_and_total_count(pagination, expected):
    page = decode(envelope([], **pagination))
    assert (page.next_token, page.total_count) == expected


@pytest.mark.parametrize(
    ("raw", "reason", "words"),
    [
        (b'{"data": [], "meta": NaN}', "bad_response", "not valid JSON"),
        (b"[1, 2]", "bad_response", "JSON array"),
        (b'{"fail": []}', "bad_response", "no 'data' list"),
        (b'{"data": [{"messages": 5}]}', "bad_response", "not a list"),
        (b'{"data": [], "meta": {"pagination": {"next": [1]}}}', "bad_response", "next"),
        (b'{"data": [], "fail": [' + b'"x",' * 30_000 + b'"x"]}', "api_fail", "too large"),
    ],
)
def test_bad_envelopes(raw, reason, words):
    with pytest.raises(PollError) as info:
        decode(raw)
    assert info.value.reason == reason and words in info.value.message


def test_fail_array_on_a_200_is_an_error():
    with pytest.raises(PollError) as info:
        decode({"data": [], "fail": [{"errors": [{"code": "c", "message": "m", "retryable": 1}]}]})
    assert (info.value.reason, info.value.code) == ("api_fail", "c")


# --- memory -------------------------------------------------------------------------


def peak_of(call):
    tracemalloc.start()
    try:
        call()
    except PollError as error:
        outcome = error
    else:
        outcome = None
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, outcome


@pytest.mark.parametrize(
    "element", [b"{}", b"1", b'""', b"[]", b'{"routing":"a"}'], ids=["{}", "1", "str", "[]", "obj"]
)
def test_an_answer_of_millions_of_tiny_elements_is_refused_before_it_is_built(element):
    body = b'{"data":[{"messages":[' + b",".join([element] * (CAP // (len(element) + 1))) + b"]}]}"
    peak, error = peak_of(lambda: decode(body))
    assert error is not None and error.reason == "bad_response"
    assert "could take more than" in error.message
    assert peak < 1024 * 1024  # nothing was built


@pytest.mark.parametrize(
    "one",
    [
        # Values the loop must convert or skip.
        b'{"routing":"outbound","size":"1234","attempts":1.5,"created":"2026-11-23T23:00:00Z"}',
        # Well-formed values.
        b'{"routing":"outbound","size":1234,"attempts":1,"created":"2026-11-23T23:00:00Z"}',
    ],
    ids=["odd", "well-formed"],
)
def test_an_answer_at_the_bound_costs_at_most_three_times_the_cap_besides_its_bytes(one):
    """With the answer's own bytes, at most 4 times poll.max_response_bytes,
    decoded and counted."""
    cap = 4 * 1024 * 1024
    # As many objects as the bound lets in: the envelope and its data item are two.
    count = ELEMENTS_FACTOR * cap // COST_PER_ELEMENT - 2
    body = b'{"data":[{"messages":[' + b",".join([one] * count) + b"]}]}"
    assert len(body) <= cap

    def decode_and_count() -> QueueAggregator:
        aggregator = QueueAggregator(1_795_478_400.0)
        aggregator.add_page(decode(body, cap))
        return aggregator

    peak, error = peak_of(decode_and_count)
    assert error is None
    assert peak <= 3 * cap


def test_the_tolerant_path_is_bounded_too():
    cap = 1024 * 1024
    body = b'{"data":[{"messages":[' + b",".join([b"1"] * (cap // 2 - 20)) + b"]}]}"
    peak, error = peak_of(lambda: decode(body, cap))
    assert error is not None and "array elements" in error.message
    assert peak < 3 * cap


# --- the user's filters and the route filter -----------------------------------------


@pytest.mark.parametrize(
    ("filter_by", "routes"),
    [
        (None, ("inbound", "outbound", "internal", "external")),
        (({"attachments": True},), ("inbound", "outbound", "internal", "external")),
        (({"route": "all"},), ("inbound", "outbound", "internal", "external")),
        (({"route": " Outbound "},), ("outbound",)),
        (
            ({"fieldName": "route", "value": "inbound"}, {"route": "external"}),
            ("inbound", "external"),
        ),
    ],
)
def test_requested_routes(filter_by, routes):
    assert requested_routes(filter_by) == routes


def test_route_filter_keeps_the_users_other_filters():
    user = ({"route": "outbound", "attachments": True}, {"fieldName": "route", "value": "x"})
    assert route_filter(user, "outbound") == [{"attachments": True}, {"route": "outbound"}]
    assert route_filter(user, None) == [dict(item) for item in user]
    assert route_filter(None, "inbound") == [{"route": "inbound"}]
    assert route_filter(None, None) is None


def test_retry_fields_absent_null_or_bad_stay_apart():
    """Absent (UNSET: the server did not say), null (none) and not-a-date differ."""
    import msgspec

    from mimecast_exporter.mimecast.pages import NOT_A_SCALAR

    fast = b'{"data":[{"messages":[{"lockedUntil":null,"nextAttempt":"x"},{}]}]}'
    first, second = decode(fast).messages
    assert first.locked_until is None and first.next_attempt == "x"
    assert second.locked_until is msgspec.UNSET and second.next_attempt is msgspec.UNSET
    # A container sends the page down the tolerant path: the same distinctions.
    tolerant = b'{"data":[{"messages":[{"lockedUntil":{"a":1}},{"nextAttempt":null}]}]}'
    first, second = decode(tolerant).messages
    assert first.locked_until is NOT_A_SCALAR and first.next_attempt is msgspec.UNSET
    assert second.next_attempt is None and second.locked_until is msgspec.UNSET


def test_retry_dates_count_the_same_on_the_fast_and_the_json_path():
    """msgspec's dates (fast path) and the aggregator's own parse (json path) agree."""
    now = 1_795_478_400.0  # 2026-11-24T00:00:00Z
    messages = [
        {"routing": "outbound", "created": "2026-11-23T20:00:00+0000",
         "lockedUntil": "2026-11-24T00:10:00+0000", "nextAttempt": "2026-11-23T22:00:00+0000"},
        {"routing": "outbound", "created": "2026-11-23T21:00:00+0000",
         "lockedUntil": "2026-11-23T23:00:00+00:00", "nextAttempt": "2026-11-24T00:05:00Z"},
        {"routing": "outbound", "created": "2026-11-23T21:30:00+0000",
         "lockedUntil": None, "nextAttempt": "2026-11-23T23:50:00.5+0000"},
        {"routing": "inbound", "created": "2026-11-23T22:00:00+0000",
         "lockedUntil": "2026-11-24T01:00:00+0100", "nextAttempt": None},
    ]  # fmt: skip
    body = json.dumps({"data": [{"messages": messages}]}).encode()
    fast = QueueAggregator(now)
    fast.add(decode(body).messages)
    slow = QueueAggregator(now)
    slow.add_json(json.loads(body)["data"][0]["messages"])
    fast_sums = {r: s.sums for r, s in fast.snapshot().routes.items()}
    assert fast_sums == {r: s.sums for r, s in slow.snapshot().routes.items()}
    assert fast_sums["outbound"].locked == 1 and fast_sums["outbound"].retry_overdue == 1
    assert fast_sums["inbound"].locked == 0  # 01:00+01:00 is midnight UTC: not after now


# --- Details: read only when asked, aligned with the messages ----------------------------


def test_details_are_read_on_demand_in_the_order_of_the_messages():
    messages = [
        {"routing": "outbound", "to": [{"emailAddress": f"u{i}@d{i}.example"}], "subject": f"s{i}"}
        for i in range(5)
    ]
    page = decode(envelope(messages))
    assert page.read_details is None  # nothing decoded until asked
    details = page.details()
    assert [bytes(d.to) for d in details] == [
        f'[{{"emailAddress": "u{i}@d{i}.example"}}]'.encode() for i in range(5)
    ]
    assert [bytes(d.subject) for d in details] == [f'"s{i}"'.encode() for i in range(5)]
    assert page.details() is details  # decoded once


def test_details_stay_aligned_on_the_tolerant_path():
    messages = [
        {"routing": "outbound", "size": {"x": 1}, "to": [{"emailAddress": "a@one.example"}]},
        7,  # not an object: not a message
        {"routing": "inbound", "to": [{"emailAddress": "b@two.example"}], "subject": "hi"},
    ]
    page = decode(envelope(messages))
    assert len(page.messages) == 2
    assert [bytes(d.to) for d in page.details()] == [
        b'[{"emailAddress": "a@one.example"}]',
        b'[{"emailAddress": "b@two.example"}]',
    ]


def test_details_are_left_out_when_they_would_break_the_memory_bound():
    # Messages of ~250 bytes: the messages fit the bound, messages and details not.
    one = {"routing": "outbound", "info": "x" * 215, "to": []}
    body = json.dumps(envelope([one] * 400)).encode()
    page = decode_page(body, 1, "req", 0)  # the bound is twice the answer's own size
    assert len(page.messages) == 400
    assert all(d is UNREAD for d in page.details())  # unread: not "no recipients"


def test_domains_are_left_out_when_a_page_s_recipients_cannot_be_read():
    # Two objects a message (its own and its recipient): ~530 bytes each fit, with details not.
    one = {"routing": "outbound", "info": "x" * 450, "to": [{"emailAddress": "a@b.example"}]}
    body = json.dumps(envelope([one] * 400)).encode()
    page = decode_page(body, 1, "req", 0)
    agg = QueueAggregator(0.0, top_domains=3)
    agg.add(page.messages, page.details)
    sums = agg.snapshot().routes["outbound"].sums
    assert sums.by_domain is None  # absent, not "everything is other"
