"""The command line as users run it: real processes, real sockets, a real simulator."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import (
    HMAC_ACCESS_KEY,
    HMAC_APP_ID,
    HMAC_APP_KEY,
    HMAC_SECRET_KEY,
    OAUTH_ID,
    OAUTH_SECRET,
)
from tests.processes import Daemon, run_exporter, wait_for

SECRETS = (OAUTH_SECRET, HMAC_APP_KEY, HMAC_ACCESS_KEY, HMAC_SECRET_KEY)


def write_config(tmp_path: Path, base_url: str, oauth_secret: str = OAUTH_SECRET) -> Path:
    (tmp_path / "client_secret").write_text(oauth_secret + "\n")
    config = tmp_path / "config.yml"
    config.write_text(
        f"""
poll:
  interval: 10s
  timeout: 5s
accounts:
  - name: acme
    base_url: {base_url}
    oauth2:
      client_id: {OAUTH_ID}
      client_secret_file: client_secret
  - name: legacy
    base_url: {base_url}
    hmac:
      app_id: {HMAC_APP_ID}
      app_key: ${{TEST_APP_KEY}}
      access_key: {HMAC_ACCESS_KEY}
      secret_key: {HMAC_SECRET_KEY}
"""
    )
    return config


def run(*args: str) -> subprocess.CompletedProcess:
    return run_exporter(*args, env={"TEST_APP_KEY": HMAC_APP_KEY})


def assert_no_secrets(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


def test_version():
    result = run("--version")
    assert result.returncode == 0
    assert re.match(r"mimecast-exporter, version \d+\.\d+\.\d+ \(revision: ", result.stdout)


def test_config_check_valid_masks_secrets(tmp_path):
    result = run(
        "--config.file",
        str(write_config(tmp_path, "https://eu-api.mimecast.com")),
        "--config.check",
    )
    assert result.returncode == 0, result.stderr
    assert "acme" in result.stdout and "legacy" in result.stdout
    assert "********" in result.stdout
    assert_no_secrets(result.stdout, result.stderr)


def test_config_check_invalid_exits_2_naming_the_field(tmp_path):
    config = write_config(tmp_path, "http://mimecast.example.com")
    result = run("--config.file", str(config), "--config.check")
    assert result.returncode == 2
    assert "accounts[0].base_url" in result.stderr
    assert_no_secrets(result.stdout, result.stderr)


@pytest.mark.parametrize(
    ("proxy", "problem"),
    [
        ("http://agent:Zq7/Xw@proxy.example:3128", "must be percent-encoded"),
        ("http://agent:Zq7#Xw@proxy.example:3128", "must be percent-encoded"),
        ("http://agent:Zq7?Xw@proxy.example:3128", "must be percent-encoded"),
        ("http://agent:Zq7Xw@proxy.example:99999", "port"),
        ("socks5://agent:Zq7Xw@proxy.example:1080", "only http:// and https://"),
    ],
)
@pytest.mark.parametrize("flag", ["--config.check", "--once"])
def test_an_unusable_proxy_is_a_clear_error_that_never_shows_its_password(
    tmp_path, proxy, problem, flag
):
    config = write_config(tmp_path, "https://eu-api.mimecast.com")
    result = run_exporter(
        "--config.file",
        str(config),
        flag,
        env={"TEST_APP_KEY": HMAC_APP_KEY, "HTTPS_PROXY": proxy, "NO_PROXY": ""},
    )
    assert result.returncode == 2, result.stderr
    assert "HTTPS_PROXY" in result.stderr and problem in result.stderr
    assert "proxy.example" in result.stderr  # the host, to know which proxy
    assert "Traceback" not in result.stderr
    for part in ("agent", "Zq7", "Xw"):
        assert part not in result.stderr + result.stdout


def test_a_percent_encoded_proxy_password_is_fine(tmp_path):
    config = write_config(tmp_path, "https://eu-api.mimecast.com")
    env = {"TEST_APP_KEY": HMAC_APP_KEY, "HTTPS_PROXY": "http://u:pa%2Fs%23s@proxy.example:3128"}
    result = run_exporter(
        "--config.file", str(config), "--config.check", env={**env, "NO_PROXY": ""}
    )
    assert result.returncode == 0, result.stderr


def test_missing_config_file_exits_2(tmp_path):
    result = run("--config.file", str(tmp_path / "nope.yml"))
    assert result.returncode == 2
    assert "nope.yml" in result.stderr


def test_bad_flag_exits_2():
    assert run("--log.level", "loud").returncode == 2


def test_once_prints_metrics_and_exits_0(tmp_path, live_sim):
    result = run("--config.file", str(write_config(tmp_path, live_sim.url)), "--once")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert 'mimecast_queue_messages{account="acme",queue="processing",route="outbound"} 7.0' in out
    assert 'mimecast_queue_messages{account="legacy",queue="processing",route="inbound"} 3.0' in out
    assert 'mimecast_up{account="acme"} 1.0' in out
    assert_no_secrets(out, result.stderr)


def test_once_exits_1_when_an_account_is_down(tmp_path, live_sim):
    config = write_config(tmp_path, live_sim.url, oauth_secret="wrong-secret-value")
    result = run("--config.file", str(config), "--once")
    assert result.returncode == 1
    assert 'mimecast_up{account="acme"} 0.0' in result.stdout
    assert 'mimecast_up{account="legacy"} 1.0' in result.stdout
    assert "reason=auth" in result.stderr and "account=acme" in result.stderr
    assert_no_secrets(result.stdout, result.stderr)


def test_daemon_serves_and_never_shows_secrets(tmp_path, live_sim):
    config = write_config(tmp_path, live_sim.url)
    daemon = Daemon(
        "--config.file", str(config), "--log.level", "debug", env={"TEST_APP_KEY": HMAC_APP_KEY}
    )
    try:
        url = daemon.wait_for_url()
        wait_for(lambda: requests.get(url + "/-/ready", timeout=5).status_code == 200)
        metrics = requests.get(url + "/metrics", timeout=5).text
        landing = requests.get(url + "/", timeout=5).text
        assert requests.get(url + "/-/healthy", timeout=5).status_code == 200
    finally:
        code, out, err = daemon.stop()
    assert code == 0
    assert 'mimecast_queue_messages{account="acme",queue="processing",route="outbound"} 7.0' in (
        metrics
    )
    assert "acme" in landing and "legacy" in landing
    assert_no_secrets(metrics, landing, out, err)
    # the debug log did say what happened, with context
    assert "account=acme" in err


def test_bind_failure_exits_1(tmp_path, live_sim):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run(
            "--config.file",
            str(write_config(tmp_path, live_sim.url)),
            "--web.listen-address",
            f"127.0.0.1:{port}",
        )
    assert result.returncode == 1
    assert "cannot listen" in result.stderr


def test_demo_serves_non_zero_metrics_for_both_accounts_within_seconds():
    daemon = Daemon("--demo")
    try:
        url = daemon.wait_for_url()
        started = time.monotonic()

        def both_accounts_have_messages():
            text = requests.get(url + "/metrics", timeout=5).text
            counts = {}
            for account, value in re.findall(
                r'^mimecast_queue_messages\{account="([^"]+)",[^}]*\} (\S+)$', text, re.M
            ):
                counts[account] = counts.get(account, 0) + float(value)
            return counts if counts.get("demo-oauth2") and counts.get("demo-hmac") else None

        counts = wait_for(both_accounts_have_messages, timeout=15)
        assert time.monotonic() - started < 15
        assert counts["demo-oauth2"] > 0 and counts["demo-hmac"] > 0
    finally:
        code, out, err = daemon.stop()
    assert code == 0
    assert "metrics:" in out and "/metrics" in out
    assert "listening on:  127.0.0.1:0 (this address only)" in out


@pytest.mark.parametrize(
    ("flags", "address"),
    [
        (["--demo"], "127.0.0.1:9836"),  # made-up data: this host only
        ([], ":9836"),  # an exporter: every interface, as Go exporters
        (["--demo", "--web.listen-address", ":9900"], ":9900"),
        (["--web.listen-address", "10.0.0.1:9836"], "10.0.0.1:9836"),
    ],
)
def test_default_listen_address_depends_on_the_mode(flags, address):
    from mimecast_exporter.cli import build_parser, listen_address

    assert listen_address(build_parser().parse_args(flags)) == address


def test_make_demo_installs_only_the_runtime_and_listens_on_loopback():
    """What `make demo` would run on a fresh clone (make -n: nothing is run)."""
    root = Path(__file__).parent.parent
    out = subprocess.run(
        ["make", "-n", "-B", "demo", "PORT=9911"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "pip install --quiet --disable-pip-version-check -e .\n" in out
    assert "[dev]" not in out  # no pytest, ruff, hadolint ... for a demo
    assert "mimecast-exporter --demo --web.listen-address 127.0.0.1:9911" in out


def test_no_secret_in_anything_the_process_wrote(tmp_path, live_sim):
    """--config.check, --once and the daemon at debug level, with a working and a
    refused account: every configured secret is absent from every byte written."""
    good = write_config(tmp_path, live_sim.url)
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    bad = write_config(bad_dir, live_sim.url, oauth_secret="a-wrong-but-secret-value")
    written = []
    for args in (("--config.check",), ("--once",), ("--once", "--log.format", "json")):
        for config in (good, bad):
            result = run("--config.file", str(config), "--log.level", "debug", *args)
            written += [result.stdout, result.stderr]
    daemon = Daemon(
        "--config.file", str(bad), "--log.level", "debug", env={"TEST_APP_KEY": HMAC_APP_KEY}
    )
    try:
        url = daemon.wait_for_url()
        wait_for(lambda: requests.get(url + "/-/ready", timeout=5).status_code == 200)
        written += [requests.get(url + path, timeout=5).text for path in ("/metrics", "/")]
    finally:
        _, out, err = daemon.stop()
    written += [out, err]
    assert "reason=auth" in "".join(written)  # the refusal was logged...
    assert_no_secrets(*written)  # ...without any secret
    for text in written:
        assert "a-wrong-but-secret-value" not in text


def test_help_shows_every_default_and_the_signals():
    from mimecast_exporter.cli import build_parser

    parser = build_parser()
    text = parser.format_help()
    for action in parser._actions:
        if action.dest in ("help", "version"):
            continue
        assert "default:" in (action.help or ""), f"{action.option_strings} shows no default"
    assert "SIGHUP" in text and "--config.check" in text.split("Signals:")[1]
