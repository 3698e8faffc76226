"""A hostile Mimecast-shaped server on loopback: absurd headers, huge or nested
error bodies, echoed secrets, bad tokens. The client must stay bounded, never
leak a secret, and recover without a restart (issue #8)."""

from __future__ import annotations

import gzip
import json
import logging
import socket
import threading
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from mimecast_exporter.logs import add_secrets
from mimecast_exporter.mimecast.budget import RequestBudget
from mimecast_exporter.mimecast.client import API_PATH, TOKEN_PATH, Query
from mimecast_exporter.mimecast.errors import PollError
from mimecast_exporter.mimecast.ratelimit import MAX_WAIT_SECONDS
from mimecast_exporter.mimecast.responses import MAX_UPSTREAM_TEXT
from tests.conftest import HMAC_SECRET_KEY, OAUTH_SECRET, hmac_account, oauth_account
from tests.fakes import FakeClock
from tests.rawserver import LoopbackServer, RawServer, read_request
from tests.test_client import client_for

OK_PAGE = {"meta": {"status": 200, "pagination": {"totalCount": 0}}, "data": [], "fail": []}
TOKEN = {"access_token": "good-token", "token_type": "Bearer", "expires_in": 1800}

Reply = tuple[int, dict[str, str], bytes]


class ScriptedServer(LoopbackServer):
    """Answers each request with ``reply(path, headers)``; one request per connection."""

    def __init__(self, reply: Callable[[str, dict[str, str]], Reply]) -> None:
        super().__init__()
        self.reply = reply
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()

    def handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            request = read_request(conn)
            head = request.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
            path = head[0].split(" ")[1]
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            with self._lock:
                self.paths.append(path)
                self.headers.append(headers)
            status, extra, body = self.reply(path, headers)
            lines = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", "Connection: close"]
            lines += [f"{k}: {v}" for k, v in extra.items()]
            conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)


def one_page(client, clock):
    start, end = client.window()
    return client.find(
        Query("processing", start, end, 100),
        budget=RequestBudget(15),
        deadline=clock.monotonic() + client.poll.interval,
        number=1,
    )


def page(status: int = 200, headers: dict[str, str] | None = None, body=OK_PAGE) -> Reply:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return status, {"Content-Type": "application/json", **(headers or {})}, raw


# --- 1. rate-limit waits are bounded -------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"X-RateLimit-Reset": "1795478400000"},  # an epoch in ms where a delay was meant
        {"X-RateLimit-Reset": "inf"},
        {"X-RateLimit-Reset": "1e400"},
        {"Retry-After": "Fri, 31 Dec 9999 23:59:59 GMT"},
        {"Retry-After": "99999999999999999999"},
    ],
)
def test_an_absurd_rate_limit_reset_waits_at_most_an_hour(clock, headers, caplog):
    limited = {"on": True}

    def reply(path, _):
        if limited["on"]:
            return page(429, {**headers, "X-RateLimit-Remaining": "0"}, b"{}")
        return page()

    with ScriptedServer(reply) as server:
        client = client_for(hmac_account(server.url), clock, interval=60.0)
        with caplog.at_level(logging.WARNING), pytest.raises(PollError) as info:
            one_page(client, clock)
        assert info.value.reason == "rate_limited"
        assert 0 < client.gate.remaining(clock.monotonic()) <= MAX_WAIT_SECONDS
        assert "at most an hour" in caplog.text
        # An hour later the account is polled again: no restart needed.
        limited["on"] = False
        clock.advance(MAX_WAIT_SECONDS + 1)
        assert one_page(client, clock).messages == []


# --- 3. page tokens --------------------------------------------------------------------


def test_an_absurdly_long_page_token_is_refused_with_its_length(clock):
    token = "t" * 5_000_000
    body = {**OK_PAGE, "meta": {"pagination": {"next": token}}}
    body["data"] = [{"messages": [{"routing": "inbound"}]}]
    with ScriptedServer(lambda path, _: page(body=body)) as server:
        client = client_for(hmac_account(server.url), clock)
        with pytest.raises(PollError) as info:
            one_page(client, clock)
    assert info.value.reason == "bad_response"
    assert "5000000 characters" in info.value.message and len(info.value.message) < 200


# --- 5, 6. upstream text: scrubbed, then cut ---------------------------------------------


def test_a_fail_message_echoing_a_secret_never_shows_a_prefix_of_it(clock, caplog):
    add_secrets([HMAC_SECRET_KEY])
    for offset in (290, 295, 299):
        message = "x" * offset + f"bad key {HMAC_SECRET_KEY} given"
        body = {"meta": {"status": 200}, "data": [], "fail": [{"errors": [{"message": message}]}]}
        with ScriptedServer(lambda path, _, b=body: page(body=b)) as server:
            client = client_for(hmac_account(server.url), clock)
            with caplog.at_level(logging.DEBUG), pytest.raises(PollError) as info:
                one_page(client, clock)
        logging.getLogger("mimecast_exporter.test").warning(info.value.message)
        assert HMAC_SECRET_KEY[:6] not in info.value.message
        assert len(info.value.message) < MAX_UPSTREAM_TEXT + 100


