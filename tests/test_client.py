"""The API client against the simulator over real loopback sockets, both auth schemes.

Time is the test's FakeClock, shared with the simulator: back-offs and
rate-limit waits advance it instead of sleeping.
"""

from __future__ import annotations

import json
import socket
from dataclasses import replace
from urllib.parse import parse_qsl

import pytest

from mimecast_exporter.mimecast.auth import TokenCache
from mimecast_exporter.mimecast.budget import RequestBudget
from mimecast_exporter.mimecast.client import (
    API_PATH,
    MAX_ATTEMPTS,
    TOKEN_PATH,
    MimecastClient,
    Query,
)
from mimecast_exporter.mimecast.errors import PollError
from mimecast_exporter.mimecast.ratelimit import RateLimitGate
from mimecast_exporter.simulator.api import Quirks
from mimecast_exporter.simulator.faults import Fault
from tests.conftest import hmac_account, make_messages, oauth_account, poll_config


def client_for(account, clock, **poll):
    responses = []
    client_endpoints: list[str] = []
    client = MimecastClient(
        account,
        poll_config(**poll),
        clock=clock,
        gate=RateLimitGate(),
        token_cache=TokenCache(),
        on_response=lambda e, s, r: responses.append((s, r)) or client_endpoints.append(e),
    )
    client.responses = responses
    client.endpoints = client_endpoints
    return client


def walk_pages(client, clock, queue="processing"):
    """Follow ``next`` to the end, as a full scan does, one find() per page."""
    deadline = clock.monotonic() + client.poll.interval
    budget = RequestBudget(client.poll.max_pages)
    start, end = client.window()
    token, number = None, 0
    while True:
        number += 1
        query = Query(queue, start, end, client.poll.page_size, token)
        page = client.find(query, budget=budget, deadline=deadline, number=number)
        yield page
        if not page.messages or not page.next_token:
            return
        token = page.next_token


def collect(client, clock, queue="processing"):
    return [m for page in walk_pages(client, clock, queue) for m in page.messages]


def api_calls(sim):
    return [r for r in sim.requests if r.path == API_PATH]


def token_calls(sim):
    return [r for r in sim.requests if r.path == TOKEN_PATH]


def _header(request, name):
    return {k.lower(): v for k, v in request.headers.items()}.get(name, "")


@pytest.fixture(params=["oauth2", "hmac"])
def scheme(request):
    return request.param


def account_for(scheme, sim, **kw):
    return oauth_account(sim.url) if scheme == "oauth2" else hmac_account(sim.url, **kw)


def tenant_for(scheme, sim):
    return sim.oauth_tenant if scheme == "oauth2" else sim.hmac_tenant


def test_pagination_follows_next_across_pages(sim, clock, scheme):
    tenant_for(scheme, sim).model.set_messages("processing", make_messages(250))
    client = client_for(account_for(scheme, sim), clock, page_size=100)
    messages = collect(client, clock)
    assert len(messages) == 250
    assert sum(m.size for m in messages) == sum(m["size"] for m in make_messages(250))
    calls = api_calls(sim)
    assert len(calls) == 3
    assert "pageToken" not in calls[0].json["meta"]["pagination"]
    assert calls[1].json["meta"]["pagination"]["pageToken"]
    assert all(c.json["meta"]["pagination"]["pageSize"] == 100 for c in calls)
    assert all(c.status == 200 for c in calls)
    assert [s for s, _ in client.responses if s == 200]


def test_request_is_json_with_fresh_ids_and_window(sim, clock, scheme):
    tenant_for(scheme, sim).model.set_messages("bulk_processing", make_messages(3))
    client = client_for(account_for(scheme, sim), clock, lookback=86400.0)
    collect(client, clock, queue="bulk_processing")
    collect(client, clock, queue="bulk_processing")
    calls = api_calls(sim)
    criteria = calls[0].json["data"][0]
    assert criteria["type"] == "bulk_processing"
    # Oldest first, as the endpoint's page spells it, by the one published sort field.
    assert (criteria["sortOrder"], criteria["sortBy"]) == ("ascending", "createTime")
    # The last whole second before the poll: what arrives while it reads is not in it.
    assert criteria["start"] == "2026-11-22T23:59:59+0000"
    assert criteria["end"] == "2026-11-23T23:59:59+0000"
    ids = [_header(c, "x-mc-req-id") for c in calls]
    assert len(set(ids)) == len(ids) and all(ids)
    assert all(_header(c, "x-mc-date").endswith(" UTC") for c in calls)
    assert _header(calls[0], "content-type").startswith("application/json")


