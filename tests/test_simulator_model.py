"""Queue dynamics: scenarios over model time, determinism, message shape."""

from __future__ import annotations

import re
from dataclasses import replace
from types import MappingProxyType

import pytest
import requests

from mimecast_exporter.simulator.clock import ManualClock, ModelClock, parse_mc_date
from mimecast_exporter.simulator.model import GIVE_UP_AGE, QUEUE_CAP, QueueModel
from mimecast_exporter.simulator.scenarios import ROUTES, get_scenario
from mimecast_exporter.simulator.server import SimulatorServer

FIND = "/api/gateway/find-processing-messages"
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+0000$")
FIELDS = {
    "id",
    "fromEnv",
    "fromHeader",
    "to",
    "subject",
    "attachment",
    "routing",
    "size",
    "remoteIp",
    "attempts",
    "nextAttempt",
    "created",
    "info",
    "lockedUntil",
    "priority",
}


def model(scenario: str = "steady", speed: float = 1.0, seed: int | str = 1):
    clock = ManualClock()
    return clock, QueueModel(get_scenario(scenario), ModelClock(clock.time, speed), seed=seed)


def fetch_all(sim: SimulatorServer, session: requests.Session, **item) -> list[dict]:
    """Every message of a queue, following pages."""
    messages, token = [], None
    while True:
        pagination = {"pageSize": 100, **({"pageToken": token} if token else {})}
        body = {"meta": {"pagination": pagination}, "data": [item]}
        resp = session.post(sim.url + FIND, json=body, timeout=10)
        assert resp.status_code == 200, resp.text
        messages += resp.json()["data"][0]["messages"]
        token = resp.json()["meta"]["pagination"].get("next")
        if not token:
            return messages


def test_outage_grows_the_outbound_queue_over_model_time() -> None:
    clock = ManualClock()
    sim = SimulatorServer(clock=clock.time, scenario="outage", speed=60, token_lifetime=86400)
    with sim:
        creds = {**sim.default_credentials()["oauth2"], "grant_type": "client_credentials"}
        token = requests.post(sim.url + "/oauth/token", data=creds, timeout=5).json()
        with requests.Session() as session:
            session.headers["Authorization"] = f"Bearer {token['access_token']}"
            outbound = {"filterBy": [{"route": "outbound"}]}
            samples = []
            for _ in range(3):
                clock.advance(10 * 60)  # 10 wall minutes = 10 model hours at speed 60
                stuck = [
                    m
                    for m in fetch_all(sim, session, **outbound)
                    if m["to"][0]["emailAddress"].endswith("@partner.example")
                ]
                oldest = min(parse_mc_date(m["created"]) for m in stuck)
                samples.append((len(stuck), max(m["attempts"] for m in stuck), clock.now - oldest))
    sizes, attempts, ages = zip(*samples, strict=True)
    assert sizes[0] > 50
    assert sizes[0] < sizes[1] < sizes[2]
    assert attempts[0] < attempts[1] < attempts[2]
    # Ages are shown in model time: the oldest is about 10, 20, 30 model hours old.
    assert ages[0] > 9 * 3600
    assert ages[2] > 29 * 3600
    assert "421 4.7.0" in stuck[0]["info"]


def test_outage_queue_is_bounded_by_the_give_up_age() -> None:
    slow = replace(
        get_scenario("outage"),
        rates=MappingProxyType({"processing": MappingProxyType({"outbound": 0.002})}),
    )
    clock = ManualClock()
    queue = QueueModel(slow, ModelClock(clock.time), seed=1)
    clock.advance(GIVE_UP_AGE + 86400)
    messages = queue.live_messages("processing", clock.now)
    assert messages
    assert all(clock.now - m.created < GIVE_UP_AGE + 3600 for m in messages)
    assert max(m.attempts for m in messages) > 100


def test_steady_queue_comes_and_goes_but_stays_small() -> None:
    clock, queue = model("steady")
    sizes = []
    for _ in range(240):  # four hours, one look a minute
        clock.advance(60)
        sizes.append(queue.sizes(clock.now)["processing"])
    assert max(sizes) < 30
    assert 0 in sizes
    assert sum(1 for s in sizes if s > 0) > len(sizes) / 2


