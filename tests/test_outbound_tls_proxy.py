"""Outbound TLS is always verified; a custom CA bundle; HTTPS_PROXY and NO_PROXY honoured."""

from __future__ import annotations

import pytest
import trustme

from mimecast_exporter.config import Config
from mimecast_exporter.poller import Poller
from mimecast_exporter.simulator.server import SimulatorServer
from mimecast_exporter.store import SnapshotStore
from tests.conftest import (
    OAUTH_ID,
    OAUTH_SECRET,
    make_messages,
    oauth_account,
    poll_config,
)
from tests.proxy import TunnelProxy


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture
def tls_sim(ca, clock):
    context = __import__("ssl").create_default_context(__import__("ssl").Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    server = SimulatorServer(
        "127.0.0.1", 0, scenario="empty", clock=clock.time, ssl_context=context
    )
    tenant = server.add_oauth2_client(OAUTH_ID, OAUTH_SECRET)
    tenant.model.set_messages("processing", make_messages(4))
    with server:
        yield server


@pytest.fixture
def ca_file(ca, tmp_path):
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(autouse=True)
def clean_proxy_env(monkeypatch):
    for name in (
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "NO_PROXY",
        "no_proxy",
        "ALL_PROXY",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)


def poll(account, clock):
    config = Config(poll_config(queues=("processing",)), (account,))
    store = SnapshotStore([account.name], config.poll.queues)
    poller = Poller(config, store, clock)
    try:
        ok = poller.poll_queue(account.name, "processing")
    finally:
        poller.stop()
    return ok, store.view().queues[(account.name, "processing")]


def test_untrusted_certificate_is_refused(tls_sim, clock):
    ok, state = poll(oauth_account(tls_sim.url), clock)
    assert not ok and state.last_error == "connection"
    assert not tls_sim.requests  # no request got past the handshake


def test_custom_ca_bundle_is_trusted(tls_sim, clock, ca_file):
    account = oauth_account(tls_sim.url)
    account = type(account)(**{**account.__dict__, "ca_file": ca_file})
    ok, state = poll(account, clock)
    assert ok, state
    assert state.snapshot.messages == 4


def test_ca_file_wins_over_requests_ca_bundle(tls_sim, clock, ca_file, monkeypatch, tmp_path):
    # An unrelated bundle in the environment (as on many hosts) must not
    # replace the account's own CA.
    other = trustme.CA()
    other.cert_pem.write_to_path(str(tmp_path / "other.pem"))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "other.pem"))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(tmp_path / "other.pem"))
    account = oauth_account(tls_sim.url)
    account = type(account)(**{**account.__dict__, "ca_file": ca_file})
    ok, state = poll(account, clock)
    assert ok, state


def test_https_proxy_is_used(tls_sim, clock, ca_file, monkeypatch):
    account = oauth_account(tls_sim.url)
    account = type(account)(**{**account.__dict__, "ca_file": ca_file})
    with TunnelProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        ok, state = poll(account, clock)
    assert ok, state
    target = tls_sim.url.removeprefix("https://")
    assert proxy.tunnels and set(proxy.tunnels) == {target}
    assert len(tls_sim.requests) >= 2  # token and API call, both through the tunnel


def test_no_proxy_bypasses_the_proxy(tls_sim, clock, ca_file, monkeypatch):
    account = oauth_account(tls_sim.url)
    account = type(account)(**{**account.__dict__, "ca_file": ca_file})
    with TunnelProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        ok, state = poll(account, clock)
    assert ok, state
    assert proxy.tunnels == []
