"""The configuration, and every file it names, are hostile input too (issue #17,
item 3): a FIFO, a device, a socket or a huge file where a file belongs, YAML
aliases that expand without end, and values that pass validation but would
fail where they are used. Each is a clear error and exit 2, at --config.check,
at start and at reload; never a hang, a MemoryError or a traceback."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest
import yaml

from mimecast_exporter.config import ConfigError, load_config
from mimecast_exporter.config.files import MAX_SECRET_BYTES, MAX_YAML_VALUES
from mimecast_exporter.web.config import WebConfigError, load_web_config
from tests.conftest import HMAC_ACCESS_KEY, HMAC_APP_ID, HMAC_APP_KEY, HMAC_SECRET_KEY
from tests.processes import Daemon, run_exporter, sample, scrape, wait_for

CONFIG = """\
accounts:
  - name: acme
    base_url: https://api.services.mimecast.com
    oauth2:
      client_id: an-id
      client_secret_file: {secret}
"""


def config_naming(tmp_path: Path, secret: Path | str) -> Path:
    config = tmp_path / "config.yml"
    config.write_text(CONFIG.format(secret=secret))
    return config


@pytest.fixture
def odd_files(tmp_path):
    """Paths of things that are not regular files, and a huge one."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    sock_path = tmp_path / "socket"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock_path))
    huge = tmp_path / "huge"
    with huge.open("wb") as out:
        out.truncate(MAX_SECRET_BYTES + 1)  # sparse: a huge file that costs nothing
    yield {
        "fifo": (fifo, "a FIFO, not a regular file"),
        "device": (Path("/dev/zero"), "a device, not a regular file"),
        "socket": (sock_path, "not a regular file"),
        "huge": (huge, "larger than the 65,536 bytes"),
        "directory": (tmp_path, "it is a directory"),
    }
    server.close()


@pytest.mark.parametrize("kind", ["fifo", "device", "socket", "huge", "directory"])
def test_a_secret_file_that_is_not_a_small_regular_file_is_refused(tmp_path, odd_files, kind):
    path, words = odd_files[kind]
    started = time.monotonic()
    with pytest.raises(ConfigError) as info:
        load_config(config_naming(tmp_path, path), environ={})
    assert time.monotonic() - started < 5  # never a hang on a FIFO without a writer
    assert info.value.field_path == "accounts[0].oauth2.client_secret_file"
    assert words in info.value.problem and str(path) in info.value.problem


@pytest.mark.parametrize("flag", ["--config.check", "--once"])
def test_a_fifo_is_a_clear_error_for_the_command_too(tmp_path, odd_files, flag):
    fifo, _ = odd_files["fifo"]
    result = run_exporter("--config.file", str(config_naming(tmp_path, fifo)), flag, timeout=20)
    assert result.returncode == 2
    assert "a FIFO, not a regular file" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("kind", ["fifo", "device", "huge"])
def test_the_configuration_file_itself(tmp_path, odd_files, kind):
    path, words = odd_files[kind]
    if kind == "huge":
        words = "larger than the 1,048,576 bytes"
        with path.open("r+b") as out:
            out.truncate(1024 * 1024 + 1)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert words in str(info.value)


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_the_web_configuration_and_the_files_it_names(tmp_path, odd_files, kind):
    path, words = odd_files[kind]
    with pytest.raises(WebConfigError) as info:
        load_web_config(path)
    assert words in str(info.value)
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {path}\n  key_file: {path}\n")
    with pytest.raises(WebConfigError) as info:
        load_web_config(web)
    assert "tls_server_config.cert_file" in str(info.value) and words in str(info.value)


# --- YAML that expands ------------------------------------------------------------------


