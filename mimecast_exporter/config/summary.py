"""The ``--config.check`` summary: :func:`describe`.

Owns rendering a :class:`Config` for humans with every secret shown as
``********``, including secrets pasted into non-secret fields.
"""

from __future__ import annotations

import math

from mimecast_exporter.config.model import (
    SCHEME_LABELS,
    AccountConfig,
    Config,
    OAuth2Credentials,
    PollConfig,
)
from mimecast_exporter.durations import format_duration

_MASK = "********"


def requests_per_hour(poll: PollConfig) -> int:
    """The most find requests one account can make in an hour: every poll of every
    queue spending its whole budget (token requests aside)."""
    return len(poll.queues) * math.ceil(3600.0 / poll.interval) * poll.max_pages


def describe(config: Config) -> str:
    """A human summary of ``config`` in which every secret reads ``********``."""
    poll = config.poll
    lines = [
        "poll:",
        f"  interval: {format_duration(poll.interval)}",
        f"  lookback: {format_duration(poll.lookback)}",
        f"  page_size: {poll.page_size}",
        f"  timeout: {format_duration(poll.timeout)}",
        f"  stale_after: {format_duration(poll.stale_after)}",
        f"  queues: {', '.join(poll.queues)}",
        f"  max_pages: {poll.max_pages}  (request budget of one poll of one queue: at most "
        f"{requests_per_hour(poll):,} find requests an hour per account, retries included)",
        f"  concurrency: {poll.concurrency}",
        f"  max_response_bytes: {poll.max_response_bytes}",
        f"  retry_overdue_after: {format_duration(poll.retry_overdue_after)}",
        "thresholds:  (the status page says mail is stuck past these, as the alerts)",
        f"  queue_backlog_messages: {config.thresholds.queue_backlog_messages}",
        f"  oldest_message_age: {format_duration(config.thresholds.oldest_message_age)}",
        f"  many_attempts: {config.thresholds.many_attempts}",
        "metrics:",
        f"  by_route: {str(config.metrics.by_route).lower()}",
        f"  size_histogram: {str(config.metrics.size_histogram).lower()}",
        f"accounts: {len(config.accounts)}",
    ]
    for account in config.accounts:
        lines += _describe_account(account)
    lines += [f"warning: {warning}" for warning in narrowing_warnings(config)]
    text = "\n".join(lines)  # no trailing newline: callers print() it
    # Belt and braces: a secret could also have been pasted into, say, a
    # search_by value. Longest first, so a secret containing another is
    # masked whole.
    for secret in sorted(set(config.secrets()), key=len, reverse=True):
        text = text.replace(secret, _MASK)
    return text


def narrowing_warnings(config: Config) -> list[str]:
    """One line per account whose search_by or filter_by watches only part of its queue."""
    warnings = []
    for account in config.accounts:
        narrowed = [
            key
            for key, value in (("search_by", account.search_by), ("filter_by", account.filter_by))
            if value
        ]
        if narrowed:
            warnings.append(
                f"account {account.name}: {' and '.join(narrowed)} narrow what is watched; "
                "messages outside them are not counted, and their routes read 0 "
                "however many are stuck"
            )
    return warnings


def _describe_account(account: AccountConfig) -> list[str]:
    creds = account.credentials
    lines = [
        f"  - name: {account.name}",
        f"    base_url: {account.base_url}",
        f"    auth: {SCHEME_LABELS[creds.scheme]}",
    ]
    if isinstance(creds, OAuth2Credentials):
        lines += [f"    client_id: {creds.client_id}", f"    client_secret: {_MASK}"]
    else:
        lines += [f"    app_id: {creds.app_id}"]
        lines += [f"    {key}: {_MASK}" for key in ("app_key", "access_key", "secret_key")]
    lines.append(f"    search_by: {account.search_by if account.search_by else 'none'}")
    filters = ", ".join(str(f) for f in account.filter_by) if account.filter_by else "none"
    lines.append(f"    filter_by: {filters}")
    lines.append(f"    tls_config.ca_file: {account.ca_file or 'system default'}")
    lines.append(f"    top_domains: {account.top_domains or 'off'}")
    details = "shown on the status page" if account.expose_message_details else "hidden"
    lines.append(
        f"    expose_message_details: {str(account.expose_message_details).lower()}"
        f" (subjects and addresses {details})"
    )
    return lines
