"""Tests for mimecast_exporter.web: real sockets on 127.0.0.1, requests as the client."""

from __future__ import annotations

import gzip
import logging
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily

from mimecast_exporter.config.model import Thresholds
from mimecast_exporter.web.landing import RUNBOOK_URL
from mimecast_exporter.web.server import (
    NOT_READY_TEXT,
    AccountStatus,
    QueueStatus,
    WebServer,
    parse_listen_address,
)
from tests.fakes import feed

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


class TinyCollector:
    """Two gauges; can be told to fail, or to wait for a gate before answering."""

    def __init__(self) -> None:
        self.fail = False
        self.gate: threading.Event | None = None

    def describe(self) -> list[GaugeMetricFamily]:
        # describe() lets the registry map names to us, which name[] filtering needs.
        return [GaugeMetricFamily("tiny_a", "A."), GaugeMetricFamily("tiny_b", "B.")]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if self.fail:
            raise RuntimeError("collector exploded")
        if self.gate is not None:
            self.gate.wait(5)
        a = GaugeMetricFamily("tiny_a", "A.", labels=["queue"])
        a.add_metric(["processing"], 3)
        yield a
        yield GaugeMetricFamily("tiny_b", "B.", value=7)


class FakeStatus:
    thresholds = Thresholds()
    reload_failed_at = None

    def __init__(self) -> None:
        self.ready = False
        self.fail = False
        self.accounts: list[AccountStatus] = []

    def is_ready(self) -> bool:
        return self.ready

    def account_statuses(self) -> list[AccountStatus]:
        if self.fail:
            raise RuntimeError("status exploded")
        return self.accounts


@pytest.fixture
def collector() -> TinyCollector:
    return TinyCollector()


@pytest.fixture
def status() -> FakeStatus:
    return FakeStatus()


@pytest.fixture
def registry(collector: TinyCollector) -> CollectorRegistry:
    reg = CollectorRegistry()
    reg.register(collector)
    return reg


@pytest.fixture
def server(registry: CollectorRegistry, status: FakeStatus) -> Iterator[WebServer]:
    srv = WebServer("127.0.0.1:0", registry, status, version="1.2.3")
    srv.start()
    yield srv
    srv.shutdown()


# --- metrics -----------------------------------------------------------------


def test_metrics_text_format(server: WebServer) -> None:
    r = requests.get(server.url + "/metrics", timeout=5)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "# TYPE tiny_a gauge" in r.text
    assert 'tiny_a{queue="processing"} 3.0' in r.text
    assert "tiny_b 7.0" in r.text
    assert "# EOF" not in r.text


def test_metrics_openmetrics_negotiation(server: WebServer) -> None:
    r = requests.get(server.url + "/metrics", headers={"Accept": OPENMETRICS}, timeout=5)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    assert r.text.endswith("# EOF\n")
    assert 'tiny_a{queue="processing"} 3.0' in r.text


def test_metrics_unparsable_accept_falls_back_to_text(server: WebServer) -> None:
    accept = "application/openmetrics-text; version=abc"
    r = requests.get(server.url + "/metrics", headers={"Accept": accept}, timeout=5)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")


def test_metrics_gzip(server: WebServer) -> None:
    r = requests.get(
        server.url + "/metrics", headers={"Accept-Encoding": "gzip"}, stream=True, timeout=5
    )
    assert r.headers["Content-Encoding"] == "gzip"
    body = gzip.decompress(r.raw.read(decode_content=False)).decode()
    assert "tiny_b 7.0" in body

    plain = requests.get(
        server.url + "/metrics", headers={"Accept-Encoding": "identity"}, timeout=5
    )
    assert "Content-Encoding" not in plain.headers
    assert "tiny_b 7.0" in plain.text


def test_metrics_name_filter(server: WebServer) -> None:
    r = requests.get(server.url + "/metrics", params={"name[]": "tiny_b"}, timeout=5)
    assert "tiny_b 7.0" in r.text
    assert "tiny_a" not in r.text

    both = requests.get(server.url + "/metrics?name[]=tiny_a&name[]=tiny_b", timeout=5)
    assert "tiny_a" in both.text and "tiny_b" in both.text


def test_metrics_head_has_no_body(server: WebServer) -> None:
    r = requests.head(server.url + "/metrics", headers={"Accept-Encoding": "identity"}, timeout=5)
    assert r.status_code == 200
    assert int(r.headers["Content-Length"]) > 0
    assert r.content == b""


def test_custom_telemetry_path(registry: CollectorRegistry, status: FakeStatus) -> None:
    srv = WebServer("127.0.0.1:0", registry, status, telemetry_path="/prom/metrics")
    srv.start()
    try:
        assert "tiny_b 7.0" in requests.get(srv.url + "/prom/metrics", timeout=5).text
        assert requests.get(srv.url + "/metrics", timeout=5).status_code == 404
        assert '<a href="/prom/metrics">' in requests.get(srv.url + "/", timeout=5).text
    finally:
        srv.shutdown()


