"""The shapes of the simulator's answers: Mimecast's envelope, its errors, OAuth errors.

A :class:`Response` is built while the simulator's lock is held and written to
the socket after it is released, so slow clients never block the model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

JSON_TYPE = "application/json"


@dataclass
class Response:
    """An answer to send; ``reset`` means: close the connection without answering."""

    status: int
    body: bytes = b""
    content_type: str = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)
    reset: bool = False


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Response(status, body, JSON_TYPE, dict(headers or {}))


def fail_item(code: str, message: str, retryable: bool = False) -> dict[str, Any]:
    """One ``fail[]`` entry in API 1.0 form: the error sits in ``errors[]``."""
    return {"errors": [{"code": code, "message": message, "retryable": retryable}]}


def mimecast_error(
    status: int, code: str, message: str, *, retryable: bool = False, flat: bool = False
) -> Response:
    """A Mimecast-shaped error: empty ``data``, one ``fail[]`` item.

    ``flat`` puts ``code``/``message`` directly on the fail item, a form API 2.0
    answers are known to use, instead of inside ``errors[]``.
    """
    item = (
        {"code": code, "message": message, "retryable": retryable}
        if flat
        else fail_item(code, message, retryable)
    )
    return json_response(status, {"meta": {"status": status}, "data": [], "fail": [item]})


def oauth_error(status: int, error: str, description: str) -> Response:
    """An RFC 6749 style error from the token endpoint."""
    return json_response(status, {"error": error, "error_description": description})
