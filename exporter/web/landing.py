"""The landing page (``/``) and the status it shows.

This module owns the HTML of the landing page: links to the endpoints, the
readiness, and one table row per (account, queue) with its last success, last
error and message count. It also defines the status the pages read
(:class:`StatusSource`, which ``/-/ready`` asks too, and the
:class:`AccountStatus` and :class:`QueueStatus` it returns); the app fills it
in from what the poller already knows, so rendering never waits on a poll.
"""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class QueueStatus:
    queue: str
    last_success: float | None  # epoch seconds
    last_error: str | None  # error reason of the latest poll, None if it succeeded
    messages: int | None  # messages in the latest fresh snapshot, None if none/stale


@dataclass(frozen=True)
class AccountStatus:
    name: str
    up: bool
    queues: tuple[QueueStatus, ...]


class StatusSource(Protocol):
    def is_ready(self) -> bool:
        """True once the first poll cycle has finished."""
        ...

    def account_statuses(self) -> Sequence[AccountStatus]: ...


class Site(Protocol):
    """What the landing page shows of the server (:class:`exporter.web.WebServer`)."""

    status: StatusSource
    telemetry_path: str
    version: str


def render_index(app: Site, now: float) -> str:
    """The landing page: links plus one table row per (account, queue)."""
    e = html.escape
    rows: list[str] = []
    for account in app.status.account_statuses():
        queues = account.queues or (None,)
        # The account's name and state span all of its queue rows.
        span = f' rowspan="{len(queues)}"' if len(queues) > 1 else ""
        state = "up" if account.up else "down"
        for i, q in enumerate(queues):
            cells = ""
            if i == 0:
                cells = f'<td{span}>{e(account.name)}</td><td{span} class="{state}">{state}</td>'
            if q is None:
                cells += '<td colspan="4">no queues polled</td>'
                rows.append(f"<tr>{cells}</tr>")
                continue
            success = "never"
            if q.last_success is not None:
                stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(q.last_success))
                success = f"{stamp} ({max(0, int(now - q.last_success))}s ago)"
            messages = "-" if q.messages is None else str(q.messages)
            cells += (
                f"<td>{e(q.queue)}</td><td>{e(success)}</td>"
                f"<td>{e(q.last_error or '')}</td><td>{e(messages)}</td>"
            )
            rows.append(f"<tr>{cells}</tr>")
    if not rows:
        rows.append('<tr><td colspan="6">no accounts configured</td></tr>')
    version = f"<p>Version: {e(app.version)}</p>" if app.version else ""
    ready = "ready" if app.status.is_ready() else "not ready"
    path = e(app.telemetry_path, quote=True)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Mimecast exporter</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }} table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; }}
.up {{ color: #1a7f37; }} .down {{ color: #cf222e; font-weight: bold; }}
</style></head>
<body>
<h1>Mimecast exporter</h1>
{version}
<ul>
<li><a href="{path}">Metrics</a> ({path})</li>
<li><a href="/-/healthy">Health</a> (/-/healthy)</li>
<li><a href="/-/ready">Readiness</a> (/-/ready): {ready}</li>
</ul>
<h2>Accounts</h2>
<table>
<tr><th>Account</th><th>State</th><th>Queue</th><th>Last success (UTC)</th><th>Last error</th>
<th>Messages</th></tr>
{chr(10).join(rows)}
</table>
</body></html>
"""
