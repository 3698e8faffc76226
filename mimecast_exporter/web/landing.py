"""The status page (``/``): what an on-call person opens at 3 a.m.

It answers, account by account, worst first: is it up; if not, why (the
reason, Mimecast's own message, the HTTP status and the request id to quote to
Mimecast support); how much is queued where, how old the oldest message is and
why messages are stuck (the status classes); and which are the oldest messages,
with their route, attempts, recipient domain and retry state. Subjects,
addresses and info texts only appear for accounts with
``expose_message_details: true``.

Everything comes from what the polls already know (:class:`StatusSource`), so
rendering never waits on Mimecast. The page refreshes itself with a meta tag:
no JavaScript at all. Every value from outside (Mimecast's texts, account
names) is HTML-escaped. It is served behind the same TLS and basic auth as
/metrics.
"""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from mimecast_exporter import __version__
from mimecast_exporter.config.model import Thresholds
from mimecast_exporter.snapshot import UNKNOWN_ROUTE
from mimecast_exporter.status import STATUSES

if TYPE_CHECKING:
    from mimecast_exporter.snapshot import OldMessage, QueueSnapshot, RouteStats
    from mimecast_exporter.store import Failure

# The files of the running version, at its release tag: not main, which may
# have moved on (the runbook of another version can send on-call astray).
SOURCE_URL = f"https://github.com/mimecast-exporter/mimecast-exporter/blob/v{__version__}"
RUNBOOK_URL = f"{SOURCE_URL}/docs/runbook.md"
DASHBOARD_FILE_URL = f"{SOURCE_URL}/grafana/dashboards/mimecast-queue.json"
REFRESH_SECONDS = 30
# The page's frame and style, kept as the files they are (as exporter-toolkit's
# landing page embeds landing_page.html and .css). Read once, at import.
_HERE = Path(__file__).parent
_PAGE = (_HERE / "status.html").read_text(encoding="utf-8")
_CSS = (_HERE / "status.css").read_text(encoding="utf-8")
# The runbook section for a failure's reason (anchors of docs/runbook.md).
_RUNBOOK_ANCHORS = {
    "auth": "mimecastauthfailing",
    "binding_expired": "mimecastauthfailing",
    "rate_limited": "mimecastratelimited",
}


@dataclass(frozen=True)
class QueueStatus:
    queue: str
    last_success: float | None  # epoch seconds
    last_error: str | None  # error reason of the latest poll, None if it succeeded
    messages: int | None  # messages in the latest fresh snapshot, None if none/stale
    failure: Failure | None = None  # the latest failure, kept after a success
    snapshot: QueueSnapshot | None = None  # the latest fresh snapshot


@dataclass(frozen=True)
class AccountStatus:
    name: str
    up: bool
    queues: tuple[QueueStatus, ...]
    rate_limit_remaining: float | None = None  # X-RateLimit-Remaining of the latest answer
    details: bool = False  # expose_message_details


class StatusSource(Protocol):
    def is_ready(self) -> bool:
        """True once the first poll cycle has finished."""
        ...

    def account_statuses(self) -> Sequence[AccountStatus]: ...

    @property
    def thresholds(self) -> Thresholds:
        """The alerts' thresholds (configuration "thresholds:"): when mail is stuck."""
        ...

    @property
    def reload_failed_at(self) -> float | None:
        """When the latest SIGHUP's configuration was refused, while it is the latest."""
        ...


@dataclass(frozen=True)
class Stuck:
    """A queue and route past one of the alerts' thresholds: mail is stuck there."""

    account: str
    queue: str
    route: str
    over: tuple[str, ...]  # what crossed: "12 messages", "oldest 12 h", "12 attempts"
    why: tuple[str, ...]  # the top status class and recipient domain, when known
    age: float


def stuck(accounts: Sequence[AccountStatus], thresholds: Thresholds, now: float) -> list[Stuck]:
    """Every (account, queue, route) past a threshold, the oldest first."""
    found = []
    for account in accounts:
        for q in account.queues:
            if q.snapshot is None:
                continue
            for route, stats in q.snapshot.routes.items():
                over = _over(stats, thresholds, now)
                if over:
                    age = _oldest_route_age(stats, now) or 0.0
                    why = _why(stats, q.snapshot, route)
                    found.append(Stuck(account.name, q.queue, route, over, why, age))
    return sorted(found, key=lambda s: (-s.age, s.account, s.queue, s.route))


