"""Decoding pages: one tolerant struct, values msgspec cannot hold mended, the memory bound."""

from __future__ import annotations

import json
import tracemalloc

import msgspec
import pytest

from mimecast_exporter.aggregate import QueueAggregator
from mimecast_exporter.mimecast.errors import PollError
from mimecast_exporter.mimecast.filters import requested_routes, route_filter
from mimecast_exporter.mimecast.pages import (
    COST_PER_ELEMENT,
    COST_PER_OBJECT,
    ELEMENTS_FACTOR,
    decode_page,
)

CAP = 32 * 1024 * 1024


def decode(obj_or_bytes, cap=CAP):
    raw = obj_or_bytes if isinstance(obj_or_bytes, bytes) else json.dumps(obj_or_bytes).encode()
    return decode_page(raw, 1, "rid", cap)


def envelope(messages, **pagination):
    return {"meta": {"pagination": pagination}, "data": [{"messages": messages}], "fail": []}


def raw_envelope(*messages: bytes) -> bytes:
    head = b'{"meta":{"pagination":{"next":"t2"}},"data":[{"messages":['
    return head + b",".join(messages) + b']}],"fail":[]}'


def test_only_the_fields_read_are_kept():
    page = decode(envelope([{"routing": "inbound", "size": 5, "to": {"x": [1, 2]}, "id": "m"}]))
    (message,) = page.messages
    assert (message.routing, message.size, message.attempts, message.created) == (
        "inbound",
        5,
        None,
        None,
    )
    assert bytes(message.to) == b'{"x": [1, 2]}'  # undecoded until the recipients are read
    assert message.id == "m"  # which message: two reads of a queue compare them


def test_odd_values_cost_only_themselves():
    messages = [
        {"routing": "outbound", "size": {"bytes": 10}, "attempts": [1], "created": "x"},
        "not a message",
        7,
        {"routing": "inbound", "size": "12", "attempts": 2.0},
    ]
    page = decode(envelope(messages))
    assert [m.routing for m in page.messages] == ["outbound", "inbound"]
    assert page.unreadable == 2  # counted, so that no count leaving them out is exact
    assert page.messages[0].size == {"bytes": 10} and page.messages[0].attempts == [1]
    aggregator = QueueAggregator(0.0)
    aggregator.add(page.messages)
    routes = aggregator.snapshot().routes
    assert routes["outbound"].messages == 1 and routes["outbound"].sums.size_bytes == 0
    assert routes["inbound"].sums.size_bytes == 12 and routes["inbound"].sums.attempts == 2


@pytest.mark.parametrize(
    ("one", "field", "value"),
    [
        (b'{"routing":"outbound","size":1' + b"1" * 5000 + b',"info":"ok"}', "size", {}),
        (b'{"routing":"outbound","size":5,"info":"caf\xe9 \xff"}', "info", "caf\ufffd \ufffd"),
        (b'{"routing":"out\xffbound","size":5}', "routing", "out\ufffdbound"),
        (b'{"routing":"outbound","info":"\\ud800 \\ud83d\\ude00"}', "info", "\ufffd \U0001f600"),
        (b'{"routing":"outbound","info":"\\\\ud800"}', "info", "\\ud800"),  # not an escape
        (b'{"routing":"outbound","size":1e999}', "size", float("inf")),
        (b'{"routing":"outbound","created":"2026-11-23T\xff"}', "created", "2026-11-23T\ufffd"),
        (b'{"routing":"outbound","attempts":-1' + b"0" * 4400 + b"}", "attempts", {}),
        (b'{"nextAttempt":"2026-11-23T\xff"}', "next_attempt", "2026-11-23T\ufffd"),
        (b'{"routing":"outbound","lockedUntil":' + b"7" * 5000 + b"}", "locked_until", {}),
        (b'{"routing":"outbound","id":"m\xff1"}', "id", "m\ufffd1"),
        (b'{"routing":"outbound","info":1' + b"0" * 4400 + b".5e3}", "info", float("inf")),
    ],
    ids=["5000-digit size", "not UTF-8", "routing not UTF-8", "lone surrogate",
         "escaped backslash", "1e999", "created not UTF-8", "4400-digit attempts",
         "nextAttempt not UTF-8", "5000-digit lockedUntil", "id not UTF-8", "long float info"],
)  # fmt: skip
def test_a_value_msgspec_cannot_hold_costs_that_value_only(one, field, value):
    """Bytes that are not UTF-8, lone surrogates and numbers too long for Python
    fail msgspec's decode; the page is mended and read, the other messages whole."""
    good = b'{"routing":"inbound","size":7,"attempts":2,"created":"2026-11-23T23:00:00Z"}'
    page = decode(raw_envelope(good, one, good))
    assert page.count == 3 and page.next_token == "t2"
    assert getattr(page.messages[1], field) == value
    for message in (page.messages[0], page.messages[2]):
        assert (message.routing, message.size, message.attempts) == ("inbound", 7, 2)
    aggregator = QueueAggregator(1_795_478_400.0)
    aggregator.add(page.messages)
    inbound = aggregator.snapshot().routes["inbound"]
    assert inbound.messages == 2 and inbound.sums.size_bytes == 14 and inbound.oldest_known


