"""Time, injected: the daemon asks a Clock, tests hand it a fake one.

Nothing in the exporter calls ``time.time()``, ``time.monotonic()`` or
``time.sleep()`` directly, so that tests can move time forward instead of
sleeping through poll intervals, retry back-offs and rate-limit resets.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock time, epoch seconds: for timestamps and message ages."""

    def monotonic(self) -> float:
        """Monotonic seconds: for deadlines and waits."""

    def sleep(self, seconds: float) -> None:
        """Wait; returns early (without error) when the process is stopping."""


class SystemClock:
    """The real clock. Sleeps wake up at once when ``stopping`` is set, so that
    SIGTERM does not wait for a retry back-off or a rate-limit reset."""

    def __init__(self, stopping: threading.Event | None = None) -> None:
        self.stopping = stopping or threading.Event()

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.stopping.wait(seconds)
