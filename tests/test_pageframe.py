"""Answers framed in C (mimecast_exporter/_pageframe.c) and summed from their bytes
(sum_frame in mimecast_exporter/_pagesum.c), against msgspec and the Python loop.

Two promises are held here:

- frame() never takes an answer msgspec would refuse, and where it takes one,
  its table points at the very values msgspec decodes;
- a page summed from its bytes gives every figure the loop gives, to the bit,
  and the same oldest messages, described the same way; anything sum_frame
  does not take is left to the loop.
"""

from __future__ import annotations

import json
import math
import struct
from datetime import UTC, datetime

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mimecast_exporter import aggregate
from mimecast_exporter.aggregate import QueueAggregator
from mimecast_exporter.mimecast import pages
from mimecast_exporter.mimecast.errors import PollError
from mimecast_exporter.mimecast.pages import FRAME_ROW, Page, decode_page
from tests.test_pagesum import NOW, _one, c_context, good_message, spoil

pagesum = aggregate._pagesum
needs_c = pytest.mark.skipif(pagesum is None, reason="mimecast_exporter._pagesum not built")
FIELDS = ["routing", "size", "attempts", "created", "info", "nextAttempt", "lockedUntil"]


def _answer(messages: list, **envelope) -> bytes:
    return json.dumps(
        {"meta": {"pagination": {"next": "t1", "totalCount": 9}}, "data": [{"messages": messages}]}
        | envelope
    ).encode()


def _rows(table: bytes) -> list[tuple[int, ...]]:
    return [struct.unpack_from("<9I", table, at) for at in range(0, len(table), FRAME_ROW)]


def _value_at(body: bytes, offset: int):
    return json.JSONDecoder().raw_decode(body[offset:].decode())[0]


def _assert_table_matches(body: bytes, table: bytes) -> None:
    """Each row: the message's object, and each field's value, as json.loads reads them."""
    decoded = json.loads(body)
    messages = [m for item in decoded["data"] if item.get("messages") for m in item["messages"]]
    rows = _rows(table)
    assert len(rows) == len(messages)
    for row, message in zip(rows, messages, strict=True):
        assert json.loads(body[row[0] : row[1]]) == message
        for column, name in enumerate(FIELDS, start=2):
            if name in message:
                assert _value_at(body, row[column]) == message[name]
            else:
                assert row[column] == 0


# -- frame(): what it takes, and where it points ----------------------------------------


@needs_c
def test_a_usual_answer_is_framed_and_its_table_points_at_each_value():
    messages = [_one(), _one(routing="inbound", lockedUntil=None, nextAttempt="x"), {}]
    body = _answer(messages, fail=[])
    meta, fail, table = pagesum.frame(body)
    assert json.loads(body[meta[0] : meta[1]]) == json.loads(body)["meta"]
    assert body[fail[0] : fail[1]] == b"[]"
    _assert_table_matches(body, table)


@needs_c
@pytest.mark.parametrize(
    "body",
    [
        b'{"data": []}',
        b'{"data": [{}], "meta": null}',
        b'{"data": [{"messages": null}, {"messages": [{}]}]}',
        b' \r\n\t{"data":[{"messages":[{"a":[1,-0.5e+3,true,false,null,{"b":"\\u00e9\\n"}]}]}]} \n',
        '{"data": [{"messages": [{"subject": "caf\u00e9 \U0001f4e7"}]}]}'.encode(),
    ],
)
def test_valid_answers_of_the_usual_shape_are_framed(body):
    framed = pagesum.frame(body)
    assert framed is not None
    _assert_table_matches(body, framed[2])


