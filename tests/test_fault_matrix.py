"""What each failure looks like from outside: metrics, the log line, recovery.

One case per failure. Each case polls once healthily, breaks the upstream, polls
again and checks that

- ``mimecast_up`` is 0 and ``mimecast_poll_errors_total`` went up by one for the
  right reason (and no other);
- ``mimecast_last_success_timestamp_seconds`` did not move;
- the queue series are still served (the last complete snapshot), and are gone
  once ``stale_after`` has passed since the last success;
- the ``poll failed`` log line carries ``reason``, ``status``, ``code`` and says
  what went wrong;
- the next healthy poll recovers: ``mimecast_up`` 1 and the series back.

Everything runs in-process over real loopback sockets with the FakeClock shared
by the exporter and the simulator, so back-offs and rate-limit resets cost no
real time. What the simulator cannot do (refuse, hang on connect, TLS, broken
framing, trickling) is done by a :class:`Front` relay or a :class:`RawServer`.
Two cases need a real process: a DNS failure (in an empty network namespace)
and a daemon scraped while faults come and go.
"""

from __future__ import annotations

import contextlib
import dataclasses
import email.utils
import itertools
import json
import logging
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import trustme

from mimecast_exporter.config import AccountConfig
from mimecast_exporter.mimecast.answers import CLOCK_SKEW_HINT_SECONDS, clock_skew_hint
from mimecast_exporter.mimecast.client import API_PATH, MAX_ATTEMPTS, TOKEN_PATH
from mimecast_exporter.mimecast.errors import REASONS
from mimecast_exporter.simulator.faults import Fault
from tests.conftest import (
    HMAC_ACCESS_KEY,
    HMAC_APP_ID,
    HMAC_APP_KEY,
    HMAC_SECRET_KEY,
    OAUTH_SECRET,
    hmac_account,
    make_messages,
    oauth_account,
)
from tests.fakes import EPOCH, FakeClock
from tests.processes import Daemon, wait_for
from tests.rawserver import RawServer, read_request
from tests.test_poller import build, sample

QUEUE = "processing"
MESSAGES = 3  # in the queue at the healthy polls, unless a case says otherwise
STALE_AFTER = 300.0
UNSHARE = "/usr/bin/unshare"


# --- upstreams the simulator cannot be ---------------------------------------------------