@pytest.mark.parametrize("status", [400, 401, 500])
def test_oauth_error_fields_of_a_megabyte_are_cut(clock, status):
    error = {"error": "e" * 1_000_000, "error_description": "d" * 1_000_000}
    with ScriptedServer(lambda path, _: page(status, body=error)) as server:
        client = client_for(oauth_account(server.url), clock)
        client.max_attempts = 1
        with pytest.raises(PollError) as info:
            one_page(client, clock)
    assert len(info.value.message) < 2 * MAX_UPSTREAM_TEXT + 200
    assert len(info.value.code or "") <= MAX_UPSTREAM_TEXT + 3


def test_oauth_secret_echoed_in_error_description_is_masked(clock):
    add_secrets([OAUTH_SECRET])
    error = {"error": "invalid_client", "error_description": "y" * 280 + OAUTH_SECRET}
    with ScriptedServer(lambda path, _: page(401, body=error)) as server:
        client = client_for(oauth_account(server.url), clock)
        with pytest.raises(PollError) as info:
            one_page(client, clock)
    assert info.value.reason == "auth"
    assert OAUTH_SECRET[:6] not in info.value.message


# --- 7. malformed access tokens --------------------------------------------------------


@pytest.mark.parametrize("token", ["bad\ntoken-value", "bad token", "tok\x00en", "é" * 10])
def test_a_malformed_access_token_is_refused_unquoted_and_not_cached(clock, token, caplog):
    tokens = [token, "good-token"]

    def reply(path, headers):
        if path == TOKEN_PATH:
            return page(body={**TOKEN, "access_token": tokens.pop(0)})
        assert headers["authorization"] == "Bearer good-token"
        return page()

    with ScriptedServer(reply) as server:
        client = client_for(oauth_account(server.url), clock)
        client.max_attempts = 1
        with caplog.at_level(logging.DEBUG), pytest.raises(PollError) as info:
            one_page(client, clock)
        assert info.value.reason == "bad_response"
        assert token not in info.value.message and token not in caplog.text
        # The next poll asks for a new token instead of reusing the bad one.
        assert one_page(client, clock).messages == []
        assert server.paths == [TOKEN_PATH, TOKEN_PATH, API_PATH]


# --- 10. a 5xx whose body is nested JSON --------------------------------------------------


@pytest.mark.parametrize("body", [b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 50_000 + b"1"])
def test_a_5xx_with_deeply_nested_json_is_retried_as_http_5xx(clock, body):
    with ScriptedServer(lambda path, _: page(503, body=body)) as server:
        client = client_for(hmac_account(server.url), clock)
        client.max_attempts = 2
        with pytest.raises(PollError) as info:
            one_page(client, clock)
        assert len(server.paths) == 2  # retried
    assert info.value.reason == "http_5xx"


def test_a_fail_array_nested_too_deeply_is_bad_response(clock):
    body = b'{"data": [], "fail": ' + b"[" * 30_000 + b"]" * 30_000 + b"}"
    with ScriptedServer(lambda path, _: page(body=body)) as server:
        client = client_for(hmac_account(server.url), clock)
        with pytest.raises(PollError) as info:
            one_page(client, clock)
    assert info.value.reason == "bad_response"


# --- 4, 13. the whole exchange is bounded in time and bytes --------------------------------


class RealMonotonic(FakeClock):
    """Sockets wait in real time: the client's deadline must too."""

    def monotonic(self):
        return time.monotonic()


def raw_answer(write: Callable[[socket.socket], None]):
    """A server whose answer ``write`` sends byte by byte, as slowly as it likes."""
    return RawServer(write)


def _trickle(conn: socket.socket, data: bytes, pause: float = 0.05) -> None:
    for i in range(len(data)):
        conn.sendall(data[i : i + 1])
        time.sleep(pause)


TRICKLES = {
    # one byte of the status line and headers every 50 ms: no read ever times out
    "headers": lambda c: _trickle(c, b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 400),
    # chunk sizes arrive just as slowly
    "chunk framing": lambda c: (
        c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
        _trickle(c, b"1\r\n{\r\n" + b"0" * 400),
    ),
}


@pytest.mark.parametrize("what", list(TRICKLES))
def test_a_trickled_answer_fails_at_the_request_deadline(what):
    clock = RealMonotonic()
    with raw_answer(TRICKLES[what]) as server:
        client = client_for(hmac_account(server.url), clock, timeout=0.5)
        client.max_attempts = 1
        started = time.monotonic()
        with pytest.raises(PollError) as info:
            one_page(client, clock)
    assert info.value.reason == "timeout", info.value.message
    assert time.monotonic() - started < 3


def _endless(conn: socket.socket, head: bytes, unit: bytes) -> None:
    conn.sendall(head)
    while True:
        conn.sendall(unit * 1000)


