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
EXPORTERS: dict[str, Exporter] = {}  # served_exporter's, by URL


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
    EXPORTERS[web.url] = exporter  # for tests that change its state
    yield web.url
    del EXPORTERS[web.url]
    exporter.stop()


@pytest.fixture
def healthy_exporter(make_sim):
    """One account whose queue holds a few young messages: below every threshold."""
    sim = make_sim(clock=time.time)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(time.time() - 120))
    sim.oauth_tenant.model.set_messages(
        "processing", [{"id": f"m{i}", "routing": "outbound", "size": 900, "attempts": 1,
                        "created": stamp, "info": "Queued for Processing"} for i in range(5)]
    )  # fmt: skip
    accounts = (oauth_account(sim.url, name="acme"),)
    exporter = Exporter(Config(poll_config(), accounts), SystemClock(), process_metrics=False)
    exporter.poller.run_cycle()
    web = exporter.serve("127.0.0.1:0")
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


# --- the same story as the alerts (issue #18, item 4) -----------------------------------------


def page(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url + "/", timeout=10) as answer:
        return answer.read().decode()


def test_stuck_mail_is_said_first_naming_where_and_why(served_exporter):
    html = page(served_exporter)
    assert "mail is stuck" in html and "accounts up</span>" not in html.split("</p>")[0]
    assert "all 2 accounts up" not in html and "1 of 2 accounts down" in html
    stuck = html[html.index('<ul class="stuck">') :].split("</ul>")[0]
    # acme's outbound route: 8 messages (under 100), but 11 h old and 11 attempts
    assert "<b>acme</b> · processing · outbound" in stuck
    assert "oldest 1" in stuck and "attempts" in stuck
    assert "deferred_temporary" in stuck and "partner.example" in stuck
    assert 'class="num over"' in html  # the depth table coloured against the same


def test_a_healthy_queue_says_all_is_well(healthy_exporter):
    html = page(healthy_exporter)
    assert "all 1 accounts up" in html and "mail is stuck" not in html
    assert 'class="num over"' not in html


def test_the_thresholds_are_the_configurations(served_exporter):
    from mimecast_exporter.config.model import Thresholds

    exporter = served_exporter_exporter(served_exporter)
    before = exporter.status.config
    exporter.status.config = replace(
        before, thresholds=Thresholds(queue_backlog_messages=1000, oldest_message_age=86400.0,
                                      many_attempts=50)
    )  # fmt: skip
    try:
        html = page(served_exporter)
    finally:
        exporter.status.config = before
    assert "mail is stuck" not in html and 'class="num over"' not in html


def test_a_failed_reload_is_shown(served_exporter):
    exporter = served_exporter_exporter(served_exporter)
    exporter.reload_failed()
    html = page(served_exporter)
    assert "configuration reload failed" in html and "previous configuration runs on" in html


def test_the_default_thresholds_are_the_mixins():
    import json

    from mimecast_exporter.config.model import Thresholds

    root = Path(__file__).resolve().parents[2]
    mixin = json.loads((root / "mixin" / "thresholds.json").read_text())
    assert Thresholds() == Thresholds(
        mixin["queueBacklogMessages"],
        float(mixin["oldestMessageAgeSeconds"]),
        mixin["manyAttempts"],
    )
    config = (root / "mixin" / "config.libsonnet").read_text()
    assert "import 'thresholds.json'" in config  # the mixin reads the same file


def test_the_oldest_messages_fit_1400_pixels_with_details(served_exporter, tmp_path):
    """The table of the oldest messages never scrolls sideways: measured by Chromium."""
    measure = (
        "<script>addEventListener('load', () => { const a = document.querySelector("
        "'#account-acme'); document.title = 'W=' + (a.scrollWidth - a.clientWidth)"
        " + ' S=' + (document.documentElement.scrollWidth - innerWidth); });</script>"
    )
    local = tmp_path / "status.html"
    # Long recipient domains and subjects, as real mail has them.
    # (an IDNA label of 63 characters has no place to break a line).
    label = "xn--" + "mnchen3ya" * 6 + "abcde"
    html = page(served_exporter).replace("partner.example", f"{label}.{label}.partner.example")
    html = html.replace("Invoice 1", "Your invoice for the quarter, reference ACME-2026-Q4-1")
    local.write_text(html.replace("</body>", measure + "</body>"))
    result = browse(local.as_uri(), tmp_path, "--window-size=1400,1600", "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    title = result.stdout.split("<title>")[1].split("</title>")[0]
    widths = dict(part.split("=") for part in title.split())
    assert int(widths["W"]) <= 0 and int(widths["S"]) <= 0, title


def test_screenshots_of_the_healthy_page(healthy_exporter, tmp_path):
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTEFACTS / "status-page-healthy.png"
    shot.unlink(missing_ok=True)
    result = browse(
        healthy_exporter + "/", tmp_path, f"--screenshot={shot}", "--window-size=1400,1000"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def served_exporter_exporter(url: str) -> Exporter:
    """The Exporter behind ``served_exporter``'s URL."""
    return EXPORTERS[url]
