"""Large backlogs: the request budget, and figures that are exact or absent.

Every test runs whole polls against the simulator over loopback and reads the
series the collector serves, for each way a server may answer: honouring
everything, ignoring sortOrder, ignoring filterBy, or sending no totalCount.
"""

from __future__ import annotations

import logging
import time
from types import MappingProxyType, SimpleNamespace

import pytest
from prometheus_client import generate_latest

from mimecast_exporter.aggregate import Prefix
from mimecast_exporter.mimecast.dialect import ROUTE_FILTERS, Choice
from mimecast_exporter.mimecast.pages import Message, Page
from mimecast_exporter.scan import QueueScan, WarnOnce, _Walk
from mimecast_exporter.simulator.api import Quirks
from mimecast_exporter.simulator.faults import Fault
from mimecast_exporter.simulator.model import Churn
from tests.conftest import hmac_account, oauth_account
from tests.fakes import EPOCH
from tests.test_poller import build, sample

ROUTES = ("inbound", "outbound", "internal", "external")
FIND = "/api/gateway/find-processing-messages"


def stamp(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(epoch))


def backlog(size: int, *, external: int = 300, unknown: int = 7) -> tuple[list[dict], dict]:
    """``size`` messages, one every 10 s over the last days, and what a full read finds.

    The ``external`` ones are the newest (never on the first page), the
    ``unknown`` ones (no routing) sit in the middle.
    """
    base = EPOCH - 2 * 86400
    first_external = size - external
    middle = size // 2
    messages = []
    for i in range(size):
        if i >= first_external:
            route = "external"
        elif middle <= i < middle + unknown:
            route = None
        else:
            route = ROUTES[i % 3]
        message = {
            "id": f"m{i}",
            "size": 1000,
            "attempts": 2,
            "created": stamp(base + 10 * i),
            "attachment": False,
        }
        if route is not None:
            message["routing"] = route
        messages.append(message)
    expected: dict[str, dict] = {}
    for message in messages:
        route = message.get("routing", "unknown")
        created = EPOCH - 2 * 86400 + 10 * int(message["id"][1:])
        entry = expected.setdefault(route, {"messages": 0, "oldest": created})
        entry["messages"] += 1
    return messages, expected


def poll_once(sim, clock, account, **poll):
    """One poll of the processing queue; (registry, the find requests it made)."""
    before = len(sim.requests)
    poller, store, registry = build(sim, clock, [account], queues=("processing",), **poll)
    try:
        ok = poller.poll_queue(account.name, "processing")
    finally:
        poller.stop()
    calls = [r for r in sim.requests[before:] if r.path == FIND]
    return ok, registry, calls


def served(registry, name, route, account="legacy"):
    return sample(registry, name, account=account, queue="processing", route=route)


def scan_state(registry, account="legacy"):
    labels = {"account": account, "queue": "processing"}
    return (
        registry.get_sample_value("mimecast_queue_scan_complete", labels),
        registry.get_sample_value("mimecast_queue_scanned_messages", labels),
    )


def age(registry, route):
    return served(registry, "mimecast_queue_oldest_message_age_seconds", route)


# --- a queue that fits the budget is read whole -------------------------------------


def test_a_queue_that_fits_is_read_whole_and_every_figure_served(sim, clock):
    messages, expected = backlog(250, external=20, unknown=0)
    sim.hmac_tenant.model.set_messages("processing", messages)
    ok, registry, calls = poll_once(sim, clock, hmac_account(sim.url))
    assert ok and len(calls) == 3  # 250 messages in pages of 100
    assert scan_state(registry) == (1, 250)
    for route in ROUTES:
        assert served(registry, "mimecast_queue_messages", route) == expected[route]["messages"]
        assert (
            served(registry, "mimecast_queue_size_bytes", route)
            == 1000 * (expected[route]["messages"])
        )
        assert served(registry, "mimecast_queue_max_attempts", route) == 2
        assert age(registry, route) == EPOCH - expected[route]["oldest"]
    assert all(c.json["data"][0]["sortOrder"] == "ascending" for c in calls)


@pytest.mark.parametrize(("size", "requests", "complete"), [(1000, 10, 1), (1001, 6, 0)])
def test_the_scan_reads_whole_only_what_fits_the_budget(sim, clock, size, requests, complete):
    """Default budget 15: 10 pages of 100, keeping 5 requests to count a larger queue."""
    messages, expected = backlog(size, external=20, unknown=0)
    sim.hmac_tenant.model.set_messages("processing", messages)
    ok, registry, calls = poll_once(sim, clock, hmac_account(sim.url), max_pages=15)
    assert ok and len(calls) == requests
    assert scan_state(registry)[0] == complete
    for route in ROUTES:
        assert served(registry, "mimecast_queue_messages", route) == expected[route]["messages"]