def test_hmac_headers_are_what_mimecast_checks(sim, clock):
    client = client_for(hmac_account(sim.url), clock)
    collect(client, clock)
    call = api_calls(sim)[0]
    assert call.status == 200
    assert _header(call, "authorization").startswith("MC test-access-key-value:")
    assert _header(call, "x-mc-date") == "Tue, 24 Nov 2026 00:00:00 UTC"


def test_hmac_bad_secret_is_auth_error_not_retried(sim, clock):
    client = client_for(hmac_account(sim.url, secret_key="b3RoZXIta2V5"), clock)
    with pytest.raises(PollError) as info:
        collect(client, clock)
    assert info.value.reason == "auth" and info.value.status == 401
    assert len(api_calls(sim)) == 1


def test_search_and_filter_are_passed_through(sim, clock):
    search = {"fieldName": "toAddress", "value": "partner.example"}
    account = hmac_account(sim.url, search_by=search, filter_by=({"route": "outbound"},))
    collect(client_for(account, clock), clock)
    criteria = api_calls(sim)[0].json["data"][0]
    assert criteria["searchBy"] == search
    assert criteria["filterBy"] == [{"route": "outbound"}]


def test_requests_are_counted_by_endpoint(sim, clock, scheme):
    """Token requests are told apart from queue requests (mimecast_api_requests_total)."""
    client = client_for(account_for(scheme, sim), clock)
    collect(client, clock)
    expected = ["find-processing-messages"]
    if scheme == "oauth2":
        expected = ["token", *expected]
    assert client.endpoints == expected


def test_oauth_token_is_cached_across_polls(sim, clock):
    client = client_for(oauth_account(sim.url), clock)
    for _ in range(3):
        collect(client, clock)
    assert len(token_calls(sim)) == 1
    form = dict(parse_qsl(token_calls(sim)[0].body.decode()))
    assert form["grant_type"] == "client_credentials" and form["client_id"] == "test-client"


def test_token_refreshed_before_its_lifetime_ends(sim, clock):
    client = client_for(oauth_account(sim.url), clock)
    collect(client, clock)
    clock.advance(1800 - 30)  # inside the 60 s safety margin
    collect(client, clock)
    assert len(token_calls(sim)) == 2
    assert all(c.status == 200 for c in api_calls(sim))


def test_token_expired_mid_run_is_refreshed_once(sim, clock):
    sim.oauth_tenant.model.set_messages("processing", make_messages(250))
    client = client_for(oauth_account(sim.url), clock)
    pages = walk_pages(client, clock)
    first = next(pages)
    sim.expire_tokens()
    rest = [m for page in pages for m in page.messages]
    assert len(first.messages) + len(rest) == 250
    assert len(token_calls(sim)) == 2
    statuses = [c.status for c in api_calls(sim)]
    assert statuses == [200, 401, 200, 200]


def test_401_that_a_new_token_does_not_cure_is_auth(sim, clock):
    sim.faults.add(Fault(kind="status", status=401, code="unauthorized", times=None))
    client = client_for(oauth_account(sim.url), clock)
    with pytest.raises(PollError) as info:
        collect(client, clock)
    assert info.value.reason == "auth"
    assert len(api_calls(sim)) == 2  # the first try and one after a token refresh
    assert len(token_calls(sim)) == 2


def test_bad_client_secret_is_auth(sim, clock):
    client = client_for(oauth_account(sim.url, secret="wrong"), clock)
    with pytest.raises(PollError) as info:
        collect(client, clock)
    assert info.value.reason == "auth"
    assert len(token_calls(sim)) == 1 and not api_calls(sim)