def test_empty_stays_empty() -> None:
    clock, queue = model("empty", speed=60)
    for _ in range(10):
        clock.advance(600)
        assert queue.sizes(clock.now) == {"processing": 0, "bulk_processing": 0}


def test_demo_starts_with_every_route_and_aged_retries() -> None:
    clock, queue = model("demo")
    messages = queue.snapshot("processing", clock.now)
    assert {m["routing"] for m in messages} == set(ROUTES)
    aged = [m for m in messages if m["attempts"] >= 5]
    assert aged
    assert all(clock.now - parse_mc_date(m["created"]) > 3600 for m in aged)
    assert queue.snapshot("bulk_processing", clock.now)


def test_burst_spikes_inbound() -> None:
    clock, queue = model("burst")
    clock.advance(50)
    before = queue.sizes(clock.now)["processing"]
    clock.advance(200)  # inside the 30x burst that starts a minute in
    during = queue.sizes(clock.now)["processing"]
    assert during > before + 10


def test_bulk_mail_is_bigger_and_mostly_outbound() -> None:
    clock, queue = model("steady", speed=60)
    clock.advance(3600)
    bulk = queue.live_messages("bulk_processing", clock.now)
    normal = queue.live_messages("processing", clock.now)
    assert bulk
    assert sum(m.route == "outbound" for m in bulk) > len(bulk) / 2
    median = sorted(m.size for m in bulk)[len(bulk) // 2]
    assert median > sorted(m.size for m in normal)[len(normal) // 2]


def test_same_seed_same_queue_however_often_it_is_looked_at() -> None:
    clock_a, a = model("steady", speed=60, seed=7)
    clock_b, b = model("steady", speed=60, seed=7)
    for _ in range(30):
        clock_a.advance(60)
        a.sizes(clock_a.now)
    clock_b.advance(30 * 60)
    assert a.snapshot("processing", clock_a.now) == b.snapshot("processing", clock_b.now)
    _, c = model("steady", speed=60, seed=8)
    assert a.snapshot("processing", clock_a.now) != c.snapshot("processing", clock_b.now)


def test_tenants_have_independent_queues() -> None:
    clock = ManualClock()
    sim = SimulatorServer(clock=clock.time, scenario="steady", speed=60)
    clock.advance(600)
    first, second = (t.model.snapshot("processing", clock.now) for t in sim.tenants)
    assert first != second


def test_messages_carry_the_documented_fields() -> None:
    clock, queue = model("demo")
    for msg in queue.snapshot("processing", clock.now):
        assert set(msg) == FIELDS
        for name in ("created", "nextAttempt", "lockedUntil"):
            assert DATE_RE.match(msg[name])
        for name in ("fromEnv", "fromHeader"):
            assert set(msg[name]) == {"emailAddress", "displayableName"}
        (recipient,) = msg["to"]  # a list of address objects, as the reference says
        assert set(recipient) == {"emailAddress", "displayableName"}
        assert msg["routing"] in ROUTES
        assert isinstance(msg["size"], int)
        assert 900 <= msg["size"] <= 30_000_000
        assert isinstance(msg["attachment"], bool)


def test_set_messages_freezes_that_queue_only() -> None:
    clock, queue = model("steady", speed=60)
    queue.set_messages("processing", [{"id": "fixed"}])
    clock.advance(3600)
    assert queue.snapshot("processing", clock.now) == [{"id": "fixed"}]
    assert queue.sizes(clock.now)["bulk_processing"] > 0
    with pytest.raises(ValueError):
        queue.set_messages("held", [])


def test_queue_size_is_capped() -> None:
    flood = replace(
        get_scenario("outage"),
        rates=MappingProxyType({"processing": MappingProxyType({"outbound": 20.0})}),
    )
    clock = ManualClock()
    queue = QueueModel(flood, ModelClock(clock.time), seed=1)
    clock.advance(2000)  # ~10000 messages to partner.example alone, were it not capped
    assert queue.sizes(clock.now)["processing"] == QUEUE_CAP


def test_unknown_scenario_is_refused() -> None:
    with pytest.raises(ValueError, match="known: auth_expired, backlog, burst, demo"):
        SimulatorServer(scenario="chaos")