def billion_laughs(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\naccounts: []\n"


def test_aliases_that_expand_past_the_bound_are_refused_quickly(tmp_path):
    config = tmp_path / "config.yml"
    config.write_text(billion_laughs())
    started = time.monotonic()
    with pytest.raises(ConfigError) as info:
        load_config(config, environ={})
    assert time.monotonic() - started < 2
    assert f"expand to more than {MAX_YAML_VALUES:,} values" in str(info.value)
    web = tmp_path / "web.yml"
    web.write_text(billion_laughs())
    with pytest.raises(WebConfigError) as info:
        load_web_config(web)
    assert "expand to more than" in str(info.value)


def test_a_value_that_contains_itself_is_refused(tmp_path):
    config = tmp_path / "config.yml"
    config.write_text("a: &a [1, *a]\naccounts: []\n")
    with pytest.raises(ConfigError) as info:
        load_config(config, environ={})
    assert "contains itself" in str(info.value)


def test_aliases_within_the_bound_still_work(tmp_path):
    """Anchors are a fair way to share settings between accounts."""
    config = tmp_path / "config.yml"
    config.write_text(
        "x-creds: &creds {client_id: an-id, client_secret: a-secret}\n"
        "accounts:\n"
        "  - {name: one, region: global, oauth2: *creds}\n"
        "  - {name: two, region: uk, oauth2: *creds}\n"
    )
    with pytest.raises(ConfigError) as info:  # x-creds is not a key the exporter takes
        load_config(config, environ={})
    assert "x-creds" in str(info.value)
    data = yaml.safe_load(config.read_text())
    data.pop("x-creds")
    config.write_text(yaml.safe_dump(data))
    assert [a.name for a in load_config(config, environ={}).accounts] == ["one", "two"]


# --- values that pass validation must work where they are used --------------------------


@pytest.mark.parametrize("key", ["interval", "lookback", "timeout", "stale_after"])
def test_durations_longer_than_any_use_are_refused(tmp_path, key):
    config = tmp_path / "config.yml"
    config.write_text(f"poll:\n  {key}: 100000000d\naccounts: []\n")
    with pytest.raises(ConfigError) as info:
        load_config(config, environ={})
    assert info.value.field_path == f"poll.{key}" and "longer than 100y" in info.value.problem


def test_the_longest_lookback_taken_still_names_a_date(tmp_path):
    from mimecast_exporter.mimecast.client import format_api_date

    config = tmp_path / "config.yml"
    secret = tmp_path / "secret"
    secret.write_text("a-secret")
    config.write_text("poll:\n  interval: 100y\n  lookback: 100y\n" + CONFIG.format(secret=secret))
    poll = load_config(config, environ={}).poll
    assert format_api_date(time.time() - poll.lookback).startswith("19")


@pytest.mark.parametrize("value", ["default-src \u2018self\u2019", "a\x07b", "x\x7f"])
def test_a_header_value_that_cannot_be_sent_is_refused(tmp_path, value):
    web = tmp_path / "web.yml"
    web.write_text(yaml.safe_dump({"http_server_config": {"headers": {"X-Frame-Options": value}}}))
    with pytest.raises(WebConfigError) as info:
        load_web_config(web)
    assert "can be sent in an HTTP header" in str(info.value)


# --- at reload ----------------------------------------------------------------------------


def test_a_fifo_at_reload_is_refused_and_scrapes_go_on(tmp_path, live_sim):
    secret = tmp_path / "secret"
    secret.write_text(HMAC_SECRET_KEY)
    secret.chmod(0o600)
    config = tmp_path / "config.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "poll": {"interval": "1s", "timeout": "1s"},
                "accounts": [
                    {
                        "name": "legacy",
                        "base_url": live_sim.url,
                        "hmac": {
                            "app_id": HMAC_APP_ID,
                            "app_key": HMAC_APP_KEY,
                            "access_key": HMAC_ACCESS_KEY,
                            "secret_key_file": str(secret),
                        },
                    }
                ],
            }
        )
    )
    config.chmod(0o600)
    daemon = Daemon("--config.file", str(config))
    try:
        url = daemon.wait_for_url()
        wait_for(lambda: sample(scrape(url), "mimecast_up", account="legacy") == 1)
        secret.unlink()
        os.mkfifo(secret)
        daemon.proc.send_signal(signal.SIGHUP)
        reloaded = "mimecast_exporter_config_last_reload_successful"
        wait_for(lambda: sample(scrape(url), reloaded) == 0, timeout=10)
        for _ in range(5):  # scrapes answer at once, as before
            started = time.monotonic()
            assert sample(scrape(url), "mimecast_up", account="legacy") == 1
            assert time.monotonic() - started < 2
    finally:
        code, _, log = daemon.stop()
    assert code == 0
    assert "a FIFO, not a regular file" in log and "Traceback" not in log
