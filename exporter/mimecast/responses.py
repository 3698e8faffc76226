"""Reading Mimecast's answers: pages of messages, ``fail[]`` errors, tokens.

The envelope must be right (a JSON object whose ``data`` is a list); anything
wrong there is a ``bad_response`` error, because reporting an empty queue on a
garbled answer would hide a backlog. Individual messages are not checked here:
the aggregator copes with whatever fields they carry.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from typing import Any

from exporter.mimecast.errors import PollError

log = logging.getLogger(__name__)

# Mimecast's documented default token lifetime, for a token answer without one.
DEFAULT_TOKEN_LIFETIME = 1800.0


@dataclass(frozen=True)
class Page:
    number: int
    messages: list[Any]
    next_token: str | None
    request_id: str


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
            found.append((None, str(item)[:200], False))
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
    return value[:300] if isinstance(value, str) and value else None


def _decode(body: bytes, request_id: str) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: [[[[...
        raise PollError(
            "bad_response", f"answer is not valid JSON: {exc}", status=200, request_id=request_id
        ) from exc


def parse_page(body: bytes, number: int, request_id: str) -> Page:
    """One page of a 200 answer. A non-empty ``fail[]`` is an error even on 200."""
    payload = _decode(body, request_id)
    if not isinstance(payload, dict):
        raise PollError(
            "bad_response",
            f"answer is a JSON {type(payload).__name__}, not an object",
            status=200,
            request_id=request_id,
        )
    errors = fail_errors(payload)
    if errors:
        code, message, _ = errors[0]
        raise PollError(
            "api_fail",
            f"HTTP 200 with fail[]: {message or code or 'no message'}",
            status=200,
            code=code,
            request_id=request_id,
            retryable=any(retryable for _, _, retryable in errors),
        )
    data = payload.get("data")
    if not isinstance(data, list):
        raise PollError(
            "bad_response", "answer has no 'data' list", status=200, request_id=request_id
        )
    messages: list[Any] = []
    for item in data:
        if not isinstance(item, dict):
            log.debug(
                "skipping a data item that is not an object", extra={"request_id": request_id}
            )
            continue
        batch = item.get("messages")
        if batch is None:
            continue
        if not isinstance(batch, list):
            raise PollError(
                "bad_response",
                "'data[].messages' is not a list",
                status=200,
                request_id=request_id,
            )
        messages.extend(batch)
    return Page(number, messages, _next_token(payload, request_id), request_id)


def _next_token(payload: dict, request_id: str) -> str | None:
    meta = payload.get("meta")
    pagination = meta.get("pagination") if isinstance(meta, dict) else None
    if not isinstance(pagination, dict):
        return None
    token = pagination.get("next")
    if token is None or token == "":
        return None
    if isinstance(token, bool) or not isinstance(token, str | int):
        raise PollError(
            "bad_response",
            f"'meta.pagination.next' is a {type(token).__name__}",
            status=200,
            request_id=request_id,
        )
    return str(token)


def parse_token(body: bytes, request_id: str) -> tuple[str, float]:
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
