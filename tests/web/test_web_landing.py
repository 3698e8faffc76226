"""The landing page as a person sees it: rendered by headless Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from exporter.app import Exporter
from exporter.clock import SystemClock
from exporter.config import Config
from tests.conftest import make_messages, oauth_account, poll_config


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI"):
        pytest.fail("chromium missing in CI: `make test` installs Debian's chromium package")
    pytest.skip("chromium not installed (make test installs it)")


def browse(url: str, tmp_path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            *extra,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def served_exporter(make_sim):
    sim = make_sim(clock=time.time)
    created = time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(time.time() - 120))
    sim.oauth_tenant.model.set_messages("processing", make_messages(5, created=created))
    accounts = (
        oauth_account(sim.url, name="acme"),
        oauth_account(sim.url, name="broken", secret="wrong-secret"),
    )
    exporter = Exporter(Config(poll_config(), accounts), SystemClock(), process_metrics=False)
    exporter.poller.run_cycle()
    web = exporter.serve("127.0.0.1:0")
    yield web.url
    exporter.stop()


def test_landing_page_renders_links_and_account_status(served_exporter, tmp_path):
    result = browse(served_exporter + "/", tmp_path, "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    assert "<title>Mimecast exporter</title>" in dom
    assert 'href="/metrics"' in dom and 'href="/-/healthy"' in dom and 'href="/-/ready"' in dom
    # one row per account and queue, with state, last error and message count
    assert '<td rowspan="2">acme</td><td rowspan="2" class="up">up</td>' in dom
    assert '<td rowspan="2">broken</td><td rowspan="2" class="down">down</td>' in dom
    assert "<td>auth</td>" in dom
    assert "<td>5</td>" in dom
    assert "wrong-secret" not in dom


def test_landing_page_screenshot(served_exporter, tmp_path):
    shot = tmp_path / "landing.png"
    result = browse(
        served_exporter + "/", tmp_path, f"--screenshot={shot}", "--window-size=1000,600"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