@pytest.mark.parametrize("path", ["metrics", "", "/a b", "/m?x=1"])
def test_bad_telemetry_path(registry: CollectorRegistry, status: FakeStatus, path: str) -> None:
    with pytest.raises(ValueError, match="telemetry path"):
        WebServer("127.0.0.1:0", registry, status, telemetry_path=path)


def test_collector_error_is_500_and_server_survives(
    server: WebServer, collector: TinyCollector, caplog: pytest.LogCaptureFixture
) -> None:
    collector.fail = True
    with caplog.at_level(logging.ERROR, logger="mimecast_exporter.web"):
        r = requests.get(server.url + "/metrics", timeout=5)
    assert r.status_code == 500
    assert "RuntimeError" in r.text
    assert any(
        rec.message == "collecting metrics failed" and rec.exc_info for rec in caplog.records
    )
    assert requests.get(server.url + "/-/healthy", timeout=5).status_code == 200
    collector.fail = False
    assert requests.get(server.url + "/metrics", timeout=5).status_code == 200


# --- landing page, health, readiness -------------------------------------------


def landing_snapshot(now: float, details: bool):
    from mimecast_exporter.aggregate import QueueAggregator

    stamp = time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(now - 7200))
    agg = QueueAggregator(now, details=details, top_domains=3)
    feed(
        agg,
        [
            {
                "routing": "outbound",
                "attempts": 7,
                "created": stamp,
                "info": "<b>450 4.7.1</b> Client host rejected: try again later",
                "to": [{"emailAddress": "bob@Partner.Example"}, {"emailAddress": "x@y.example"}],
                "fromEnv": {"emailAddress": "ann@acme.example"},
                "subject": "<script>alert('subject')</script>",
                "nextAttempt": time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(now + 300)),
                "lockedUntil": None,
            },
            {"routing": "inbound", "created": stamp, "info": "Connection refused"},
        ],
    )
    return agg.snapshot()


def test_landing_page(server: WebServer, status: FakeStatus) -> None:
    from mimecast_exporter.store import Failure

    now = time.time()
    failure = Failure(
        "auth",
        "token request got HTTP 401: <i>refused</i>",
        now - 300,
        401,
        "invalid_client",
        "req-123",
    )
    snapshot = landing_snapshot(now, details=False)
    status.accounts = [
        AccountStatus(
            "acme",
            True,
            (
                QueueStatus("processing", now - 42, None, 2, snapshot=snapshot),
                QueueStatus("bulk_processing", now - 50, None, 0),
            ),
            rate_limit_remaining=987.0,
        ),
        AccountStatus(
            "<script>alert(1)</script>",
            False,
            (QueueStatus("processing", None, "auth", None, failure=failure),),
        ),
    ]
    r = requests.get(server.url + "/", timeout=5)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    page = r.text
    assert "<title>Mimecast exporter</title>" in page and "1.2.3" in page
    assert '<meta http-equiv="refresh" content="30">' in page  # refreshes itself, no script
    for link in ("/metrics", "/-/healthy", "/-/ready", RUNBOOK_URL):
        assert f'href="{link}' in page
    # Worst first: the down account before acme.
    assert page.index("&lt;script&gt;alert(1)&lt;/script&gt;") < page.index(">acme ")
    assert "1 of 2 accounts down" in page
    # The down account's queue has no count: the sum says it leaves it out.
    assert "2 messages queued in 2 queues counted, 1 not counted" in page
    # The failure: reason, Mimecast's message (escaped), HTTP status, code, request id.
    assert '<span class="reason">auth</span>' in page
    assert "token request got HTTP 401: &lt;i&gt;refused&lt;/i&gt;" in page
    assert "HTTP 401" in page and "invalid_client" in page and "req-123" in page
    assert "5 min ago" in page and "#mimecastauthfailing" in page
    # Depth, oldest age and why, by route; scan completeness; rate-limit headroom.
    assert "rate limit remaining 987" in page
    assert "2 h" in page and "complete, 2 read" in page
    assert "deferred_temporary 1" in page and "connection_refused 1" in page
    # The oldest messages: domain (+1 more recipient), attempts, next attempt.
    assert "partner.example (+1)" in page and ">7<" in page
    assert re.search(r">in (4 min 5\d s|5 min)<", page)  # the next attempt
    # Without expose_message_details: no subject, address or info text.
    for hidden in ("subject", "ann@acme.example", "bob@", "Client host rejected"):
        assert hidden not in page
    assert "<script>" not in page and "<b>450" not in page and "<i>refused" not in page
    assert "src=" not in page  # self-contained
    index = requests.get(server.url + "/index.html", timeout=5)
    assert index.status_code == 200 and "acme" in index.text


