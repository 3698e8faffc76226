"""Mimecast's rate limits: how long to hold off, and the per-account gate.

Mimecast answers every call with ``X-RateLimit-Limit``, ``-Remaining`` and
``-Reset``, where Reset is in *milliseconds* until a request is credited back.
After a 429 the call was not executed and no call may be made before Reset has
passed. ``Retry-After`` is not documented, but honoured when present.

Every wait is bounded by :data:`MAX_WAIT_SECONDS`: a header that says "wait a
year" (an epoch in milliseconds where a delay was meant, ``inf``, a
``Retry-After`` in 9999) would otherwise lock the account out until a restart.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

from mimecast_exporter.logs import scrub_and_cut

log = logging.getLogger(__name__)

# The longest any rate-limit header can make an account wait. Mimecast's
# windows are a minute to an hour; past that a value is a mistake, not a plan.
MAX_WAIT_SECONDS = 3600.0


def rate_limit_wait(headers: Mapping[str, str], now_epoch: float) -> float | None:
    """Seconds to wait before the next call, from the headers; None if they say nothing."""
    waits: list[tuple[float, str, str]] = []
    reset = headers.get("X-RateLimit-Reset")
    if reset is not None:
        with contextlib.suppress(ValueError):
            waits.append((_at_least_zero(float(reset)) / 1000.0, "X-RateLimit-Reset", reset))
    retry_after = headers.get("Retry-After")
    if retry_after is not None:
        for wait in _retry_after_seconds(retry_after, now_epoch):
            waits.append((wait, "Retry-After", retry_after))
    if not waits:
        return None
    wait, header, value = max(waits)
    if wait > MAX_WAIT_SECONDS:
        log.warning(
            "rate-limit header asks for an absurd wait; waiting at most an hour",
            extra={
                "header": header,
                "value": scrub_and_cut(value, 100),
                "wait_seconds": MAX_WAIT_SECONDS,
            },
        )
        return MAX_WAIT_SECONDS
    return wait


def _at_least_zero(value: float) -> float:
    """NaN counts as no wait; negative as none; infinity stays (and is bounded above)."""
    return value if value > 0 else 0.0


def _retry_after_seconds(value: str, now_epoch: float) -> list[float]:
    value = value.strip()
    try:
        return [_at_least_zero(float(value))]
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        return []
    if when.tzinfo is None:
        return []
    return [_at_least_zero(when.timestamp() - now_epoch)]


class RateLimitGate:
    """The earliest monotonic time at which an account may be called again.

    Shared by the polls of one account's queues: Mimecast counts the quota per
    application (2.0) or per user (1.0), not per queue type.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._not_before = 0.0

    def block_for(self, now_monotonic: float, seconds: float) -> None:
        if not math.isfinite(seconds) or seconds > MAX_WAIT_SECONDS:
            seconds = MAX_WAIT_SECONDS  # never locked out for longer, whoever asks
        with self._lock:
            self._not_before = max(self._not_before, now_monotonic + seconds)

    def remaining(self, now_monotonic: float) -> float:
        with self._lock:
            return max(0.0, self._not_before - now_monotonic)
