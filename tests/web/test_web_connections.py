"""Clients that hold connections open, or trickle their requests, against the
exporter's HTTP server: the open-files limit, the connection cap, deadlines and
accept() under EMFILE (issue #8, item 9). Real processes with resource limits
applied in the child, real sockets."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path

import pytest
import requests
from prometheus_client import CollectorRegistry, Gauge

import mimecast_exporter.web.server
from mimecast_exporter.web.connections import ConnectionTable, Slot
from mimecast_exporter.web.server import WebServer
from tests.fakes import ReadyStatus
from tests.processes import Daemon, sample, scrape, wait_for
from tests.test_process_behaviour import hmac_config


def _limits(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no open files line")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, in clock ticks


def test_the_soft_open_files_limit_is_raised_to_the_hard_one(tmp_path, live_sim):
    config = hmac_config(tmp_path, live_sim.url, "60s", "5s")
    daemon = Daemon("--config.file", str(config), nofile=(256, 4096))
    try:
        daemon.wait_for_url()
        assert _limits(daemon.proc.pid) == (4096, 4096)
    finally:
        daemon.stop()


def test_idle_connections_starve_neither_scrapes_nor_polls_nor_the_cpu(tmp_path, live_sim):
    """300 idle connections at an open-files limit of 200: scrapes are served,
    polls go on, nothing is blamed on Mimecast, and accept() does not spin."""
    config = hmac_config(tmp_path, live_sim.url, "1s", "1s")
    daemon = Daemon("--config.file", str(config), "--web.max-connections", "100", nofile=(200, 200))
    idle: list[socket.socket] = []
    try:
        url = daemon.wait_for_url()
        labels = {"account": "acme", "queue": "processing"}
        wait_for(lambda: sample(scrape(url), "mimecast_up", account="acme") == 1)
        for _ in range(300):
            with contextlib.suppress(OSError):
                idle.append(socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1]))))
        time.sleep(1.0)
        before_cpu = _cpu_seconds(daemon.proc.pid)
        first = sample(scrape(url), "mimecast_last_success_timestamp_seconds", **labels)
        scrape_times = []
        for _ in range(5):
            started = time.monotonic()
            samples = scrape(url)
            scrape_times.append(time.monotonic() - started)
            time.sleep(0.4)
        busy_cpu = _cpu_seconds(daemon.proc.pid) - before_cpu
        assert max(scrape_times) < 2.0, scrape_times
        assert sample(samples, "mimecast_up", account="acme") == 1
        last = sample(samples, "mimecast_last_success_timestamp_seconds", **labels)
        assert last is not None and first is not None and last > first  # polls went on
        for reason in ("connection", "local", "timeout"):
            assert sample(samples, "mimecast_poll_errors_total", reason=reason, **labels) == 0
        # ~2.5 s of wall time: a spinning accept loop would burn all of it.
        assert busy_cpu < 1.0, busy_cpu
    finally:
        for sock in idle:
            sock.close()
        daemon.stop()


# --- in process: the same bounds, with short deadlines -------------------------------------


@contextlib.contextmanager
def _server(**kwargs):
    registry = CollectorRegistry()
    Gauge("tiny", "A gauge.", registry=registry).set(7)
    server = WebServer("127.0.0.1:0", registry, ReadyStatus(), **kwargs)
    server.start()
    try:
        yield server
    finally:
        server.shutdown()


@pytest.mark.parametrize(
    "request_bytes", [b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 50]
)
def test_a_trickled_request_is_cut_at_the_request_deadline(monkeypatch, request_bytes):
    monkeypatch.setattr(mimecast_exporter.web.server, "REQUEST_SECONDS", 1.0)
    with _server() as server, socket.create_connection(("127.0.0.1", server.port)) as slow:
        slow.settimeout(10)
        started = time.monotonic()
        with contextlib.suppress(OSError):
            for i in range(len(request_bytes)):
                slow.sendall(request_bytes[i : i + 1])  # a byte every 100 ms: no read times out
                time.sleep(0.1)
                if time.monotonic() - started > 5:
                    break
        # The server hung up at the deadline, long before the request was complete
        # (a send failed; without the deadline the loop runs its full 5 s).
        assert time.monotonic() - started < 3


def test_when_full_the_oldest_idle_connection_makes_room():
    with _server(max_connections=3) as server:
        address = ("127.0.0.1", server.port)
        idle = [socket.create_connection(address, timeout=5) for _ in range(3)]
        time.sleep(0.2)
        assert requests.get(server.url + "/metrics", timeout=5).status_code == 200
        assert idle[0].recv(1) == b""  # the oldest idle one was closed to let the scrape in
        for sock in idle:
            sock.close()


def test_when_every_connection_is_busy_a_new_one_gets_503():
    table = ConnectionTable(2)
    busy = [Slot(socket.socket()) for _ in range(2)]
    for slot in busy:
        slot.busy = True
        assert table.admit(slot)
    newcomer = Slot(socket.socket())
    assert not table.admit(newcomer) and table.refused == 1
    table.release(busy[0])
    assert table.admit(newcomer)
    for slot in [*busy, newcomer]:
        slot.sock.close()


def test_a_full_server_answers_503_while_requests_are_in_flight(monkeypatch):
    """Connections that have sent a request line are busy: never evicted."""
    monkeypatch.setattr(mimecast_exporter.web.server, "REQUEST_SECONDS", 5.0)
    with _server(max_connections=2) as server:
        address = ("127.0.0.1", server.port)
        started = [socket.create_connection(address, timeout=5) for _ in range(2)]
        for sock in started:
            sock.sendall(b"GET /metrics HTTP/1.1\r\n")  # request line in, headers pending
        time.sleep(0.3)
        with socket.create_connection(address, timeout=5) as late:
            assert late.recv(1024).startswith(b"HTTP/1.0 503")
        for sock in started:
            sock.sendall(b"\r\n")
            assert sock.recv(1024).startswith(b"HTTP/1.0 200")
            sock.close()


def test_accept_under_emfile_backs_off_instead_of_spinning():
    """Run a server in a child with a tiny open-files limit; fill it; measure CPU."""
    import subprocess
    import sys

    code = """