def _past(stats: RouteStats, thresholds: Thresholds, now: float) -> tuple[bool, bool, bool]:
    """Whether the route is past each alert's threshold: (backlog, oldest age, attempts)."""
    age = _oldest_route_age(stats, now)
    return (
        stats.messages is not None and stats.messages > thresholds.queue_backlog_messages,
        age is not None and age > thresholds.oldest_message_age,
        stats.sums is not None and stats.sums.max_attempts >= thresholds.many_attempts,
    )


def _over(stats: RouteStats, thresholds: Thresholds, now: float) -> tuple[str, ...]:
    deep, old, tried = _past(stats, thresholds, now)
    over = []
    if deep:
        over.append(f"{stats.messages:,} messages")
    if old:
        over.append(f"oldest {duration(_oldest_route_age(stats, now) or 0.0)}")
    if tried and stats.sums is not None:
        over.append(f"{stats.sums.max_attempts} attempts")
    return tuple(over)


def _why(stats: RouteStats, snapshot: QueueSnapshot, route: str) -> tuple[str, ...]:
    """The route's most frequent reason other than "processing", and its top
    recipient domain: from the sums, else from its oldest messages."""
    why = []
    if stats.sums is not None:
        counts = [
            (n, name)
            for name, n in zip(STATUSES, stats.sums.by_status, strict=False)
            if n and name not in ("processing", "none")
        ]
        if counts:
            why.append(max(counts)[1])
        domains = [d for d, n, _ in stats.sums.by_domain or () if d != "other" and n]
        if domains:
            why.append(domains[0])
    if not why:
        oldest = [m for m in snapshot.oldest_messages or () if m.route == route]
        if oldest:
            why += [oldest[0].status] + ([oldest[0].domain] if oldest[0].domain else [])
    return tuple(why)


