"""The request budget of one poll: how many find-processing-messages requests it may make.

``poll.max_pages`` sets it. Every request counts, retries and the second try
after a refreshed token included; token requests do not. The budget bounds
what a poll costs in API quota whatever the backlog: running out is not an
error, the poll publishes what it knows exactly (see :mod:`mimecast_exporter.scan`).
"""

from __future__ import annotations


class RequestBudget:
    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a request budget needs at least one request")
        self.limit = limit
        self._used = 0

    @property
    def used(self) -> int:
        return self._used

    @property
    def remaining(self) -> int:
        return self.limit - self._used

    def take(self) -> bool:
        """Spend one request; False (nothing spent) when none is left."""
        if self._used >= self.limit:
            return False
        self._used += 1
        return True