@needs_c
@pytest.mark.parametrize(
    "body, why",
    [
        (b"", "empty"),
        (b"[]", "not an object"),
        (b'{"meta": {}}', "no data"),
        (b'{"data": {}}', "data not a list"),
        (b'{"data": [1]}', "an item that is not an object"),
        (b'{"data": [{"messages": {}}]}', "messages not a list"),
        (b'{"data": [{"messages": [1]}]}', "a message that is not an object"),
        (b'{"data": [], "data": []}', "data twice"),
        (b'{"data": [], "meta": 1, "meta": 2}', "meta twice"),
        (b'{"data": [{"messages": [], "messages": []}]}', "messages twice"),
        (b'{"data": [{"messages": [{"size": 1, "size": 2}]}]}', "a field twice"),
        (b'{"d\\u0061ta": []}', "an escaped key"),
        (b'{"data": [{"messages": [{"si\\u007ae": 1}]}]}', "an escaped field name"),
        (b'{"data": []} x', "trailing bytes"),
        (b'{"data": []', "cut short"),
        (b'{"data": [],}', "a trailing comma"),
        (b'{"data": [{"messages": [{"a": 01}]}]}', "a leading zero"),
        (b'{"data": [{"messages": [{"a": 1.}]}]}', "a bare point"),
        (b'{"data": [{"messages": [{"a": -}]}]}', "a bare minus"),
        (b'{"data": [{"messages": [{"a": NaN}]}]}', "NaN"),
        (b'{"data": [{"messages": [{"a": tru}]}]}', "a cut literal"),
        (b'{"data": [{"messages": [{"a": "\\x"}]}]}', "an unknown escape"),
        (b'{"data": [{"messages": [{"a": "\\u12"}]}]}', "a short \\u"),
        (b'{"data": [{"messages": [{"a": "\\ud83d\\udce7"}]}]}', "a surrogate pair"),
        (b'{"data": [{"messages": [{"a": "\\udc00"}]}]}', "a lone surrogate"),
        (b'{"data": [{"messages": [{"a": "\x01"}]}]}', "a raw control character"),
        (b'{"data": [{"messages": [{"a": "\xff"}]}]}', "not UTF-8"),
        (b'{"data": [{"messages": [{"a": "\xc0\xaf"}]}]}', "an overlong sequence"),
        (b'{"data": [{"messages": [{"a": "\xed\xa0\x80"}]}]}', "an encoded surrogate"),
        (b'{"data": [{"messages": [{"a": "\xf4\x90\x80\x80"}]}]}', "above U+10FFFF"),
        (b'{"data": [{"messages": [{"a": "\xe2\x82"}]}]}', "a cut sequence"),
        (b'\xef\xbb\xbf{"data": []}', "a byte order mark"),
        (b'{"data": [{"messages": [{"a": ' + b"[" * 70 + b"]" * 70 + b"}]}]}", "deep"),
    ],
)
def test_anything_else_is_left_to_msgspec(body, why):
    assert pagesum.frame(body) is None, why


@needs_c
def test_nesting_far_beyond_the_limit_is_refused_without_recursing_into_it():
    body = b'{"data": [{"messages": [{"a": ' + b"[" * 200_000 + b"]" * 200_000 + b"}]}]}"
    assert pagesum.frame(body) is None


@needs_c
def test_no_part_of_an_answer_is_taken_for_the_whole():
    """Every cut of an answer, as a view into the whole: a scanner that read one
    byte past the end of its buffer would find the rest and take it."""
    body = _answer(
        [_one(), _one(info=None, lockedUntil="2026-11-24T01:00:00Z", to=[{"a": [1, -2.5e3, True]}])]
    )
    assert pagesum.frame(body) is not None
    for end in range(len(body)):
        assert pagesum.frame(memoryview(body)[:end]) is None, body[:end]


@needs_c
def test_frame_takes_any_buffer_and_refuses_other_types():
    body = _answer([_one()])
    assert pagesum.frame(bytearray(body))[2] == pagesum.frame(memoryview(body))[2]
    with pytest.raises(TypeError):
        pagesum.frame("not bytes")


def _json_values(depth: int = 2):
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=8),
    )
    if depth == 0:
        return scalars
    inner = _json_values(depth - 1)
    return st.one_of(
        scalars,
        st.lists(inner, max_size=3),
        st.dictionaries(st.text(max_size=6), inner, max_size=3),
    )


@st.composite
def shaped_answers(draw: st.DrawFn) -> bytes:
    """Answers of the usual shape, with values of any JSON type anywhere."""
    messages = []
    for _ in range(draw(st.integers(0, 4))):
        message = {name: draw(_json_values(1)) for name in draw(st.lists(st.sampled_from(FIELDS)))}
        message.update(draw(st.dictionaries(st.text(max_size=6), _json_values(), max_size=3)))
        messages.append(message)
    envelope = {"data": [{"messages": messages}]}
    if draw(st.booleans()):
        envelope["meta"] = draw(_json_values())
    if draw(st.booleans()):
        envelope["fail"] = draw(_json_values())
    text = json.dumps(
        envelope, ensure_ascii=draw(st.booleans()), indent=draw(st.sampled_from([None, 1]))
    )
    return text.encode("utf-8", "surrogatepass")


