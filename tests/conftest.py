"""Shared fixtures: a fake clock, and the simulator serving on loopback with it."""

from __future__ import annotations

import time

import pytest

from mimecast_exporter.config import (
    AccountConfig,
    HmacCredentials,
    OAuth2Credentials,
    PollConfig,
    Secret,
)
from mimecast_exporter.simulator.server import SimulatorServer
from tests.fakes import FakeClock

OAUTH_ID, OAUTH_SECRET = "test-client", "test-client-secret-value"
HMAC_APP_ID, HMAC_APP_KEY = "test-app-id", "test-app-key-value"
HMAC_ACCESS_KEY = "test-access-key-value"
HMAC_SECRET_KEY = "dGVzdC1zZWNyZXQta2V5LXZhbHVl"  # base64("test-secret-key-value")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_sim(clock):
    """Start simulators (empty queue models, the test's fake clock) with the given settings.

    Each has two extra tenants with the test credentials: ``oauth_tenant`` and
    ``hmac_tenant``.
    """
    started = []

    def make(**settings):
        settings = {"scenario": "empty", "clock": clock.time, "seed": 7, **settings}
        server = SimulatorServer("127.0.0.1", 0, **settings)
        server.oauth_tenant = server.add_oauth2_client(OAUTH_ID, OAUTH_SECRET)
        server.hmac_tenant = server.add_hmac_key(
            HMAC_APP_ID, HMAC_APP_KEY, HMAC_ACCESS_KEY, HMAC_SECRET_KEY
        )
        server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def sim(make_sim):
    return make_sim()


def oauth_account(base_url: str, name: str = "acme", secret: str = OAUTH_SECRET) -> AccountConfig:
    return AccountConfig(name, base_url, OAuth2Credentials(OAUTH_ID, Secret(secret)))


def hmac_account(base_url: str, name: str = "legacy", **overrides) -> AccountConfig:
    creds = HmacCredentials(
        overrides.get("app_id", HMAC_APP_ID),
        Secret(overrides.get("app_key", HMAC_APP_KEY)),
        Secret(overrides.get("access_key", HMAC_ACCESS_KEY)),
        Secret(overrides.get("secret_key", HMAC_SECRET_KEY)),
    )
    return AccountConfig(
        name, base_url, creds, overrides.get("search_by"), overrides.get("filter_by")
    )


def poll_config(**overrides) -> PollConfig:
    settings = {"interval": 60.0, "timeout": 5.0, "page_size": 100, "stale_after": 300.0}
    settings.update(overrides)
    return PollConfig(**settings)


def make_messages(
    count: int, route: str = "outbound", created: str = "2026-11-23T23:00:00+0000", **fields
) -> list[dict]:
    return [
        {
            "id": f"msg-{route}-{i}",
            "routing": route,
            "size": 1000 + i,
            "attempts": 1 + i % 4,
            "created": created,
            "info": "Delivery attempt pending",
            **fields,
        }
        for i in range(count)
    ]


@pytest.fixture
def live_sim():
    """A simulator on the real clock (for tests of real processes), with the test
    credentials: 7 outbound messages for the OAuth tenant, 3 inbound for HMAC."""
    with SimulatorServer("127.0.0.1", 0, scenario="empty", seed=3) as server:
        server.oauth_tenant = server.add_oauth2_client(OAUTH_ID, OAUTH_SECRET)
        server.hmac_tenant = server.add_hmac_key(
            HMAC_APP_ID, HMAC_APP_KEY, HMAC_ACCESS_KEY, HMAC_SECRET_KEY
        )
        now = time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(time.time() - 600))
        server.oauth_tenant.model.set_messages("processing", make_messages(7, created=now))
        server.hmac_tenant.model.set_messages("processing", make_messages(3, "inbound", now))
        yield server
