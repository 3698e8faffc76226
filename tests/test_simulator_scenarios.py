"""The fire-drill scenarios: each makes the exporter's client fail the way it says.

Through the exporter's own API client over loopback, both auth schemes, so
that a user pointing a staging exporter at ``mimecast-simulator --scenario X``
sees the reason (and so the alert) the documentation promises. The alerts
themselves firing through a real Prometheus: tests/test_e2e_prometheus.py.
"""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
import requests

from mimecast_exporter.config.model import PollConfig
from mimecast_exporter.mimecast.errors import PollError
from mimecast_exporter.simulator.scenarios import SCENARIOS
from mimecast_exporter.simulator.server import SimulatorServer
from tests.test_client import account_for, api_calls, client_for, collect, token_calls

SCHEMES = pytest.mark.parametrize("scheme", ["oauth2", "hmac"])
DRILL = ("healthy", "outage", "rate_limited", "auth_expired", "slow", "backlog")


def test_every_fire_drill_scenario_exists_and_says_what_it_does():
    for name in DRILL:
        assert SCENARIOS[name].name == name
        assert len(SCENARIOS[name].description) > 30


@SCHEMES
def test_healthy_polls_succeed(make_sim, clock, scheme):
    sim = make_sim(scenario="healthy")
    client = client_for(account_for(scheme, sim), clock)
    collect(client, clock)  # no PollError
    assert {c.status for c in api_calls(sim)} == {200}


def test_auth_expired_is_an_auth_failure_for_api_2(make_sim, clock):
    sim = make_sim(scenario="auth_expired")
    client = client_for(account_for("oauth2", sim), clock)
    with pytest.raises(PollError) as info:
        collect(client, clock)
    assert info.value.reason == "auth"
    assert token_calls(sim)[0].status == 401 and not api_calls(sim)


def test_auth_expired_is_a_binding_expired_for_api_1(make_sim, clock):
    sim = make_sim(scenario="auth_expired")
    client = client_for(account_for("hmac", sim), clock)
    with pytest.raises(PollError) as info:
        collect(client, clock)
    assert info.value.reason == "binding_expired"
    assert [c.status for c in api_calls(sim)] == [418]


def token_for(sim) -> str:
    form = {**sim.default_credentials()["oauth2"], "grant_type": "client_credentials"}
    return requests.post(sim.url + "/oauth/token", data=form, timeout=5).json()["access_token"]


def find(sim, token: str) -> requests.Response:
    return requests.post(
        sim.url + "/api/gateway/find-processing-messages",
        json={"data": [{"type": "processing"}]},
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    )


def test_auth_expired_refuses_a_token_issued_before(make_sim, clock):
    sim = make_sim(scenario="healthy")
    token = token_for(sim)
    sim.api.behaviour = SCENARIOS["auth_expired"].api
    answer = find(sim, token)
    assert answer.status_code == 401
    assert answer.json()["fail"][0]["errors"][0]["code"] == "token_expired"


@SCHEMES
def test_rate_limited_spends_its_quota_then_fails_with_rate_limited(make_sim, clock, scheme):
    sim = make_sim(scenario="rate_limited")
    quota, window = SCENARIOS["rate_limited"].api.rate_limit
    client = client_for(account_for(scheme, sim), clock, interval=60.0, timeout=30.0)
    for _ in range(quota):
        collect(client, clock)  # another integration would have spent these
    with pytest.raises(PollError) as info:
        collect(client, clock)
    assert info.value.reason == "rate_limited"
    assert window > PollConfig.interval  # so every poll within the hour fails


def test_slow_answers_outlast_the_default_timeout():
    assert SCENARIOS["slow"].api.answer_delay > PollConfig.timeout


def test_slow_delays_every_queue_answer(make_sim, clock):
    sim = make_sim(scenario="healthy")
    sim.api.behaviour = replace(SCENARIOS["slow"].api, answer_delay=0.3)
    started = time.monotonic()
    token = token_for(sim)
    assert time.monotonic() - started < 0.3  # tokens are not slowed
    started = time.monotonic()
    answer = find(sim, token)
    assert answer.status_code == 200
    assert time.monotonic() - started >= 0.3


def test_a_scenario_quota_wins_over_the_default():
    sim = SimulatorServer(scenario="rate_limited")
    limiter = sim.api.limiter
    assert (limiter.quota, limiter.window) == SCENARIOS["rate_limited"].api.rate_limit
