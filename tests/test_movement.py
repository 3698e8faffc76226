"""A queue that moves while a poll reads it: every figure served was true at
some instant of its poll, or it is not served (issue #17, item 1).

Pages are offsets into a list that shifts. Each test moves the simulator's
queue between two find requests, as a real queue moves while it is read, and
judges what the collector serves.
"""

from __future__ import annotations

import json
import logging
import urllib.request

import pytest

from mimecast_exporter.simulator.model import Churn
from tests.conftest import hmac_account
from tests.test_scan import ROUTES, backlog, poll_once, scan_state, served

FIND = "/api/gateway/find-processing-messages"


def move_before_find(sim, number: int, change) -> list[int]:
    """Run ``change(messages)`` on the fixed queue just before find request
    ``number`` (from 1) is answered; returns the queue size at each request."""
    model = sim.hmac_tenant.model
    select = model.select
    sizes: list[int] = []

    def moving_select(q, wall_now):
        if len(sizes) + 1 == number:
            with model._lock:
                change(model._fixed[q.queue])
        sizes.append(len(model._fixed[q.queue]))
        return select(q, wall_now)

    model.select = moving_select
    return sizes


def sums(registry) -> dict[str, float | None]:
    return {route: served(registry, "mimecast_queue_size_bytes", route) for route in ROUTES}


def arrival(i: int) -> dict:
    return {"id": f"new{i}", "routing": "outbound", "size": 5, "attempts": 1,
            "created": "2026-11-23T23:59:00+0000"}  # fmt: skip


@pytest.mark.parametrize(
    ("change", "after"),
    [
        # A message already read leaves: the next page starts one later, and
        # a message that stayed is never read.
        (lambda messages: messages.pop(10), 249),
        # New messages arrive (the newest, after the cursor).
        (lambda messages: messages.extend(arrival(i) for i in range(3)), 253),
        # Both at once.
        (lambda messages: (messages.pop(10), messages.extend([arrival(0), arrival(1)])), 251),
    ],
    ids=["departure before the cursor", "arrivals after it", "both"],
)
def test_a_walk_that_saw_the_queue_move_is_read_again(sim, clock, change, after, caplog):
    messages, _ = backlog(250, external=20, unknown=0)
    sim.hmac_tenant.model.set_messages("processing", messages)
    sizes = move_before_find(sim, 2, change)
    ok, registry, calls = poll_once(sim, clock, hmac_account(sim.url))
    assert ok
    assert len(calls) == 3 + 3  # the walk, then once more over a still queue
    assert sizes[-1] == after
    # Every figure is the queue's at the end: read whole, the second time.
    assert scan_state(registry) == (1, after)
    now = sim.hmac_tenant.model._fixed["processing"]
    for route in ROUTES:
        on_route = [m for m in now if m.get("routing") == route]
        assert served(registry, "mimecast_queue_messages", route) == len(on_route)
        assert sums(registry)[route] == sum(m["size"] for m in on_route)
    assert "moved" not in caplog.text  # read again: nothing left out, nothing to say


def test_without_movement_a_walk_is_read_once(sim, clock):
    messages, _ = backlog(250, external=20, unknown=0)
    sim.hmac_tenant.model.set_messages("processing", messages)
    ok, registry, calls = poll_once(sim, clock, hmac_account(sim.url))
    assert ok and len(calls) == 3 and scan_state(registry) == (1, 250)


def test_a_queue_moving_faster_than_a_reread_serves_only_what_is_exact(sim, clock, caplog):
    """A message leaves before every request: no two walks agree. Counts come
    from requests exact at an instant; sums over messages are left out."""
    messages, _ = backlog(250, external=20, unknown=0)
    sim.hmac_tenant.model.set_messages("processing", messages)
    sim.churn = Churn(leave=1)
    caplog.set_level(logging.WARNING)
    ok, registry, calls = poll_once(sim, clock, hmac_account(sim.url))
    assert ok
    assert len(calls) == 3 + 3 + 5  # two walks, then four route counts and a total
    complete, scanned = scan_state(registry)
    assert complete == 0 and scanned is not None
    assert all(value is None for value in sums(registry).values())
    assert served(registry, "mimecast_queue_max_attempts", "outbound") is None
    text = registry_text(registry)
    assert "mimecast_queue_message_age_seconds_bucket" not in text
    assert "mimecast_queue_messages_by_status{" not in text
    # Each route's count was the route's at the instant it was asked.
    total = sum(served(registry, "mimecast_queue_messages", route) for route in ROUTES)
    assert 250 - len(calls) <= total <= 250
    assert "the queue moved while it was read" in caplog.text