def test_429_waits_at_least_the_reset_time(clock, make_sim, scheme):
    sim = make_sim(rate_limit_quota=2, rate_limit_window=60.0)
    # Another integration on the same credentials uses up the quota first.
    other = client_for(account_for(scheme, sim), clock)
    collect(other, clock)
    collect(other, clock)
    tenant_for(scheme, sim).model.set_messages("processing", make_messages(150))
    client = client_for(account_for(scheme, sim), clock, page_size=100, interval=300.0)
    messages = collect(client, clock)
    assert len(messages) == 150
    calls = api_calls(sim)
    limited = [i for i, c in enumerate(calls) if c.status == 429]
    assert limited, "the quota should have been hit"
    for i in limited:
        reset_ms = float(calls[i].response_headers["X-RateLimit-Reset"])
        assert reset_ms > 0
        assert calls[i + 1].time - calls[i].time >= reset_ms / 1000.0
    assert any(status == 429 for status, _ in client.responses)


def test_no_request_while_remaining_is_zero(clock, make_sim):
    sim = make_sim(rate_limit_quota=2, rate_limit_window=60.0)
    sim.hmac_tenant.model.set_messages("processing", make_messages(250))
    client = client_for(hmac_account(sim.url), clock, page_size=100, interval=300.0)
    assert len(collect(client, clock)) == 250
    calls = api_calls(sim)
    # The second answer said Remaining: 0, so the client waited for the reset
    # instead of spending a call on a certain 429.
    assert [c.status for c in calls] == [200, 200, 200]
    reset_ms = float(calls[1].response_headers["X-RateLimit-Reset"])
    assert calls[2].time - calls[1].time >= reset_ms / 1000.0
    assert client.responses[1] == (200, 0.0)


def test_rate_limit_reset_past_deadline_fails_fast(clock, make_sim):
    sim = make_sim(rate_limit_quota=1, rate_limit_window=60.0)
    sim.hmac_tenant.model.set_messages("processing", make_messages(150))
    client = client_for(hmac_account(sim.url), clock, page_size=100, interval=10.0, timeout=5.0)
    with pytest.raises(PollError) as info:
        collect(client, clock)
    assert info.value.reason == "rate_limited"
    assert len(api_calls(sim)) <= 3
    assert sum(clock.sleeps) < 10.0


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_retried_up_to_the_limit(sim, clock, status):
    sim.faults.add(Fault(kind="status", status=status, times=None))
    client = client_for(hmac_account(sim.url), clock)
    with pytest.raises(PollError) as info:
        collect(client, clock)
    assert info.value.reason == "http_5xx" and info.value.status == status
    assert len(api_calls(sim)) == MAX_ATTEMPTS
    # exponential: each back-off at least as long as the one before, minus jitter
    assert len(clock.sleeps) == MAX_ATTEMPTS - 1
    assert clock.sleeps[-1] > clock.sleeps[0]


def test_transient_5xx_recovers(sim, clock):
    sim.hmac_tenant.model.set_messages("processing", make_messages(5))
    sim.faults.add(Fault(kind="status", status=500, times=2))
    client = client_for(hmac_account(sim.url), clock)
    assert len(collect(client, clock)) == 5
    assert [c.status for c in api_calls(sim)] == [500, 500, 200]


def test_retries_end_within_the_poll_interval(sim, clock):
    sim.faults.add(Fault(kind="status", status=503, times=None))
    client = client_for(hmac_account(sim.url), clock, interval=5.0, timeout=1.0)
    start = clock.monotonic()
    with pytest.raises(PollError):
        collect(client, clock)
    assert clock.monotonic() - start < 5.0
    assert len(api_calls(sim)) < MAX_ATTEMPTS


