"""Mimecast's rate limits: how long to hold off, and the per-account gate.

Mimecast answers every call with ``X-RateLimit-Limit``, ``-Remaining`` and
``-Reset``, where Reset is in *milliseconds* until a request is credited back.
After a 429 the call was not executed and no call may be made before Reset has
passed. ``Retry-After`` is not documented, but honoured when present.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from email.utils import parsedate_to_datetime


def rate_limit_wait(headers: Mapping[str, str], now_epoch: float) -> float | None:
    """Seconds to wait before the next call, from the headers; None if they say nothing."""
    waits: list[float] = []
    reset = headers.get("X-RateLimit-Reset")
    if reset is not None:
        with contextlib.suppress(ValueError):
            waits.append(max(0.0, float(reset)) / 1000.0)
    retry_after = headers.get("Retry-After")
    if retry_after is not None:
        waits.extend(_retry_after_seconds(retry_after, now_epoch))
    return max(waits) if waits else None


def _retry_after_seconds(value: str, now_epoch: float) -> list[float]:
    value = value.strip()
    try:
        return [max(0.0, float(value))]
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return []
    if when.tzinfo is None:
        return []
    return [max(0.0, when.timestamp() - now_epoch)]


class RateLimitGate:
    """The earliest monotonic time at which an account may be called again.

    Shared by the polls of one account's queues: Mimecast counts the quota per
    application (2.0) or per user (1.0), not per queue type.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._not_before = 0.0

    def block_for(self, now_monotonic: float, seconds: float) -> None:
        with self._lock:
            self._not_before = max(self._not_before, now_monotonic + seconds)

    def remaining(self, now_monotonic: float) -> float:
        with self._lock:
            return max(0.0, self._not_before - now_monotonic)