def test_a_number_that_cannot_be_held_is_never_read_as_absent():
    """A next token too long for Python is not "no next page" (that would end
    the scan and serve a part of the queue as all of it)."""
    body = b'{"meta":{"pagination":{"next":' + b"9" * 5000 + b'}},"data":[]}'
    with pytest.raises(PollError) as info:
        decode(body)
    assert "'meta.pagination.next' is a object or array" in info.value.message


def test_a_total_count_that_cannot_be_held_is_unusable_not_fatal():
    body = b'{"meta":{"pagination":{"totalCount":' + b"9" * 5000 + b'}},"data":[{"messages":[{}]}]}'
    page = decode(body)
    assert page.total_count is None and page.count == 1  # counts that need it: not served


def test_a_fail_text_that_is_not_utf8_is_still_the_error_it_says():
    body = b'{"data":[],"fail":[{"errors":[{"code":"err_x","message":"caf\xe9 down"}]}]}'
    with pytest.raises(PollError) as info:
        decode(body)
    assert info.value.reason == "api_fail" and info.value.code == "err_x"
    assert "caf\ufffd down" in info.value.message


def test_digits_inside_strings_are_left_alone():
    one = b'{"routing":"outbound","info":"' + b"9" * 5000 + b'","size":"\xff"}'
    (message,) = decode(raw_envelope(one)).messages
    assert message.info == "9" * 5000 and message.size == "\ufffd"


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
        (b"[1, 2]", "bad_response", "Expected `object`, got `array`"),
        (b'{"fail": []}', "bad_response", "no 'data' list"),
        (b'{"data": null}', "bad_response", "got `null` - at `$.data`"),
        (b'{"data": [{"messages": 5}]}', "bad_response", "at `$.data[0].messages`"),
        (b'{"data": [], "meta": [1]}', "bad_response", "at `$.meta`"),
        (b'{"data": [], "meta": {"pagination": 7}}', "bad_response", "at `$.meta.pagination`"),
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
    "element",
    [b"{}", b"1", b'""', b"[]", b'{"routing":"a"}', b'{"a":1}'],
    ids=["{}", "1", "str", "[]", "obj", "dict"],
)
@pytest.mark.parametrize("where", ["messages", "a field"])
def test_an_answer_of_millions_of_tiny_values_is_refused_before_it_is_built(element, where):
    values = b",".join([element] * (CAP // (len(element) + 1)))
    if where == "messages":
        body = b'{"data":[{"messages":[' + values + b"]}]}"
    else:  # inside one message, where any JSON value is decoded as it is
        body = b'{"data":[{"messages":[{"info":[' + values + b"]}]}]}"
    peak, error = peak_of(lambda: decode(body))
    assert error is not None and error.reason == "bad_response"
    assert "could take more than" in error.message
    assert peak < 1024 * 1024  # nothing was built


def largest_admitted(one: bytes, cap: int) -> bytes:
    """An answer of as many copies of ``one`` as the bound lets in."""
    objects, elements = one.count(b"{"), one.count(b",") + one.count(b"[") + 1
    cost = objects * COST_PER_OBJECT + elements * COST_PER_ELEMENT
    count = (ELEMENTS_FACTOR * cap - 2 * COST_PER_OBJECT - 2 * COST_PER_ELEMENT) // cost
    body = b'{"data":[{"messages":[' + b",".join([one] * count) + b"]}]}"
    return body[:cap] if len(body) > cap else body


@pytest.mark.parametrize(
    "one",
    [
        # Values the loop must convert or skip.
        b'{"routing":"outbound","size":"1234","attempts":1.5,"created":"2026-11-23T23:00:00Z"}',
        # Well-formed values.
        b'{"routing":"outbound","size":1234,"attempts":1,"created":"2026-11-23T23:00:00Z"}',
        # Containers where scalars belong, built as they are.
        b'{"routing":[[],[],[],[]],"size":{"a":1,"b":2},"attempts":[0.5,0.5],"info":["ab","cd"]}',
        # The three undecoded fields.
        b'{"to":[{"emailAddress":"a@b.c"}],"fromEnv":{},"subject":"s","routing":"inbound"}',
    ],
    ids=["odd", "well-formed", "containers", "raw fields"],
)
def test_an_answer_at_the_bound_costs_at_most_three_times_the_cap_besides_its_bytes(one):
    """With the answer's own bytes, at most 4 times poll.max_response_bytes,
    decoded and counted."""
    cap = 4 * 1024 * 1024
    body = largest_admitted(one, cap)
    assert len(body) <= cap

    def decode_and_count() -> QueueAggregator:
        aggregator = QueueAggregator(1_795_478_400.0)
        aggregator.add(decode(body, cap).messages)
        return aggregator

    peak, error = peak_of(decode_and_count)
    assert error is None
    assert peak <= 3 * cap


def test_mending_is_bounded_too():
    """An answer that must be mended costs at most one more copy of itself."""
    cap = 4 * 1024 * 1024
    one = b'{"routing":"outbound","size":5,"info":"caf\xe9 ' + b"x" * 200 + b'"}'
    body = largest_admitted(one, cap)
    peak, error = peak_of(lambda: decode(body, cap).messages)
    assert error is None
    assert peak <= 4 * cap


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
    body = b'{"data":[{"messages":[{"lockedUntil":null,"nextAttempt":"x"},{},{"lockedUntil":{}}]}]}'
    first, second, third = decode(body).messages
    assert first.locked_until is None and first.next_attempt == "x"
    assert second.locked_until is msgspec.UNSET and second.next_attempt is msgspec.UNSET
    assert third.locked_until == {} and third.next_attempt is msgspec.UNSET


def test_retry_dates_in_every_zone_style():
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
    aggregator = QueueAggregator(now)
    aggregator.add(decode(envelope(messages)).messages)
    sums = {r: s.sums for r, s in aggregator.snapshot().routes.items()}
    assert sums["outbound"].locked == 1 and sums["outbound"].retry_overdue == 1
    assert sums["inbound"].locked == 0  # 01:00+01:00 is midnight UTC: not after now


def test_domains_are_left_out_when_a_message_s_recipients_cannot_be_read():
    """A field msgspec skips is not checked for UTF-8 when the page is decoded:
    a recipient that is not UTF-8 is found when the domains are counted."""
    good = b'{"routing":"outbound","to":[{"emailAddress":"a@b.example"}]}'
    bad = b'{"routing":"outbound","to":[{"emailAddress":"a@b\xff.example"}]}'
    agg = QueueAggregator(0.0, top_domains=3)
    agg.add(decode(raw_envelope(good, bad)).messages)
    sums = agg.snapshot().routes["outbound"].sums
    assert sums.by_domain is None  # absent, not "everything is other"