@needs_c
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shaped_answers(), st.data())
def test_frame_never_takes_what_msgspec_refuses_and_points_where_msgspec_reads(body, data):
    """Broken versions of answers (bytes changed, cut, added): whatever frame()
    takes msgspec takes too, and its table is right."""
    edits = data.draw(
        st.lists(
            st.tuples(
                st.sampled_from(["set", "insert", "delete"]),
                st.integers(0, max(len(body) - 1, 0)),
                st.sampled_from(list(b'{}[]",:\\ 0-.eE\x00\x1f\x7f\x80\xc3\xa9\xed\xf0tfnu')),
            ),
            max_size=2,
        )
    )
    broken = bytearray(body)
    for kind, at, byte in edits:
        at = min(at, len(broken))
        if kind == "insert":
            broken[at:at] = bytes([byte])
        elif at < len(broken):
            if kind == "set":
                broken[at] = byte
            else:
                del broken[at]
    broken = bytes(broken)
    framed = pagesum.frame(broken)
    if framed is None:
        return
    # Valid JSON to msgspec too: the envelope decoder raises DecodeError otherwise.
    # (Decoding into Any would also judge values: 1e400 is "out of range".)
    pages._ENVELOPE.decode(broken)
    meta, fail, table = framed
    decoded = json.loads(broken)
    for span, key in ((meta, "meta"), (fail, "fail")):
        if key in decoded:
            assert json.loads(broken[span[0] : span[1]]) == decoded[key]
        else:
            assert span is None
    _assert_table_matches(broken, table)


# -- sum_frame(): the loop's figures, from the answer's bytes --------------------------------


def _retry_date(draw: st.DrawFn, wild: bool) -> str:
    """UTC and (``wild``) not, with and without fractions, in and (``wild``) out
    of what sum_frame takes."""
    # Near now and now - 900 (the overdue grace), where a fraction decides.
    offset = draw(st.one_of(st.integers(-5000, 5000), st.sampled_from([0, -1, -900, -901])))
    stamp = datetime.fromtimestamp(math.floor(NOW) + offset, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if draw(st.booleans()):  # NOW's fraction is .25
        digits = draw(
            st.one_of(
                st.sampled_from(["25", "2", "3", "24", "26", "250000", "250001", "2499999"]),
                st.text("0123456789", min_size=1, max_size=9 if wild else 6),
            )
        )
        stamp += "." + digits
    zones = ["Z", "+00:00", "+0000"] + (["-00:00", "z", "+01:00", "+0100", ""] if wild else [])
    zone = draw(st.sampled_from(zones))
    if wild and draw(st.integers(0, 9)) == 0:
        stamp = stamp.replace("T", draw(st.sampled_from(["t", " "])))
    return stamp + zone


@st.composite
def framed_pages(draw: st.DrawFn) -> list[list[dict]]:
    """Pages whose values are nearly all taken by sum_frame, or (wild) often not."""
    wild = draw(st.booleans())
    result = []
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        page = []
        for _ in range(draw(st.integers(min_value=0, max_value=30))):
            message = good_message(draw)
            for field in ("nextAttempt", "lockedUntil"):
                if field in message and message[field] and draw(st.booleans()):
                    message[field] = _retry_date(draw, wild)
            if draw(st.integers(0, 4)) == 0:
                infos = ['say "hi"\n', "caf\u00e9"] + ([5, True] if wild else [])
                message["info"] = draw(st.sampled_from(infos))
            if draw(st.integers(0, 9)) == 0:
                message["subject"] = draw(st.text(max_size=20))
            page.append(message)
        if wild and page and draw(st.booleans()):
            index = draw(st.integers(min_value=0, max_value=len(page) - 1))
            page[index] = spoil(draw, page[index])
        result.append(page)
    return result


def _everything(agg: QueueAggregator) -> tuple:
    return agg.snapshot(), agg.prefix(), agg.ascending, agg.scanned, agg.oldest_messages()


@needs_c
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    framed_pages(),
    st.booleans(),
    st.sampled_from([0.0, 900.0]),
    st.sampled_from([NOW, math.floor(NOW)]),
    st.booleans(),
)
def test_a_page_summed_from_its_bytes_gives_the_loops_figures(
    pages_, details, overdue_after, now, ensure_ascii
):
    both = [
        QueueAggregator(now, details=details, retry_overdue_after=overdue_after) for _ in range(2)
    ]
    for page in pages_:
        body = json.dumps({"data": [{"messages": page}]}, ensure_ascii=ensure_ascii).encode()
        both[0].add_page(decode_page(body, 1, "test", 1 << 20))
        decoded = decode_page(body, 1, "test", 1 << 20)
        both[1].add_each(decoded.messages, decoded.details)
    assert _everything(both[0]) == _everything(both[1])
    for route, stats in both[0].snapshot().routes.items():
        other = both[1].snapshot().routes[route]
        assert stats.sums.age.total.hex() == other.sums.age.total.hex()