def test_the_warning_is_said_once(sim, clock, caplog):
    messages, _ = backlog(250, external=20, unknown=0)
    sim.hmac_tenant.model.set_messages("processing", messages)
    sim.churn = Churn(leave=1)
    caplog.set_level(logging.DEBUG)
    account = hmac_account(sim.url)
    from tests.test_poller import build

    poller, _, _ = build(sim, clock, [account], queues=("processing",))
    try:
        for _ in range(3):
            assert poller.poll_queue(account.name, "processing")
    finally:
        poller.stop()
    said = [r for r in caplog.records if "queue moved while it was read" in r.getMessage()]
    assert [r.levelno for r in said] == [logging.WARNING, logging.DEBUG, logging.DEBUG]


def test_a_budget_too_small_to_read_again_serves_counts(sim, clock, caplog):
    messages, _ = backlog(250, external=20, unknown=0)
    sim.hmac_tenant.model.set_messages("processing", messages)
    move_before_find(sim, 2, lambda m: m.pop(10))
    ok, registry, calls = poll_once(sim, clock, hmac_account(sim.url), max_pages=9)
    assert ok and len(calls) == 3 + 5  # no room for a second walk (4 pages and 5 counts)
    assert scan_state(registry)[0] == 0
    assert sum(served(registry, "mimecast_queue_messages", r) for r in ROUTES) == 249
    assert all(value is None for value in sums(registry).values())
    assert "does not hold it read once more" in caplog.text


def registry_text(registry) -> str:
    from prometheus_client import generate_latest

    return generate_latest(registry).decode()


# --- the simulator's churn switch ---------------------------------------------------


def test_churn_moves_a_fixed_queue_before_each_find(sim):
    from tests.conftest import make_messages

    sim.hmac_tenant.model.set_messages("processing", make_messages(10))
    sim.churn = Churn(leave=2, arrive=1)
    model = sim.hmac_tenant.model
    for expected in (9, 8, 7):
        model.churn("processing", sim.churn, 0.0)
        assert len(model._fixed["processing"]) == expected
    ids = [m["id"] for m in model._fixed["processing"]]
    assert len(set(ids)) == len(ids)  # arrivals are new messages (some left again since)
    assert model._churned == 3


def test_churn_over_the_control_endpoint(sim):
    def call(method: str, body: dict | None = None):
        request = urllib.request.Request(
            sim.url + "/_simulator/churn",
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                return answer.status, json.load(answer)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)

    assert call("GET") == (200, {"leave": 0, "arrive": 0})
    assert call("PUT", {"leave": 1, "arrive": 2}) == (200, {"leave": 1, "arrive": 2})
    assert sim.churn == Churn(1, 2)
    status, body = call("PUT", {"leave": -1})
    assert status == 400 and "whole numbers" in body["error"]


def test_churn_flag_of_the_simulator_command():
    from mimecast_exporter.simulator.cli import _parser

    args = _parser().parse_args(["--churn", "2,3"])
    assert args.churn == Churn(leave=2, arrive=3)
    with pytest.raises(SystemExit):
        _parser().parse_args(["--churn", "two"])


# --- retries that spend the budget (issue #17, item 8) --------------------------------


def test_retries_of_a_count_request_never_starve_the_others(sim, clock, caplog):
    """Three 503s on the first route count: its retries take only the slack,
    and every other count request is still made."""
    from mimecast_exporter.simulator.faults import Fault

    messages, expected = backlog(5000)
    sim.hmac_tenant.model.set_messages("processing", messages)
    sim.faults.add(Fault(kind="status", status=503, route="inbound", times=3, retryable=True))
    ok, registry, calls = poll_once(sim, clock, hmac_account(sim.url), max_pages=10)
    assert ok and len(calls) == 1 + 3 + 4 + 1
    for route in ROUTES:
        assert served(registry, "mimecast_queue_messages", route) == expected[route]["messages"]
    assert "unexpectedly" not in caplog.text


