"""The status page as a person sees it: rendered by headless Chromium.

The screenshot is kept in build/test-artifacts/status-page.png (CI uploads it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest

from mimecast_exporter.app import Exporter
from mimecast_exporter.clock import SystemClock
from mimecast_exporter.config import Config
from tests.conftest import oauth_account, poll_config


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


ARTEFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts"


@pytest.fixture
def served_exporter(make_sim):
    """An exporter with an account whose destination defers mail (details shown), one
    whose credentials are refused, and an empty one; polled once, then served."""
    sim = make_sim(clock=time.time)
    now = time.time()
    messages = []
    for i in range(12):
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(now - 3600 * (12 - i)))
        retry = time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(now + 60 * (i + 1)))
        messages.append(
            {
                "id": f"m{i}",
                "routing": "outbound" if i % 3 else "inbound",
                "size": 20_000 + i,
                "attempts": 12 - i,
                "created": stamp,
                "nextAttempt": retry,
                "lockedUntil": None,
                "info": "Remote server refused: 450 4.7.1 Client host rejected: try again later"
                if i % 3
                else "Connection timed out",
                "to": [{"emailAddress": f"user{i}@partner.example"}],
                "fromEnv": {"emailAddress": "billing@acme.example"},
                "subject": f"Invoice {1000 + i} <urgent>",
            }
        )
    sim.oauth_tenant.model.set_messages("processing", messages)
    accounts = (
        replace(oauth_account(sim.url, name="acme"), top_domains=3, expose_message_details=True),
        oauth_account(sim.url, name="broken", secret="wrong-secret"),
    )
    exporter = Exporter(Config(poll_config(), accounts), SystemClock(), process_metrics=False)
    exporter.poller.run_cycle()
    web = exporter.serve("127.0.0.1:0", dashboard_url="https://grafana.example/d/mimecast-queue")
    yield web.url
    exporter.stop()


def test_status_page_answers_the_on_call_questions(served_exporter, tmp_path):
    result = browse(served_exporter + "/", tmp_path, "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    assert "<title>Mimecast exporter</title>" in dom
    assert "<script" not in dom  # no JavaScript at all: it refreshes with a meta tag
    assert 'http-equiv="refresh"' in dom
    for link in (
        'href="/metrics"',
        'href="/-/ready"',
        'href="https://grafana.example/d/mimecast-queue"',
    ):
        assert link in dom
    assert "docs/runbook.md" in dom
    # Links name the running version's tag, never main (which may have moved on).
    from mimecast_exporter import __version__

    assert f"/blob/v{__version__}/docs/runbook.md" in dom and "/blob/main/" not in dom
    # The down account comes first, with why: reason, message, HTTP status, request id.
    assert dom.index('id="account-broken"') < dom.index('id="account-acme"')
    broken = dom[dom.index('id="account-broken"') : dom.index('id="account-acme"')]
    assert ">DOWN<" in broken and '<span class="reason">auth</span>' in broken
    assert "credentials were refused" in broken and "HTTP 401" in broken
    assert broken.count('class="copy"') == 2  # a request id per queue, to quote to support
    assert "wrong-secret" not in dom
    acme = dom[dom.index('id="account-acme"') :]
    assert ">UP<" in acme and "complete, 12 read" in acme
    assert "deferred_temporary 8" in acme and "timeout 4" in acme  # why, by route
    assert "12 h" in acme  # the oldest message's age
    assert acme.count('<tr class="sub">') == 10  # the ten oldest, each with its info line
    assert "partner.example" in acme and "Invoice 1000 &lt;urgent&gt;" in acme


def test_status_page_screenshot_is_kept(served_exporter, tmp_path):
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTEFACTS / "status-page.png"
    shot.unlink(missing_ok=True)
    result = browse(
        served_exporter + "/",
        tmp_path,
        f"--screenshot={shot}",
        "--window-size=1400,1600",
        "--hide-scrollbars",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000  # a page, not a blank
