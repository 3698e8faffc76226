"""The latest poll results, shared between the poll threads and the scrapes.

Poll threads write finished results here; the collector and the landing page
read a consistent copy. A lock guards only the swap of small immutable
objects, never I/O, so a scrape never waits on a poll.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from mimecast_exporter.mimecast.errors import REASONS
from mimecast_exporter.snapshot import QueueSnapshot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Failure:
    """The latest failed poll of a queue, for the status page: what to quote to
    Mimecast support. ``message`` is already scrubbed of secrets and cut."""

    reason: str
    message: str
    at: float  # Unix seconds
    status: int | None = None  # HTTP status of Mimecast's answer
    code: str | None = None  # Mimecast's error code
    request_id: str | None = None


@dataclass(frozen=True)
class QueueState:
    snapshot: QueueSnapshot | None = None  # the last complete one
    last_success: float | None = None  # epoch seconds a successful poll finished
    # The same moment on the monotonic clock: staleness is measured on it, so
    # that a wall-clock step (NTP, a VM resumed) neither keeps stale data
    # served nor drops fresh data.
    last_success_monotonic: float | None = None
    last_poll_ok: bool | None = None  # None: never polled
    last_error: str | None = None  # reason of the latest poll, if it failed
    last_failure: Failure | None = None  # the latest failure, kept after a success
    last_duration: float | None = None
    errors: Mapping[str, int] = field(
        default_factory=lambda: MappingProxyType(dict.fromkeys(REASONS, 0))
    )

    def fresh_snapshot(self, now_monotonic: float, stale_after: float) -> QueueSnapshot | None:
        """The snapshot, unless its last success is older than ``stale_after`` (monotonic)."""
        if self.snapshot is None or self.last_success_monotonic is None:
            return None
        if now_monotonic - self.last_success_monotonic > stale_after:
            return None
        return self.snapshot


@dataclass(frozen=True)
class ApiStats:
    requests: Mapping[tuple[str, str], int] = field(  # (endpoint, status code) -> answers
        default_factory=lambda: MappingProxyType({})
    )
    rate_limit_remaining: float | None = None


@dataclass(frozen=True)
class StoreView:
    """A consistent copy of everything, for one scrape."""

    queues: Mapping[tuple[str, str], QueueState]
    api: Mapping[str, ApiStats]
    accounts: tuple[str, ...]
    queue_types: tuple[str, ...]
    first_cycle_done: bool

    def account_up(self, account: str) -> bool:
        """True when the latest poll of every queue of the account succeeded."""
        return all(self.queues[(account, q)].last_poll_ok is True for q in self.queue_types)


class SnapshotStore:
    def __init__(
        self,
        accounts: Iterable[str],
        queue_types: Iterable[str],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._monotonic = monotonic  # stamps successes for staleness
        self._lock = threading.Lock()
        self._accounts = tuple(accounts)
        self._queue_types = tuple(queue_types)
        self._queues = {(a, q): QueueState() for a in self._accounts for q in self._queue_types}
        # Replaced, never changed in place: a scrape's copy stays as it was.
        self._api: dict[str, ApiStats] = {a: ApiStats() for a in self._accounts}
        self._first_cycle_done = False

    def record_success(
        self,
        account: str,
        queue: str,
        snapshot: QueueSnapshot,
        finished_at: float,
        duration: float,
    ) -> None:
        stamp = self._monotonic()
        with self._lock:
            if (account, queue) not in self._queues:
                return  # no longer configured: a poll of the previous configuration
            self._queues[(account, queue)] = replace(
                self._queues[(account, queue)],
                snapshot=snapshot,
                last_success=finished_at,
                last_success_monotonic=stamp,
                last_poll_ok=True,
                last_error=None,
                last_duration=duration,
            )

    def record_failure(
        self,
        account: str,
        queue: str,
        reason: str,
        duration: float,
        failure: Failure | None = None,
    ) -> None:
        """A failed poll: count it, keep the last complete snapshot untouched."""
        with self._lock:
            state = self._queues.get((account, queue))
            if state is None:
                return  # no longer configured
            errors = dict(state.errors)
            errors[reason] = errors.get(reason, 0) + 1
            self._queues[(account, queue)] = replace(
                state,
                last_poll_ok=False,
                last_error=reason,
                last_failure=failure or state.last_failure,
                last_duration=duration,
                errors=MappingProxyType(errors),
            )

    def reconfigure(self, accounts: Iterable[str], queue_types: Iterable[str]) -> None:
        """After a configuration reload: keep the state (and so the series) of every
        (account, queue) still configured, start afresh for new ones, forget the rest."""
        with self._lock:
            self._accounts = tuple(accounts)
            self._queue_types = tuple(queue_types)
            self._queues = {
                (a, q): self._queues.get((a, q), QueueState())
                for a in self._accounts
                for q in self._queue_types
            }
            self._api = {a: self._api.get(a, ApiStats()) for a in self._accounts}

    def record_response(
        self, account: str, endpoint: str, status: int, remaining: float | None
    ) -> None:
        with self._lock:
            api = self._api.get(account)
            if api is None:
                return  # no longer configured
            requests = dict(api.requests)
            key = (endpoint, str(status))
            requests[key] = requests.get(key, 0) + 1
            self._api[account] = ApiStats(
                MappingProxyType(requests),
                api.rate_limit_remaining if remaining is None else remaining,
            )

    def mark_first_cycle_done(self) -> None:
        with self._lock:
            self._first_cycle_done = True

    def view(self) -> StoreView:
        with self._lock:
            return StoreView(
                queues=MappingProxyType(dict(self._queues)),
                api=MappingProxyType(dict(self._api)),
                accounts=self._accounts,
                queue_types=self._queue_types,
                first_cycle_done=self._first_cycle_done,
            )