def _sum_frame(body: bytes, *, cut: float = math.inf):
    table = pagesum.frame(body)[2]
    return pagesum.sum_frame(body, table, *c_context(cut))


@needs_c
def test_a_clean_page_is_summed_from_its_bytes():
    """Not vacuous: the pages above called clean do take this path."""
    page = [
        _one(info=None),
        _one(routing="INBOUND", lockedUntil="2026-11-24T01:00:00.25Z", nextAttempt=None),
        _one(routing="inbound", nextAttempt="2026-11-23T00:00:00+00:00", info="caf\u00e9"),
        _one(routing="internal", info='say "hi"\n\u00e9\u20ac/'),
    ]
    body = _answer(page)
    assert b'"caf\\u00e9"' in body  # escaped, as json.dumps writes it
    routes, newest, falls, older = _sum_frame(body)
    outbound, inbound = routes[aggregate.ROUTES.index("outbound")], routes[0]
    assert outbound[:4] == (1, 2048, 3, 3) and inbound[:4] == (2, 4096, 6, 3)
    assert outbound[9] == {None: 1} and inbound[9] == {"Queued for delivery": 1, "caf\u00e9": 1}
    assert inbound[10:] == (1, 1, 1, 0)  # locked, overdue; lockedUntil absent once
    assert outbound[12:] == (1, 1)  # neither field: both unknown
    assert newest == NOW - 0.25 - 3600 and falls is False
    internal = routes[aggregate.ROUTES.index("internal")]
    assert internal[9] == {'say "hi"\n\u00e9\u20ac/': 1}
    assert [index for _, index in older] == [0, 1, 2, 3]


@needs_c
@pytest.mark.parametrize(
    "fields",
    [
        {"routing": "inbound "},
        {"routing": "in\\u0062ound"},  # json.dumps escapes the backslash: a plain string
        {"routing": 1},
        {"routing": None},
        {"size": -1},
        {"size": 2**53 + 1},
        {"size": 10**30},
        {"size": True},
        {"size": 1.0},
        {"size": "1"},
        {"attempts": 1e3},
        {"attempts": [1]},
        {"created": "2026-11-23T23:00:00.5Z"},
        {"created": "2026-11-23T23:00:00+0100"},
        {"created": "2026-11-23T23:00:60Z"},
        {"created": "2025-02-29T00:00:00Z"},
        {"created": None},
        {"info": 5},
        {"info": {"text": "x"}},
        {"lockedUntil": "2026-11-23T23:00:00+0100"},
        {"lockedUntil": "2026-11-23T23:00:00.1234567Z"},
        {"lockedUntil": "2026-11-23t23:00:00Z"},
        {"lockedUntil": 1},
        {"nextAttempt": "tomorrow"},
        {"nextAttempt": "2026-11-23T23:00:00"},
    ],
)
def test_values_sum_frame_does_not_take_send_the_page_to_the_loop(fields):
    body = _answer([_one(), _one(**fields)])
    assert _sum_frame(body) is None
    both = [QueueAggregator(NOW, details=True) for _ in range(2)]
    both[0].add_page(decode_page(body, 1, "test", 1 << 20))
    decoded = decode_page(body, 1, "test", 1 << 20)
    both[1].add_each(decoded.messages, decoded.details)
    assert _everything(both[0]) == _everything(both[1])


