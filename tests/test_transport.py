"""The one HTTP stack (mimecast_exporter/mimecast/transport.py) against real loopback servers:
every phase of an exchange under one deadline, bytes after an answer never read
as the next one (plain and TLS), and nothing from ~/.netrc or the environment
in place of the exporter's own authentication."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import socket
import ssl
import threading
import time

import pytest
import trustme

from mimecast_exporter.mimecast.errors import PollError
from mimecast_exporter.mimecast.transport import _WATCHDOG, Transport, _failure
from tests.conftest import HMAC_ACCESS_KEY, hmac_account, make_messages, oauth_account
from tests.fakes import FakeClock
from tests.rawserver import LoopbackServer, read_request
from tests.test_client import api_calls, client_for, collect, token_calls
from tests.test_hostile_upstream import one_page


class RealMonotonic(FakeClock):
    """Sockets wait in real time: the client's deadline must too."""

    def monotonic(self):
        return time.monotonic()


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture
def ca_file(ca, tmp_path):
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(autouse=True)
def no_proxy_env(monkeypatch):
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


def _answer(messages: int) -> bytes:
    body = json.dumps(
        {
            "meta": {"status": 200, "pagination": {"pageSize": 100, "totalCount": messages}},
            "data": [{"messages": make_messages(messages)}],
            "fail": [],
        }
    ).encode()
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


class StaleBytesServer(LoopbackServer):
    """Answers every request with 3 messages, and after the first answer on a
    connection sends, in the same write, a whole answer of ``stale`` messages
    that no request asked for."""

    def __init__(self, context: ssl.SSLContext | None = None, stale: int = 42) -> None:
        super().__init__()
        self.context = context
        self.stale = stale
        if context is not None:
            self.url = self.url.replace("http://", "https://")
        self.answered = 0

    def handle(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):  # the client closes what it will not reuse
            if self.context is not None:
                conn = self.context.wrap_socket(conn, server_side=True)
            with conn:
                conn.settimeout(5)
                first = True
                while read_request(conn):
                    self.answered += 1
                    conn.sendall(_answer(3) + (_answer(self.stale) if first else b""))
                    first = False


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("stale", [42, 500])
def test_bytes_after_an_answer_are_never_read_as_the_next_answer(scheme, stale, ca, ca_file, clock):
    """A small leftover is read into http.client's buffer with the answer and
    dropped with it; a large one is still in the socket or in a decrypted TLS
    record (SSLSocket.pending()) when the next request comes: that connection
    is closed and a new one made."""
    context = None
    if scheme == "https":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(context)
    with StaleBytesServer(context, stale) as server:
        account = dataclasses.replace(hmac_account(server.url), ca_file=ca_file)
        client = client_for(account, clock)
        counts = [len(collect(client, clock)) for _ in range(3)]
        connections = server.connections
    assert counts == [3, 3, 3]
    assert server.answered == 3
    # Each connection's first answer leaves bytes behind: with 500 messages they
    # are still in the socket or TLS record, and no connection is used again.
    assert connections == (3 if stale == 500 else 1)


def test_a_clean_connection_is_kept_between_requests(ca, ca_file, clock):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)

    class Clean(StaleBytesServer):
        def handle(self, conn):
            conn = self.context.wrap_socket(conn, server_side=True)
            with conn:
                conn.settimeout(5)
                while read_request(conn):
                    self.answered += 1
                    conn.sendall(_answer(3))

    with Clean(context) as server:
        account = dataclasses.replace(hmac_account(server.url), ca_file=ca_file)
        client = client_for(account, clock)
        assert [len(collect(client, clock)) for _ in range(3)] == [3, 3, 3]
        assert server.connections == 1


class Trickler(LoopbackServer):
    """Reads what the client sends first, then answers ``reply`` quickly (if
    any; then waits for the client's next bytes, a ClientHello through the
    tunnel) and trickles ``trickle`` a byte every 50 ms: no single read ever
    waits long enough to time out."""

    def __init__(self, trickle: bytes, reply: bytes = b"", *, http: bool = True) -> None:
        super().__init__()
        self.trickle, self.reply, self.http = trickle, reply, http
        self.first: list[bytes] = []

    def handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                self.first.append(read_request(conn) if self.http else conn.recv(65536))
                if self.reply:
                    conn.sendall(self.reply)
                    conn.recv(65536)
                for i in range(len(self.trickle)):
                    conn.sendall(self.trickle[i : i + 1])
                    time.sleep(0.05)
            except OSError:
                pass


# A TLS record header announcing 16 KiB, then its bytes one by one.
_SLOW_TLS = b"\x16\x03\x03\x40\x00" + b"\x00" * 400
_SLOW_HEAD = b"HTTP/1.1 200 Connection established\r\nX-Slow: " + b"a" * 400