FLOODS = {
    # trailers after the last chunk are read and dropped by http.client, without end
    "chunk trailers": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n",
        b"X-Trailer: " + b"t" * 100 + b"\r\n",
    ),
    # chunk extensions are skipped by http.client, however long the chunks' lines
    "chunk extensions": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"0001;ext=" + b"e" * 60_000 + b"\r\n{\r\n",
    ),
    # empty deflate blocks: bytes on the wire, nothing inflated
    "compressed nothing": (
        b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\n\r\n\x78\x01",
        b"\x00\x00\x00\xff\xff",
    ),
}


@pytest.mark.parametrize("what", list(FLOODS))
def test_every_byte_on_the_wire_counts_against_the_cap(clock, what):
    head, unit = FLOODS[what]
    with raw_answer(lambda c: _endless(c, head, unit)) as server:
        client = client_for(hmac_account(server.url), clock, timeout=30.0)
        client.max_attempts = 1
        client.max_response_bytes = 100_000
        started = time.monotonic()
        with pytest.raises(PollError) as info:
            one_page(client, clock)
    assert info.value.reason == "bad_response", info.value.message
    assert time.monotonic() - started < 10


def test_data_after_the_end_of_a_gzip_body_is_ignored_as_other_clients_do(clock):
    """urllib3 reads a gzip body to the end of its member and, like curl and
    browsers, ignores bytes after it: the page is the member's, whole."""
    answer = {**OK_PAGE, "data": [{"messages": [{"routing": "inbound"}] * 3}]}
    body = gzip.compress(json.dumps(answer).encode()) + b"more bytes"
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(body)
    with raw_answer(lambda c: c.sendall(head + body)) as server:
        client = client_for(hmac_account(server.url), clock)
        assert one_page(client, clock).count == 3


def test_an_encoding_not_asked_for_is_bad_response(clock):
    body = b"compressed somehow"
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: %d\r\n\r\n" % len(body)
    with raw_answer(lambda c: c.sendall(head + body)) as server:
        client = client_for(hmac_account(server.url), clock)
        with pytest.raises(PollError) as info:
            one_page(client, clock)
    assert info.value.reason == "bad_response" and "not asked for" in info.value.message


def test_a_gzip_bomb_is_refused_by_inflated_size(clock):
    body = gzip.compress(b" " * 50_000_000)  # 50 MB of spaces in about 50 KB
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(body)
    with raw_answer(lambda c: c.sendall(head + body)) as server:
        client = client_for(hmac_account(server.url), clock)
        client.max_response_bytes = 1_000_000
        with pytest.raises(PollError) as info:
            one_page(client, clock)
    assert info.value.reason == "bad_response" and "cap" in info.value.message


def test_urllib3_floor_excludes_the_versions_that_inflate_unbounded():
    from packaging.requirements import Requirement

    pyproject = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    (urllib3,) = [
        Requirement(r) for r in pyproject["project"]["dependencies"] if r.startswith("urllib3")
    ]
    assert "2.5.0" not in urllib3.specifier and "2.6.0" in urllib3.specifier


@pytest.fixture
def proxy_env(monkeypatch):
    """Only HTTP_PROXY, set by the test, decides the route."""
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("what", ["headers"])
def test_through_a_proxy_the_whole_exchange_is_bounded_too(what, proxy_env):
    monkeypatch = proxy_env
    clock = RealMonotonic()
    with raw_answer(TRICKLES[what]) as proxy:  # the "proxy" answers, slowly
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        client = client_for(hmac_account("http://mimecast.invalid"), clock, timeout=0.5)
        assert client.transport.proxy == proxy.url
        client.max_attempts = 1
        started = time.monotonic()
        with pytest.raises(PollError) as info:
            one_page(client, clock)
    assert info.value.reason == "timeout", info.value.message
    assert time.monotonic() - started < 3


def test_through_a_proxy_every_byte_counts_against_the_cap(clock, proxy_env):
    monkeypatch = proxy_env
    head, unit = FLOODS["chunk trailers"]
    with raw_answer(lambda c: _endless(c, head, unit)) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        client = client_for(hmac_account("http://mimecast.invalid"), clock, timeout=30.0)
        client.max_attempts = 1
        client.max_response_bytes = 100_000
        with pytest.raises(PollError) as info:
            one_page(client, clock)
    assert info.value.reason == "bad_response", info.value.message


def test_a_huge_token_answer_is_refused_unparsed(clock):
    body = b'{"access_token": "t", "x": [' + b"{}," * 1_000_000 + b"{}]}"
    with ScriptedServer(lambda path, _: page(body=body)) as server:
        client = client_for(oauth_account(server.url), clock)
        client.max_attempts = 1
        with pytest.raises(PollError) as info:
            one_page(client, clock)
    assert info.value.reason == "bad_response" and "token answer of" in info.value.message


def test_an_absurd_content_length_is_refused_with_a_short_message(clock):
    head = b"HTTP/1.1 200 OK\r\nContent-Length: " + b"9" * 60_000 + b"\r\n\r\n"
    with raw_answer(lambda c: c.sendall(head)) as server:
        client = client_for(hmac_account(server.url), clock)
        client.max_attempts = 1
        with pytest.raises(PollError) as info:
            one_page(client, clock)
    assert info.value.reason == "bad_response" and len(info.value.message) < 200