def test_landing_page_shows_details_only_when_exposed(
    server: WebServer, status: FakeStatus
) -> None:
    now = time.time()
    snapshot = landing_snapshot(now, details=True)
    status.accounts = [
        AccountStatus(
            "acme",
            True,
            (QueueStatus("processing", now, None, 2, snapshot=snapshot),),
            details=True,
        )
    ]
    page = requests.get(server.url + "/", timeout=5).text
    assert "&lt;script&gt;alert(&#x27;subject&#x27;)&lt;/script&gt;" in page
    assert "ann@acme.example" in page and "bob@Partner.Example, x@y.example" in page
    assert "&lt;b&gt;450 4.7.1&lt;/b&gt; Client host rejected" in page
    assert "<script>" not in page


def test_landing_page_says_when_a_queue_cannot_be_counted(
    server: WebServer, status: FakeStatus
) -> None:
    """Polled with success, counted by no route (MimecastCountsAbsent): the
    page says so, and its total is not taken for the whole."""
    from types import MappingProxyType

    from mimecast_exporter.snapshot import ROUTES, QueueSnapshot, RouteStats

    now = time.time()
    uncounted = QueueSnapshot(
        taken_at=now,
        routes=MappingProxyType({route: RouteStats(None, None, False) for route in ROUTES}),
        complete=False,
        scanned=1500,
        oldest_messages=None,
    )
    counted = landing_snapshot(now, details=False)
    status.accounts = [
        AccountStatus(
            "acme",
            True,
            (
                QueueStatus("processing", now - 5, None, None, snapshot=uncounted),
                QueueStatus("bulk_processing", now - 5, None, 2, snapshot=counted),
            ),
        )
    ]
    page = requests.get(server.url + "/", timeout=5).text
    assert "2 messages queued in 1 queue counted, 1 not counted" in page
    assert "oldest 2 h of the routes dated, 4 routes not dated" in page
    assert "partial: 1,500 read; Mimecast&#x27;s answers allow no exact count" in page
    assert "all 1 accounts up" in page  # polling works: the count is what is missing


def test_landing_page_without_accounts(server: WebServer) -> None:
    r = requests.get(server.url + "/", timeout=5)
    assert r.status_code == 200
    assert "No accounts configured." in r.text


def test_landing_page_status_error_is_500(server: WebServer, status: FakeStatus) -> None:
    status.fail = True
    assert requests.get(server.url + "/", timeout=5).status_code == 500
    status.fail = False
    assert requests.get(server.url + "/", timeout=5).status_code == 200


def test_healthy(server: WebServer) -> None:
    r = requests.get(server.url + "/-/healthy", timeout=5)
    assert (r.status_code, r.text) == (200, "OK")
    head = requests.head(server.url + "/-/healthy", timeout=5)
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["Content-Length"] == "2"


def test_ready_flips(server: WebServer, status: FakeStatus) -> None:
    r = requests.get(server.url + "/-/ready", timeout=5)
    assert (r.status_code, r.text) == (503, NOT_READY_TEXT)
    assert r.text == "Not ready: first poll cycle has not finished"
    status.ready = True
    r = requests.get(server.url + "/-/ready", timeout=5)
    assert (r.status_code, r.text) == (200, "Ready")
    assert requests.head(server.url + "/-/ready", timeout=5).status_code == 200


@pytest.mark.parametrize("path", ["/nope", "/metrics/", "/-/", "/index.htm", "/-/healthy/x"])
def test_unknown_paths_are_404(server: WebServer, path: str) -> None:
    assert requests.get(server.url + path, timeout=5).status_code == 404


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "BREW"])
def test_other_methods_are_405(server: WebServer, method: str) -> None:
    r = requests.request(method, server.url + "/metrics", data=b"x" * 1000, timeout=5)
    assert r.status_code == 405
    assert r.headers["Allow"] == "GET, HEAD"


# --- robustness -----------------------------------------------------------------


