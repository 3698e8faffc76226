"""Reading Mimecast's small answers: ``fail[]`` errors and OAuth tokens.

Pages of messages are decoded by :mod:`mimecast_exporter.mimecast.pages`.
"""

from __future__ import annotations

import json
import logging
import math
import re
from typing import Any

from mimecast_exporter.logs import scrub_and_cut
from mimecast_exporter.mimecast.errors import PollError

# Upstream text (fail[] messages, OAuth errors) is cut to this in every error
# message, log line and page, after secrets are masked.
MAX_UPSTREAM_TEXT = 300

log = logging.getLogger(__name__)

# A bearer token goes into an HTTP header: visible ASCII only (RFC 6750 is
# stricter; Mimecast's tokens are within it). A line break in one would split
# the header, and http.client's complaint about it quotes the token.
_TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")
MAX_BEARER_TOKEN_LENGTH = 8192
MAX_TOKEN_ANSWER_BYTES = 64 * 1024
# Mimecast's documented default token lifetime, for a token answer without one.
DEFAULT_TOKEN_LIFETIME = 1800.0


def fail_errors(payload: Any) -> list[tuple[str | None, str | None, bool]]:
    """(code, message, retryable) of every error in ``fail[]``.

    API 1.0 nests them: ``fail: [{errors: [{code, message, retryable}]}]``;
    API 2.0 may put ``code``/``message`` on the fail item itself.
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("fail"), list):
        return []
    found: list[tuple[str | None, str | None, bool]] = []
    for item in payload["fail"]:
        if not isinstance(item, dict):
            found.append((None, upstream_text(str(item)), False))
            continue
        nested = item.get("errors")
        errors = nested if isinstance(nested, list) and nested else [item]
        for error in errors:
            if isinstance(error, dict):
                found.append(
                    (
                        _text(error.get("code")),
                        _text(error.get("message")),
                        error.get("retryable") is True,
                    )
                )
    return found


def _text(value: Any) -> str | None:
    return upstream_text(value) if isinstance(value, str) and value else None


def upstream_text(text: str) -> str:
    """Text from Mimecast, fit for a log line: secrets masked, then cut."""
    return scrub_and_cut(text, MAX_UPSTREAM_TEXT)


def _decode(body: bytes | bytearray, request_id: str) -> Any:
    if len(body) > MAX_TOKEN_ANSWER_BYTES:
        # A token answer is ~1 KiB; a large one of tiny objects would cost many
        # times its size once parsed.
        raise PollError(
            "bad_response",
            f"token answer of {len(body)} bytes; a token answer is at most "
            f"{MAX_TOKEN_ANSWER_BYTES} bytes",
            status=200,
            request_id=request_id,
        )
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: [[[[...
        raise PollError(
            "bad_response", f"answer is not valid JSON: {exc}", status=200, request_id=request_id
        ) from exc


def parse_token(body: bytes | bytearray, request_id: str) -> tuple[str, float]:
    """(access_token, expires_in seconds) from the OAuth token endpoint."""
    payload = _decode(body, request_id)
    token = payload.get("access_token") if isinstance(payload, dict) else None
    if not isinstance(token, str) or not token:
        raise PollError(
            "bad_response",
            "token answer has no access_token",
            status=200,
            request_id=request_id,
        )
    if len(token) > MAX_BEARER_TOKEN_LENGTH or not _TOKEN_CHARS.fullmatch(token):
        # Never quoted: even a malformed token may be a working credential.
        raise PollError(
            "bad_response",
            f"token answer's access_token ({len(token)} characters) is not a usable bearer "
            f"token: only visible ASCII, at most {MAX_BEARER_TOKEN_LENGTH} characters",
            status=200,
            request_id=request_id,
        )
    expires_in = payload.get("expires_in")
    if isinstance(expires_in, str | int) and not isinstance(expires_in, bool):
        try:
            expires_in = float(expires_in)
        except (ValueError, OverflowError):  # not a number; an integer too large for a float
            expires_in = None
    # NaN or infinity would keep the token cached forever.
    if not isinstance(expires_in, float) or not math.isfinite(expires_in) or expires_in <= 0:
        log.debug("token answer without a usable expires_in; assuming 1800 s")
        expires_in = DEFAULT_TOKEN_LIFETIME
    return token, float(expires_in)
