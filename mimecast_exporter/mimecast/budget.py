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

    def keeping(self, keep: int) -> RequestBudget:
        """This budget, but for a request whose retries must leave ``keep``
        requests to those planned after it. Its first try is never refused:
        the caller planned it."""
        return _Share(self, keep)

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


class _Share(RequestBudget):
    """A view of a budget that stops ``keep`` requests before its end."""

    def __init__(self, whole: RequestBudget, keep: int) -> None:
        self._whole = whole
        self._keep = keep
        self._first = True
        self.limit = whole.limit

    @property
    def used(self) -> int:
        return self._whole.used

    @property
    def remaining(self) -> int:
        return max(0, self._whole.remaining - self._keep)

    def take(self) -> bool:
        first, self._first = self._first, False
        if not first and self.remaining <= 0:
            return False
        return self._whole.take()
