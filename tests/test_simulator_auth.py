"""The simulator's authentication: OAuth 2.0 tokens and API 1.0 HMAC signatures.

Signatures are computed here from the reference's algorithm, independently of
the simulator's own code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from datetime import UTC, datetime

import pytest
import requests

from mimecast_exporter.simulator.clock import ManualClock
from mimecast_exporter.simulator.server import SimulatorServer

FIND = "/api/gateway/find-processing-messages"
BODY = {"data": [{}]}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def sim(clock: ManualClock):
    with SimulatorServer(clock=clock.time, scenario="empty", token_lifetime=600) as server:
        yield server


def get_token(sim: SimulatorServer, **overrides: str) -> requests.Response:
    creds = sim.default_credentials()["oauth2"]
    form = {
        "client_id": creds["client_id"],
        "client_secret": creds["client_secret"],
        "grant_type": "client_credentials",
    }
    form.update(overrides)
    return requests.post(sim.url + "/oauth/token", data=form, timeout=5)


def bearer(sim: SimulatorServer, token: str) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"}
    return requests.post(sim.url + FIND, json=BODY, headers=headers, timeout=5)


def hdr_date(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%a, %d %b %Y %H:%M:%S") + " UTC"


def signed_headers(creds: dict, date: str, req_id: str | None = None) -> dict[str, str]:
    """API 1.0 headers exactly as the reference describes them."""
    req_id = req_id or str(uuid.uuid4())
    data = ":".join([date, req_id, FIND, creds["app_key"]])
    key = base64.b64decode(creds["secret_key"])
    sig = base64.b64encode(hmac.new(key, data.encode(), hashlib.sha1).digest()).decode()
    return {
        "Authorization": f"MC {creds['access_key']}:{sig}",
        "x-mc-app-id": creds["app_id"],
        "x-mc-date": date,
        "x-mc-req-id": req_id,
        "Content-Type": "application/json",
    }


def hmac_post(sim: SimulatorServer, headers: dict[str, str]) -> requests.Response:
    return requests.post(sim.url + FIND, json=BODY, headers=headers, timeout=5)


def fail_code(resp: requests.Response) -> str:
    return resp.json()["fail"][0]["errors"][0]["code"]


# --- API 2.0 -------------------------------------------------------------------------------
def test_token_is_issued_and_accepted(sim: SimulatorServer) -> None:
    resp = get_token(sim)
    assert resp.status_code == 200
    body = resp.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 600
    ok = bearer(sim, body["access_token"])
    assert ok.status_code == 200
    assert ok.json()["fail"] == []
    assert sim.requests[-1].tenant == "sim-oauth2"


def test_token_expires_after_its_lifetime(sim: SimulatorServer, clock: ManualClock) -> None:
    token = get_token(sim).json()["access_token"]
    clock.advance(599)
    assert bearer(sim, token).status_code == 200
    clock.advance(1)
    resp = bearer(sim, token)
    assert resp.status_code == 401
    assert fail_code(resp) == "token_expired"


def test_expire_tokens_expires_every_issued_token(sim: SimulatorServer) -> None:
    first, second = (get_token(sim).json()["access_token"] for _ in range(2))
    sim.expire_tokens()
    for token in (first, second):
        resp = bearer(sim, token)
        assert resp.status_code == 401
        assert fail_code(resp) == "token_expired"
    assert bearer(sim, get_token(sim).json()["access_token"]).status_code == 200


def test_unknown_token_and_missing_authorization_are_unauthorized(sim: SimulatorServer) -> None:
    resp = bearer(sim, "not-a-token")
    assert resp.status_code == 401
    assert fail_code(resp) == "unauthorized"
    resp = requests.post(sim.url + FIND, json=BODY, timeout=5)
    assert resp.status_code == 401
    assert resp.json()["fail"]


def test_bad_client_credentials_get_401_invalid_client(sim: SimulatorServer) -> None:
    for overrides in ({"client_secret": "wrong"}, {"client_id": "nobody"}):
        resp = get_token(sim, **overrides)
        assert resp.status_code == 401
        assert resp.json()["error"] == "invalid_client"


def test_wrong_grant_type_gets_400(sim: SimulatorServer) -> None:
    resp = get_token(sim, grant_type="password")
    assert resp.status_code == 400
    assert resp.json()["error"] == "unsupported_grant_type"


def test_added_oauth2_client_is_its_own_tenant(sim: SimulatorServer) -> None:
    tenant = sim.add_oauth2_client("second-client", "second-secret")
    tenant.model.set_messages("processing", [{"id": "only-mine"}])
    token = get_token(sim, client_id="second-client", client_secret="second-secret").json()
    mine = bearer(sim, token["access_token"]).json()["data"][0]["messages"]
    default = bearer(sim, get_token(sim).json()["access_token"]).json()["data"][0]["messages"]
    assert [m["id"] for m in mine] == ["only-mine"]
    assert default == []
    assert [r.tenant for r in sim.requests][:2] == [tenant.name, tenant.name]


# --- API 1.0 -------------------------------------------------------------------------------
@pytest.fixture
def hcreds(sim: SimulatorServer) -> dict:
    return sim.default_credentials()["hmac"]


def test_signed_request_is_accepted(sim: SimulatorServer, clock: ManualClock, hcreds: dict) -> None:
    resp = hmac_post(sim, signed_headers(hcreds, hdr_date(clock.now)))
    assert resp.status_code == 200, resp.text
    assert resp.json()["fail"] == []
    assert sim.requests[-1].tenant == "sim-hmac"


def test_gmt_suffix_and_small_clock_skew_are_accepted(
    sim: SimulatorServer, clock: ManualClock, hcreds: dict
) -> None:
    # C#'s "R" date format (from the reference's sample) ends in GMT.
    date = hdr_date(clock.now - 600).replace(" UTC", " GMT")
    assert hmac_post(sim, signed_headers(hcreds, date)).status_code == 200


def test_added_hmac_key_is_accepted(sim: SimulatorServer, clock: ManualClock) -> None:
    secret = base64.b64encode(b"another secret key").decode()
    creds = {"app_id": "app-2", "app_key": "key-2", "access_key": "ak-2", "secret_key": secret}
    tenant = sim.add_hmac_key(**creds)
    assert hmac_post(sim, signed_headers(creds, hdr_date(clock.now))).status_code == 200
    assert sim.requests[-1].tenant == tenant.name


def test_add_hmac_key_refuses_a_secret_that_is_not_base64(sim: SimulatorServer) -> None:
    with pytest.raises(ValueError, match="base64"):
        sim.add_hmac_key("app", "key", "ak", "not base64!")


@pytest.mark.parametrize(
    ("tamper", "code"),
    [
        (
            lambda h: h.update(Authorization=h["Authorization"][:-4] + "AAA="),
            "err_signature_invalid",
        ),
        (lambda h: h.update({"x-mc-app-id": "other-app"}), "err_app_id_mismatch"),
        (lambda h: h.update(Authorization="MC unknown-key:c2ln"), "err_unknown_access_key"),
        (lambda h: h.update(Authorization="MC no-colon"), "err_auth_header_invalid"),
        (lambda h: h.pop("x-mc-req-id"), "err_missing_header"),
        (lambda h: h.pop("x-mc-date"), "err_missing_header"),
        (lambda h: h.pop("x-mc-app-id"), "err_missing_header"),
        (lambda h: h.pop("Authorization"), "err_missing_header"),
    ],
    ids=["signature", "app-id", "access-key", "auth-shape", "req-id", "date", "app-id-hdr", "auth"],
)
def test_bad_hmac_requests_are_refused(
    sim: SimulatorServer, clock: ManualClock, hcreds: dict, tamper, code: str
) -> None:
    headers = signed_headers(hcreds, hdr_date(clock.now))
    tamper(headers)
    resp = hmac_post(sim, headers)
    assert resp.status_code == 401
    assert fail_code(resp) == code


@pytest.mark.parametrize("offset", [-901, 901])
def test_date_more_than_15_minutes_off_is_refused(
    sim: SimulatorServer, clock: ManualClock, hcreds: dict, offset: int
) -> None:
    resp = hmac_post(sim, signed_headers(hcreds, hdr_date(clock.now + offset)))
    assert resp.status_code == 401
    assert fail_code(resp) == "err_date_skew"


def test_unparseable_date_is_refused(sim: SimulatorServer, hcreds: dict) -> None:
    resp = hmac_post(sim, signed_headers(hcreds, "2023-11-14T22:13:20Z"))
    assert resp.status_code == 401
    assert fail_code(resp) == "err_date_invalid"


def test_replayed_request_id_is_refused(
    sim: SimulatorServer, clock: ManualClock, hcreds: dict
) -> None:
    headers = signed_headers(hcreds, hdr_date(clock.now))
    assert hmac_post(sim, headers).status_code == 200
    clock.advance(30)
    replay = hmac_post(sim, headers)
    assert replay.status_code == 401
    assert fail_code(replay) == "err_request_replayed"


def test_expired_binding_answers_418(
    sim: SimulatorServer, clock: ManualClock, hcreds: dict
) -> None:
    tenant = next(t for t in sim.tenants if t.kind == "hmac")
    tenant.binding_expired = True
    resp = hmac_post(sim, signed_headers(hcreds, hdr_date(clock.now)))
    assert resp.status_code == 418
    assert fail_code(resp) == "err_xdk_binding_expired"