# --- a huge queue: counted, not read --------------------------------------------------


def test_a_huge_queue_is_counted_exactly_in_six_requests(sim, clock):
    messages, expected = backlog(5000)
    sim.hmac_tenant.model.set_messages("processing", messages)
    ok, registry, calls = poll_once(sim, clock, hmac_account(sim.url))
    assert ok
    assert scan_state(registry) == (0, 100)
    for route in (*ROUTES, "unknown"):
        assert served(registry, "mimecast_queue_messages", route) == expected[route]["messages"]
    for route in ROUTES:  # external is not on the first page: its oldest comes from its count
        assert age(registry, route) == EPOCH - expected[route]["oldest"]
        stamp_ = served(registry, "mimecast_queue_oldest_message_created_timestamp_seconds", route)
        assert stamp_ == expected[route]["oldest"]
    # Sums over part of a queue would be wrong: they are not served.
    for name in ("size_bytes", "attempts", "max_attempts"):
        assert served(registry, f"mimecast_queue_{name}", "outbound") is None
    labels = {"account": "legacy", "queue": "processing"}
    assert registry.get_sample_value("mimecast_queue_message_age_seconds_gcount", labels) is None
    # ... nor are the counts by status, sums over messages too.
    text = generate_latest(registry).decode()
    assert "mimecast_queue_messages_by_status{" not in text
    # 1 page, 4 route counts (pageSize 1, one route each), 1 closing total.
    assert len(calls) == 6
    criteria = [c.json["data"][0] for c in calls]
    assert [c.json["meta"]["pagination"]["pageSize"] for c in calls] == [100, 1, 1, 1, 1, 1]
    assert [c.get("filterBy") for c in criteria] == [
        None,
        *([{"route": route}] for route in ROUTES),
        None,
    ]
    assert all(c["sortOrder"] == "ascending" for c in criteria)
    assert len({(c["start"], c["end"]) for c in criteria}) == 1  # one window per poll


def poll_a_huge_queue(sim, clock, caplog, quirks):
    """One poll of a 5,000-message queue against a server with ``quirks``."""
    messages, expected = backlog(5000)
    sim.hmac_tenant.model.set_messages("processing", messages)
    sim.quirks = quirks
    with caplog.at_level(logging.WARNING):
        ok, registry, calls = poll_once(sim, clock, hmac_account(sim.url))
    assert ok
    return registry, calls, expected


def test_a_server_ignoring_sort_order_leaves_oldest_ages_out(sim, clock, caplog):
    registry, _, expected = poll_a_huge_queue(sim, clock, caplog, Quirks(ignore_sort_order=True))
    for route in ROUTES:  # counts do not depend on the order
        assert served(registry, "mimecast_queue_messages", route) == expected[route]["messages"]
        assert age(registry, route) is None
        assert (
            served(registry, "mimecast_queue_oldest_message_created_timestamp_seconds", route)
            is None
        )
    assert any("oldest first" in r.getMessage() for r in caplog.records)
    assert sample(registry, "mimecast_up", account="legacy") == 1


def test_a_server_ignoring_filter_by_leaves_route_counts_out(sim, clock, caplog):
    registry, _, expected = poll_a_huge_queue(sim, clock, caplog, Quirks(ignore_filter_by=True))
    for route in (*ROUTES, "unknown"):
        assert served(registry, "mimecast_queue_messages", route) is None
    # Routes on the first page (the oldest messages) keep an exact oldest age; external
    # is only known from its own request, which the server answered for every route.
    for route in ("inbound", "outbound", "internal"):
        assert age(registry, route) == EPOCH - expected[route]["oldest"]
    assert age(registry, "external") is None
    assert any("filterBy ignored" in r.getMessage() for r in caplog.records)


def test_a_server_without_total_count_leaves_counts_out_within_the_budget(sim, clock, caplog):
    registry, calls, expected = poll_a_huge_queue(sim, clock, caplog, Quirks(omit_total_count=True))
    assert len(calls) == 15  # 11 pages, then one oldest message per route
    assert scan_state(registry) == (0, 1100)
    for route in ROUTES:
        assert served(registry, "mimecast_queue_messages", route) is None
        assert age(registry, route) == EPOCH - expected[route]["oldest"]
    assert any("totalCount" in r.getMessage() for r in caplog.records)


def page(total, routing=None):
    messages = [] if routing is None else [Message(routing, 1, 1, "2026-11-23T00:00:00+0000")]
    return Page(1, messages, None, total, "rid")


