"""Injected faults, and the /_simulator control endpoints that manage them."""

from __future__ import annotations

import time

import pytest
import requests

from mimecast_exporter.simulator.clock import ManualClock
from mimecast_exporter.simulator.faults import Fault
from mimecast_exporter.simulator.server import SimulatorServer

FIND = "/api/gateway/find-processing-messages"
RATE_HEADERS = {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"}


@pytest.fixture
def sim():
    clock = ManualClock()
    with SimulatorServer(clock=clock.time, scenario="empty") as server:
        tenant = next(t for t in server.tenants if t.kind == "oauth2")
        tenant.model.set_messages("processing", [{"id": f"m{i}"} for i in range(5)])
        yield server


@pytest.fixture
def session(sim: SimulatorServer):
    creds = sim.default_credentials()["oauth2"]
    form = {**creds, "grant_type": "client_credentials"}
    token = requests.post(sim.url + "/oauth/token", data=form, timeout=5).json()["access_token"]
    with requests.Session() as s:
        s.headers["Authorization"] = f"Bearer {token}"
        yield s


def find(session: requests.Session, sim: SimulatorServer, token: str | None = None):
    pagination: dict = {"pageSize": 2}
    if token:
        pagination["pageToken"] = token
    body = {"meta": {"pagination": pagination}, "data": [{}]}
    return session.post(sim.url + FIND, json=body, timeout=5)


def test_status_fault_answers_a_mimecast_error_then_wears_off(
    sim: SimulatorServer, session: requests.Session
) -> None:
    sim.faults.add(
        Fault(
            "status",
            status=503,
            code="service_unavailable",
            retryable=True,
            times=2,
            headers={"Retry-After": "2"},
        )
    )
    for _ in range(2):
        resp = find(session, sim)
        assert resp.status_code == 503
        assert resp.headers["Retry-After"] == "2"
        assert set(resp.headers) >= RATE_HEADERS
        error = resp.json()["fail"][0]["errors"][0]
        assert error["code"] == "service_unavailable"
        assert error["retryable"] is True
    assert find(session, sim).status_code == 200
    assert len(sim.faults) == 0


def test_fail_array_fault_is_http_200_with_fail_entries(
    sim: SimulatorServer, session: requests.Session
) -> None:
    sim.faults.add(Fault("fail_array", code="err_internal", retryable=False, times=1))
    sim.faults.add(Fault("fail_array", code="flat_code", flat=True, times=1))
    resp = find(session, sim)
    assert resp.status_code == 200
    assert resp.json()["fail"][0]["errors"][0]["code"] == "err_internal"
    flat = find(session, sim).json()["fail"][0]
    assert flat["code"] == "flat_code"


def test_malformed_json_fault(sim: SimulatorServer, session: requests.Session) -> None:
    sim.faults.add(Fault("malformed_json", times=1))
    resp = find(session, sim)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    assert set(resp.headers) >= RATE_HEADERS
    with pytest.raises(ValueError):
        resp.json()


def test_non_json_fault(sim: SimulatorServer, session: requests.Session) -> None:
    sim.faults.add(Fault("non_json", times=1))
    resp = find(session, sim)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/html")
    assert "<html>" in resp.text


def test_delay_fault_sleeps_then_answers_normally(
    sim: SimulatorServer, session: requests.Session
) -> None:
    sim.faults.add(Fault("delay", seconds=0.3, times=1))
    started = time.monotonic()
    resp = find(session, sim)
    assert time.monotonic() - started >= 0.3
    assert resp.status_code == 200
    assert len(resp.json()["data"][0]["messages"]) == 2
    with pytest.raises(requests.Timeout):
        sim.faults.add(Fault("delay", seconds=0.5, times=1))
        session.post(sim.url + FIND, json={"data": [{}]}, timeout=0.1)


def test_reset_fault_closes_the_connection(sim: SimulatorServer, session: requests.Session) -> None:
    sim.faults.add(Fault("reset", times=1))
    with pytest.raises(requests.ConnectionError):
        find(session, sim)
    assert sim.requests[-1].status is None
    assert find(session, sim).status_code == 200


def test_page_fault_hits_only_that_page(sim: SimulatorServer, session: requests.Session) -> None:
    sim.faults.add(Fault("status", status=500, page=2))
    first = find(session, sim)
    assert first.status_code == 200
    token = first.json()["meta"]["pagination"]["next"]
    assert find(session, sim, token).status_code == 500
    assert find(session, sim, token).status_code == 500  # times=None: until cleared
    sim.faults.clear()
    second = find(session, sim, token)
    assert second.status_code == 200
    third = find(session, sim, second.json()["meta"]["pagination"]["next"])
    assert third.status_code == 200


def test_faults_apply_after_authentication_and_in_order(
    sim: SimulatorServer, session: requests.Session
) -> None:
    sim.faults.add(Fault("status", status=502, times=1))
    sim.faults.add(Fault("status", status=504, times=1))
    unauthenticated = requests.post(sim.url + FIND, json={"data": [{}]}, timeout=5)
    assert unauthenticated.status_code == 401
    assert [find(session, sim).status_code for _ in range(3)] == [502, 504, 200]


def test_token_endpoint_fault_comes_before_the_credential_check(sim: SimulatorServer) -> None:
    sim.faults.add(Fault("status", status=500, path="/oauth/token", times=1))
    resp = requests.post(sim.url + "/oauth/token", data={"client_id": "x"}, timeout=5)
    assert resp.status_code == 500
    assert set(resp.headers) >= RATE_HEADERS


def test_fault_validation() -> None:
    with pytest.raises(ValueError):
        Fault("explode")
    with pytest.raises(ValueError):
        Fault("status", path="/elsewhere")
    with pytest.raises(ValueError):
        Fault.from_dict({"kind": "status", "colour": "red"})


# --- control endpoints ---------------------------------------------------------------------
def test_control_endpoints_manage_faults(sim: SimulatorServer, session: requests.Session) -> None:
    added = requests.post(
        sim.url + "/_simulator/faults", json={"kind": "status", "status": 429}, timeout=5
    )
    assert added.status_code == 201
    listed = requests.get(sim.url + "/_simulator/faults", timeout=5).json()["faults"]
    assert [f["status"] for f in listed] == [429]
    assert find(session, sim).status_code == 429
    assert requests.delete(sim.url + "/_simulator/faults", timeout=5).status_code == 200
    assert find(session, sim).status_code == 200
    bad = requests.post(sim.url + "/_simulator/faults", json={"kind": "nope"}, timeout=5)
    assert bad.status_code == 400


def test_control_endpoint_expires_tokens(sim: SimulatorServer, session: requests.Session) -> None:
    assert requests.post(sim.url + "/_simulator/expire-tokens", timeout=5).status_code == 200
    resp = find(session, sim)
    assert resp.status_code == 401
    assert resp.json()["fail"][0]["errors"][0]["code"] == "token_expired"


def test_control_state_reports_queue_sizes(sim: SimulatorServer) -> None:
    state = requests.get(sim.url + "/_simulator/state", timeout=5).json()
    assert state["scenario"] == "empty"
    sizes = {t["name"]: t["queues"] for t in state["tenants"]}
    assert sizes["sim-oauth2"] == {"processing": 5, "bulk_processing": 0}
    assert sizes["sim-hmac"] == {"processing": 0, "bulk_processing": 0}


def test_control_requests_are_not_recorded(sim: SimulatorServer) -> None:
    requests.get(sim.url + "/_simulator/state", timeout=5)
    assert requests.get(sim.url + "/_simulator/nothing", timeout=5).status_code == 404
    assert sim.requests == []
