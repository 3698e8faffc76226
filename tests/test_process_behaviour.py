"""The exporter process under signals and load: real processes, real sockets."""

from __future__ import annotations

import ctypes
import os
import re
import signal
import socket
import statistics
import threading
import time

import pytest
import yaml

from mimecast_exporter.simulator.faults import Fault
from mimecast_exporter.simulator.server import SimulatorServer
from tests.conftest import (
    HMAC_ACCESS_KEY,
    HMAC_APP_ID,
    HMAC_APP_KEY,
    HMAC_SECRET_KEY,
)
from tests.processes import Daemon, wait_for
from tests.rawserver import RawServer

# Longer than the worst queueing of 200 client threads sharing one GIL in this
# test process (seconds, at times), so that a scrape that waited on a poll
# stands out from a client thread that waited for its turn.
UPSTREAM_DELAY = 20.0


def hmac_config(tmp_path, base_url: str, interval: str, timeout: str):
    path = tmp_path / "config.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "poll": {"interval": interval, "timeout": timeout, "stale_after": interval},
                "accounts": [
                    {
                        "name": "acme",
                        "base_url": base_url,
                        "hmac": {
                            "app_id": HMAC_APP_ID,
                            "app_key": HMAC_APP_KEY,
                            "access_key": HMAC_ACCESS_KEY,
                            "secret_key": HMAC_SECRET_KEY,
                        },
                    }
                ],
            }
        )
    )
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_within_5s_even_mid_request(tmp_path, signum):
    request_arrived = threading.Event()

    def hang(conn):
        request_arrived.set()
        time.sleep(30)  # Mimecast never answers

    with RawServer(hang) as upstream:
        config = hmac_config(tmp_path, upstream.url, interval="60s", timeout="50s")
        daemon = Daemon("--config.file", str(config))
        daemon.wait_for_url()
        assert request_arrived.wait(20), "the first poll never reached the upstream"
        started = time.monotonic()
        daemon.proc.send_signal(signum)
        code = daemon.proc.wait(timeout=10)
        elapsed = time.monotonic() - started
    assert code == 0
    assert elapsed < 5, f"took {elapsed:.1f}s to stop"


def test_200_concurrent_scrapers_never_fail_nor_wait_on_a_slow_poll(tmp_path):
    with SimulatorServer("127.0.0.1", 0, scenario="steady", speed=60, seed=5) as sim:
        sim.add_hmac_key(HMAC_APP_ID, HMAC_APP_KEY, HMAC_ACCESS_KEY, HMAC_SECRET_KEY)
        # Every answer takes 20 s: a poll is nearly always under way during the test.
        sim.faults.add(Fault(kind="delay", seconds=UPSTREAM_DELAY, times=None))
        config = hmac_config(tmp_path, sim.url, interval="25s", timeout="22s")
        daemon = Daemon("--config.file", str(config))
        try:
            host, port = daemon.wait_for_url().removeprefix("http://").rsplit(":", 1)
            deadline = time.monotonic() + 30
            latencies: list[float] = []
            failures: list[str] = []
            lock = threading.Lock()

            def scrape() -> None:
                # Raw sockets, not requests: 200 requests clients in this one
                # process queue for its GIL for seconds (11.9 s once in CI), which
                # would hide what is measured here, the exporter's own latency.
                while time.monotonic() < deadline:
                    started = time.monotonic()
                    problem = None
                    try:
                        with socket.create_connection((host, int(port)), UPSTREAM_DELAY) as sock:
                            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: exporter\r\n\r\n")
                            answer = bytearray()
                            while chunk := sock.recv(65536):
                                answer += chunk
                        if not answer.startswith(b"HTTP/1.0 200 ") or b"mimecast_up" not in answer:
                            problem = bytes(answer[:40]).decode("latin-1")
                    except OSError as error:
                        problem = type(error).__name__
                    with lock:
                        latencies.append(time.monotonic() - started)
                        if problem:
                            failures.append(problem)

            threads = [threading.Thread(target=scrape) for _ in range(200)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
            assert daemon.proc.poll() is None, "the exporter died under load"
        finally:
            code, _, err = daemon.stop()
    assert code == 0
    assert not failures, f"{len(failures)} failed scrapes, e.g. {failures[:5]}"
    print(
        f"scrapes={len(latencies)} max={max(latencies):.2f}s "
        f"median={statistics.median(latencies):.3f}s"
    )
    assert len(latencies) > 1000
    # A scrape that waited on a poll would take the upstream delay or more; the
    # rest of the latency is 200 connections queueing for two cores.
    assert max(latencies) < UPSTREAM_DELAY / 2, f"slowest scrape {max(latencies):.2f}s"


def test_start_up_objects_are_frozen_for_the_garbage_collector(tmp_path):
    """The slowest scrapes of many accounts were the collector's full passes
    over start-up objects: once serving, those are frozen (cli.py)."""
    with SimulatorServer("127.0.0.1", 0, scenario="empty") as sim:
        sim.add_hmac_key(HMAC_APP_ID, HMAC_APP_KEY, HMAC_ACCESS_KEY, HMAC_SECRET_KEY)
        config = hmac_config(tmp_path, sim.url, interval="10s", timeout="9s")
        daemon = Daemon("--config.file", str(config), "--log.level", "debug")
        try:
            daemon.wait_for_url()
            line = wait_for(
                lambda: next(
                    (s for s in _more_lines(daemon) if "frozen for the garbage collector" in s),
                    None,
                ),
                timeout=20,
            )
        finally:
            daemon.stop()
    frozen = int(re.search(r"objects=(\d+)", line).group(1))
    assert frozen > 10_000  # modules, classes, configuration: everything start-up built


def _more_lines(daemon):
    # wait_for_url read up to the "exporter started" line; the rest follows it.
    daemon.lines.append(daemon.proc.stderr.readline())
    return daemon.lines


def test_a_sigterm_delivered_to_another_thread_still_stops_the_exporter(tmp_path):
    """The kernel may deliver a process's signal to any of its threads; Python
    then only flags it for the main thread. A main thread in an untimed wait
    never ran the handler: the exporter ignored SIGTERM until SIGKILL."""
    libc = ctypes.CDLL(None, use_errno=True)
    with SimulatorServer("127.0.0.1", 0, scenario="empty") as sim:
        sim.add_hmac_key(HMAC_APP_ID, HMAC_APP_KEY, HMAC_ACCESS_KEY, HMAC_SECRET_KEY)
        config = hmac_config(tmp_path, sim.url, interval="10s", timeout="9s")
        daemon = Daemon("--config.file", str(config))
        try:
            daemon.wait_for_url()
            time.sleep(1.0)  # the main thread is waiting by now, not still starting
            pid = daemon.proc.pid
            others = [int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid]
            assert others, "the exporter runs its polls and server in threads"
            assert libc.tgkill(pid, others[-1], signal.SIGTERM) == 0, ctypes.get_errno()
            daemon.proc.wait(timeout=5)
        finally:
            if daemon.proc.poll() is None:
                daemon.proc.kill()
                daemon.proc.wait()
    assert daemon.proc.returncode == 0
