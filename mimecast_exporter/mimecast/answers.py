"""What an HTTP answer from Mimecast means: the status, its error body, its headers.

A 200 passes; anything else becomes a :class:`PollError` whose reason is the
metric label and whose message says what to do (for example that a 403 is a
missing permission, or that a 401 came with a server clock far from ours).
"""

from __future__ import annotations

import email.utils
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from mimecast_exporter.mimecast.errors import PollError
from mimecast_exporter.mimecast.ratelimit import rate_limit_wait
from mimecast_exporter.mimecast.responses import fail_errors, upstream_text

# A 401/403 whose Date header is further than this from our clock says so:
# API 1.0 signs the request time, and Mimecast refuses one too far off.
CLOCK_SKEW_HINT_SECONDS = 300.0
# The largest error body whose fail[] or OAuth error is read (see first_error).
MAX_ERROR_BODY = 64 * 1024


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]  # looked up case-insensitively
    body: bytes | bytearray
    request_id: str


def raise_for_status(answer: Answer, now: float, *, token_request: bool = False) -> None:
    """Nothing for a 200; otherwise the PollError that says what the status means."""
    status = answer.status
    if status == 200:
        return
    code, message, _ = first_error(answer)
    what = "token request" if token_request else "request"
    detail = f": {message}" if message else ""

    def error(reason: str, message: str, **extra: Any) -> PollError:
        return PollError(
            reason, message, status=status, code=code, request_id=answer.request_id, **extra
        )

    if status == 429:
        raise error(
            "rate_limited",
            f"{what} rate limited (429){detail}",
            retryable=True,
            retry_after=rate_limit_wait(answer.headers, now),
        )
    if status >= 500:
        raise error("http_5xx", f"{what} got HTTP {status}{detail}", retryable=True)
    if status == 408:
        raise error("timeout", f"{what} got HTTP 408{detail}", retryable=True)
    if status == 418 or code == "err_xdk_binding_expired":
        raise error(
            "binding_expired",
            f"{what} refused: the API 1.0 access key binding has expired (418); "
            "create a new access key and secret key in the Mimecast console" + detail,
        )
    if status in (401, 403) or (token_request and status == 400):
        hint = (
            "the API user lacks the 'Monitoring | Processing | Read' permission"
            if status == 403
            else "credentials were refused"
        )
        skew = clock_skew_hint(answer.headers, now)
        raise error("auth", f"{what} got HTTP {status}: {hint}{detail}{skew}")
    if 400 <= status < 500:
        raise error("http_4xx", f"{what} got HTTP {status}{detail}")
    # A redirect or another surprise: Mimecast answers 200 or an error.
    raise error("bad_response", f"{what} got unexpected HTTP {status}{detail}")


def first_error(answer: Answer) -> tuple[str | None, str | None, bool]:
    """(code, message, retryable) of the first error an answer's body names, if any.

    Error bodies are a few hundred bytes; one larger than MAX_ERROR_BODY is not
    parsed (a huge body of tiny objects costs many times its size in memory),
    and one nested too deeply to parse says nothing rather than failing.
    """
    if len(answer.body) > MAX_ERROR_BODY:
        return None, None, False
    try:
        payload = json.loads(answer.body)
    except (ValueError, RecursionError):  # RecursionError: [[[[... from a broken proxy
        return None, None, False
    errors = fail_errors(payload)
    if errors:
        return errors[0]
    if isinstance(payload, dict) and isinstance(payload.get("error"), str):
        # OAuth-style error body from the token endpoint.
        description = payload.get("error_description")
        return (
            upstream_text(payload["error"]),
            upstream_text(description) if isinstance(description, str) else None,
            False,
        )
    return None, None, False


def first_code(answer: Answer) -> str | None:
    return first_error(answer)[0]


def clock_skew_hint(headers: Any, now: float) -> str:
    """'; server clock differs from ours by +N s; check NTP' when the answer's Date
    header is more than CLOCK_SKEW_HINT_SECONDS away from ``now``, else ''."""
    value = headers.get("Date")
    if not value:
        return ""
    try:
        server_time = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return ""
    if server_time.tzinfo is None:
        server_time = server_time.replace(tzinfo=UTC)
    skew = server_time.timestamp() - now
    if abs(skew) <= CLOCK_SKEW_HINT_SECONDS:
        return ""
    return f"; server clock differs from ours by {skew:+.0f} s; check NTP"


def header_number(headers: Any, name: str) -> float | None:
    """A numeric header's value; None when absent, not a number, NaN or infinite."""
    try:
        value = float(headers.get(name, ""))
    except ValueError:
        return None
    return value if math.isfinite(value) else None