class Site(Protocol):
    """What the status page shows of the server (:class:`mimecast_exporter.web.WebServer`)."""

    status: StatusSource
    telemetry_path: str
    version: str
    dashboard_url: str | None


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def duration(seconds: float) -> str:
    """3 s, 4 min 5 s, 2 h 10 min, 3 d 4 h: two units at most, for reading at a glance."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, s = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {s} s" if s else f"{minutes} min"
    hours, m = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {m} min" if m else f"{hours} h"
    days, h = divmod(hours, 24)
    return f"{days} d {h} h" if h else f"{days} d"


def _utc(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(epoch))


def _when(epoch: float | None, now: float) -> str:
    """A past or future moment, relative first: 5 min ago, in 2 min."""
    if epoch is None:
        return '<span class="muted">-</span>'
    delta = now - epoch
    relative = f"{duration(delta)} ago" if delta >= 0 else f"in {duration(-delta)}"
    return f'<span class="when" title="{_e(_utc(epoch))}">{_e(relative)}</span>'


def _oldest_route_age(stats: RouteStats, now: float) -> float | None:
    if not stats.oldest_known or stats.oldest_created is None:
        return None
    return max(0.0, now - stats.oldest_created)


def _account_oldest(account: AccountStatus, now: float) -> float:
    ages = [
        _oldest_route_age(stats, now) or 0.0
        for q in account.queues
        if q.snapshot is not None
        for stats in q.snapshot.routes.values()
    ]
    return max(ages, default=0.0)


def _worst_first(accounts: Sequence[AccountStatus], now: float) -> list[AccountStatus]:
    """Down accounts first, then the oldest backlog first, then by name."""
    return sorted(accounts, key=lambda a: (a.up, -_account_oldest(a, now), a.name))


def render_index(app: Site, now: float) -> str:
    accounts = _worst_first(app.status.account_statuses(), now)
    thresholds = app.status.thresholds
    sections = [_account_section(account, thresholds, now) for account in accounts]
    if not sections:
        sections.append('<p class="muted">No accounts configured.</p>')
    return _PAGE.format(
        refresh=REFRESH_SECONDS,
        css=_CSS,
        header=_header(app, accounts, now),
        summary=_summary(app, accounts, now),
        accounts="\n".join(sections),
        footer=_footer(accounts, now),
    )


def _header(app: Site, accounts: Sequence[AccountStatus], now: float) -> str:
    path = _e(app.telemetry_path)
    ready = app.status.is_ready()
    dashboard = (
        f'<a href="{_e(app.dashboard_url)}">Dashboard</a>'
        if app.dashboard_url
        else f'<a href="{DASHBOARD_FILE_URL}" title="not set: --web.dashboard-url">'
        "Dashboard (import)</a>"
    )
    version = f' <span class="muted">{_e(app.version)}</span>' if app.version else ""
    return (
        f"<header><h1>Mimecast exporter{version}</h1><nav>"
        f'<a href="{path}">Metrics</a> <a href="/-/healthy">Health</a> '
        f'<a href="/-/ready">Readiness</a> <span class="{"ok" if ready else "bad"}">'
        f"{'ready' if ready else 'not ready: first polls running'}</span> "
        f'{dashboard} <a href="{RUNBOOK_URL}">Runbook</a></nav></header>'
    )


def _summary(app: Site, accounts: Sequence[AccountStatus], now: float) -> str:
    """The page's first line: the same story as the alerts."""
    lines = []
    failed_at = app.status.reload_failed_at
    if failed_at is not None:
        lines.append(
            '<p class="alarm"><span class="badge bad">configuration reload failed</span> '
            f"{_when(failed_at, now)}: the file was refused (see the log), the previous "
            "configuration runs on</p>"
        )
    if not accounts:
        return "".join(lines)
    down = [a for a in accounts if not a.up]
    counts = [q.messages for a in accounts for q in a.queues]
    queued = [n for n in counts if n is not None]
    # A sum that leaves out queues without a count says so: never a total it is not.
    uncounted = len(counts) - len(queued)
    total = f"{sum(queued):,} messages queued"
    if uncounted:
        total += f" in {_plural(len(queued), 'queue')} counted, {uncounted} not counted"
    oldest = max((_account_oldest(a, now) for a in accounts), default=0.0)
    # Routes holding messages (or maybe: not counted) whose oldest is not known.
    undated = sum(
        1
        for a in accounts
        for q in a.queues
        if q.snapshot is not None
        for stats in q.snapshot.routes.values()
        if stats.messages != 0 and not stats.oldest_known
    )
    age = _e(duration(oldest)) if oldest else "-"
    if undated:
        age += f" of the routes dated, {_plural(undated, 'route')} not dated"
    blocked = stuck(accounts, app.status.thresholds, now)
    states = []
    if blocked:
        states.append('<span class="badge bad">mail is stuck</span>')
    if down:
        states.append(
            f'<span class="badge bad">{len(down)} of {len(accounts)} accounts down</span>'
        )
    if not states:
        states.append(f'<span class="badge ok">all {len(accounts)} accounts up</span>')
    elif not down:
        states.append(f'<span class="muted">polling: all {len(accounts)} accounts up</span>')
    lines.append(
        f'<p class="summary">{" ".join(states)} <span>{total}</span> <span>oldest {age}</span></p>'
    )
    if blocked:
        items = [
            f"<li><b>{_e(s.account)}</b> · {_e(s.queue)} · {_e(s.route)}: "
            f"{_e(', '.join(s.over))}"
            + (f' <span class="muted">({_e(", ".join(s.why))})</span>' if s.why else "")
            + "</li>"
            for s in blocked[:5]
        ]
        more = f'<li class="muted">and {len(blocked) - 5} more</li>' if len(blocked) > 5 else ""
        lines.append(f'<ul class="stuck">{"".join(items)}{more}</ul>')
    return "".join(lines)


