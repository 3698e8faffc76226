"""The locale never crashes anything (issue #17, item 4): --config.check,
--version, --help and the logs work under a Latin-1 locale, with values in the
configuration that Latin-1 cannot write (Debian's locales-all, installed by
``make test``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.processes import EXPORTER

LATIN1 = "de_DE.ISO-8859-1"

CONFIG = """\
poll:
  interval: 1m
accounts:
  - name: acme
    base_url: {base_url}
    oauth2: {{client_id: "Müller-ß-id", client_secret: "sécret€"}}
    search_by: {{field_name: subject, value: "Grüße €"}}
"""


def latin1_available() -> bool:
    result = subprocess.run(["locale", "-a"], capture_output=True, text=True, check=False)
    names = {name.lower() for name in result.stdout.split()}
    return bool(names & {"de_de", "de_de.iso88591", "de_de.iso-8859-1"})


@pytest.fixture
def env():
    if not latin1_available():
        if os.environ.get("CI"):
            pytest.fail("the de_DE Latin-1 locale is missing: make test installs locales-all")
        pytest.skip("no de_DE Latin-1 locale here (Debian's locales-all)")
    return {"LANG": LATIN1, "LC_ALL": LATIN1, "PYTHONIOENCODING": ""}


def run(env, *args: str) -> subprocess.CompletedProcess:
    """The exporter's output as it wrote it, in Latin-1."""
    result = subprocess.run(
        [*EXPORTER, *args],
        capture_output=True,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    result.stdout = result.stdout.decode("latin-1")
    result.stderr = result.stderr.decode("latin-1")
    assert "Traceback" not in result.stderr and "Logging error" not in result.stderr
    return result


def test_the_locale_is_latin1_in_the_child(env):
    out = subprocess.run(
        [sys.executable, "-c", "import sys; print(sys.stdout.encoding)"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=True,
    )
    assert out.stdout.strip().lower().replace("-", "").replace("_", "") == "iso88591"


def test_config_check_with_values_latin1_cannot_write(env, tmp_path):
    config = tmp_path / "config.yml"
    config.write_text(CONFIG.format(base_url="https://api.services.mimecast.com"))
    config.chmod(0o600)
    result = run(env, "--config.file", str(config), "--config.check")
    assert result.returncode == 0, result.stderr
    assert "Grüße \\u20ac" in result.stdout  # ü and ß are Latin-1; € is escaped
    assert "sécret" not in result.stdout


def test_a_config_error_quoting_such_a_value(env, tmp_path):
    config = tmp_path / "config.yml"
    config.write_text(CONFIG.format(base_url="https://api.services.mimecast.com/€"))
    result = run(env, "--config.file", str(config), "--config.check")
    assert result.returncode == 2 and "accounts[0].base_url" in result.stderr


@pytest.mark.parametrize("flag", ["--version", "--help"])
def test_version_and_help(env, flag):
    result = run(env, flag)
    assert result.returncode == 0 and result.stdout


@pytest.mark.parametrize("fmt", ["logfmt", "json"])
def test_the_logs(env, tmp_path, live_sim, fmt):
    from mimecast_exporter.simulator.faults import Fault

    # An upstream error text that Latin-1 cannot write, quoted by the log line.
    live_sim.faults.add(
        Fault(kind="status", status=403, message="Zugriff \u2013 verweigert \u20ac")
    )
    from tests.conftest import OAUTH_ID, OAUTH_SECRET

    config = tmp_path / "config.yml"
    text = CONFIG.format(base_url=live_sim.url)
    config.write_text(text.replace("Müller-ß-id", OAUTH_ID).replace("sécret€", OAUTH_SECRET))
    config.chmod(0o600)
    result = run(
        env, "--config.file", str(config), "--once", "--log.format", fmt, "--log.level", "debug"
    )
    assert result.returncode == 1  # the account is down, and the log says why
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert any("verweigert \\u20ac" in line for line in lines), result.stderr[-2000:]
    if fmt == "json":
        for line in lines:
            json.loads(line)  # every line is still JSON, escapes and all
