"""Test doubles that are real objects, not mocks: a clock that tests move by hand."""

from __future__ import annotations

import threading

from mimecast_exporter.config.model import Thresholds

# 2026-11-24T00:00:00Z: a fixed, realistic "now" for every test.
EPOCH = 1_795_478_400.0


class FakeClock:
    """Wall and monotonic time that only move when told to (or when slept on).

    ``sleep`` advances time instead of waiting, and records what was asked, so a
    test can assert "waited at least the reset time" without waiting at all.
    Shared by the exporter and the simulator in a test, so both see one time.
    """

    def __init__(self, start: float = EPOCH) -> None:
        self._lock = threading.Lock()
        self._offset = 0.0
        self._start = start
        self.sleeps: list[float] = []

    def time(self) -> float:
        with self._lock:
            return self._start + self._offset

    def monotonic(self) -> float:
        with self._lock:
            return 1000.0 + self._offset

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self._offset += max(0.0, seconds)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += seconds

    def step_wall(self, seconds: float) -> None:
        """The wall clock jumps (NTP, a resumed VM); monotonic time does not."""
        with self._lock:
            self._start += seconds


class ReadyStatus:
    """A StatusSource for web server tests: ready, no accounts."""

    thresholds = Thresholds()
    reload_failed_at = None

    def is_ready(self) -> bool:
        return True

    def account_statuses(self) -> list:
        return []


def feed(aggregator, objects) -> int:
    """Count JSON message objects as a poll would: encoded as one page of an
    answer, decoded by the exporter's own decoder. Returns how many were messages."""
    import json

    from mimecast_exporter.mimecast.pages import decode_page

    body = json.dumps({"data": [{"messages": list(objects)}]}).encode()
    messages = decode_page(body, 1, "test", 32 * 1024 * 1024).messages
    aggregator.add(messages)
    return len(messages)