@needs_c
def test_escaped_info_texts_read_as_msgspec_reads_them():
    raw = rb"a\/\b\f\n\r\t\"\\\u0041\u00e9\u20AC\u0000\uffff z"
    body = _answer([_one()]).replace(b'"Queued for delivery"', b'"' + raw + b'"')
    routes = _sum_frame(body)[0]
    (info,) = routes[aggregate.ROUTES.index("outbound")][9]
    assert (
        info == msgspec.json.decode(b'"' + raw + b'"') == 'a/\b\f\n\r\t"\\A\u00e9\u20ac\x00\uffff z'
    )


@needs_c
def test_a_count_spelled_minus_zero_is_left_to_the_loop():
    body = _answer([_one()]).replace(b'"size": 2048', b'"size": -0')
    assert b"-0" in body and _sum_frame(body) is None


@needs_c
def test_missing_fields_are_left_to_the_loop():
    for field in ("routing", "size", "attempts", "created"):
        message = _one()
        del message[field]
        assert _sum_frame(_answer([message])) is None, field


@needs_c
def test_a_table_that_does_not_fit_the_body_is_an_error_not_a_crash():
    body = _answer([_one()])
    table = pagesum.frame(body)[2]
    args = (aggregate._ROUTE_INDEX, {}, None, NOW, 0, 0, (), (), 1, 1, 1, 0.0, False, 0.0)
    with pytest.raises(ValueError, match="does not fit"):
        pagesum.sum_frame(body[:20], table, *args, (0.0,) * 4)
    with pytest.raises(TypeError):
        pagesum.sum_frame(body, table[:-1], *args, (0.0,) * 4)


# -- the Page: decoded only when asked -----------------------------------------------------


@needs_c
def test_a_framed_page_decodes_its_messages_only_when_asked():
    body = _answer([_one(), _one(routing="inbound")])
    page = decode_page(body, 3, "rid", 1 << 20)
    assert page.frame is not None and page.count == 2
    assert page._messages is None  # not decoded
    assert (page.next_token, page.total_count) == ("t1", 9)
    assert page.messages == pages._FAST.decode(body).data[0].messages
    assert page.details() == pages._DETAILS.decode(body).data[0].messages


@needs_c
def test_a_framed_answer_with_fail_is_still_an_error():
    body = _answer([_one()], fail=[{"errors": [{"code": "err_x", "message": "nope"}]}])
    with pytest.raises(PollError, match="nope"):
        decode_page(body, 1, "rid", 1 << 20)


@needs_c
def test_a_page_is_decoded_whole_when_msgspec_does_not_take_a_chosen_message(monkeypatch):
    """The C side and msgspec could disagree on a message only by a bug; then
    the whole page is counted by the loop rather than trusting either."""
    body = _answer([_one(), _one(routing="inbound", created="2026-11-23T20:00:00Z")])
    monkeypatch.setattr(Page, "message_at", lambda self, index: None)
    with_c, loop = QueueAggregator(NOW), QueueAggregator(NOW)
    page = decode_page(body, 1, "test", 1 << 20)
    with_c.add_page(page)
    assert page._messages is not None  # it was decoded whole
    decoded = decode_page(body, 1, "test", 1 << 20)
    loop.add_each(decoded.messages, decoded.details)
    assert _everything(with_c) == _everything(loop)


def test_without_the_extension_pages_are_decoded_by_msgspec(monkeypatch):
    body = _answer([_one(), _one(routing="inbound")])
    monkeypatch.setattr(pages, "_frame", None)
    monkeypatch.setattr(aggregate, "_pagesum", None)
    page = decode_page(body, 1, "test", 1 << 20)
    assert page.frame is None and page.count == 2
    agg = QueueAggregator(NOW)
    agg.add_page(page)
    assert agg.scanned == 2


def test_a_page_needs_its_messages_or_its_frame():
    with pytest.raises(ValueError, match="needs its body and frame"):
        Page(1, None, None, None, "rid")