import resource, socket, sys, time, threading
resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40))
from prometheus_client import CollectorRegistry
from mimecast_exporter.web.server import WebServer
class S:
    thresholds, reload_failed_at = None, None  # never read: no page is asked for
    def is_ready(self): return True
    def account_statuses(self): return []
server = WebServer("127.0.0.1:0", CollectorRegistry(), S(), max_connections=1000)
server.start()
print(server.port, flush=True)
time.sleep(30)
"""
    child = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    clients: list[socket.socket] = []
    try:
        port = int(child.stdout.readline())
        for _ in range(80):  # twice the child's descriptors: accept() hits EMFILE
            with contextlib.suppress(OSError):
                clients.append(socket.create_connection(("127.0.0.1", port), timeout=2))
        time.sleep(0.5)
        before = _cpu_seconds(child.pid)
        time.sleep(2.0)
        spent = _cpu_seconds(child.pid) - before
        assert spent < 0.5, f"accept loop burned {spent:.2f} s of CPU in 2 s"
    finally:
        for sock in clients:
            sock.close()
        child.kill()
        child.wait()


def test_connection_table_refuses_a_zero_limit():
    with pytest.raises(ValueError):
        ConnectionTable(0)


def test_threads_do_not_pile_up_behind_idle_clients():
    with _server(max_connections=5) as server:
        before = threading.active_count()
        idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(50)]
        time.sleep(0.5)
        assert threading.active_count() - before <= 6  # at most the cap, however many wait
        for sock in idle:
            sock.close()


def test_idle_tls_connections_give_way_too(tmp_path):
    """Connections stuck before or in the TLS handshake count against the cap and
    are evicted like plain ones, not left open until the handshake deadline."""
    import trustme

    from mimecast_exporter.web.watch import WebConfigWatcher

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(tmp_path / "server.pem")
    ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    (tmp_path / "web.yml").write_text(
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.pem\n"
    )
    watcher = WebConfigWatcher(tmp_path / "web.yml")
    with _server(max_connections=3, web_config=watcher) as server:
        address = ("127.0.0.1", server.port)
        # The oldest starts a handshake and stalls inside it; two more say nothing.
        stalled = socket.create_connection(address, timeout=5)
        stalled.sendall(b"\x16\x03\x01\x00\x05")  # a TLS record header, then nothing
        time.sleep(0.3)
        silent = [socket.create_connection(address, timeout=5) for _ in range(2)]
        time.sleep(0.3)
        started = time.monotonic()
        ca_file = str(tmp_path / "ca.pem")
        assert requests.get(server.url + "/-/healthy", verify=ca_file, timeout=5).ok
        stalled.settimeout(3)
        assert stalled.recv(1) == b""  # in the handshake, and evicted all the same
        assert time.monotonic() - started < 3  # at once, not after the 10 s deadline
        assert requests.get(server.url + "/-/healthy", verify=ca_file, timeout=5).ok
        for sock in [*silent, stalled]:
            sock.close()
