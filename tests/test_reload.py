"""SIGHUP re-reads the configuration and its secret files; a bad one is refused
and the running one stays; SIGUSR1 does not end the process (issue #8).
A real exporter process against the simulator on loopback."""

from __future__ import annotations

import signal
import time

import pytest
import yaml

from tests.conftest import (
    HMAC_ACCESS_KEY,
    HMAC_APP_ID,
    HMAC_APP_KEY,
    HMAC_SECRET_KEY,
    OAUTH_ID,
    OAUTH_SECRET,
)
from tests.processes import Daemon, sample, scrape, wait_for


def _write(path, accounts: list[dict], interval: str = "1s") -> None:
    path.write_text(
        yaml.safe_dump({"poll": {"interval": interval, "timeout": "1s"}, "accounts": accounts})
    )
    path.chmod(0o600)


def _oauth(base_url: str, secret_file) -> dict:
    return {
        "name": "acme",
        "base_url": base_url,
        "oauth2": {"client_id": OAUTH_ID, "client_secret_file": str(secret_file)},
    }


def _hmac(base_url: str) -> dict:
    return {
        "name": "legacy",
        "base_url": base_url,
        "hmac": {
            "app_id": HMAC_APP_ID,
            "app_key": HMAC_APP_KEY,
            "access_key": HMAC_ACCESS_KEY,
            "secret_key": HMAC_SECRET_KEY,
        },
    }


def _get(url: str, name: str, **labels: str) -> float | None:
    return sample(scrape(url), name, **labels)


def test_sighup_rotates_a_secret_adds_an_account_and_keeps_the_series(tmp_path, live_sim):
    secret = tmp_path / "client_secret"
    secret.write_text("the-old-revoked-secret\n")
    secret.chmod(0o600)
    config = tmp_path / "config.yml"
    _write(config, [_oauth(live_sim.url, secret), _hmac(live_sim.url)])
    daemon = Daemon("--config.file", str(config))
    try:
        url = daemon.wait_for_url()
        processing = {"queue": "processing", "route": "inbound"}
        wait_for(lambda: _get(url, "mimecast_up", account="legacy") == 1)
        assert _get(url, "mimecast_up", account="acme") == 0  # the secret was revoked
        legacy_before = _get(url, "mimecast_queue_messages", account="legacy", **processing)
        assert legacy_before == 3

        # Rotate the secret in its file: SIGHUP, no restart.
        secret.write_text(OAUTH_SECRET + "\n")
        daemon.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: _get(url, "mimecast_up", account="acme") == 1, timeout=15)
        assert _get(url, "mimecast_exporter_config_last_reload_successful") == 1
        # The unchanged account's series never went away.
        assert _get(url, "mimecast_queue_messages", account="legacy", **processing) == 3

        # Drop an account: its series go at once.
        _write(config, [_oauth(live_sim.url, secret)])
        daemon.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: _get(url, "mimecast_up", account="legacy") is None, timeout=15)
        wait_for(lambda: _get(url, "mimecast_up", account="acme") == 1, timeout=15)
        assert daemon.proc.poll() is None
    finally:
        code, _, log = daemon.stop()
    assert code == 0
    assert "configuration reloaded" in log and "removed=legacy" in log
    assert OAUTH_SECRET not in log


def test_an_invalid_configuration_on_sighup_is_refused_and_the_old_one_runs_on(tmp_path, live_sim):
    config = tmp_path / "config.yml"
    _write(config, [_hmac(live_sim.url)])
    daemon = Daemon("--config.file", str(config))
    try:
        url = daemon.wait_for_url()
        wait_for(lambda: _get(url, "mimecast_up", account="legacy") == 1)
        config.write_text("poll:\n  interval: 60\naccounts: []\n")
        daemon.proc.send_signal(signal.SIGHUP)
        wait_for(
            lambda: _get(url, "mimecast_exporter_config_last_reload_successful") == 0, timeout=10
        )
        first = _get(
            url, "mimecast_last_success_timestamp_seconds", account="legacy", queue="processing"
        )
        # Still polling, with the old configuration: successes go on.
        wait_for(
            lambda: (
                _get(
                    url,
                    "mimecast_last_success_timestamp_seconds",
                    account="legacy",
                    queue="processing",
                )
                > first
            ),
            timeout=15,
        )
        # SIGUSR1 is not a way to kill it either.
        daemon.proc.send_signal(signal.SIGUSR1)
        time.sleep(0.5)
        assert daemon.proc.poll() is None
        wait_for(lambda: _get(url, "mimecast_up", account="legacy") == 1, timeout=15)
    finally:
        code, _, log = daemon.stop()
    assert code == 0
    assert "configuration reload failed, the running configuration stays" in log
    assert "poll.interval" in log  # says what was wrong
    # ... all of it, in one line: the interval and the empty account list.
    line = next(x for x in log.splitlines() if "configuration reload failed" in x)
    assert "poll.interval" in line and "accounts: must list at least one account" in line


