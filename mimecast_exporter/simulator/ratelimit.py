"""Fixed-window request quotas and the ``X-RateLimit-*`` headers every answer carries.

Mimecast counts per user (API 1.0) or per API function per application (2.0);
the simulator keys a window by (credential, path), which covers both readings.
``X-RateLimit-Reset`` is in milliseconds, as the reference notes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mimecast_exporter.simulator.clock import Clock


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_ms: int

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_ms),
        }


class RateLimiter:
    """``quota`` requests per ``window`` seconds per key; a window opens on its first request."""

    def __init__(self, clock: Clock, quota: int, window: float) -> None:
        if quota < 1 or window <= 0:
            raise ValueError("rate limit quota and window must be positive")
        self.clock = clock
        self.quota = int(quota)
        self.window = float(window)
        self._windows: dict[object, tuple[float, int]] = {}  # key -> (start, used)

    def hit(self, key: object) -> Decision:
        """Count one request for ``key`` unless the quota is spent (refused calls don't count)."""
        now = self.clock()
        start, used = self._windows.get(key, (now, 0))
        if now >= start + self.window:
            start, used = now, 0
        allowed = used < self.quota
        if allowed:
            used += 1
        self._windows[key] = (start, used)
        reset_ms = max(0, math.ceil((start + self.window - now) * 1000))
        return Decision(allowed, self.quota, self.quota - used, reset_ms)
