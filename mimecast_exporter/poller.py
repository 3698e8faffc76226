"""When to poll, and what one poll of one (account, queue) does.

The first polls run at start (a quarter of a second apart per account, so
that hundreds do not queue at once), then every ``poll.interval`` at a fixed phase
per account: the accounts' phases are spread evenly over the whole interval
(:func:`account_offsets`), so that two hundred accounts make a steady trickle
of requests rather than a burst every interval. Polls run on a bounded pool
(``poll.concurrency``); a poll still running when its next turn
comes is skipped, never run twice. A failed poll publishes nothing: the store
keeps the last complete snapshot, and one account's failure touches no other.

A poll has ``poll.interval`` to finish. Every request within it is bounded,
but a thread can still hang where nothing can interrupt it (a stuck DNS
resolver, a bug): a poll still running past its deadline is counted as failed
(``reason="timeout"``) by the scheduler, so that ``mimecast_up`` never stays 1
while a poll hangs, and its result, should it ever come, is dropped.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, wait

from mimecast_exporter.clock import Clock
from mimecast_exporter.config import AccountConfig, Config
from mimecast_exporter.mimecast.auth import TokenCache
from mimecast_exporter.mimecast.client import MimecastClient
from mimecast_exporter.mimecast.errors import PollError
from mimecast_exporter.mimecast.ratelimit import RateLimitGate
from mimecast_exporter.scan import QueueScan, WarnOnce
from mimecast_exporter.store import Failure, SnapshotStore
from mimecast_exporter.workers import DaemonPool

log = logging.getLogger(__name__)

# How far past its deadline a poll may finish and still count: the last
# request's own timeout ends at the deadline, give or take a little work.
OVERDUE_GRACE_SECONDS = 1.0

Key = tuple[str, str]  # (account, queue)


# The first polls are spread too, a quarter of a second per account (at most
# one interval): two hundred accounts queued at once on poll.concurrency
# workers would wait past their deadlines and count as timeouts.
FIRST_CYCLE_SPREAD = 0.25


def first_turns(accounts: Iterable[str], interval: float) -> dict[str, float]:
    """When (seconds after start) each account is first polled: 0 for one
    account; in the same order as :func:`account_offsets`."""
    names = _by_hash(accounts)
    span = min(interval, len(names) * FIRST_CYCLE_SPREAD)
    return {name: rank * span / len(names) for rank, name in enumerate(names)}


def _by_hash(accounts: Iterable[str]) -> list[str]:
    return sorted(set(accounts), key=lambda n: hashlib.sha256(n.encode()).digest())


def account_offsets(accounts: Iterable[str], interval: float) -> dict[str, float]:
    """Each account's offset from the nominal turn times, spread evenly over one
    interval and centred on them: -interval/2 < offset < interval/2; 0 for one
    account. The order is a stable hash of the names, so an account keeps its
    phase across restarts (and replicas agree on it)."""
    names = _by_hash(accounts)
    middle = (len(names) - 1) / 2
    return {name: (rank - middle) * interval / len(names) for rank, name in enumerate(names)}


class Poller:
    def __init__(self, config: Config, store: SnapshotStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self._scans: dict[Key, QueueScan] = {}
        self.gates: dict[str, RateLimitGate] = {}
        self._tokens: dict[tuple[object, ...], TokenCache] = {}
        self._pool = DaemonPool(config.poll.concurrency, "poll")
        self._lock = threading.Lock()
        self._running: dict[Key, float] = {}  # -> monotonic deadline of the poll under way
        self._overdue: set[Key] = set()  # running past their deadline, already counted failed
        self._completed: set[Key] = set()
        self._stopping = threading.Event()
        self._wake = threading.Event()  # the schedule changed: the loop looks again
        self._thread: threading.Thread | None = None
        self._restart: set[str] = set()  # accounts whose turns start again (changed)
        self._offsets: dict[str, float] = {}
        self._first: dict[str, float] = {}
        self.config = config
        self._build(config)
        # The schedule a reload replaced: (interval, offsets, first turns).
        self._schedule_before = (config.poll.interval, self._offsets, self._first)

    def reconfigure(self, config: Config) -> None:
        """Run ``config`` from now on, in place (SIGHUP).

        One pool, one schedule and one set of running polls stay across
        reloads: ``poll.concurrency`` and the request budget hold, and a poll
        under way is never run beside a poll of the same queue under the new
        configuration. An account whose settings did not change keeps its
        client (its token, connections and rate-limit gate) and its turns:
        no new token, no extra poll. One that changed is polled again at once
        (a rotated credential is used within seconds), its token kept when
        its credentials and host did not change; what its polls under way
        find is dropped.
        """
        with self._lock:
            self._schedule_before = (self.config.poll.interval, self._offsets, self._first)
            self._restart |= self._build(config)
        self._pool.resize(config.poll.concurrency)
        self._wake.set()

    def _build(self, config: Config) -> set[str]:
        """Scans, clients and the schedule for ``config``, the unchanged ones kept;
        returns the accounts built anew (new, or changed)."""
        old_scans = self._scans
        same_poll = self.config.poll == config.poll
        scans: dict[Key, QueueScan] = {}
        built: set[str] = set()
        for account in config.accounts:
            kept = old_scans.get((account.name, config.poll.queues[0]))
            if same_poll and kept is not None and kept.client.account == account:
                for queue in config.poll.queues:  # unchanged: the very same scans
                    scans[(account.name, queue)] = old_scans[(account.name, queue)]
                continue
            built.add(account.name)
            # Shared by the account's queues: Mimecast counts the quota per
            # account (it does not reset on a reload), tokens are per account,
            # and a warning is said once.
            gate = self.gates.get(account.name) or RateLimitGate()
            self.gates[account.name] = gate
            identity = (account.name, account.base_url, account.credentials, account.ca_file)
            tokens = self._tokens.setdefault(identity, TokenCache())
            # One client per account: its connections, token and retry policy.
            client = MimecastClient(
                account,
                config.poll,
                clock=self.clock,
                gate=gate,
                token_cache=tokens,
                on_response=self._response_hook(account),
                max_response_bytes=config.poll.max_response_bytes,
            )
            warnings = WarnOnce()
            for queue in config.poll.queues:
                context = {"account": account.name, "queue": queue}
                scans[(account.name, queue)] = QueueScan(client, config.poll, warnings, context)
        names = {a.name for a in config.accounts}
        self.gates = {name: gate for name, gate in self.gates.items() if name in names}
        self._tokens = {k: v for k, v in self._tokens.items() if k[0] in names}
        self._scans = scans
        self.config = config
        self._offsets = account_offsets(names, config.poll.interval)
        self._first = first_turns(names, config.poll.interval)
        return built

    def _response_hook(self, account: AccountConfig) -> Callable[[str, int, float | None], None]:
        def hook(endpoint: str, status: int, remaining: float | None) -> None:
            self.store.record_response(account.name, endpoint, status, remaining)

        return hook

    # -- one poll ---------------------------------------------------------

    def poll_queue(self, account: str, queue: str) -> bool:
        """Poll one queue; publish the snapshot only if every request of the poll succeeded."""
        scan = self._scans[(account, queue)]
        started = self.clock.monotonic()
        deadline = started + self.config.poll.interval
        with self._lock:
            if (account, queue) in self._running:
                self._running[(account, queue)] = deadline
        context = {"account": account, "queue": queue}
        try:
            snapshot = scan.run(queue, self.clock.time(), deadline)
        except PollError as error:
            duration = self.clock.monotonic() - started
            if self._finish_overdue(account, queue, duration) or self._stopping.is_set():
                return False
            failure = Failure(
                error.reason,
                error.message,
                self.clock.time(),
                error.status,
                error.code,
                error.request_id,
            )
            self.store.record_failure(account, queue, error.reason, duration, failure)
            log.warning(
                f"poll failed: {error.message}",
                extra={**context, **error.log_fields(), "duration_seconds": round(duration, 3)},
            )
            return False
        except Exception as error:  # a bug of ours must not kill the poll thread
            duration = self.clock.monotonic() - started
            if self._finish_overdue(account, queue, duration) or self._stopping.is_set():
                return False
            failure = Failure(
                "bad_response", f"unexpected {type(error).__name__}", self.clock.time()
            )
            self.store.record_failure(account, queue, "bad_response", duration, failure)
            log.error(
                f"poll failed unexpectedly: {type(error).__name__}: {error}",
                extra={**context, "reason": "bad_response"},
                exc_info=True,
            )
            return False
        duration = self.clock.monotonic() - started
        if self._finish_overdue(account, queue, duration):
            return False
        if self._stopping.is_set() or self._scans.get((account, queue)) is not scan:
            # Shutting down, or the account's settings changed by a reload: what
            # a poll of the old settings found (old credentials) is not published.
            return False
        if duration > self.config.poll.interval + OVERDUE_GRACE_SECONDS:
            failure = Failure(
                "timeout", "finished after its deadline (poll.interval)", self.clock.time()
            )
            self.store.record_failure(account, queue, "timeout", duration, failure)
            log.warning(
                "poll failed: finished after its deadline (poll.interval); result dropped",
                extra={**context, "reason": "timeout", "duration_seconds": round(duration, 3)},
            )
            return False
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

    def _finish_overdue(self, account: str, queue: str, duration: float) -> bool:
        """True if this poll was already counted failed for running past its deadline."""
        with self._lock:
            if (account, queue) not in self._overdue:
                return False
            self._overdue.discard((account, queue))
        log.info(
            "poll finished after it was counted as failed (timeout); result dropped",
            extra={"account": account, "queue": queue, "duration_seconds": round(duration, 3)},
        )
        return True

    def check_overdue(self) -> float | None:
        """Count every poll running past its deadline (plus grace) as failed, once.

        Returns the monotonic time of the next deadline to check, if any poll runs.
        """
        now = self.clock.monotonic()
        newly: list[tuple[Key, float]] = []
        next_check: float | None = None
        with self._lock:
            for key, deadline in self._running.items():
                if key in self._overdue:
                    continue
                if now > deadline + OVERDUE_GRACE_SECONDS:
                    self._overdue.add(key)
                    newly.append((key, deadline))
                else:
                    due = deadline + OVERDUE_GRACE_SECONDS
                    next_check = due if next_check is None else min(next_check, due)
        for (account, queue), deadline in newly:
            running_for = now - deadline + self.config.poll.interval
            failure = Failure(
                "timeout", "still running past its deadline (poll.interval)", self.clock.time()
            )
            self.store.record_failure(account, queue, "timeout", running_for, failure)
            log.warning(
                "poll failed: still running past its deadline (poll.interval); counted as "
                "a timeout, its result will be dropped",
                extra={
                    "account": account,
                    "queue": queue,
                    "reason": "timeout",
                    "duration_seconds": round(running_for, 3),
                },
            )
        return next_check

    # -- running polls ----------------------------------------------------

    def keys(self) -> list[Key]:
        return list(self._scans)

    def submit(self, account: str, queue: str) -> Future[bool] | None:
        """Start a poll unless the same one is still running."""
        key = (account, queue)
        with self._lock:
            if key in self._running:
                log.warning(
                    "previous poll still running, skipping this turn",
                    extra={"account": account, "queue": queue},
                )
                return None
            # Until the poll itself starts (a free worker), its deadline is a
            # full interval after it was due.
            self._running[key] = self.clock.monotonic() + self.config.poll.interval
        return self._pool.submit(self._run, key)

    def _run(self, key: Key) -> bool:
        try:
            return self.poll_queue(*key)
        finally:
            with self._lock:
                self._running.pop(key, None)
                self._completed.add(key)
                first_cycle_done = len(self._completed) == len(self._scans)
            if first_cycle_done:
                self.store.mark_first_cycle_done()

    def run_cycle(self) -> bool:
        """Poll every queue of every account once and wait; True if all succeeded."""
        if not self._scans:
            self.store.mark_first_cycle_done()
        futures = [f for f in (self.submit(*key) for key in self._scans) if f is not None]
        wait(futures)
        return all(not f.cancelled() and f.result() for f in futures)

    # -- the schedule -----------------------------------------------------

    def due_accounts(self, started: float, now: float, turns: dict[str, int]) -> list[str]:
        """Accounts whose next turn has come at ``now``; advances ``turns`` past now.

        Turn 0 is at start plus the account's first turn; turn k at start + k*interval + its offset.
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

    def _turn_time(
        self,
        account: str,
        started: float,
        turn: int,
        schedule: tuple[float, dict[str, float], dict[str, float]] | None = None,
    ) -> float:
        """When ``turn`` of ``account`` is due, by ``schedule`` (interval, offsets,
        first turns): the one in force, or one a reload replaced."""
        interval, offsets, first = schedule or (
            self.config.poll.interval,
            self._offsets,
            self._first,
        )
        if turn == 0:
            return started + first[account]
        return float(started + turn * interval + offsets[account])

    def next_wakeup(self, started: float, turns: dict[str, int]) -> float:
        return min(self._turn_time(a, started, t) for a, t in turns.items())

    def start(self) -> None:
        if not self._scans:  # a shard with no account: nothing to wait for (yet)
            self.store.mark_first_cycle_done()
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        started = self.clock.monotonic()
        turns = {account.name: 0 for account in self.config.accounts}
        while not self._stopping.is_set():
            with self._lock:
                if self._restart or set(turns) != {a.name for a in self.config.accounts}:
                    started, turns = self._rescheduled(started, turns)
            now = self.clock.monotonic()
            for account in self.due_accounts(started, now, turns):
                for queue in self.config.poll.queues:
                    self.submit(account, queue)
            wakeup = self.next_wakeup(started, turns) if turns else now + 60.0
            overdue_check = self.check_overdue()
            if overdue_check is not None:
                wakeup = min(wakeup, overdue_check)
            self._wake.wait(max(0.0, wakeup - self.clock.monotonic()))
            self._wake.clear()

    def _rescheduled(self, started: float, turns: dict[str, int]) -> tuple[float, dict[str, int]]:
        """Turns after a reload: an unchanged account keeps its next turn; a new or
        changed one is due at once; a removed one is dropped. Caller holds the lock."""
        now = self.clock.monotonic()
        before = self._schedule_before
        kept = {  # when each unchanged account's next turn was due
            name: self._turn_time(name, started, turn, before)
            for name, turn in turns.items()
            if name in self._offsets and name not in self._restart and name in before[1]
        }
        self._restart.clear()
        # A new start for everyone: turn k of an account is at start + k*interval
        # + its offset; a kept account's k is its first turn not before the old one.
        started = now
        fresh: dict[str, int] = {}
        for account in self.config.accounts:
            name = account.name
            if name not in kept:
                fresh[name] = 0  # due now (its first turn: start + a small spread)
                continue
            turn = 1
            while self._turn_time(name, started, turn) < kept[name]:
                turn += 1
            fresh[name] = turn
        return started, fresh

    def stop(self) -> None:
        """Stop scheduling; polls under way are abandoned, not awaited."""
        self._stopping.set()
        self._wake.set()
        self._pool.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=5)