# --- a reload is idempotent and bounded (issue #17, item 5) ---------------------------------

TOKEN = "/oauth/token"
FIND = "/api/gateway/find-processing-messages"


def _calls(sim, path: str) -> int:
    return sum(1 for r in sim.requests if r.path == path)


def _settled(sim) -> tuple[int, int]:
    """(token requests, find requests) once they stop changing for a second."""
    last = None
    for _ in range(50):
        now = (_calls(sim, TOKEN), _calls(sim, FIND))
        if now == last:
            return now
        last = now
        time.sleep(1.0)
    raise AssertionError("requests never settled")


def test_sighup_with_an_unchanged_file_and_a_storm_of_them_change_nothing(tmp_path, live_sim):
    secret = tmp_path / "client_secret"
    secret.write_text(OAUTH_SECRET + "\n")
    secret.chmod(0o600)
    config = tmp_path / "config.yml"
    _write(config, [_oauth(live_sim.url, secret), _hmac(live_sim.url)], interval="1m")
    daemon = Daemon("--config.file", str(config))
    try:
        url = daemon.wait_for_url()
        wait_for(lambda: _get(url, "mimecast_up", account="acme") == 1)
        wait_for(lambda: _get(url, "mimecast_up", account="legacy") == 1)
        before = _settled(live_sim)
        stamp = "mimecast_exporter_config_last_reload_success_timestamp_seconds"
        loaded = _get(url, stamp)
        daemon.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: _get(url, stamp) > loaded, timeout=10)  # reloaded, unchanged
        for _ in range(100):
            daemon.proc.send_signal(signal.SIGHUP)
        time.sleep(3)  # the storm settles, and is one reload
        assert _settled(live_sim) == before  # no new token, no extra poll
        assert _get(url, "mimecast_exporter_config_last_reload_successful") == 1
        assert daemon.proc.poll() is None
    finally:
        code, _, log = daemon.stop()
    assert code == 0
    assert 2 <= log.count("configuration reloaded: unchanged") <= 3


@pytest.mark.parametrize("run", range(3))
def test_a_storm_of_thousands_of_sighups_never_keeps_sigterm_from_stopping_it(
    tmp_path, live_sim, run
):
    """A Python signal handler that takes a lock (threading.Event.set) deadlocks
    the main thread when a signal lands while that thread holds the lock: four
    storms out of five hung it, and SIGTERM was ignored from then on."""
    config = tmp_path / "config.yml"
    _write(config, [_hmac(live_sim.url)], interval="1h")
    daemon = Daemon("--config.file", str(config))
    url = daemon.wait_for_url()
    stamp = "mimecast_exporter_config_last_reload_success_timestamp_seconds"
    loaded = _get(url, stamp)
    for burst in range(4):
        for _ in range(1000):
            daemon.proc.send_signal(signal.SIGHUP)
        time.sleep(0.05 * burst)  # some land inside a reload, some between them
    wait_for(lambda: _get(url, stamp) > loaded, timeout=10)
    code, _, log = daemon.stop()  # within 10 s
    assert code == 0
    assert "configuration reloaded: unchanged" in log
    assert "shutting down" in log


def test_a_changed_account_is_polled_again_with_its_token_kept(tmp_path, live_sim):
    secret = tmp_path / "client_secret"
    secret.write_text(OAUTH_SECRET + "\n")
    secret.chmod(0o600)
    config = tmp_path / "config.yml"
    account = _oauth(live_sim.url, secret)
    _write(config, [account, _hmac(live_sim.url)], interval="1m")
    daemon = Daemon("--config.file", str(config))
    try:
        url = daemon.wait_for_url()
        wait_for(lambda: _get(url, "mimecast_up", account="acme") == 1)
        wait_for(lambda: _get(url, "mimecast_up", account="legacy") == 1)
        tokens, finds = _settled(live_sim)
        _write(config, [{**account, "top_domains": 3}, _hmac(live_sim.url)], interval="1m")
        daemon.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: _calls(live_sim, FIND) >= finds + 2, timeout=10)  # its two queues
        after_tokens, after_finds = _settled(live_sim)
        assert after_tokens == tokens  # same credentials: the same token
        assert after_finds == finds + 2  # acme polled again; legacy, unchanged, not
    finally:
        code, _, log = daemon.stop()
    assert code == 0 and "changed=acme" in log
