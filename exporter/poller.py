"""When to poll, and what one poll of one (account, queue) does.

The first poll runs at start, then every ``poll.interval`` plus a small fixed
offset per account, so that many accounts do not hit Mimecast in the same
second. Polls run on a bounded pool; a poll still running when its next turn
comes is skipped, never run twice. A failed poll publishes nothing: the store
keeps the last complete snapshot, and one account's failure touches no other.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, wait

from exporter.clock import Clock
from exporter.config import AccountConfig, Config
from exporter.mimecast.auth import TokenCache
from exporter.mimecast.client import MimecastClient
from exporter.mimecast.errors import PollError
from exporter.mimecast.ratelimit import RateLimitGate
from exporter.scan import QueueScan, WarnOnce
from exporter.store import SnapshotStore
from exporter.workers import DaemonPool

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (account, queue)


def account_offsets(accounts: Iterable[str], interval: float, rng: random.Random) -> dict:
    """A fixed offset per account within the first tenth of the interval (at most 10 s)."""
    spread = min(interval / 10.0, 10.0)
    return {name: rng.uniform(0.0, spread) for name in accounts}


class Poller:
    def __init__(
        self,
        config: Config,
        store: SnapshotStore,
        clock: Clock,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self._scans: dict[Key, QueueScan] = {}
        for account in config.accounts:
            # Shared by the account's queues: Mimecast counts the quota per
            # account, tokens are per account, and a warning is said once.
            gate, tokens, warnings = RateLimitGate(), TokenCache(), WarnOnce()
            for queue in config.poll.queues:
                client = MimecastClient(
                    account,
                    config.poll,
                    clock=clock,
                    gate=gate,
                    token_cache=tokens,
                    on_response=self._response_hook(account),
                    max_response_bytes=config.poll.max_response_bytes,
                )
                context = {"account": account.name, "queue": queue}
                self._scans[(account.name, queue)] = QueueScan(
                    client, config.poll, warnings, context
                )
        self._pool = DaemonPool(config.poll.concurrency, "poll")
        self._lock = threading.Lock()
        self._running: set[Key] = set()
        self._completed: set[Key] = set()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        rng = rng or random.Random()
        self._offsets = account_offsets(
            (a.name for a in config.accounts), config.poll.interval, rng
        )

    def _response_hook(self, account: AccountConfig) -> Callable[[int, float | None], None]:
        def hook(status: int, remaining: float | None) -> None:
            self.store.record_response(account.name, status, remaining)

        return hook

    # -- one poll ---------------------------------------------------------

    def poll_queue(self, account: str, queue: str) -> bool:
        """Poll one queue; publish the snapshot only if every request of the poll succeeded."""
        scan = self._scans[(account, queue)]
        started = self.clock.monotonic()
        deadline = started + self.config.poll.interval
        context = {"account": account, "queue": queue}
        try:
            snapshot = scan.run(queue, self.clock.time(), deadline)
        except PollError as error:
            duration = self.clock.monotonic() - started
            self.store.record_failure(account, queue, error.reason, duration)
            log.warning(
                f"poll failed: {error.message}",
                extra={**context, **error.log_fields(), "duration_seconds": round(duration, 3)},
            )
            return False
        except Exception as error:  # a bug of ours must not kill the poll thread
            duration = self.clock.monotonic() - started
            self.store.record_failure(account, queue, "bad_response", duration)
            log.error(
                f"poll failed unexpectedly: {type(error).__name__}: {error}",
                extra={**context, "reason": "bad_response"},
                exc_info=True,
            )
            return False
        duration = self.clock.monotonic() - started
        self.store.record_success(account, queue, snapshot, self.clock.time(), duration)
        log.debug(
            "poll finished",
            extra={
                **context,
                "requests": scan.requests,
                "messages": snapshot.messages,
                "scanned": snapshot.scanned,
                "complete": snapshot.complete,
                "duration_seconds": round(duration, 3),
            },
        )
        return True

    # -- running polls ----------------------------------------------------

    def keys(self) -> list[Key]:
        return list(self._scans)

    def submit(self, account: str, queue: str) -> Future | None:
        """Start a poll unless the same one is still running."""
        key = (account, queue)
        with self._lock:
            if key in self._running:
                log.warning(
                    "previous poll still running, skipping this turn",
                    extra={"account": account, "queue": queue},
                )
                return None
            self._running.add(key)
        return self._pool.submit(self._run, key)

    def _run(self, key: Key) -> bool:
        try:
            return self.poll_queue(*key)
        finally:
            with self._lock:
                self._running.discard(key)
                self._completed.add(key)
                first_cycle_done = len(self._completed) == len(self._scans)
            if first_cycle_done:
                self.store.mark_first_cycle_done()

    def run_cycle(self) -> bool:
        """Poll every queue of every account once and wait; True if all succeeded."""
        futures = [f for f in (self.submit(*key) for key in self._scans) if f is not None]
        wait(futures)
        return all(not f.cancelled() and f.result() for f in futures)

    # -- the schedule -----------------------------------------------------

    def due_accounts(self, started: float, now: float, turns: dict[str, int]) -> list[str]:
        """Accounts whose next turn has come at ``now``; advances ``turns`` past now.

        Turn 0 is at start; turn k at start + k*interval + the account's offset.
        Turns missed (a suspended host, a long GC) are skipped, not caught up.
        """
        due = []
        for account, turn in turns.items():
            if self._turn_time(account, started, turn) <= now:
                due.append(account)
                turn += 1
                while self._turn_time(account, started, turn) <= now:
                    turn += 1
                turns[account] = turn
        return due

    def _turn_time(self, account: str, started: float, turn: int) -> float:
        if turn == 0:
            return started
        return started + turn * self.config.poll.interval + self._offsets[account]

    def next_wakeup(self, started: float, turns: dict[str, int]) -> float:
        return min(self._turn_time(a, started, t) for a, t in turns.items())

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        started = self.clock.monotonic()
        turns = {account.name: 0 for account in self.config.accounts}
        while not self._stopping.is_set():
            now = self.clock.monotonic()
            for account in self.due_accounts(started, now, turns):
                for queue in self.config.poll.queues:
                    self.submit(account, queue)
            self._stopping.wait(max(0.0, self.next_wakeup(started, turns) - now))

    def stop(self) -> None:
        """Stop scheduling; polls under way are abandoned, not awaited."""
        self._stopping.set()
        self._pool.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=5)