def route_counts(total, closing, probes, read=None, left=0):
    scan = QueueScan.__new__(QueueScan)  # only the counting rule, no client
    scan.warnings, scan.routes = WarnOnce(), tuple(probes)
    scan.client = SimpleNamespace(route_filter=Choice("filterBy", ROUTE_FILTERS))
    answers = {r: page(*p) for r, p in probes.items()}
    return scan._route_counts(total, page(closing), answers, read or {}, left, {})


def test_route_counts_that_add_up_are_served_with_the_unknown_rest():
    probes = {"inbound": (40, "inbound"), "outbound": (50, "outbound")}
    counts = route_counts(100, 100, probes)
    assert dict(counts.routes) == {"inbound": 40, "outbound": 50, "internal": 0, "external": 0}
    assert counts.unknown == 10  # the queue did not move: the rest has no known route
    # The queue grew by 5 while it was counted: route counts stand, the rest is not exact.
    assert route_counts(100, 105, probes).unknown is None


def test_route_counts_that_exceed_the_total_are_not_served():
    """A server that filters the message but counts the whole queue for every route."""
    probes = {route: (100, route) for route in ROUTES}
    assert route_counts(100, 100, probes) is None
    # Within what moved during the poll, plus a tenth, they are served.
    probes = {"inbound": (60, "inbound"), "outbound": (55, "outbound")}
    assert route_counts(100, 105, probes) is not None
    assert route_counts(100, 100, {"inbound": (120, "inbound")}) is None


def test_route_counts_need_every_total_and_the_right_route():
    assert route_counts(100, 100, {"inbound": (None, "inbound")}) is None
    assert route_counts(100, 100, {"inbound": (10, "outbound")}) is None  # filter ignored
    assert route_counts(100, 100, {"inbound": (0, "inbound")}) is None  # 0, yet a message
    assert route_counts(100, 100, {"inbound": (5, None)}) is None  # 5, yet no message
    assert route_counts(100, 100, {"inbound": (5, " Inbound ")}) is not None


def test_route_counts_hold_every_message_read_but_those_that_left():
    """Of the messages read, at most the fall of totalCount are gone (the
    window only loses messages): a route counted lower was not counted as asked."""
    probes = {"inbound": (40, "inbound"), "outbound": (50, "outbound")}
    assert route_counts(100, 100, probes, {"inbound": 40, "outbound": 3}) is not None
    assert route_counts(100, 100, probes, {"inbound": 41}) is None  # one read was not counted
    # Two left between the last page and the closing request, or while the pages were read.
    assert route_counts(100, 98, probes, {"inbound": 42}) is not None
    assert route_counts(100, 98, probes, {"inbound": 43}) is None
    assert route_counts(100, 100, probes, {"inbound": 42}, left=2) is not None
    assert route_counts(100, 100, probes, {"inbound": 43}, left=2) is None
    # Not known how many left (a page without totalCount, or one that rose): no check.
    assert route_counts(100, 100, probes, {"inbound": 90}, left=None) is not None
    assert route_counts(100, 101, probes, {"inbound": 90}) is not None


@pytest.mark.parametrize(
    ("sizes", "left"),
    [([5, 5], 0), ([9, 7, 7], 2), ([], None), ([5, None], None), ([None], None), ([5, 6], None)],
)
def test_a_walk_knows_how_many_left_while_it_was_read(sizes, left):
    assert _Walk(False, len(sizes), tuple(sizes)).left == left


def test_a_warning_is_said_once_per_account_and_reason(sim, clock, caplog):
    sim.hmac_tenant.model.set_messages("processing", backlog(3000)[0])
    sim.quirks = Quirks(ignore_sort_order=True)
    poller, _, _ = build(sim, clock, [hmac_account(sim.url)], queues=("processing",))
    try:
        with caplog.at_level(logging.WARNING):
            assert poller.poll_queue("legacy", "processing")
            assert poller.poll_queue("legacy", "processing")
    finally:
        poller.stop()
    assert len([r for r in caplog.records if "oldest first" in r.getMessage()]) == 1


