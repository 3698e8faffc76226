"""find-processing-messages as the simulator serves it: the request body, pages, quotas."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import requests

from mimecast_exporter.simulator.clock import ManualClock
from mimecast_exporter.simulator.server import SimulatorServer
from mimecast_exporter.simulator.tenants import Tenant

FIND = "/api/gateway/find-processing-messages"
MC_FORMAT = "%Y-%m-%dT%H:%M:%S+0000"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def sim(clock: ManualClock):
    with SimulatorServer(clock=clock.time, scenario="empty", page_size_cap=10) as server:
        yield server


@pytest.fixture
def limited(clock: ManualClock):
    """A simulator with a quota of 5 requests per minute."""
    with SimulatorServer(clock=clock.time, scenario="empty", rate_limit_quota=5) as server:
        yield server


@pytest.fixture
def tenant(sim: SimulatorServer) -> Tenant:
    return next(t for t in sim.tenants if t.kind == "oauth2")


def open_session(sim: SimulatorServer, client_id: str, client_secret: str) -> requests.Session:
    form = {"client_id": client_id, "client_secret": client_secret}
    form["grant_type"] = "client_credentials"
    token = requests.post(sim.url + "/oauth/token", data=form, timeout=5).json()["access_token"]
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {token}"
    return s


@pytest.fixture
def session(sim: SimulatorServer):
    creds = sim.default_credentials()["oauth2"]
    with open_session(sim, creds["client_id"], creds["client_secret"]) as s:
        yield s


@pytest.fixture
def limited_session(limited: SimulatorServer):
    creds = limited.default_credentials()["oauth2"]
    with open_session(limited, creds["client_id"], creds["client_secret"]) as s:
        yield s


def mc_date(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime(MC_FORMAT)


def message(i: int, created: float, **fields) -> dict:
    msg = {
        "id": f"msg-{i:03d}",
        "fromEnv": {"emailAddress": f"sender{i}@example.net", "displayableName": "Sender"},
        "fromHeader": {"emailAddress": f"sender{i}@example.net", "displayableName": "Sender"},
        "to": [{"emailAddress": f"user{i}@acme.example", "displayableName": "User"}],
        "subject": f"Subject {i}",
        "attachment": False,
        "routing": "inbound",
        "size": 1000 + i,
        "remoteIp": "198.51.100.7",
        "attempts": 0,
        "nextAttempt": mc_date(created + 60),
        "created": mc_date(created),
        "info": "Queued for delivery",
        "lockedUntil": mc_date(created + 5400),
        "priority": "normal",
    }
    msg.update(fields)
    return msg


def find(session: requests.Session, sim: SimulatorServer, item=None, meta=None):
    body: dict = {"data": [item if item is not None else {}]}
    if meta is not None:
        body["meta"] = meta
    return session.post(sim.url + FIND, json=body, timeout=5)


def ids(resp: requests.Response) -> list[str]:
    assert resp.status_code == 200, resp.text
    return [m["id"] for m in resp.json()["data"][0]["messages"]]


def fail_code(resp: requests.Response) -> str:
    return resp.json()["fail"][0]["errors"][0]["code"]


# --- pagination ----------------------------------------------------------------------------
def test_pages_cover_the_queue_once_and_next_is_absent_on_the_last(
    sim: SimulatorServer, tenant: Tenant, session: requests.Session, clock: ManualClock
) -> None:
    tenant.model.set_messages("processing", [message(i, clock.now - i) for i in range(23)])
    seen, token, pages = [], None, 0
    while True:
        meta = {"pagination": {"pageSize": 10, **({"pageToken": token} if token else {})}}
        resp = find(session, sim, meta=meta)
        page = ids(resp)
        pagination = resp.json()["meta"]["pagination"]
        assert pagination["totalCount"] == 23
        assert pagination["pageSize"] == 10
        seen += page
        pages += 1
        token = pagination.get("next")
        if token is None:
            break
    assert pages == 3
    assert len(page) == 3
    # Newest first (descending is the documented default), each message once.
    assert seen == [f"msg-{i:03d}" for i in range(23)]


def test_page_size_is_capped_and_defaults_to_25(
    sim: SimulatorServer, tenant: Tenant, session: requests.Session, clock: ManualClock
) -> None:
    tenant.model.set_messages("processing", [message(i, clock.now - i) for i in range(30)])
    resp = find(session, sim, meta={"pagination": {"pageSize": 500}})
    assert len(ids(resp)) == 10  # the cap of this simulator
    assert resp.json()["meta"]["pagination"]["pageSize"] == 10
    with SimulatorServer(clock=clock.time, scenario="empty") as big:
        t = big.add_oauth2_client("big", "big-secret")
        t.model.set_messages("processing", [message(i, clock.now - i) for i in range(30)])
        with open_session(big, "big", "big-secret") as big_session:
            assert len(ids(find(big_session, big))) == 25


def test_sort_order_ascending(
    sim: SimulatorServer, tenant: Tenant, session: requests.Session, clock: ManualClock
) -> None:
    tenant.model.set_messages("processing", [message(i, clock.now - i) for i in range(3)])
    assert ids(find(session, sim, {"sortOrder": "ascending"})) == ["msg-002", "msg-001", "msg-000"]
    assert ids(find(session, sim, {"sortOrder": "desc"})) == ["msg-000", "msg-001", "msg-002"]
    by_creation = {"sortOrder": "asc", "sortBy": "createTime"}
    assert ids(find(session, sim, by_creation)) == ["msg-002", "msg-001", "msg-000"]
    resp = find(session, sim, {"sortOrder": "asc", "sortBy": "size"})
    assert resp.status_code == 400
    assert fail_code(resp) == "invalid_sort_by"


@pytest.mark.parametrize(
    "meta",
    [
        {"pagination": {"pageSize": 5, "pageToken": "garbage"}},
        {"pagination": {"pageSize": 0}},
        {"pagination": {"pageSize": "ten"}},
    ],
)
def test_invalid_pagination_gets_400(
    sim: SimulatorServer, session: requests.Session, meta: dict
) -> None:
    resp = find(session, sim, meta=meta)
    assert resp.status_code == 400
    assert resp.json()["fail"]


def test_page_token_of_one_queue_is_refused_for_another(
    sim: SimulatorServer, tenant: Tenant, session: requests.Session, clock: ManualClock
) -> None:
    tenant.model.set_messages("processing", [message(i, clock.now) for i in range(12)])
    token = find(session, sim).json()["meta"]["pagination"]["next"]
    meta = {"pagination": {"pageToken": token}}
    assert find(session, sim, {"type": "bulk_processing"}, meta).status_code == 400
    assert fail_code(find(session, sim, {"type": "bulk_processing"}, meta)) == "invalid_page_token"


# --- the request body ----------------------------------------------------------------------
def test_type_selects_the_queue(
    sim: SimulatorServer, tenant: Tenant, session: requests.Session, clock: ManualClock
) -> None:
    tenant.model.set_messages("processing", [message(1, clock.now)])
    tenant.model.set_messages("bulk_processing", [message(2, clock.now)])
    assert ids(find(session, sim)) == ["msg-001"]
    assert ids(find(session, sim, {"type": "processing"})) == ["msg-001"]
    assert ids(find(session, sim, {"type": "bulk_processing"})) == ["msg-002"]
    assert ids(find(session, sim, {"type": None, "sortOrder": None})) == ["msg-001"]
    resp = find(session, sim, {"type": "held"})
    assert resp.status_code == 400
    assert fail_code(resp) == "invalid_type"


def test_start_and_end_select_by_creation_time(
    sim: SimulatorServer, tenant: Tenant, session: requests.Session, clock: ManualClock
) -> None:
    now = clock.now
    msgs = [message(1, now - 8 * 86400), message(2, now - 3600), message(3, now - 60)]
    tenant.model.set_messages("processing", msgs)
    assert ids(find(session, sim)) == ["msg-003", "msg-002"]  # default: the last 7 days
    window = {"start": mc_date(now - 9 * 86400), "end": mc_date(now - 1800)}
    assert ids(find(session, sim, window)) == ["msg-002", "msg-001"]
    iso = datetime.fromtimestamp(now - 120, UTC)
    for start in (iso.isoformat(), iso.strftime("%Y-%m-%dT%H:%M:%SZ")):  # +00:00 and Z
        assert ids(find(session, sim, {"start": start})) == ["msg-003"]
    resp = find(session, sim, {"start": "yesterday"})
    assert resp.status_code == 400
    assert fail_code(resp) == "invalid_date"


def test_search_by_is_a_case_insensitive_substring_match(
    sim: SimulatorServer, tenant: Tenant, session: requests.Session, clock: ManualClock
) -> None:
    now = clock.now
    tenant.model.set_messages(
        "processing",
        [
            message(1, now, subject="Quarterly FIGURES"),
            message(2, now - 1, info="Remote server refused: 421"),
            message(3, now - 2, remoteIp="203.0.113.9"),
        ],
    )

    def search(field: str, value: str) -> list[str]:
        return ids(find(session, sim, {"searchBy": {"fieldName": field, "value": value}}))

    assert search("subject", "figures") == ["msg-001"]
    assert search("info", "REFUSED") == ["msg-002"]
    assert search("remoteIp", "203.0.113") == ["msg-003"]
    assert search("fromAddress", "sender2@") == ["msg-002"]
    assert search("toAddress", "user3@acme") == ["msg-003"]
    assert search("ALL", "refused") == ["msg-002"]
    assert search("ALL", "example") == ["msg-001", "msg-002", "msg-003"]
    bad = find(session, sim, {"searchBy": {"fieldName": "body", "value": "x"}})
    assert bad.status_code == 400


def test_filter_by_route_in_both_published_shapes(
    sim: SimulatorServer, tenant: Tenant, session: requests.Session, clock: ManualClock
) -> None:
    now = clock.now
    routes = ["inbound", "outbound", "internal", "external"]
    tenant.model.set_messages(
        "processing", [message(i, now - i, routing=r) for i, r in enumerate(routes)]
    )
    assert ids(find(session, sim, {"filterBy": [{"route": "outbound"}]})) == ["msg-001"]
    by_field = {"filterBy": [{"fieldName": "route", "value": "internal"}]}
    assert ids(find(session, sim, by_field)) == ["msg-002"]
    assert len(ids(find(session, sim, {"filterBy": [{"route": "all"}]}))) == 4
    # Shapes it does not know are ignored, not refused.
    ignored = {"filterBy": [{"fieldName": "size", "value": "big"}]}
    assert len(ids(find(session, sim, ignored))) == 4


def test_malformed_messages_are_served_as_set(
    sim: SimulatorServer, tenant: Tenant, session: requests.Session, clock: ManualClock
) -> None:
    odd = [
        {"id": "no-fields"},
        {"id": "nulls", "created": None, "routing": None, "to": None, "attempts": None},
        {"id": "odd-types", "created": 12, "size": "big", "attempts": "3", "to": ["x"]},
        message(9, clock.now),
    ]
    tenant.model.set_messages("processing", odd)
    got = find(session, sim).json()["data"][0]["messages"]
    assert {m["id"] for m in got} == {"no-fields", "nulls", "odd-types", "msg-009"}
    assert next(m for m in got if m["id"] == "odd-types") == odd[2]


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"{'data': [{}]}",  # the Python repr the reference sample sends
        b'{"data": []}',
        b'{"data": [{}, {}]}',
        b'{"data": {}}',
        b'{"meta": {}}',
        b"[]",
    ],
)
def test_invalid_bodies_get_400_with_a_fail_entry(
    sim: SimulatorServer, session: requests.Session, body: bytes
) -> None:
    resp = session.post(sim.url + FIND, data=body, timeout=5)
    assert resp.status_code == 400
    assert resp.json()["fail"][0]["errors"][0]["message"]


def test_wrong_method_and_unknown_path(sim: SimulatorServer, session: requests.Session) -> None:
    resp = session.get(sim.url + FIND, timeout=5)
    assert resp.status_code == 405
    assert resp.headers["Allow"] == "POST"
    assert session.post(sim.url + "/api/gateway/nothing", json={}, timeout=5).status_code == 404


# --- rate limits ---------------------------------------------------------------------------
def test_rate_limit_headers_429_and_reset(
    limited: SimulatorServer, limited_session: requests.Session, clock: ManualClock
) -> None:
    sim, session = limited, limited_session
    remaining = []
    for _ in range(5):
        resp = find(session, sim)
        assert resp.status_code == 200
        assert resp.headers["X-RateLimit-Limit"] == "5"
        remaining.append(int(resp.headers["X-RateLimit-Remaining"]))
    assert remaining == [4, 3, 2, 1, 0]
    clock.advance(20)
    executed = len(sim.requests)
    refused = find(session, sim)
    assert refused.status_code == 429
    assert fail_code(refused) == "rate_limit_exceeded"
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert int(refused.headers["X-RateLimit-Reset"]) == 40_000  # milliseconds
    assert sim.requests[executed].status == 429
    clock.advance(40)
    again = find(session, sim)
    assert again.status_code == 200
    assert again.headers["X-RateLimit-Remaining"] == "4"


def test_errors_carry_rate_limit_headers_too(
    limited: SimulatorServer, limited_session: requests.Session
) -> None:
    sim, session = limited, limited_session
    for resp in (
        session.post(sim.url + FIND, data=b"nope", timeout=5),
        session.get(sim.url + FIND, timeout=5),
        requests.post(sim.url + FIND, json={"data": [{}]}, timeout=5),
    ):
        assert {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} <= set(
            resp.headers
        )


def test_quotas_are_per_credential(
    limited: SimulatorServer, limited_session: requests.Session
) -> None:
    for _ in range(5):
        find(limited_session, limited)
    assert find(limited_session, limited).status_code == 429
    other = limited.add_oauth2_client("other", "other-secret")
    with open_session(limited, "other", "other-secret") as other_session:
        assert find(other_session, limited).status_code == 200
    assert limited.requests[-1].tenant == other.name


def test_recorded_requests_are_bounded():
    """A simulator running for days keeps only the latest requests."""
    from mimecast_exporter.simulator.api import MAX_RECORDED_REQUESTS, MimecastApi
    from tests.fakes import FakeClock

    api = MimecastApi(
        clock=FakeClock(),
        token_lifetime=1800,
        page_size_cap=100,
        rate_limit_quota=1000,
        rate_limit_window=60,
        max_clock_skew=900,
        recorded_requests=3,
    )
    assert api.requests.maxlen == 3
    assert (
        MimecastApi(
            clock=FakeClock(),
            token_lifetime=1800,
            page_size_cap=100,
            rate_limit_quota=1000,
            rate_limit_window=60,
            max_clock_skew=900,
        ).requests.maxlen
        == MAX_RECORDED_REQUESTS
    )


def test_the_server_records_only_the_latest_requests(sim):
    sim.api.requests = type(sim.api.requests)(maxlen=3)
    for _ in range(5):
        requests.post(sim.url + FIND, json={}, timeout=5)
    assert len(sim.requests) == 3