def _times_out(client, clock) -> PollError:
    client.max_attempts = 1
    started = time.monotonic()
    with pytest.raises(PollError) as info:
        one_page(client, clock)
    assert time.monotonic() - started < 3, "the deadline did not hold"
    assert info.value.reason == "timeout", info.value.message
    return info.value


def test_a_trickled_tls_handshake_fails_at_the_deadline():
    clock = RealMonotonic()
    with Trickler(_SLOW_TLS, http=False) as server:
        url = server.url.replace("http://", "https://")
        _times_out(client_for(hmac_account(url), clock, timeout=0.5), clock)


def test_a_proxy_trickling_its_answer_to_connect_fails_at_the_deadline(no_proxy_env):
    clock = RealMonotonic()
    with Trickler(_SLOW_HEAD) as proxy:
        no_proxy_env.setenv("HTTPS_PROXY", proxy.url)
        client = client_for(hmac_account("https://mimecast.invalid"), clock, timeout=0.5)
        assert client.transport.proxy == proxy.url
        _times_out(client, clock)
        assert proxy.first[0].startswith(b"CONNECT mimecast.invalid:443 ")


def test_a_tls_handshake_trickled_through_the_tunnel_fails_at_the_deadline(no_proxy_env):
    clock = RealMonotonic()
    established = b"HTTP/1.1 200 Connection established\r\n\r\n"
    with Trickler(_SLOW_TLS, reply=established) as proxy:
        no_proxy_env.setenv("HTTPS_PROXY", proxy.url)
        client = client_for(hmac_account("https://mimecast.invalid"), clock, timeout=0.5)
        _times_out(client, clock)


def test_a_trickled_token_answer_fails_at_the_deadline():
    clock = RealMonotonic()
    with Trickler(b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 400) as server:
        error = _times_out(client_for(oauth_account(server.url), clock, timeout=0.5), clock)
        assert server.first[0].startswith(b"POST /oauth/token ")
    assert "no answer within 0.5s" in error.message


def test_the_watchdog_forgets_finished_exchanges(sim, clock):
    sim.hmac_tenant.model.set_messages("processing", make_messages(5))
    client = client_for(hmac_account(sim.url), clock)
    for _ in range(50):
        collect(client, clock)
    time.sleep(0.1)
    with _WATCHDOG._wake:
        # Entries wait for their deadline, but none that is finished keeps a socket.
        assert all(exchange.finished for _, _, exchange in _WATCHDOG._heap)
        assert all(exchange._handle is None for _, _, exchange in _WATCHDOG._heap)


def test_netrc_and_the_environment_never_replace_the_exporters_authentication(
    make_sim, clock, tmp_path, no_proxy_env
):
    sim = make_sim()
    sim.hmac_tenant.model.set_messages("processing", make_messages(2))
    sim.oauth_tenant.model.set_messages("processing", make_messages(2))
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine 127.0.0.1 login intruder password stolen\ndefault login x password y")
    netrc.chmod(0o600)
    no_proxy_env.setenv("HOME", str(tmp_path))
    no_proxy_env.setenv("NETRC", str(netrc))
    no_proxy_env.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "none.pem"))  # http: unused
    basic = "Basic " + base64.b64encode(b"intruder:stolen").decode()
    assert len(collect(client_for(hmac_account(sim.url), clock), clock)) == 2
    assert len(collect(client_for(oauth_account(sim.url), clock), clock)) == 2
    headers = [dict(r.headers) for r in [*api_calls(sim), *token_calls(sim)]]
    assert len(headers) == 3
    authorizations = [
        next((v for k, v in h.items() if k.lower() == "authorization"), None) for h in headers
    ]
    assert basic not in authorizations
    assert f"MC {HMAC_ACCESS_KEY}:" in authorizations[0]
    assert authorizations[1].startswith("Bearer ")
    assert authorizations[2] is None  # the token request carries the form's credentials only


def test_one_transport_serves_an_accounts_queues_from_two_threads(sim, clock):
    sim.hmac_tenant.model.set_messages("processing", make_messages(7))
    sim.hmac_tenant.model.set_messages("bulk_processing", make_messages(4))
    client = client_for(hmac_account(sim.url), clock)
    assert isinstance(client.transport, Transport)
    results: dict[str, list[int]] = {"processing": [], "bulk_processing": []}

    def poll(queue: str) -> None:
        for _ in range(10):
            results[queue].append(len(collect(client, clock, queue)))

    threads = [threading.Thread(target=poll, args=(queue,)) for queue in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == {"processing": [7] * 10, "bulk_processing": [4] * 10}


def test_a_looping_chain_of_causes_is_read_once():
    """urllib3 can raise an error while handling its own cause: the chain loops.
    Reading it must end (it once spun a poll thread, allocating without end)."""
    first, second = ConnectionResetError("reset"), OSError("again")
    first.__context__, second.__context__ = second, first
    error = _failure(first, expired=False, connected=True, status=None, timeout=1.0)
    assert error.reason == "connection"
