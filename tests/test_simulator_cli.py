"""``mimecast-simulator`` as a process: what it prints, serving, stopping, refusing."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests
import yaml

from mimecast_exporter.simulator.cli import parse_duration, parse_listen, parse_rate_limit

FIND = "/api/gateway/find-processing-messages"


def run(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mimecast_exporter.simulator", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@contextmanager
def running(*args: str) -> Iterator[subprocess.Popen]:
    """The simulator as a process; killed at the end if it did not stop by itself."""
    proc = run(*args)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


def read_banner(proc: subprocess.Popen) -> list[str]:
    """Lines printed at start-up, up to the blank line ending the config snippet."""
    watchdog = threading.Timer(20, proc.kill)  # never hang the suite on a stuck child
    watchdog.start()
    try:
        lines: list[str] = []
        in_snippet = False
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            if in_snippet and not line:
                return lines
            in_snippet = in_snippet or line == "Exporter configuration:"
            lines.append(line)
        raise AssertionError(f"simulator exited early: {proc.stderr.read() if proc.stderr else ''}")
    finally:
        watchdog.cancel()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serves_with_the_printed_credentials_and_stops_on_a_signal(signum: int) -> None:
    with running("--listen", "127.0.0.1:0", "--scenario", "demo", "--rate-limit", "50/1m") as proc:
        lines = read_banner(proc)
        url = lines[0].rsplit(" ", 1)[1]
        assert url.startswith("http://127.0.0.1:")
        config = yaml.safe_load("\n".join(lines[lines.index("Exporter configuration:") + 1 :]))
        oauth2 = next(a for a in config["accounts"] if "oauth2" in a)
        hmac_account = next(a for a in config["accounts"] if "hmac" in a)
        assert set(hmac_account["hmac"]) == {"app_id", "app_key", "access_key", "secret_key"}
        assert oauth2["base_url"] == url
        form = {**oauth2["oauth2"], "grant_type": "client_credentials"}
        token = requests.post(url + "/oauth/token", data=form, timeout=5).json()["access_token"]
        resp = requests.post(
            url + FIND,
            json={"data": [{}]},
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        )
        assert resp.status_code == 200
        assert resp.headers["X-RateLimit-Limit"] == "50"
        assert resp.json()["data"][0]["messages"]  # the demo scenario starts pre-filled
        proc.send_signal(signum)
        assert proc.wait(timeout=10) == 0


@pytest.mark.parametrize("listen", ["0.0.0.0:8080", "192.0.2.1:8080", ":8080", "example.com:80"])
def test_non_loopback_listen_is_refused(listen: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mimecast_exporter.simulator", "--listen", listen],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert proc.returncode == 2
    assert "loopback" in proc.stderr


def test_flag_parsers() -> None:
    assert parse_duration("30m") == 1800
    assert parse_duration("90") == 90
    assert parse_duration("1.5h") == 5400
    assert parse_rate_limit("1000/60s") == (1000, 60.0)
    assert parse_rate_limit("10/1m") == (10, 60.0)
    assert parse_listen("[::1]:9000") == ("::1", 9000)
    assert parse_listen("localhost:0") == ("localhost", 0)
    for bad in ("", "0m", "soon"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_duration(bad)
    with pytest.raises(argparse.ArgumentTypeError):
        parse_rate_limit("1000")


def test_help_describes_every_flag():
    from mimecast_exporter.simulator.cli import _parser

    parser = _parser()
    for action in parser._actions:
        assert action.help and action.help.strip(), action.option_strings
    text = parser.format_help()
    for scenario in ("backlog", "burst", "demo", "empty", "outage", "steady"):
        assert f"{scenario}:" in text  # every scenario explained, not only named