def _account_section(account: AccountStatus, thresholds: Thresholds, now: float) -> str:
    successes = [q.last_success for q in account.queues if q.last_success is not None]
    last_success = max(successes) if successes else None
    headroom = (
        f"{account.rate_limit_remaining:,.0f}" if account.rate_limit_remaining is not None else "-"
    )
    state = "up" if account.up else "down"
    badge = f'<span class="badge {"ok" if account.up else "bad"}">{state.upper()}</span>'
    parts = [
        f'<section class="account {state}" id="account-{_e(account.name)}">',
        f"<h2>{_e(account.name)} {badge}</h2>",
        '<p class="facts">'
        f"<span>last success {_when(last_success, now) if last_success else 'never'}</span>"
        f"<span>rate limit remaining {_e(headroom)}</span></p>",
    ]
    parts += _failures(account, now)
    parts.append(_depth_table(account, thresholds, now))
    for q in account.queues:
        parts.append(_oldest_table(account, q, now))
    parts.append("</section>")
    return "\n".join(p for p in parts if p)


def _failures(account: AccountStatus, now: float) -> list[str]:
    """One box per distinct failure; queues failing the same way share it."""
    boxes: dict[tuple[object, ...], list[QueueStatus]] = {}
    for q in account.queues:
        f = q.failure
        if f is not None:
            key = (q.last_error is not None, f.reason, f.message, f.status, f.code)
            boxes.setdefault(key, []).append(q)
    return [_failure(queues, now) for queues in boxes.values()]


def _failure(queues: list[QueueStatus], now: float) -> str:
    failure = queues[0].failure
    assert failure is not None
    current = queues[0].last_error is not None
    facts = [_when(failure.at, now)]
    if failure.status is not None:
        facts.append(f"HTTP {_e(failure.status)}")
    if failure.code:
        facts.append(f"code <code>{_e(failure.code)}</code>")
    ids = [q.failure.request_id for q in queues if q.failure is not None and q.failure.request_id]
    if ids:
        codes = " ".join(f'<code class="copy">{_e(i)}</code>' for i in ids)
        facts.append(f"request id{'s' if len(ids) > 1 else ''} {codes}")
    label = "Failing" if current else "Last error (recovered)"
    names = ", ".join(q.queue for q in queues)
    anchor = _RUNBOOK_ANCHORS.get(failure.reason, "mimecastaccountdown")
    return (
        f'<div class="error {"current" if current else "past"}"><b>{label}</b> '
        f'<span class="reason">{_e(failure.reason)}</span> <span class="muted">{_e(names)}</span> '
        f'<a href="{RUNBOOK_URL}#{anchor}">what to do</a>'
        f'<p class="message">{_e(failure.message)}</p>'
        f'<p class="facts">{" · ".join(facts)}</p></div>'
    )


def _statuses(stats: RouteStats) -> str:
    if stats.sums is None:
        return '<span class="muted">queue too large to read</span>'
    counts = sorted(
        ((n, name) for name, n in zip(STATUSES, stats.sums.by_status, strict=False) if n),
        reverse=True,
    )
    return " ".join(
        f'<span class="status s-{_e(name)}">{_e(name)} {n:,}</span>' for n, name in counts
    )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _count(value: int | None) -> str:
    return '<span class="muted">?</span>' if value is None else f"{value:,}"