class Front:
    """A loopback port in front of the simulator that relays requests one at a time,
    and can instead refuse connections, leave them hanging (a full accept queue:
    the kernel drops the SYN, so connect() waits), or speak TLS."""

    def __init__(self, target_port: int, tls: ssl.SSLContext | None = None) -> None:
        self.target = ("127.0.0.1", target_port)
        self.tls = tls
        self.port = 0
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._fillers: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._accepting: threading.Thread | None = None
        self._stop = threading.Event()
        self.forward()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def _bind(self, backlog: int) -> socket.socket:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(backlog)
        self.port = sock.getsockname()[1]
        return sock

    def forward(self) -> None:
        """Accept and relay to the simulator (and drop the connections open so far)."""
        self.close()
        self._listener = self._bind(16)
        self._listener.settimeout(0.05)
        self._stop = threading.Event()
        self._accepting = threading.Thread(
            target=self._accept, args=(self._listener, self._stop), daemon=True
        )
        self._accepting.start()

    def refuse(self) -> None:
        """Nothing listens: connect() is refused."""
        self.close()

    def hang(self) -> None:
        """Listen, never accept, and fill the accept queue: a new connect() hangs."""
        self.close()
        self._listener = self._bind(0)
        for _ in range(8):
            filler = socket.socket()
            filler.settimeout(0.2)
            self._fillers.append(filler)
            try:
                filler.connect(("127.0.0.1", self.port))
            except TimeoutError:
                return
        raise AssertionError("could not fill the accept queue")

    def close(self) -> None:
        self._stop.set()
        if self._accepting is not None:
            self._accepting.join(timeout=5)  # its poll() holds the listening socket open
            self._accepting = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            doomed, self._open = [*self._open, *self._fillers], set()
            self._fillers = []
        for sock in doomed:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._relay, args=(conn,), daemon=True).start()

    def _track(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._open.add(sock)
        return sock

    def _relay(self, conn: socket.socket) -> None:
        upstream = None
        try:
            if self.tls is not None:
                conn.settimeout(5)
                conn = self.tls.wrap_socket(conn, server_side=True)
                conn.settimeout(None)
            self._track(conn)
            upstream = self._track(socket.create_connection(self.target))
            while True:
                request = read_request(conn)
                if not request:
                    return
                upstream.sendall(request)
                answer = read_request(upstream)  # a response is framed the same way
                if not answer:
                    return
                conn.sendall(answer)
        except OSError:  # includes a refused TLS handshake
            return
        finally:
            for sock in (conn, upstream):
                if sock is not None:
                    sock.close()


def _page(messages: list[dict]) -> bytes:
    return json.dumps(
        {
            "meta": {"status": 200, "pagination": {"pageSize": 100, "totalCount": len(messages)}},
            "data": [{"messages": messages}],
            "fail": [],
        }
    ).encode()


class RawUpstream:
    """RawServer answers, switchable: a healthy page, or one way of breaking the framing."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.mode = "ok"
        self.messages = MESSAGES
        self.sent = 0
        self.hung_up = threading.Event()

    def __call__(self, conn: socket.socket) -> None:
        getattr(self, f"_{self.mode}")(conn)

    @staticmethod
    def _head(length: int | None) -> bytes:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
        if length is not None:
            head += b"Content-Length: %d\r\n" % length
        return head + b"\r\n"

    def _ok(self, conn: socket.socket) -> None:
        body = _page(make_messages(self.messages))
        conn.sendall(self._head(len(body)) + body)

    def _truncated(self, conn: socket.socket) -> None:
        # Content-Length promises 500 bytes; the connection closes after 60.
        conn.sendall(
            self._head(500) + b'{"meta": {"status": 200}, "data": [{"messages": [{"id": "m'
        )

    def _trickle(self, conn: socket.socket) -> None:
        # One byte every 10 ms (real time): never a pause as long as the socket
        # timeout, but the request's total deadline passes long before the end.
        # Stops once the client hangs up.
        body = _page(make_messages(self.messages))
        conn.sendall(self._head(len(body)))
        for i in range(len(body)):
            conn.sendall(body[i : i + 1])
            time.sleep(0.01)

    def _endless(self, conn: socket.socket) -> None:
        # No Content-Length, a body that never ends (up to 64 MiB): the client must
        # stop reading at its cap, not hold it all.
        conn.sendall(self._head(None) + b'{"data": [{"messages": [')
        chunk = b" " * 65536
        try:
            while self.sent < 64 * 1024 * 1024:
                conn.sendall(chunk)
                self.sent += len(chunk)
        except OSError:
            self.hung_up.set()


# --- the harness ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    return ctx


class Harness:
    """One account on one queue, polled in-process against a chosen upstream."""

    def __init__(self, row: Row, make_sim, clock: FakeClock, tls_ca, tmp_path) -> None:
        self.row = row
        self.clock = clock
        self.skew = 0.0  # seconds the simulator's clock is ahead of ours
        self.sim = make_sim(clock=lambda: clock.time() + self.skew)
        self.tenant = self.sim.oauth_tenant if row.scheme == "oauth2" else self.sim.hmac_tenant
        self.front: Front | None = None
        self.raw: RawUpstream | None = None
        self._raw_server: RawServer | None = None
        self.tls_ca = tls_ca
        ca_file = None
        if row.upstream == "sim":
            base_url = self.sim.url
        elif row.upstream in ("front", "tls"):
            tls = server_context(tls_ca) if row.upstream == "tls" else None
            self.front = Front(self.sim.port, tls)
            base_url = self.front.url
            if tls is not None:
                ca_file = str(tmp_path / "ca.pem")
                tls_ca.cert_pem.write_to_path(ca_file)
        else:
            self.raw = RawUpstream(clock)
            self._raw_server = RawServer(self.raw).__enter__()
            base_url = self._raw_server.url
        account = oauth_account(base_url) if row.scheme == "oauth2" else hmac_account(base_url)
        self.account: AccountConfig = dataclasses.replace(account, ca_file=ca_file)
        self.poller, self.store, self.registry = build(
            self.sim,
            clock,
            [self.account],
            queues=(QUEUE,),
            stale_after=STALE_AFTER,
            **row.poll,
        )
        self.expected = MESSAGES
        self.set_messages(MESSAGES)
        self.mark = 0

    def set_messages(self, count: int) -> None:
        self.tenant.model.set_messages(QUEUE, make_messages(count))
        if self.raw is not None:
            self.raw.messages = count
        self.expected = count

    def poll(self) -> bool:
        return self.poller.poll_queue(self.account.name, QUEUE)

    def api_calls(self) -> list:
        """Requests to the find endpoint since ``mark``."""
        return [r for r in self.sim.requests[self.mark :] if r.path == API_PATH]

    def token_calls(self) -> list:
        return [r for r in self.sim.requests[self.mark :] if r.path == TOKEN_PATH]

    # what a scrape shows
    def up(self) -> float | None:
        return sample(self.registry, "mimecast_up", account=self.account.name)

    def queued(self) -> float | None:
        labels = {"account": self.account.name, "queue": QUEUE, "route": "outbound"}
        return sample(self.registry, "mimecast_queue_messages", **labels)

    def last_success(self) -> float | None:
        labels = {"account": self.account.name, "queue": QUEUE}
        return sample(self.registry, "mimecast_last_success_timestamp_seconds", **labels)

    def errors(self) -> dict[str, float | None]:
        labels = {"account": self.account.name, "queue": QUEUE}
        return {
            reason: sample(self.registry, "mimecast_poll_errors_total", reason=reason, **labels)
            for reason in REASONS
        }

    def close(self) -> None:
        self.poller.stop()
        if self.front is not None:
            self.front.close()
        if self._raw_server is not None:
            self.raw.mode = "ok"
            self._raw_server.__exit__(None, None, None)


def _nothing(h: Harness) -> None:
    return None


def _clear_faults(h: Harness) -> None:
    h.sim.faults.clear()


@dataclass(frozen=True)
class Row:
    id: str
    reason: str | None  # None: the failure is cured within the same poll
    phrase: str  # regular expression the log message must contain (case-insensitive)
    inject: Callable[[Harness], None]
    heal: Callable[[Harness], None] = _clear_faults
    status: int | None = None
    code: str | None = None
    scheme: str = "hmac"  # "hmac" or "oauth2"
    upstream: str = "sim"  # "sim", "front", "tls" or "raw"
    poll: dict[str, Any] = field(default_factory=dict)
    logger: str = "mimecast_exporter.poller"
    # more assertions after the failing poll, given the harness and the log record
    check: Callable[[Harness, logging.LogRecord], None] = lambda h, record: None


def fault(**kw: Any) -> Callable[[Harness], None]:
    return lambda h: h.sim.faults.add(Fault(**kw))


def raw_mode(mode: str) -> Callable[[Harness], None]:
    def switch(h: Harness) -> None:
        h.raw.mode = mode

    return switch


def then(*steps: Callable[[Harness], None]) -> Callable[[Harness], None]:
    def run(h: Harness) -> None:
        for step in steps:
            step(h)

    return run


def set_attr(name: str, value: Any) -> Callable[[Harness], None]:
    def change(h: Harness) -> None:
        setattr(h.tenant, name, value)

    return change


def set_skew(seconds: float) -> Callable[[Harness], None]:
    def change(h: Harness) -> None:
        h.skew = seconds

    return change


def set_messages(count: int) -> Callable[[Harness], None]:
    return lambda h: h.set_messages(count)


def swap_certificate(ca_of: Callable[[Harness], trustme.CA]) -> Callable[[Harness], None]:
    def swap(h: Harness) -> None:
        h.front.tls = server_context(ca_of(h))
        h.front.forward()  # also drops the connections made with the old certificate

    return swap


def calls_made(count: int) -> Callable[[Harness, logging.LogRecord], None]:
    def check(h: Harness, record: logging.LogRecord) -> None:
        assert len(h.api_calls()) == count

    return check


def no_clock_hint(h: Harness, record: logging.LogRecord) -> None:
    assert "clock" not in record.getMessage()


def storm_check(reset_seconds: float, interval: float, expected_calls: int) -> Callable:
    def check(h: Harness, record: logging.LogRecord) -> None:
        calls = h.api_calls()
        assert calls and all(c.status == 429 for c in calls)
        for before, after in itertools.pairwise(calls):
            announced = float(before.response_headers["X-RateLimit-Reset"]) / 1000.0
            assert announced == reset_seconds
            assert after.time - before.time >= announced - 1e-6  # never before the reset
        # bounded by the attempts per page and by the poll's deadline (one interval)
        assert len(calls) <= min(MAX_ATTEMPTS, int(interval // reset_seconds) + 1)
        assert len(calls) == expected_calls
        assert calls[-1].time - calls[0].time < interval

    return check


def page_n_check(h: Harness, record: logging.LogRecord) -> None:
    statuses = [c.status for c in h.api_calls()]
    assert statuses[:2] == [200, 200]  # pages 1 and 2 came, and were not published
    assert statuses[2:] == [500] * MAX_ATTEMPTS


def token_expired_check(h: Harness, record: logging.LogRecord) -> None:
    assert [c.status for c in h.api_calls()] == [401, 200]
    assert [c.status for c in h.token_calls()] == [200]


def endless_check(h: Harness, record: logging.LogRecord) -> None:
    assert h.raw.hung_up.wait(5), "the client kept reading an endless answer"
    assert h.raw.sent < 32 * 1024 * 1024


def skew_check(h: Harness, record: logging.LogRecord) -> None:
    # The simulator's Date header follows its own (skewed) clock.
    answer = requests.post(h.sim.url + API_PATH, timeout=5)
    date = email.utils.parsedate_to_datetime(answer.headers["Date"]).timestamp()
    assert abs(date - (h.clock.time() + 3600)) < 2


_OTHER_CA = trustme.CA()
TIMEOUT = {"timeout": 0.25}  # real seconds: these cases wait on sockets

ROWS = [
    Row(
        "connection_refused",
        "connection",
        r"connection failed: .*refused",
        inject=lambda h: h.front.refuse(),
        heal=lambda h: h.front.forward(),
        upstream="front",
    ),
    Row(
        "connection_reset",
        "connection",
        r"connection failed",
        inject=fault(kind="reset", times=None),
        check=calls_made(MAX_ATTEMPTS),
    ),
    Row(
        "tls_untrusted_certificate",
        "connection",
        r"certificate verify failed",
        inject=swap_certificate(lambda h: _OTHER_CA),
        heal=swap_certificate(lambda h: h.tls_ca),
        upstream="tls",
    ),
    Row(
        "connect_timeout",
        "timeout",
        r"could not connect within 0\.2",
        inject=lambda h: h.front.hang(),
        heal=lambda h: h.front.forward(),
        upstream="front",
        poll=TIMEOUT,
    ),
    Row(
        "read_timeout",
        "timeout",
        r"no answer within 0\.2",
        inject=fault(kind="delay", seconds=1.0, times=None),
        poll=TIMEOUT,
    ),
    Row(
        "trickling_answer",
        "timeout",
        r"still arriving at the request deadline",
        inject=raw_mode("trickle"),
        heal=raw_mode("ok"),
        status=200,
        upstream="raw",
    ),
    Row(
        "429_storm_reset_past_deadline",
        "rate_limited",
        r"rate limited \(429\)",
        inject=fault(
            kind="status",
            status=429,
            code="rate_limit_exceeded",
            times=None,
            headers={"X-RateLimit-Reset": "20000"},
        ),
        status=429,
        code="rate_limit_exceeded",
        check=storm_check(20.0, 60.0, expected_calls=3),  # deadline-bound
    ),
    Row(
        "429_storm_short_reset",
        "rate_limited",
        r"rate limited \(429\)",
        inject=fault(
            kind="status",
            status=429,
            code="rate_limit_exceeded",
            times=None,
            headers={"X-RateLimit-Reset": "2500"},
        ),
        status=429,
        code="rate_limit_exceeded",
        check=storm_check(2.5, 60.0, expected_calls=MAX_ATTEMPTS),
    ),
    *(
        Row(
            f"http_{status}",
            "http_5xx",
            rf"request got HTTP {status}",
            inject=fault(kind="status", status=status, times=None),
            status=status,
            code="simulated_error",
            check=calls_made(MAX_ATTEMPTS),
        )
        for status in (500, 502, 503, 504)
    ),
    Row(
        "fail_array_retryable",
        "api_fail",
        r"HTTP 200 with fail\[\]",
        inject=fault(kind="fail_array", code="err_temporary", retryable=True, times=None),
        status=200,
        code="err_temporary",
        check=calls_made(MAX_ATTEMPTS),
    ),
    Row(
        "fail_array_not_retryable",
        "api_fail",
        r"HTTP 200 with fail\[\]",
        inject=fault(kind="fail_array", code="err_permanent", flat=True, times=None),
        status=200,
        code="err_permanent",
        check=calls_made(1),
    ),
    Row(
        "401_token_expired_cured_in_the_same_poll",
        None,
        r"bearer token refused, fetching a new one",
        inject=lambda h: h.sim.expire_tokens(),
        heal=_nothing,
        status=401,
        code="token_expired",
        scheme="oauth2",
        logger="mimecast_exporter.mimecast.client",
        check=token_expired_check,
    ),
    Row(
        "401_bad_client_secret",
        "auth",
        r"token request got HTTP 401: credentials were refused",
        inject=then(set_attr("client_secret", "rotated-secret"), lambda h: h.sim.expire_tokens()),
        heal=set_attr("client_secret", OAUTH_SECRET),
        status=401,
        code="invalid_client",
        scheme="oauth2",
        check=no_clock_hint,
    ),
    Row(
        "401_bad_hmac_signature",
        "auth",
        r"request got HTTP 401: credentials were refused",
        inject=set_attr("secret_key", "b3RoZXIta2V5"),
        heal=set_attr("secret_key", HMAC_SECRET_KEY),
        status=401,
        code="err_signature_invalid",
        check=lambda h, record: (no_clock_hint(h, record), calls_made(1)(h, record)),
    ),
    Row(
        "403_missing_permission",
        "auth",
        r"lacks the 'Monitoring \| Processing \| Read' permission",
        inject=fault(kind="status", status=403, code="err_forbidden", times=None),
        status=403,
        code="err_forbidden",
        check=calls_made(1),
    ),
    Row(
        "418_binding_expired",
        "binding_expired",
        r"binding has expired.*create a new access key",
        inject=set_attr("binding_expired", True),
        heal=set_attr("binding_expired", False),
        status=418,
        code="err_xdk_binding_expired",
        check=calls_made(1),
    ),
    Row(
        "token_endpoint_503",
        "http_5xx",
        r"token request got HTTP 503",
        inject=then(
            lambda h: h.sim.expire_tokens(),
            fault(kind="status", status=503, path=TOKEN_PATH, times=None),
        ),
        status=503,
        code="simulated_error",
        scheme="oauth2",
    ),
    Row(
        "token_endpoint_reset",
        "connection",
        r"connection failed",
        inject=then(
            lambda h: h.sim.expire_tokens(),
            fault(kind="reset", path=TOKEN_PATH, times=None),
        ),
        scheme="oauth2",
    ),
    Row(
        "malformed_json",
        "bad_response",
        r"not valid JSON",
        inject=fault(kind="malformed_json", times=None),
        status=200,
        check=calls_made(1),
    ),
    Row(
        "truncated_json_connection_closed",
        "connection",
        r"connection failed mid-body",
        inject=raw_mode("truncated"),
        heal=raw_mode("ok"),
        status=200,
        upstream="raw",
    ),
    Row(
        "html_instead_of_json",
        "bad_response",
        r"not valid JSON",
        inject=fault(kind="non_json", times=None),
        status=200,
    ),
    Row(
        "answer_over_the_size_cap_declared",
        "bad_response",
        r"larger than the 4000 (byte )?cap",
        inject=set_messages(100),
        heal=set_messages(MESSAGES),
        status=200,
        poll={"max_response_bytes": 4000},
        check=calls_made(1),
    ),
    Row(
        "answer_over_the_size_cap_endless",
        "bad_response",
        r"larger than the 100000 byte cap",
        inject=raw_mode("endless"),
        heal=raw_mode("ok"),
        status=200,
        upstream="raw",
        poll={"max_response_bytes": 100_000},
        check=endless_check,
    ),
    Row(
        "failure_on_page_3_of_3",
        "http_5xx",
        r"request got HTTP 500",
        inject=then(set_messages(250), fault(kind="status", status=500, page=3, times=None)),
        status=500,
        code="simulated_error",
        check=page_n_check,
    ),
    Row(
        "pagination_loop",
        "pagination_loop",
        r"page token already followed",
        inject=then(set_messages(250), fault(kind="repeat_token", times=None)),
        check=calls_made(2),
    ),
    Row(
        "server_clock_an_hour_ahead",
        "auth",
        r"server clock differs from ours by \+3600 s; check NTP",
        inject=set_skew(3600.0),
        heal=set_skew(0.0),
        status=401,
        code="err_date_skew",
        check=skew_check,
    ),
]


@pytest.fixture
def harness(row: Row, make_sim, clock, tls_ca, tmp_path):
    h = Harness(row, make_sim, clock, tls_ca, tmp_path)
    yield h
    h.close()


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_failure(row: Row, harness: Harness, caplog) -> None:
    h, clock = harness, harness.clock
    caplog.set_level(logging.INFO)

    # healthy
    assert h.poll()
    assert h.up() == 1 and h.queued() == MESSAGES
    first_success = h.last_success()
    assert first_success is not None

    # broken
    row.inject(h)
    clock.advance(60)
    h.mark = len(h.sim.requests)
    caplog.clear()
    ok = h.poll()
    records = [
        r
        for r in caplog.records
        if r.name == row.logger and re.search(row.phrase, r.getMessage(), re.I)
    ]
    assert len(records) == 1, [r.getMessage() for r in caplog.records]
    record = records[0]
    assert getattr(record, "status", None) == row.status
    assert getattr(record, "code", None) == row.code
    row.check(h, record)

    if row.reason is None:  # cured within the poll: nobody outside notices
        assert ok
        assert h.up() == 1 and h.queued() == h.expected
        assert set(h.errors().values()) == {0}
        assert h.last_success() > first_success
        return

    assert not ok
    assert record.getMessage().startswith("poll failed: ")
    assert record.reason == row.reason
    assert record.account == h.account.name and record.queue == QUEUE
    assert h.up() == 0
    assert h.errors() == {reason: int(reason == row.reason) for reason in REASONS}
    assert h.last_success() == first_success
    assert h.queued() == MESSAGES  # the last complete snapshot, before stale_after

    # once stale_after has passed since the last success, the queue series go
    clock.advance(first_success + STALE_AFTER + 1 - clock.time())
    assert h.queued() is None
    assert h.up() == 0 and h.last_success() == first_success

    # healthy again
    row.heal(h)
    assert h.poll()
    assert h.up() == 1
    assert h.queued() == h.expected
    assert h.last_success() > first_success
    assert h.errors()[row.reason] == 1


# --- the pieces the matrix relies on ------------------------------------------------------


def test_tls_upstream_is_refused_without_its_ca_and_accepted_with_it(
    make_sim, clock, tls_ca, tmp_path, caplog
):
    sim = make_sim()
    sim.hmac_tenant.model.set_messages(QUEUE, make_messages(2))
    front = Front(sim.port, server_context(tls_ca))
    ca_file = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(ca_file))
    untrusted = hmac_account(front.url, name="untrusted")
    trusted = dataclasses.replace(hmac_account(front.url, name="trusted"), ca_file=str(ca_file))
    poller, store, registry = build(sim, clock, [untrusted, trusted], queues=(QUEUE,))
    try:
        assert not poller.poll_queue("untrusted", QUEUE)
        assert poller.poll_queue("trusted", QUEUE)
    finally:
        poller.stop()
        front.close()
    assert sample(registry, "mimecast_up", account="untrusted") == 0
    assert sample(registry, "mimecast_up", account="trusted") == 1
    labels = {"queue": QUEUE, "route": "outbound"}
    assert sample(registry, "mimecast_queue_messages", account="trusted", **labels) == 2
    failed = [r for r in caplog.records if r.getMessage().startswith("poll failed")]
    assert failed[0].reason == "connection"
    assert "certificate" in failed[0].getMessage()


def test_repeat_token_fault_hands_back_the_same_token(sim, clock):
    sim.hmac_tenant.model.set_messages(QUEUE, make_messages(5))
    sim.faults.add(Fault(kind="repeat_token", times=None))
    from mimecast_exporter.mimecast.client import MimecastClient
    from mimecast_exporter.mimecast.ratelimit import RateLimitGate
    from tests.conftest import poll_config
    from tests.test_client import walk_pages

    client = MimecastClient(
        hmac_account(sim.url), poll_config(page_size=2), clock=clock, gate=RateLimitGate()
    )
    pages = walk_pages(client, clock, QUEUE)
    first, second = next(pages), next(pages)
    assert first.next_token and second.next_token == first.next_token
    assert len(first.messages) == len(second.messages) == 2
    with pytest.raises(ValueError, match="repeat_token"):
        Fault(kind="repeat_token", path=TOKEN_PATH)


def test_simulator_date_header_follows_its_clock(sim, clock):
    answer = requests.post(sim.url + API_PATH, timeout=5)
    date = email.utils.parsedate_to_datetime(answer.headers["Date"]).timestamp()
    assert date == clock.time() == EPOCH


@pytest.mark.parametrize(
    ("date", "hint"),
    [
        (None, ""),
        ("not a date", ""),
        (email.utils.formatdate(EPOCH + CLOCK_SKEW_HINT_SECONDS, usegmt=True), ""),
        (email.utils.formatdate(EPOCH - CLOCK_SKEW_HINT_SECONDS, usegmt=True), ""),
        (
            email.utils.formatdate(EPOCH + 3600, usegmt=True),
            "; server clock differs from ours by +3600 s; check NTP",
        ),
        (
            email.utils.formatdate(EPOCH - 420, usegmt=True),
            "; server clock differs from ours by -420 s; check NTP",
        ),
        ("Tue, 24 Nov 2026 01:00:00", "; server clock differs from ours by +3600 s; check NTP"),
    ],
)
def testclock_skew_hint(date, hint):
    headers = requests.structures.CaseInsensitiveDict({} if date is None else {"Date": date})
    assert clock_skew_hint(headers, EPOCH) == hint


# --- real processes -----------------------------------------------------------------------


def _hmac_yaml(name: str, base_url: str) -> str:
    return f"""
  - name: {name}
    base_url: {base_url}
    hmac:
      app_id: {HMAC_APP_ID}
      app_key: {HMAC_APP_KEY}
      access_key: {HMAC_ACCESS_KEY}
      secret_key: {HMAC_SECRET_KEY}
"""


def test_dns_failure_in_an_empty_network_namespace(tmp_path):
    """A host that does not resolve, with no network at all: no DNS query leaves the box."""
    in_ci = bool(os.environ.get("CI"))
    if not os.path.exists(UNSHARE) and not shutil.which("unshare"):
        (pytest.fail if in_ci else pytest.skip)("unshare is not installed")
    probe = subprocess.run([UNSHARE, "-n", "true"], capture_output=True, text=True, timeout=10)
    if probe.returncode != 0:
        message = f"unshare -n failed: {probe.stderr.strip()}"
        if "Operation not permitted" in probe.stderr and not in_ci:
            pytest.skip(message)
        pytest.fail(message)
    config = tmp_path / "config.yml"
    config.write_text(
        "poll:\n  interval: 1s\n  timeout: 1s\n  queues: [processing]\naccounts:"
        + _hmac_yaml("remote", "https://api.mimecast.invalid")
    )
    result = subprocess.run(
        [
            UNSHARE,
            "-n",
            sys.executable,
            "-m",
            "mimecast_exporter",
            "--once",
            "--config.file",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 1, result.stderr
    assert 'mimecast_up{account="remote"} 0.0' in result.stdout
    errors = 'mimecast_poll_errors_total{account="remote",queue="processing",reason="%s"}'
    assert errors % "connection" + " 1.0" in result.stdout
    failed = [line for line in result.stderr.splitlines() if "poll failed" in line]
    assert len(failed) == 1, result.stderr
    assert "reason=connection" in failed[0]
    assert re.search(r"name resolution|resolve", failed[0]), failed[0]


# Each fault, and the reason its failed polls are counted under.
DAEMON_FAULTS = [
    (Fault(kind="status", status=503), "http_5xx"),
    (Fault(kind="delay", seconds=1.5), "timeout"),
    (Fault(kind="malformed_json"), "bad_response"),
    (Fault(kind="reset"), "connection"),
    (Fault(kind="status", status=429, headers={"X-RateLimit-Reset": "1500"}), "rate_limited"),
    (Fault(kind="fail_array", code="err_permanent"), "api_fail"),
    (Fault(kind="non_json"), "bad_response"),
    (Fault(kind="repeat_token"), "pagination_loop"),
    (Fault(kind="status", status=401, code="err_signature_invalid"), "auth"),
    (Fault(kind="status", status=418, code="err_xdk_binding_expired"), "binding_expired"),
]


def _poll_errors(metrics: str) -> dict[str, float]:
    """mimecast_poll_errors_total by reason, summed over queues."""
    counted: dict[str, float] = {}
    for reason, value in re.findall(
        r'^mimecast_poll_errors_total\{account="legacy",queue="\w+",reason="(\w+)"\} (\S+)$',
        metrics,
        re.M,
    ):
        counted[reason] = counted.get(reason, 0.0) + float(value)
    return counted


def test_daemon_survives_faults_while_scraped(make_sim, tmp_path):
    """The real process, real clock, 1 s polls: faults come and go while /metrics is
    scraped every 100 ms; the process never dies and every scrape answers 200."""
    sim = make_sim(clock=time.time)
    created = time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(time.time() - 600))
    sim.hmac_tenant.model.set_messages(QUEUE, make_messages(5, created=created))
    config = tmp_path / "config.yml"
    config.write_text(
        "poll:\n  interval: 1s\n  timeout: 500ms\n  stale_after: 3s\naccounts:"
        + _hmac_yaml("legacy", sim.url)
    )
    daemon = Daemon("--config.file", str(config))
    url = daemon.wait_for_url()
    # Drain stderr, so that a full pipe never blocks the exporter's logging.
    drain = threading.Thread(target=lambda: daemon.lines.extend(daemon.proc.stderr), daemon=True)
    drain.start()
    scrapes: list[object] = []
    stop = threading.Event()

    def scrape() -> None:
        while not stop.is_set():
            try:
                scrapes.append(requests.get(url + "/metrics", timeout=5).status_code)
            except requests.RequestException as error:
                scrapes.append(repr(error))
            stop.wait(0.1)

    def metrics() -> str:
        return requests.get(url + "/metrics", timeout=5).text

    scraper = threading.Thread(target=scrape, daemon=True)
    try:
        wait_for(lambda: requests.get(url + "/-/ready", timeout=5).status_code == 200)
        scraper.start()
        for injected, reason in DAEMON_FAULTS:
            before = _poll_errors(metrics()).get(reason, 0.0)
            sim.faults.clear()
            sim.faults.add(injected)
            wait_for(lambda r=reason, b=before: _poll_errors(metrics()).get(r, 0.0) > b, 10)
            assert daemon.proc.poll() is None, "".join(daemon.lines)
        sim.faults.clear()

        def recovered() -> str | None:
            text = metrics()
            return text if 'mimecast_up{account="legacy"} 1.0' in text else None

        try:
            final = wait_for(recovered, timeout=15)
        except AssertionError:
            tail = "".join(daemon.lines[-30:])
            raise AssertionError(f"no recovery in 15 s; the daemon's last lines:\n{tail}") from None
    finally:
        stop.set()
        scraper.join(timeout=10)
        daemon.proc.send_signal(signal.SIGTERM)
        code = daemon.proc.wait(timeout=10)
        drain.join(timeout=5)
    assert code == 0, "".join(daemon.lines)
    assert len(scrapes) >= 30
    assert set(scrapes) == {200}, [s for s in scrapes if s != 200][:5]
    queued = 'mimecast_queue_messages{account="legacy",queue="processing",route="outbound"} 5.0'
    assert queued in final