def test_client_disconnect_before_response(
    server: WebServer, collector: TinyCollector, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="mimecast_exporter.web"):
        for _ in range(3):
            collector.gate = threading.Event()
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                sock.sendall(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
                # Hang up with a RST while the server is still collecting.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            time.sleep(0.05)  # let the RST arrive before the server writes
            collector.gate.set()
        deadline = time.monotonic() + 5
        while sum(r.message == "client went away" for r in caplog.records) < 3:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    collector.gate = None
    assert requests.get(server.url + "/metrics", timeout=5).status_code == 200


def test_concurrent_scrapers(server: WebServer) -> None:
    def scrape(_: int) -> int:
        return requests.get(server.url + "/metrics", timeout=10).status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        assert set(pool.map(scrape, range(64))) == {200}


def test_requests_logged_at_debug_not_stderr(
    server: WebServer, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    with caplog.at_level(logging.DEBUG, logger="mimecast_exporter.web"):
        requests.get(server.url + "/-/healthy", timeout=5)
        requests.get(server.url + "/nope", timeout=5)
        deadline = time.monotonic() + 5  # the record is written after the response
        while len([r for r in caplog.records if r.message == "request"]) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    logged = [r for r in caplog.records if r.message == "request"]
    assert all(
        r.levelno == logging.DEBUG and r.name == "mimecast_exporter.web.server" for r in logged
    )
    assert {(r.path, r.status) for r in logged} == {("/-/healthy", 200), ("/nope", 404)}
    assert capfd.readouterr().err == ""


# --- listening and lifecycle -------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (":9836", ("", 9836)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("[::1]:9836", ("::1", 9836)),
        ("[::]:80", ("::", 80)),
        ("localhost:9836", ("localhost", 9836)),
        ("0.0.0.0:65535", ("0.0.0.0", 65535)),
        (" :9836 ", ("", 9836)),
    ],
)
def test_parse_listen_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen_address(text) == expected


# fmt: off
BAD_ADDRESSES = ["9836", "localhost", ":", ":65536", ":-1", ":http", "::1:9836", "[::1]",
                 "[::1:9836", "[]:1", "a:1x", "[::1]9836"]
# fmt: on


@pytest.mark.parametrize("text", BAD_ADDRESSES)
def test_parse_listen_address_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="listen address"):
        parse_listen_address(text)


def test_bad_listen_address_fails_at_construction(
    registry: CollectorRegistry, status: FakeStatus
) -> None:
    with pytest.raises(ValueError, match="port"):
        WebServer(":99999", registry, status)


def test_all_interfaces_bind(registry: CollectorRegistry, status: FakeStatus) -> None:
    srv = WebServer(":0", registry, status)
    srv.start()
    try:
        assert srv.port > 0
        assert srv.url == f"http://127.0.0.1:{srv.port}"
        assert requests.get(srv.url + "/-/healthy", timeout=5).text == "OK"
    finally:
        srv.shutdown()


def test_ipv6_loopback_bind(registry: CollectorRegistry, status: FakeStatus) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    srv = WebServer("[::1]:0", registry, status)
    try:
        srv.start()
    except OSError:
        pytest.skip("cannot bind ::1 here")
    try:
        assert srv.url == f"http://[::1]:{srv.port}"
        assert requests.get(srv.url + "/-/healthy", timeout=5).text == "OK"
    finally:
        srv.shutdown()


def test_port_in_use_raises(server: WebServer, registry: CollectorRegistry) -> None:
    other = WebServer(f"127.0.0.1:{server.port}", registry, FakeStatus())
    with pytest.raises(OSError):
        other.start()
    other.shutdown()


def test_shutdown_is_prompt_and_idempotent(registry: CollectorRegistry, status: FakeStatus) -> None:
    srv = WebServer("127.0.0.1:0", registry, status)
    srv.start()
    url = srv.url
    assert requests.get(url + "/-/healthy", timeout=5).status_code == 200
    started = time.monotonic()
    srv.shutdown()
    assert time.monotonic() - started < 2
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/-/healthy", timeout=2)
    srv.shutdown()  # second call is a no-op
    with pytest.raises(RuntimeError):
        srv.start()


def test_shutdown_before_start(registry: CollectorRegistry, status: FakeStatus) -> None:
    WebServer("127.0.0.1:0", registry, status).shutdown()


def test_serve_forever_returns_after_shutdown(
    registry: CollectorRegistry, status: FakeStatus
) -> None:
    srv = WebServer("127.0.0.1:0", registry, status)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while srv.port == 0:  # bound once the port is known
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert requests.get(srv.url + "/-/healthy", timeout=5).status_code == 200
    srv.shutdown()
    thread.join(timeout=2)
    assert not thread.is_alive()


def test_shutdown_from_signal_handler_in_serving_thread() -> None:
    # serve_forever() in the main thread, stopped by a signal handler that runs in
    # that same thread: shutdown() must not wait on its own loop.
    script = """
import os, signal, threading
from prometheus_client import CollectorRegistry
from mimecast_exporter.web.server import WebServer

class Status:
    thresholds, reload_failed_at = None, None  # never read: no page is asked for
    def is_ready(self): return True
    def account_statuses(self): return []

srv = WebServer("127.0.0.1:0", CollectorRegistry(), Status())
signal.signal(signal.SIGUSR1, lambda *_: srv.shutdown())
threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGUSR1)).start()
srv.serve_forever()
print("stopped")
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=20
    )
    assert (done.returncode, done.stdout.strip(), done.stderr) == (0, "stopped", "")