def _depth_table(account: AccountStatus, thresholds: Thresholds, now: float) -> str:
    rows = []
    for q in account.queues:
        snapshot = q.snapshot
        if snapshot is None:
            rows.append(
                f"<tr><td>{_e(q.queue)}</td>"
                '<td colspan="7" class="muted">no data yet, or stale</td></tr>'
            )
            continue
        counted = any(
            stats.messages is not None
            for route, stats in snapshot.routes.items()
            if route != UNKNOWN_ROUTE
        )
        if snapshot.complete:
            scan = f"complete, {snapshot.scanned:,} read"
        elif counted:
            scan = f"partial: {snapshot.scanned:,} read, counts by Mimecast"
        else:  # MimecastCountsAbsent, when it lasts
            scan = (
                f"partial: {snapshot.scanned:,} read; Mimecast's answers allow no exact "
                "count (the log says why: doubt=)"
            )
        shown = [
            (route, stats)
            for route, stats in snapshot.routes.items()
            if stats.messages != 0 or route == "unknown"
        ]
        if not shown:
            rows.append(
                f'<tr><td>{_e(q.queue)}</td><td colspan="6" class="muted">empty</td>'
                f'<td class="muted">{_e(scan)}</td></tr>'
            )
            continue
        for i, (route, stats) in enumerate(shown):
            age = _oldest_route_age(stats, now)
            # Coloured against the alerts' thresholds (configuration "thresholds:").
            past_backlog, past_age, _ = _past(stats, thresholds, now)
            deep = " over" if past_backlog else ""
            old = " over" if past_age else ""
            sums = stats.sums
            locked = "-" if sums is None or sums.locked is None else f"{sums.locked:,}"
            overdue = (
                "-" if sums is None or sums.retry_overdue is None else f"{sums.retry_overdue:,}"
            )
            rows.append(
                "<tr>"
                + (f'<td rowspan="{len(shown)}">{_e(q.queue)}</td>' if i == 0 else "")
                + f'<td>{_e(route)}</td><td class="num{deep}">{_count(stats.messages)}</td>'
                f'<td class="num{old}">{_e(duration(age)) if age is not None else "?"}</td>'
                f"<td>{_statuses(stats)}</td>"
                f'<td class="num">{locked}</td><td class="num">{overdue}</td>'
                + (f'<td rowspan="{len(shown)}" class="muted">{_e(scan)}</td>' if i == 0 else "")
                + "</tr>"
            )
    return (
        '<table class="depth"><thead><tr><th>Queue</th><th>Route</th><th>Messages</th>'
        "<th>Oldest</th><th>Why (status of the last attempt)</th><th>Locked</th>"
        "<th>Retry overdue</th><th>Scan</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


def _oldest_table(account: AccountStatus, q: QueueStatus, now: float) -> str:
    snapshot = q.snapshot
    if snapshot is None or not snapshot.messages:
        return ""
    if snapshot.oldest_messages is None:
        return (
            f'<p class="muted">Oldest messages of {_e(q.queue)}: not known (Mimecast did not'
            " answer oldest first, and the queue is too large to read whole).</p>"
        )
    details = account.details
    head = (
        "<th>Age</th><th>Route</th><th>Attempts</th><th>Status</th><th>Recipient domain</th>"
        "<th>Next attempt</th><th>Locked until</th>"
    )
    if details:
        head += "<th>Subject</th><th>From</th><th>To</th>"
    rows = [_old_row(m, now, details) for m in snapshot.oldest_messages]
    return (
        f"<details open><summary>Oldest messages of {_e(q.queue)}</summary>"
        f'<table class="oldest"><thead><tr>{head}</tr></thead><tbody>'
        + "".join(rows)
        + "</tbody></table></details>"
    )


def _old_row(m: OldMessage, now: float, details: bool) -> str:
    domain = m.domain or "-"
    if m.recipients > 1:
        domain += f" (+{m.recipients - 1})"
    locked = _when(m.locked_until, now) if (m.locked_until or 0) > now else "-"
    cells = [
        f'<td class="num">{_e(duration(now - m.created))}</td>',
        f"<td>{_e(m.route)}</td>",
        f'<td class="num">{"?" if m.attempts is None else m.attempts}</td>',
        f'<td><span class="status s-{_e(m.status)}">{_e(m.status)}</span></td>',
        f"<td>{_e(domain)}</td>",
        f"<td>{_when(m.next_attempt, now)}</td>",
        f"<td>{locked}</td>",
    ]
    if not details:
        return "<tr>" + "".join(cells) + "</tr>"
    for value in (m.subject, m.sender, ", ".join(m.to)):
        cells.append(f'<td class="clip" title="{_e(value or "")}">{_e(value or "")}</td>')
    row = "<tr>" + "".join(cells) + "</tr>"
    if m.info:  # the receiving server's words, on a line of their own
        row += f'<tr class="sub"><td></td><td colspan="9" class="info">{_e(m.info)}</td></tr>'
    return row


def _footer(accounts: Sequence[AccountStatus], now: float) -> str:
    hidden = [a.name for a in accounts if not a.details]
    note = (
        "Subjects, addresses and info texts are hidden"
        + (f" for {_e(', '.join(hidden))}" if len(hidden) < len(accounts) else "")
        + " (per account: <code>expose_message_details: true</code>)."
        if hidden
        else "Subjects, addresses and info texts are shown (expose_message_details)."
    )
    return (
        f'<footer><p class="muted">{note} Refreshes every {REFRESH_SECONDS} s; '
        f"updated {_e(_utc(now))}. Times in UTC on hover.</p></footer>"
    )