def test_route_oldest_ages_come_from_route_requests_only_when_those_are_sorted_too():
    """A server may sort its pages yet answer a one-message request newest first."""
    prefix = Prefix(
        scanned=100,
        ascending=True,
        newest=EPOCH - 3600,
        seen=MappingProxyType({"inbound": 1}),
        oldest=MappingProxyType({"inbound": EPOCH - 7200}),
    )

    def probe(route, created):
        return Page(1, [Message(route, 1, 1, stamp(created))], None, 5, "rid")

    scan = QueueScan.__new__(QueueScan)  # only the rule, no client
    scan.routes = ("inbound", "external")
    sorted_too = {"inbound": probe("inbound", EPOCH - 7200), "external": probe("external", 1e9)}
    stats = scan._route_stats(prefix, sorted_too, None)
    assert stats["inbound"].oldest_created == EPOCH - 7200  # from the pages read
    # Older than messages the pages read, yet not among them: not its oldest.
    assert stats["external"].oldest_known is False
    external_at = EPOCH - 60
    sorted_too["external"] = probe("external", external_at)
    stats = scan._route_stats(prefix, sorted_too, None)
    assert stats["external"].oldest_created == external_at
    # The inbound request answered its newest message: external's answer is not trusted.
    newest_first = {**sorted_too, "inbound": probe("inbound", EPOCH - 10)}
    stats = scan._route_stats(prefix, newest_first, None)
    assert stats["inbound"].oldest_created == EPOCH - 7200
    assert stats["external"].oldest_known is False
    # No route both read and requested: nothing to check the order against.
    only_external = {"external": probe("external", external_at)}
    assert scan._route_stats(prefix, only_external, None)["external"].oldest_known is False
    # An answer whose first entry is not a message: its first message may not be the oldest.
    listed_after = probe("external", external_at)
    listed_after.unreadable = 1
    stats = scan._route_stats(prefix, {**sorted_too, "external": listed_after}, None)
    assert stats["external"].oldest_known is False
    # Pages read that listed entries that are not messages: a route's oldest read
    # stands where its own request answers the same, and only there.
    stats = scan._route_stats(prefix, sorted_too, None, garbled=True)
    assert stats["inbound"].oldest_created == EPOCH - 7200
    assert stats["external"].oldest_created == external_at
    scan.routes = ("inbound", "outbound")
    stats = scan._route_stats(prefix, {"inbound": sorted_too["inbound"]}, None, garbled=True)
    assert stats["inbound"].oldest_created == EPOCH - 7200
    stats = scan._route_stats(
        prefix, {"inbound": probe("inbound", EPOCH - 9000)}, None, garbled=True
    )
    assert stats["inbound"].oldest_known is False  # an older one: the entry was inbound's


# --- the user's own filters -----------------------------------------------------------


def test_a_route_the_user_filtered_out_is_not_requested(sim, clock):
    messages, expected = backlog(5000)
    sim.hmac_tenant.model.set_messages("processing", messages)
    account = hmac_account(sim.url, filter_by=({"route": "outbound", "attachments": False},))
    ok, registry, calls = poll_once(sim, clock, account)
    assert ok
    # The whole query is outbound only, so it is counted: 1 page, outbound, total.
    filters = [c.json["data"][0]["filterBy"] for c in calls]
    assert filters == [
        [{"route": "outbound", "attachments": False}],
        [{"attachments": False}, {"route": "outbound"}],
        [{"route": "outbound", "attachments": False}],
    ]
    assert (
        served(registry, "mimecast_queue_messages", "outbound")
        == (expected["outbound"]["messages"])
    )
    for route in ("inbound", "internal", "external"):  # as a full read of this query shows
        assert served(registry, "mimecast_queue_messages", route) == 0


def test_search_by_is_sent_with_every_request(sim, clock):
    sim.oauth_tenant.model.set_messages("processing", backlog(3000)[0])
    search = {"fieldName": "info", "value": "x"}
    account = oauth_account(sim.url)
    account = type(account)(account.name, account.base_url, account.credentials, search)
    ok, _, calls = poll_once(sim, clock, account)
    assert ok
    assert all(c.json["data"][0]["searchBy"] == search for c in calls)