@pytest.mark.parametrize(
    ("status", "code", "reason"),
    [
        (400, "err_validation", "http_4xx"),
        (403, "err_forbidden", "auth"),
        (404, None, "http_4xx"),
        (409, None, "http_4xx"),
        (418, "err_xdk_binding_expired", "binding_expired"),
    ],
)
def test_statuses_that_are_not_retried(sim, clock, status, code, reason):
    sim.faults.add(Fault(kind="status", status=status, code=code, times=None))
    client = client_for(hmac_account(sim.url), clock)
    with pytest.raises(PollError) as info:
        collect(client, clock)
    assert info.value.reason == reason and info.value.status == status
    if code:
        assert info.value.code == code
    # A 400 is asked again with the other spellings of sortOrder, once per client.
    assert len(api_calls(sim)) == (5 if status == 400 else 1)
    assert clock.sleeps == []


def test_binding_expired_from_the_simulator(sim, clock):
    sim.hmac_tenant.binding_expired = True
    with pytest.raises(PollError) as info:
        collect(client_for(hmac_account(sim.url), clock), clock)
    assert info.value.reason == "binding_expired" and info.value.status == 418


def test_fail_array_on_200(sim, clock):
    sim.faults.add(Fault(kind="fail_array", code="err_temporary", retryable=True, times=1))
    sim.hmac_tenant.model.set_messages("processing", make_messages(2))
    client = client_for(hmac_account(sim.url), clock)
    assert len(collect(client, clock)) == 2
    assert len(api_calls(sim)) == 2
    sim.faults.add(Fault(kind="fail_array", code="err_permanent", retryable=False, times=None))
    with pytest.raises(PollError) as info:
        collect(client, clock)
    assert info.value.reason == "api_fail" and info.value.code == "err_permanent"
    assert len(api_calls(sim)) == 3


def test_malformed_json_is_bad_response(sim, clock):
    sim.faults.add(Fault(kind="malformed_json", times=None))
    with pytest.raises(PollError) as info:
        collect(client_for(hmac_account(sim.url), clock), clock)
    assert info.value.reason == "bad_response"


def test_failure_on_page_n(sim, clock):
    sim.hmac_tenant.model.set_messages("processing", make_messages(450))
    sim.faults.add(Fault(kind="status", status=400, page=3, times=None))
    client = client_for(hmac_account(sim.url), clock)
    seen = []
    with pytest.raises(PollError) as info:
        for page in walk_pages(client, clock):
            seen.append(page.number)
    assert seen == [1, 2]
    assert info.value.reason == "http_4xx"


def test_slow_answer_times_out(sim, clock):
    sim.faults.add(Fault(kind="delay", seconds=1.0, times=None))
    client = client_for(hmac_account(sim.url), clock, timeout=0.2)
    client.max_attempts = 2
    with pytest.raises(PollError) as info:
        collect(client, clock)
    assert info.value.reason == "timeout"


def test_connection_refused(clock):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = client_for(hmac_account(f"http://127.0.0.1:{port}"), clock)
    client.max_attempts = 2
    with pytest.raises(PollError) as info:
        collect(client, clock)
    assert info.value.reason == "connection"
    assert "refused" in info.value.message.lower()


def test_request_bodies_are_json_not_python_repr(sim, clock):
    collect(client_for(hmac_account(sim.url), clock), clock)
    raw = api_calls(sim)[0].body
    assert json.loads(raw)["data"][0]["type"] == "processing"


def test_stall_in_the_middle_of_the_body_is_a_timeout(clock):
    import time

    from tests.rawserver import RawServer

    def stall(conn):
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"data": ['
        )
        time.sleep(2)

    with RawServer(stall) as server:
        client = client_for(hmac_account(server.url), clock, timeout=0.3)
        client.max_attempts = 1
        with pytest.raises(PollError) as info:
            collect(client, clock)
    assert info.value.reason == "timeout"


def test_trickling_answer_hits_the_request_deadline(clock):
    """One byte every 50 ms never trips a 0.5 s socket timeout; the total deadline does."""
    import time

    from tests.fakes import FakeClock
    from tests.rawserver import RawServer

    class RealMonotonic(FakeClock):
        def monotonic(self):
            return time.monotonic()

    real = RealMonotonic()

    def trickle(conn):
        body = b'{"meta": {"status": 200}, "data": [], "fail": []}' + b" " * 400
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        for i in range(len(body)):
            conn.sendall(body[i : i + 1])
            time.sleep(0.05)

    with RawServer(trickle) as server:
        client = client_for(hmac_account(server.url), real, timeout=0.5)
        client.max_attempts = 1
        started = time.monotonic()
        with pytest.raises(PollError) as info:
            collect(client, real)
    assert info.value.reason == "timeout"
    assert time.monotonic() - started < 3


