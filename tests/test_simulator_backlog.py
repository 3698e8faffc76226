"""The simulator's large-backlog side: sortOrder, filterBy route and totalCount, the
switches that make it ignore each, and the backlog scenario of computed messages."""

from __future__ import annotations

import signal

import pytest
import requests

from mimecast_exporter.simulator.api import Quirks
from mimecast_exporter.simulator.backlog import ROUTES, Backlog, attempts_after
from mimecast_exporter.simulator.clock import ManualClock, parse_mc_date
from mimecast_exporter.simulator.faults import Fault
from mimecast_exporter.simulator.server import SimulatorServer
from tests.test_simulator_api import open_session
from tests.test_simulator_cli import read_banner, running

FIND = "/api/gateway/find-processing-messages"
SIZE = 20_000


@pytest.fixture(scope="module")
def sim():
    clock = ManualClock()
    with SimulatorServer(
        clock=clock.time, scenario="backlog", backlog_messages=SIZE, page_size_cap=500
    ) as server:
        yield server


@pytest.fixture
def session(sim):
    sim.quirks = Quirks()
    tenant = next(t for t in sim.tenants if t.kind == "oauth2")
    return open_session(sim, tenant.client_id, tenant.client_secret)


def find(sim, session, page_size=100, token=None, **criteria):
    pagination = {"pageSize": page_size, **({"pageToken": token} if token else {})}
    body = {"meta": {"pagination": pagination}, "data": [{"type": "processing", **criteria}]}
    answer = session.post(sim.url + FIND, json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def dates(page):
    return [parse_mc_date(m["created"]) for m in page["data"][0]["messages"]]


def test_descending_by_default_ascending_when_asked(sim, session):
    newest_first = dates(find(sim, session))
    oldest_first = dates(find(sim, session, sortOrder="ascending"))
    assert newest_first == sorted(newest_first, reverse=True)
    assert oldest_first == sorted(oldest_first)
    assert oldest_first[0] < newest_first[-1]
    assert dates(find(sim, session, sortOrder="asc")) == oldest_first  # the 2.0 spelling


def test_total_count_is_the_whole_query_and_pages_follow_it(sim, session):
    first = find(sim, session, page_size=500, sortOrder="ascending")
    assert first["meta"]["pagination"]["totalCount"] == SIZE
    second = find(sim, session, 500, first["meta"]["pagination"]["next"], sortOrder="ascending")
    assert dates(first)[-1] <= dates(second)[0]


def test_filter_by_route_counts_and_orders_one_route(sim, session):
    counts = {}
    for route in ROUTES:
        page = find(sim, session, page_size=1, sortOrder="ascending", filterBy=[{"route": route}])
        counts[route] = page["meta"]["pagination"]["totalCount"]
        assert page["data"][0]["messages"][0]["routing"] == route
    assert sum(counts.values()) == SIZE
    assert counts["outbound"] > SIZE / 2  # the stuck partner is on the outbound route
    both = find(sim, session, filterBy=[{"fieldName": "route", "value": "inbound"}])
    assert both["meta"]["pagination"]["totalCount"] == counts["inbound"]


@pytest.mark.parametrize(
    ("quirks", "check"),
    [
        (Quirks(ignore_sort_order=True), "newest_first"),
        (Quirks(ignore_filter_by=True), "every_route"),
        (Quirks(omit_total_count=True), "no_total"),
    ],
)
def test_each_switch_plays_a_server_that_ignores_it(sim, session, quirks, check):
    sim.quirks = quirks
    page = find(sim, session, page_size=50, sortOrder="ascending", filterBy=[{"route": "internal"}])
    messages = page["data"][0]["messages"]
    pagination = page["meta"]["pagination"]
    if check == "newest_first":
        assert dates(page) == sorted(dates(page), reverse=True)
        assert {m["routing"] for m in messages} == {"internal"}
    elif check == "every_route":
        assert pagination["totalCount"] == SIZE
        assert len({m["routing"] for m in messages}) > 1
    else:
        assert "totalCount" not in pagination and "next" in pagination
        assert dates(page) == sorted(dates(page))


def test_quirks_through_the_control_api(sim, session):
    answer = requests.put(
        sim.url + "/_simulator/quirks", json={"omit_total_count": True}, timeout=5
    )
    assert answer.status_code == 200 and answer.json()["omit_total_count"] is True
    assert "totalCount" not in find(sim, session)["meta"]["pagination"]
    assert requests.get(sim.url + "/_simulator/state", timeout=5).json()["quirks"][
        "omit_total_count"
    ]
    bad = requests.put(sim.url + "/_simulator/quirks", json={"sort": True}, timeout=5)
    assert bad.status_code == 400


def test_a_fault_can_target_one_route(sim, session):
    sim.faults.add(Fault(kind="status", status=503, route="external", times=1))
    other = session.post(
        sim.url + FIND,
        json={"data": [{"type": "processing", "filterBy": [{"route": "inbound"}]}]},
        timeout=10,
    )
    hit = session.post(
        sim.url + FIND,
        json={"data": [{"type": "processing", "filterBy": [{"route": "external"}]}]},
        timeout=10,
    )
    assert (other.status_code, hit.status_code) == (200, 503)


def test_search_by_still_applies_to_a_backlog(sim, session):
    page = find(sim, session, searchBy={"fieldName": "subject", "value": "message 123"})
    subjects = {m["subject"] for m in page["data"][0]["messages"]}
    assert subjects and all("message 123" in s for s in subjects)


def test_backlog_messages_are_computed_from_their_index():
    backlog = Backlog(1000, 10_000_000.0, span=3600.0, seed=1, domain="acme.example")
    assert sum(backlog.route_counts().values()) == 1000
    assert backlog.created(0) == 10_000_000.0 - 3600.0
    assert backlog.created(999) < 10_000_000.0
    one = backlog.render(5, shift=0.0, now=10_000_000.0)
    assert one == backlog.render(5, shift=0.0, now=10_000_000.0)
    assert one["attempts"] == attempts_after(10_000_000.0 - backlog.created(5))
    assert [attempts_after(age) for age in (0, 299, 300, 900, 2100, 4500, 8100, 10**7)] == [
        0,
        0,
        1,
        2,
        3,
        4,
        5,
        30,
    ]
    empty = Backlog(0, 0.0, span=3600.0, seed=1, domain="x")
    assert len(empty.select(None, 0, 1, False, 0, 0)) == 0


def test_cli_flags_set_the_backlog_and_the_switches():
    args = ("--scenario", "backlog", "--backlog-messages", "5000")
    switches = ("--ignore-sort-order", "--no-total-count")
    with running("--listen", "127.0.0.1:0", *args, *switches) as proc:
        url = read_banner(proc)[0].rsplit(" ", 1)[1]
        state = requests.get(url + "/_simulator/state", timeout=5).json()
        assert state["scenario"] == "backlog"
        assert {t["queues"]["processing"] for t in state["tenants"]} == {5000}
        assert state["quirks"] == {
            "ignore_sort_order": True,
            "ignore_filter_by": False,
            "omit_total_count": True,
            "only_short_sort_order": False,
            "only_long_sort_order": False,
            "unknown_sort_order_ignored": False,
            "ignore_route_key": False,
            "refuse_route_key": False,
            "refuse_sort_by": False,
            "sort_needs_sort_by": False,
            "route_filter_case_sensitive": False,
            "total_count_of_page": False,
        }
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