def test_when_retries_spend_the_budget_what_was_exact_is_served(sim, clock, caplog):
    from mimecast_exporter.simulator.faults import Fault

    messages, _ = backlog(5000)
    sim.hmac_tenant.model.set_messages("processing", messages)
    sim.faults.add(Fault(kind="status", status=503, route="inbound", times=None, retryable=True))
    caplog.set_level(logging.WARNING)
    ok, registry, calls = poll_once(sim, clock, hmac_account(sim.url), max_pages=8)
    assert ok  # an expected outcome, not a failed poll
    # The first page, then the first route count and its two retries (the
    # slack): without it no count can be served, so the rest is not spent.
    assert len(calls) == 1 + 3
    assert scan_state(registry)[0] == 0
    assert all(served(registry, "mimecast_queue_messages", r) is None for r in ROUTES)
    assert "spent the rest of the request budget" in caplog.text
    assert "unexpectedly" not in caplog.text and "Traceback" not in caplog.text


def test_a_page_whose_retries_spend_its_share_leaves_the_counts_their_requests(sim, clock):
    from mimecast_exporter.simulator.faults import Fault

    messages, expected = backlog(250, external=20, unknown=0)
    sim.hmac_tenant.model.set_messages("processing", messages)
    sim.faults.add(Fault(kind="status", status=503, page=2, times=None, retryable=True))
    ok, registry, calls = poll_once(sim, clock, hmac_account(sim.url), max_pages=9)
    assert ok and len(calls) == 1 + 3 + 5  # page 1, page 2 three times, then the counts
    assert scan_state(registry) == (0, 100)
    for route in ROUTES:
        assert served(registry, "mimecast_queue_messages", route) == expected[route]["messages"]


# --- without totalCount: two reads must agree ---------------------------------------------


def test_without_total_count_a_queue_over_several_pages_is_exact_when_two_reads_agree(sim, clock):
    from mimecast_exporter.simulator.api import Quirks

    messages, expected = backlog(250, external=20, unknown=0)
    sim.hmac_tenant.model.set_messages("processing", messages)
    sim.quirks = Quirks(omit_total_count=True)
    ok, registry, calls = poll_once(sim, clock, hmac_account(sim.url))
    assert ok and len(calls) == 3 + 3  # read twice: the same messages both times
    assert scan_state(registry) == (1, 250)
    for route in ROUTES:
        assert served(registry, "mimecast_queue_messages", route) == expected[route]["messages"]


def test_without_total_count_two_reads_that_differ_serve_no_sums(sim, clock, caplog):
    from mimecast_exporter.simulator.api import Quirks

    messages, _ = backlog(250, external=20, unknown=0)
    sim.hmac_tenant.model.set_messages("processing", messages)
    sim.quirks = Quirks(omit_total_count=True)
    move_before_find(sim, 2, lambda m: m.pop(10))  # during the first read
    ok, registry, calls = poll_once(sim, clock, hmac_account(sim.url))
    assert ok
    assert scan_state(registry)[0] == 0
    assert all(value is None for value in sums(registry).values())
    assert "exact only when two reads find the same messages" in caplog.text


def test_one_page_is_one_instant_and_needs_no_second_read(sim, clock):
    from mimecast_exporter.simulator.api import Quirks

    messages, _ = backlog(60, external=5, unknown=0)
    sim.hmac_tenant.model.set_messages("processing", messages)
    sim.quirks = Quirks(omit_total_count=True)
    ok, registry, calls = poll_once(sim, clock, hmac_account(sim.url))
    assert ok and len(calls) == 1 and scan_state(registry) == (1, 60)


def test_a_last_page_with_total_count_after_pages_without_one_is_not_taken_as_agreeing(
    sim, clock, caplog
):
    """Pages without totalCount are compared by the messages they hold; a page
    with one is not. When only the last page carries it, two reads that agree
    on the other pages prove nothing of it: here the last page of the second
    read is shifted by a departure and holds an arrival, in the same number."""
    from mimecast_exporter.simulator.api import Quirks

    messages, _ = backlog(250, external=20, unknown=0)
    model = sim.hmac_tenant.model
    model.set_messages("processing", messages)
    sim.quirks = Quirks(omit_total_count=True)
    select = model.select
    made = []

    def mixed(q, wall_now):  # quirks are read before select: this sets the next request's
        made.append(q)
        number = len(made)
        sim.api.quirks = Quirks(omit_total_count=number % 3 != 2)  # 3 and 6 carry totalCount
        if number == 6:
            with model._lock:
                model._fixed[q.queue].pop(10)
                model._fixed[q.queue].append(arrival(0))
        return select(q, wall_now)

    model.select = mixed
    ok, registry, calls = poll_once(sim, clock, hmac_account(sim.url))
    assert ok and len(calls) >= 6
    assert scan_state(registry)[0] == 0
    assert all(value is None for value in sums(registry).values())