# --- the budget ---------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 99, 100, 101, 999, 1000, 1001, 1500, 4000])
@pytest.mark.parametrize(
    "quirks",
    [
        Quirks(),
        Quirks(ignore_sort_order=True),
        Quirks(ignore_filter_by=True),
        Quirks(omit_total_count=True),
    ],
    ids=["honours", "no-sort", "no-filter", "no-total"],
)
def test_the_budget_is_never_exceeded(sim, clock, size, quirks):
    sim.hmac_tenant.model.set_messages("processing", backlog(size, external=size // 10)[0])
    sim.quirks = quirks
    # Retries come out of the budget too.
    sim.faults.add(Fault(kind="status", status=503, times=2, retryable=True))
    ok, registry, calls = poll_once(sim, clock, hmac_account(sim.url), max_pages=15)
    assert ok
    assert len(calls) <= 15
    served_total = sum(
        served(registry, "mimecast_queue_messages", route) or 0 for route in (*ROUTES, "unknown")
    )
    assert served_total in (0, size)  # exact, or absent
    if scan_state(registry)[0] == 1:
        assert served_total == size


@pytest.mark.parametrize("budget", [1, 2, 5])
def test_a_budget_too_small_to_count_serves_only_what_is_certain(sim, clock, budget, caplog):
    messages, expected = backlog(5000)
    sim.hmac_tenant.model.set_messages("processing", messages)
    with caplog.at_level(logging.WARNING):
        ok, registry, calls = poll_once(sim, clock, hmac_account(sim.url), max_pages=budget)
    assert ok and len(calls) == 1  # the first page; too few left to count
    for route in ROUTES:
        assert served(registry, "mimecast_queue_messages", route) is None
    assert age(registry, "outbound") == EPOCH - expected["outbound"]["oldest"]
    assert age(registry, "external") is None
    assert any("poll.max_pages" in r.getMessage() for r in caplog.records)


# --- failures -------------------------------------------------------------------------


def test_a_failed_route_count_fails_the_poll_and_publishes_nothing(sim, clock):
    messages, expected = backlog(5000)
    sim.hmac_tenant.model.set_messages("processing", messages)
    poller, _, registry = build(sim, clock, [hmac_account(sim.url)], queues=("processing",))
    try:
        assert poller.poll_queue("legacy", "processing")
        sim.hmac_tenant.model.set_messages("processing", messages[:4000])
        sim.faults.add(Fault(kind="status", status=409, route="external", times=None))
        assert not poller.poll_queue("legacy", "processing")
    finally:
        poller.stop()
    # The last complete poll's figures stay; nothing of the failed one.
    assert (
        served(registry, "mimecast_queue_messages", "outbound")
        == (expected["outbound"]["messages"])
    )
    assert sample(registry, "mimecast_up", account="legacy") == 0
    errors = sample(
        registry,
        "mimecast_poll_errors_total",
        account="legacy",
        queue="processing",
        reason="http_4xx",
    )
    assert errors == 1


def route_keys(calls):
    """How each request's own route filter was keyed: route, fieldName, or None."""
    keys = []
    for call in calls:
        items = call.json["data"][0].get("filterBy") or [{}]
        keys.append("route" if "route" in items[-1] else items[-1].get("fieldName") and "fieldName")
    return keys


def test_a_server_that_ignores_the_route_key_is_asked_with_field_name_next(sim, clock, caplog):
    messages, expected = backlog(5000)
    sim.hmac_tenant.model.set_messages("processing", messages)
    sim.quirks = Quirks(ignore_route_key=True)
    poller, _, registry = build(sim, clock, [hmac_account(sim.url)], queues=("processing",))
    try:
        assert poller.poll_queue("legacy", "processing")
        assert served(registry, "mimecast_queue_messages", "inbound") is None  # in doubt
        before = len(sim.requests)
        assert poller.poll_queue("legacy", "processing")
    finally:
        poller.stop()
    for route in ROUTES:
        assert served(registry, "mimecast_queue_messages", route) == expected[route]["messages"]
    calls = [r for r in sim.requests[before:] if r.path == FIND]
    assert route_keys(calls) == [None, *["fieldName"] * 4, None]
    assert 'ignored a route in filterBy keyed "route"' in caplog.text


@pytest.mark.parametrize("churn", [Churn(), Churn(leave=1, arrive=1)])
def test_a_route_counted_lower_than_its_messages_read_leaves_the_counts_out(
    sim, clock, caplog, churn
):
    """A server matching filterBy routes in one case only counts no "INBOUND"
    message for route "inbound": 0 would be served for a route whose messages
    the first page holds, though fewer left the queue than were read."""
    messages, expected = backlog(5000)
    for message in messages:
        if message.get("routing") == "inbound":
            message["routing"] = "INBOUND"
    sim.hmac_tenant.model.set_messages("processing", messages)
    sim.quirks = Quirks(route_filter_case_sensitive=True)
    sim.churn = churn  # before each request: messages leave, and arrive after the window
    ok, registry, calls = poll_once(sim, clock, hmac_account(sim.url))
    assert ok and len(calls) == 6
    assert calls[1].json["data"][0]["filterBy"] == [{"route": "inbound"}]
    for route in (*ROUTES, "unknown"):
        assert served(registry, "mimecast_queue_messages", route) is None
    gone = 0 if churn == Churn() else 5  # one before each request after the first page
    assert f"and at most {gone} left the queue meanwhile" in caplog.text


@pytest.mark.parametrize("size", [250, 5000])
def test_a_total_count_below_the_messages_read_is_not_the_queues_size(sim, clock, caplog, size):
    """A server whose totalCount is the page's own length (the reference says
    the whole query's): each route's one-message request then counts 1."""
    messages, _ = backlog(size, external=20)
    sim.hmac_tenant.model.set_messages("processing", messages)
    sim.quirks = Quirks(total_count_of_page=True)
    ok, registry, _ = poll_once(sim, clock, hmac_account(sim.url))
    assert ok
    for route in (*ROUTES, "unknown"):
        assert served(registry, "mimecast_queue_messages", route) is None
    assert "it is not the size of the whole query" in caplog.text


def test_a_server_that_refuses_the_route_key_is_asked_with_field_name(sim, clock):
    messages, expected = backlog(5000)
    sim.hmac_tenant.model.set_messages("processing", messages)
    sim.quirks = Quirks(refuse_route_key=True)
    ok, registry, calls = poll_once(sim, clock, hmac_account(sim.url))
    assert ok
    for route in ROUTES:
        assert served(registry, "mimecast_queue_messages", route) == expected[route]["messages"]
    assert route_keys(calls) == [None, "route", *["fieldName"] * 4, None]
    assert [c.status for c in calls][:3] == [200, 400, 200]


def test_route_requests_refused_in_every_shape_leave_the_counts_out(sim, clock, caplog):
    messages, expected = backlog(5000)
    sim.hmac_tenant.model.set_messages("processing", messages)
    sim.faults.add(Fault(kind="status", status=400, route="inbound", times=None))
    ok, registry, calls = poll_once(sim, clock, hmac_account(sim.url))
    assert ok and sample(registry, "mimecast_up", account="legacy") == 1
    for route in ROUTES:
        assert served(registry, "mimecast_queue_messages", route) is None
    assert route_keys(calls) == [None, "route", "fieldName"]  # then nothing more to ask
    assert "refused the request for route 'inbound'" in caplog.text


@pytest.mark.parametrize("ignore_sort_order", [False, True])
def test_the_oldest_messages_of_a_huge_queue_only_when_read_oldest_first(
    sim, clock, ignore_sort_order
):
    messages, _ = backlog(5000)
    sim.hmac_tenant.model.set_messages("processing", messages)
    sim.quirks = Quirks(ignore_sort_order=ignore_sort_order)
    account = hmac_account(sim.url)
    poller, store, registry = build(sim, clock, [account], queues=("processing",))
    try:
        assert poller.poll_queue(account.name, "processing")
    finally:
        poller.stop()
    snapshot = store.view().queues[(account.name, "processing")].snapshot
    assert not snapshot.complete
    if ignore_sort_order:
        assert snapshot.oldest_messages is None  # the newest were read: not the oldest
    else:
        base = EPOCH - 2 * 86400
        assert [m.created for m in snapshot.oldest_messages] == [base + 10 * i for i in range(10)]


def test_a_route_with_an_undated_message_read_has_no_oldest_age_when_counted(sim, clock):
    """The same rule as a queue read whole: a message read without a usable date
    could be its route's oldest, whatever the route's own request answers."""
    messages, expected = backlog(5000)
    undated = messages[-1]  # external: no other external message is on the page read
    undated["created"] = "not a date"
    sim.hmac_tenant.model.set_messages("processing", messages)
    model = sim.hmac_tenant.model
    select = model.select

    def in_place(q, wall_now):  # whole-queue answers list it second
        found = [m for m in select(q, wall_now) if m is not undated]
        return found if q.routes else [found[0], undated, *found[1:]]

    model.select = in_place
    ok, registry, calls = poll_once(sim, clock, hmac_account(sim.url))
    assert ok and scan_state(registry)[0] == 0 and len(calls) == 6
    counted = served(registry, "mimecast_queue_messages", "external")
    assert counted == expected["external"]["messages"]
    assert age(registry, "external") is None
    for route in ("inbound", "outbound", "internal"):
        assert age(registry, route) == EPOCH - expected[route]["oldest"]


@pytest.mark.parametrize(("grace", "overdue"), [(900.0, 1), (3 * 3600.0, 0)])
def test_a_poll_counts_overdue_retries_with_poll_retry_overdue_after(sim, clock, grace, overdue):
    late = {
        "id": "m1",
        "routing": "outbound",
        "created": stamp(EPOCH - 7200),
        "nextAttempt": stamp(EPOCH - 3600),  # an hour late
        "lockedUntil": None,
    }
    sim.hmac_tenant.model.set_messages("processing", [late])
    ok, registry, _ = poll_once(sim, clock, hmac_account(sim.url), retry_overdue_after=grace)
    assert ok
    assert served(registry, "mimecast_queue_retry_overdue_messages", "outbound") == overdue


# --- entries of messages[] that are not messages ------------------------------------


def inject(sim, at: int, *entries) -> None:
    """Answers to requests of the whole queue list ``entries`` (not objects) at
    position ``at`` of the queue; route requests are answered as they are."""
    model = sim.hmac_tenant.model
    select = model.select

    def with_entries(q, wall_now):
        found = select(q, wall_now)
        return found if q.routes else [*found[:at], *entries, *found[at:]]

    model.select = with_entries


def sizes(registry) -> list[float | None]:
    return [served(registry, "mimecast_queue_size_bytes", route) for route in ROUTES]


@pytest.mark.parametrize("total_count", [True, False], ids=["totalCount", "no totalCount"])
def test_an_entry_that_is_not_a_message_leaves_out_what_would_omit_it(
    sim, clock, caplog, total_count
):
    """Read whole, the queue's figures would leave the entry out: they are not
    exact. Route requests still count and date each route; the queue is not
    read a second time for it (the entry would be there again)."""
    messages, expected = backlog(250, external=20, unknown=0)
    sim.hmac_tenant.model.set_messages("processing", messages)
    sim.quirks = Quirks(omit_total_count=not total_count)
    inject(sim, 5, 7)
    ok, registry, calls = poll_once(sim, clock, hmac_account(sim.url))
    assert ok
    assert len(calls) == 3 + 4 + total_count  # read once; each route; the closing total
    assert scan_state(registry) == (0, 250)
    assert sizes(registry) == [None] * 4
    for route in ROUTES:
        counted = expected[route]["messages"] if total_count else None
        assert served(registry, "mimecast_queue_messages", route) == counted
        assert age(registry, route) == EPOCH - expected[route]["oldest"]
    if total_count:  # Mimecast counts the entry; no route holds it
        assert served(registry, "mimecast_queue_messages", "unknown") == 1
    assert "not message objects" in caplog.text
    assert "moved" not in caplog.text


def test_one_page_with_an_entry_that_is_not_a_message_is_not_served_whole(sim, clock):
    messages, _ = backlog(60, external=5, unknown=0)
    sim.hmac_tenant.model.set_messages("processing", messages)
    sim.quirks = Quirks(omit_total_count=True)
    inject(sim, 0, "x")
    ok, registry, calls = poll_once(sim, clock, hmac_account(sim.url))
    assert ok and scan_state(registry) == (0, 60)
    assert sizes(registry) == [None] * 4
    assert served(registry, "mimecast_queue_messages", "outbound") is None


def test_a_page_of_entries_that_are_not_messages_does_not_end_the_walk(sim, clock):
    messages, _ = backlog(250, external=20, unknown=0)
    sim.hmac_tenant.model.set_messages("processing", messages)
    inject(sim, 0, *range(100))  # the whole first page
    ok, registry, calls = poll_once(sim, clock, hmac_account(sim.url))
    assert ok and scan_state(registry) == (0, 250)  # the pages after it were read


def test_a_queue_too_large_to_read_with_such_an_entry_is_dated_by_its_route_requests(
    sim, clock, caplog
):
    messages, expected = backlog(1001, external=20, unknown=0)
    sim.hmac_tenant.model.set_messages("processing", messages)
    inject(sim, 5, None)
    ok, registry, calls = poll_once(sim, clock, hmac_account(sim.url))
    assert ok and scan_state(registry)[0] == 0
    assert "not message objects" in caplog.text  # the entry was on the one page read
    for route in ROUTES:
        assert served(registry, "mimecast_queue_messages", route) == expected[route]["messages"]
        assert age(registry, route) == EPOCH - expected[route]["oldest"]  # requests agree


def test_a_budget_too_tight_to_ask_again_asks_with_field_name_at_the_next_poll(sim, clock):
    messages, expected = backlog(5000)
    sim.hmac_tenant.model.set_messages("processing", messages)
    sim.quirks = Quirks(refuse_route_key=True)
    poller, _, registry = build(
        sim, clock, [hmac_account(sim.url)], queues=("processing",), max_pages=6
    )
    try:
        assert poller.poll_queue("legacy", "processing")  # 1 page, then a refused count
        assert served(registry, "mimecast_queue_messages", "inbound") is None
        before = len(sim.requests)
        assert poller.poll_queue("legacy", "processing")
    finally:
        poller.stop()
    calls = [r for r in sim.requests[before:] if r.path == FIND]
    assert route_keys(calls) == [None, *["fieldName"] * 4, None]
    for route in ROUTES:
        assert served(registry, "mimecast_queue_messages", route) == expected[route]["messages"]


def test_a_server_that_sorts_only_when_told_by_what_dates_every_route_at_the_first_poll(sim, clock):
    """sortBy createTime goes with sortOrder: a server that applies sortOrder
    only with it answers oldest first, and a large queue's routes are dated
    from the first poll on."""
    messages, expected = backlog(5000)
    sim.hmac_tenant.model.set_messages("processing", messages)
    sim.quirks = Quirks(sort_needs_sort_by=True)
    ok, registry, _ = poll_once(sim, clock, hmac_account(sim.url))
    assert ok
    for route in ROUTES:
        assert age(registry, route) == EPOCH - expected[route]["oldest"]


def test_a_server_refusing_sort_by_is_asked_the_sort_order_alone(sim, clock, caplog):
    messages, expected = backlog(5000)
    sim.hmac_tenant.model.set_messages("processing", messages)
    sim.quirks = Quirks(refuse_sort_by=True)
    ok, registry, calls = poll_once(sim, clock, hmac_account(sim.url))
    assert ok
    sorts = [(c.json["data"][0].get("sortOrder"), c.json["data"][0].get("sortBy")) for c in calls]
    assert sorts[:3] == [("ascending", "createTime"), ("asc", "createTime"), ("ascending", None)]
    assert set(sorts[3:]) == {("ascending", None)}
    assert [c.status for c in calls[:3]] == [400, 400, 200]
    for route in ROUTES:
        assert served(registry, "mimecast_queue_messages", route) == expected[route]["messages"]
        assert age(registry, route) == EPOCH - expected[route]["oldest"]
    assert 'asking with {"sortOrder": "ascending"}' in caplog.text


def test_a_sort_order_answered_but_not_applied_is_spelled_otherwise_at_the_next_poll(
    sim, clock, caplog
):
    """A server that knows only API 2.0's "asc" and answers "ascending" newest
    first, as if it were not given: the next poll asks "asc" and dates the routes."""
    messages, expected = backlog(5000)
    sim.oauth_tenant.model.set_messages("processing", messages)
    sim.quirks = Quirks(only_short_sort_order=True, unknown_sort_order_ignored=True)
    account = oauth_account(sim.url)
    poller, _, registry = build(sim, clock, [account], queues=("processing",))
    try:
        assert poller.poll_queue(account.name, "processing")
        assert served(registry, "mimecast_queue_oldest_message_age_seconds", "inbound",
                      account=account.name) is None  # fmt: skip
        before = len(sim.requests)
        assert poller.poll_queue(account.name, "processing")
    finally:
        poller.stop()
    calls = [r for r in sim.requests[before:] if r.path == FIND]
    assert {c.json["data"][0]["sortOrder"] for c in calls} == {"asc"}
    for route in ROUTES:
        oldest = served(
            registry, "mimecast_queue_oldest_message_age_seconds", route, account=account.name
        )
        assert oldest == EPOCH - expected[route]["oldest"]
    assert (
        'ignored the sort {"sortBy": "createTime", "sortOrder": "ascending"}; asking with '
        '{"sortBy": "createTime", "sortOrder": "asc"}' in caplog.text
    )


def test_a_server_that_never_sorts_or_filters_is_asked_each_spelling_once_round(sim, clock):
    """Asked otherwise from poll to poll, once round; then the first spelling stays."""
    messages, _ = backlog(5000)
    sim.oauth_tenant.model.set_messages("processing", messages)
    sim.quirks = Quirks(ignore_sort_order=True, ignore_filter_by=True)
    account = oauth_account(sim.url)
    poller, _, _ = build(sim, clock, [account], queues=("processing",))
    asked = []
    try:
        for _ in range(7):
            before = len(sim.requests)
            assert poller.poll_queue(account.name, "processing")
            calls = [r for r in sim.requests[before:] if r.path == FIND]
            keys = route_keys(calls)
            criteria = calls[0].json["data"][0]
            order = (criteria.get("sortOrder"), criteria.get("sortBy"))
            asked.append((order, keys[1] if len(keys) > 1 else None))
    finally:
        poller.stop()
    assert [order for order, _ in asked] == [
        ("ascending", "createTime"),
        ("asc", "createTime"),
        ("ascending", None),
        ("asc", None),
        (None, None),
        ("ascending", "createTime"),
        ("ascending", "createTime"),
    ]
    assert [key for _, key in asked] == ["route", "fieldName", *["route"] * 5]