def test_answer_over_the_size_cap_is_refused(sim, clock):
    sim.hmac_tenant.model.set_messages("processing", make_messages(50))
    client = client_for(hmac_account(sim.url), clock)
    client.max_response_bytes = 2000
    with pytest.raises(PollError) as info:
        collect(client, clock)
    assert info.value.reason == "bad_response" and "cap" in info.value.message


def test_connection_closed_mid_body(clock):
    from tests.rawserver import RawServer

    def truncate(conn):
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b'Content-Length: 500\r\n\r\n{"data": ['
        )

    with RawServer(truncate) as server:
        client = client_for(hmac_account(server.url), clock)
        client.max_attempts = 2
        with pytest.raises(PollError) as info:
            collect(client, clock)
        assert server.connections == 2  # retried once
    assert info.value.reason == "connection"


# --- sortOrder: each generation's spelling first, the other when refused --------------


@pytest.mark.parametrize(
    ("scheme", "quirk", "asked"),
    [
        ("oauth2", "only_short_sort_order", ["ascending", "asc", "asc"]),
        ("hmac", "only_short_sort_order", ["ascending", "asc", "asc"]),
    ],
)
def test_a_refused_sort_order_is_asked_again_in_the_other_spelling(
    sim, clock, caplog, scheme, quirk, asked
):
    tenant_for(scheme, sim).model.set_messages("processing", make_messages(3))
    sim.quirks = Quirks(**{quirk: True})
    client = client_for(account_for(scheme, sim), clock)
    assert len(collect(client, clock)) == 3
    assert len(collect(client, clock)) == 3  # the spelling that worked is kept
    calls = api_calls(sim)
    assert [c.json["data"][0]["sortOrder"] for c in calls] == asked
    assert [c.status for c in calls] == [400, 200, 200]
    assert caplog.text.count("refused the sort") == 1


def test_a_server_refusing_both_spellings_is_asked_without_sort_order(sim, clock):
    tenant_for("oauth2", sim).model.set_messages("processing", make_messages(3))
    sim.quirks = Quirks(only_short_sort_order=True, only_long_sort_order=True)
    client = client_for(account_for("oauth2", sim), clock)
    assert len(collect(client, clock)) == 3
    calls = api_calls(sim)
    sorts = [(c.json["data"][0].get("sortOrder"), c.json["data"][0].get("sortBy")) for c in calls]
    assert sorts == [
        ("ascending", "createTime"),
        ("asc", "createTime"),
        ("ascending", None),
        ("asc", None),
        (None, None),
    ]


def test_a_request_refused_whatever_the_sort_order_costs_one_request_from_then_on(sim, clock):
    account = account_for("hmac", sim)
    client = client_for(account, clock)
    client.account = replace(account, search_by={"fieldName": "nonsense", "value": "x"})
    for asked in (5, 1):
        before = len(api_calls(sim))
        with pytest.raises(PollError) as raised:
            collect(client, clock)
        assert raised.value.reason == "http_4xx" and raised.value.status == 400
        assert len(api_calls(sim)) - before == asked


def test_once_a_spelling_was_answered_a_refusal_is_not_blamed_on_it(sim, clock):
    tenant_for("hmac", sim).model.set_messages("processing", make_messages(3))
    account = account_for("hmac", sim)
    client = client_for(account, clock)
    collect(client, clock)
    client.account = replace(account, search_by={"fieldName": "nonsense", "value": "x"})
    before = len(api_calls(sim))
    with pytest.raises(PollError):
        collect(client, clock)
    assert [c.json["data"][0]["sortOrder"] for c in api_calls(sim)[before:]] == ["ascending"]
