"""Property tests: whatever Mimecast answers, reading it never crashes the exporter.

Hypothesis feeds arbitrary bytes, arbitrary JSON and well-shaped envelopes full
of odd message fields through parse_page -> QueueAggregator -> collector ->
exposition. Every test is derandomized and bounded, so the set is
deterministic and takes a few seconds.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mimecast_exporter.aggregate import QueueAggregator
from mimecast_exporter.collector import MimecastCollector
from mimecast_exporter.dates import parse_mimecast_date
from mimecast_exporter.mimecast.errors import REASONS, PollError
from mimecast_exporter.mimecast.pages import Page, decode_page
from mimecast_exporter.mimecast.responses import fail_errors, parse_token
from mimecast_exporter.snapshot import ROUTES, UNKNOWN_ROUTE
from mimecast_exporter.store import SnapshotStore

NOW = 1_795_478_400.0  # 2026-11-24T00:00:00Z

FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- strategies -------------------------------------------------------------------

# Integers JSON can carry but a float cannot (json.loads takes up to 4300 digits).
huge_ints = st.sampled_from([2**53 + 1, 2**64, 10**308, 10**309, 10**400, -(10**400), 10**4000])
numbers = st.one_of(st.integers(), huge_ints, st.floats())
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=20))
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=8), children, max_size=4),
    ),
    max_leaves=16,
)
non_dicts = json_values.filter(lambda v: not isinstance(v, dict))

# Byte and attempt counts in every shape seen or imaginable.
counts = st.one_of(
    st.integers(min_value=-5, max_value=10**8),
    numbers,
    st.integers(min_value=0, max_value=10**12).map(str),
    st.integers(min_value=0, max_value=10**12).map(lambda n: f"  {n}\n"),
    st.text(alphabet=st.characters(categories=["Nd", "No"]), min_size=1, max_size=6),
    st.sampled_from(["", "-1", "1e3", "12.0", "0x10", "\u00b2", "\u0663", "9" * 400]),
    json_values,
)


@st.composite
def offset_zones(draw):
    minutes = draw(st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59))
    return timezone(timedelta(minutes=minutes))


def format_date(moment: datetime, style: str) -> str:
    """The wire format, written out so that years before 1000 keep four digits."""
    stamp = (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    )
    if style == "Z":
        return stamp + "Z"
    offset = moment.utcoffset() or timedelta(0)
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(offset) // timedelta(minutes=1)
    hours, minutes = divmod(minutes, 60)
    return f"{stamp}{sign}{hours:02d}{':' if style == 'colon' else ''}{minutes:02d}"


aware_datetimes = st.datetimes(
    min_value=datetime(1, 1, 1),
    max_value=datetime(9999, 12, 31, 23, 59, 59),
    timezones=offset_zones(),
).map(lambda d: d.replace(microsecond=0))

date_like = st.from_regex(
    r"\A\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?\s*(Z|[+-]\d{2}:?\d{2})?\Z"
)
created_values = st.one_of(
    st.builds(format_date, aware_datetimes, st.sampled_from(["plain", "colon"])),
    date_like,
    st.sampled_from(
        [
            "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
            "9999-12-31T23:59:59-01:00",  # after year 9999 in UTC
            "2026-02-30T00:00:00Z",
            "2026-11-23T23:00:00+2400",
        ]
    ),
    json_values,
)
routings = st.one_of(
    st.sampled_from([*ROUTES, "INBOUND", " outbound ", "Internal\n", "", "unknown", "other"]),
    json_values,
)
messages = st.fixed_dictionaries(
    {},
    optional={
        "id": json_values,
        "routing": routings,
        "size": counts,
        "attempts": counts,
        "created": created_values,
        "extra": json_values,
    },
)
message_lists = st.lists(st.one_of(messages, messages, non_dicts), max_size=8)
data_items = st.one_of(
    st.fixed_dictionaries({"messages": message_lists}),
    st.fixed_dictionaries({"messages": st.none()}),
    st.just({}),
    non_dicts,
)
next_tokens = st.one_of(st.none(), st.text(max_size=20), st.integers(), huge_ints)
envelopes = st.fixed_dictionaries(
    {"data": st.lists(data_items, max_size=4)},
    optional={
        "meta": st.one_of(
            json_values.filter(lambda v: not isinstance(v, dict)),
            st.fixed_dictionaries(
                {"status": st.just(200)},
                optional={"pagination": st.fixed_dictionaries({}, optional={"next": next_tokens})},
            ),
        ),
        "fail": st.just([]),
    },
)

# Top-level objects shaped enough like an answer to get past the first checks.
fail_items = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "code": json_values,
            "message": json_values,
            "retryable": json_values,
            "errors": st.one_of(json_values, st.lists(json_values, max_size=3)),
        },
    ),
)
answer_like = st.fixed_dictionaries(
    {},
    optional={
        "data": st.one_of(json_values, st.lists(data_items, max_size=3)),
        "fail": st.one_of(json_values, st.lists(fail_items, max_size=3)),
        "meta": st.one_of(
            json_values,
            st.fixed_dictionaries(
                {}, optional={"pagination": st.fixed_dictionaries({}, optional={"next": scalars})}
            ),
        ),
    },
)


def parse_page(raw: bytes, number: int, request_id: str) -> Page:
    return decode_page(raw, number, request_id, 32 * 1024 * 1024)


def dumps(value) -> bytes:
    return json.dumps(value).encode()


def check_poll_error(err: PollError) -> None:
    assert err.reason in REASONS
    assert err.reason in ("bad_response", "api_fail")
    assert isinstance(err.message, str)


# --- parse_page on anything ---------------------------------------------------------

deep_json = b"[" * 20_000 + b"]" * 20_000


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=200),
        json_values.map(dumps),
        answer_like.map(dumps),
        envelopes.map(dumps),
        st.builds(lambda v, enc: json.dumps(v).encode(enc), json_values, st.just("utf-16")),
    )
)
@example(b"")
@example(b"\xff\xfe\x00")
@example(b'{"data": [], "fail": [], "meta": NaN}')
@example(deep_json)  # json.loads raised RecursionError, not a PollError
def test_parse_page_returns_a_page_or_raises_poll_error(raw):
    try:
        page = parse_page(raw, 3, "rid")
    except PollError as err:
        check_poll_error(err)
        return
    assert isinstance(page, Page)
    assert page.number == 3 and page.request_id == "rid"
    assert isinstance(page.messages, list)
    assert page.next_token is None or (isinstance(page.next_token, str) and page.next_token)


# --- well-shaped envelopes, odd messages: parse, aggregate, collect, expose ----------


def route_of(message: dict) -> str:
    routing = message.get("routing")
    key = routing.strip().lower() if isinstance(routing, str) else None
    return key if key in ROUTES else UNKNOWN_ROUTE


@FUZZ
@given(envelopes, st.one_of(st.just(NOW), st.floats(min_value=0, max_value=4e9)))
@example({"data": [{"messages": [{"size": 10**400, "routing": "inbound"}]}]}, NOW)
@example({"data": [{"messages": [{"attempts": 10**400}, {"size": 10**309}]}]}, NOW)
@example({"data": [{"messages": [{"size": "\u00b2", "attempts": "9" * 5000}]}]}, NOW)
@example({"data": [{"messages": [{"created": "0001-01-01T00:00:00+01:00"}]}]}, NOW)
@example({"data": [{"messages": [{"created": "9999-12-31T23:59:59-01:00"}]}]}, NOW)
def test_any_envelope_aggregates_and_exposes(envelope, now):
    try:
        raw = json.dumps(envelope, allow_nan=False).encode()
    except ValueError:  # NaN and Infinity are not JSON: such an answer is refused
        with pytest.raises(PollError) as info:
            parse_page(dumps(envelope), 1, "rid")
        assert info.value.reason == "bad_response"
        return
    if "meta" in envelope and not isinstance(envelope["meta"], dict | None):
        # Where the next page is cannot be known: never taken for the last page.
        with pytest.raises(PollError) as info:
            parse_page(raw, 1, "rid")
        assert info.value.reason == "bad_response" and "$.meta" in info.value.message
        return
    page = parse_page(raw, 1, "rid")

    expected: dict[str, int] = {}
    dated: dict[str, list[float]] = {}
    for item in envelope["data"]:
        if isinstance(item, dict) and isinstance(item.get("messages"), list):
            for message in item["messages"]:
                if isinstance(message, dict):
                    route = route_of(message)
                    expected[route] = expected.get(route, 0) + 1
                    created = parse_mimecast_date(message.get("created"))
                    if created is not None:
                        dated.setdefault(route, []).append(created)
    total = sum(expected.values())

    aggregator = QueueAggregator(now, {"account": "a", "queue": "processing"})
    aggregator.add(page.messages)
    assert aggregator.scanned == total
    snapshot = aggregator.snapshot()

    assert snapshot.taken_at == now
    assert set(ROUTES) <= set(snapshot.routes) <= {*ROUTES, UNKNOWN_ROUTE}
    assert snapshot.messages == total
    assert sum(stats.messages for stats in snapshot.routes.values()) == total
    for route, full in snapshot.routes.items():
        assert full.messages == expected.get(route, 0)
        stats = full.sums
        assert stats.size_bytes >= 0 and stats.attempts >= 0
        assert 0 <= stats.max_attempts <= stats.attempts
        for histogram in (stats.age, stats.size):
            assert math.isfinite(histogram.total) and histogram.total >= 0
            pairs = histogram.cumulative()
            assert pairs[-1][0] == "+Inf"
            running = [count for _, count in pairs]
            assert running == sorted(running) and running[0] >= 0
            assert running[-1] == histogram.count <= full.messages
        assert stats.age.count == len(dated.get(route, []))
        if route in dated:
            assert full.oldest_created == min(dated[route])
        else:
            assert full.oldest_created is None
        # Served only when every message of the route had a date (or there are none).
        assert full.oldest_known == (len(dated.get(route, [])) == full.messages)

    store = SnapshotStore(["a"], ["processing"])
    store.record_success("a", "processing", snapshot, finished_at=now, duration=1.5)
    collector = MimecastCollector(store, stale_after=300.0, now=lambda: now + 10)
    assert len(list(collector.collect())) > 0
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    exposed = {
        sample.labels["route"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "mimecast_queue_messages"
        for sample in family.samples
    }
    assert sum(exposed.values()) == total


# --- dates -------------------------------------------------------------------------


@FUZZ
@given(st.one_of(st.text(), date_like, created_values))
@example("0001-01-01T00:00:00+01:00")  # astimezone(UTC) overflowed
@example("9999-12-31T23:59:59-01:00")
@example("\u0662\u0660\u0662\u0660-01-01T00:00:00Z")
def test_parse_mimecast_date_never_raises(text):
    parsed = parse_mimecast_date(text)
    assert parsed is None or math.isfinite(parsed)


@FUZZ
@given(aware_datetimes)
@example(datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))))
@example(datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-1))))
def test_dates_we_format_round_trip(moment):
    expected = moment.timestamp()
    assert parse_mimecast_date(format_date(moment, "plain")) == expected
    assert parse_mimecast_date(format_date(moment, "colon")) == expected
    if not 1 < moment.year < 9999:  # its UTC time may fall outside years 1 to 9999
        return
    as_utc = moment.astimezone(UTC)
    assert parse_mimecast_date(format_date(as_utc, "Z")) == expected
    if as_utc.year >= 1000:  # strftime("%Y") does not pad years before 1000
        for style in ("%Y-%m-%dT%H:%M:%S+0000", "%Y-%m-%dT%H:%M:%S+00:00", "%Y-%m-%dT%H:%M:%SZ"):
            assert parse_mimecast_date(as_utc.strftime(style)) == expected


# --- fail[] and tokens ---------------------------------------------------------------


@FUZZ
@given(st.one_of(json_values, answer_like))
@example({"fail": [{"errors": []}, None, 10**400, {"errors": [1, {"code": ""}]}]})
def test_fail_errors_is_a_list_of_triples(payload):
    errors = fail_errors(payload)
    assert isinstance(errors, list)
    for error in errors:
        assert isinstance(error, tuple) and len(error) == 3
        code, message, retryable = error
        assert code is None or (isinstance(code, str) and 0 < len(code) <= 300)
        assert message is None or (isinstance(message, str) and len(message) <= 300)
        assert isinstance(retryable, bool)


token_answers = st.fixed_dictionaries(
    {},
    optional={
        "access_token": st.one_of(st.text(max_size=10), json_values),
        "expires_in": st.one_of(
            numbers,
            numbers.map(str),
            st.sampled_from(["nan", "inf", "-inf", "1e999", "", " 60 ", "1_800"]),
            json_values,
        ),
        "token_type": st.just("Bearer"),
    },
)


@FUZZ
@given(st.one_of(st.binary(max_size=100), json_values.map(dumps), token_answers.map(dumps)))
@example(b'{"access_token": "t", "expires_in": 1' + b"0" * 400 + b"}")  # OverflowError
@example(b'{"access_token": "t", "expires_in": NaN}')  # a NaN lifetime was kept
@example(b'{"access_token": "t", "expires_in": "inf"}')
@example(deep_json)
def test_parse_token_returns_a_usable_token_or_raises_poll_error(raw):
    try:
        token, expires_in = parse_token(raw, "rid")
    except PollError as err:
        check_poll_error(err)
        assert err.reason == "bad_response"
        return
    assert isinstance(token, str) and token
    assert isinstance(expires_in, float)
    assert math.isfinite(expires_in) and expires_in > 0
