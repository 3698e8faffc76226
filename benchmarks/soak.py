"""Soak: thousands of polls against a simulator injecting random faults, in accelerated time.

    python benchmarks/soak.py --polls 5000 [--seed 1]

The real Poller, SnapshotStore and MimecastCollector poll two accounts (API 2.0
and API 1.0, both queues) on the embedded simulator over loopback. Time is a
fake clock shared by the exporter and the simulator: every cycle moves it one
poll interval, and back-offs and rate-limit waits advance it instead of
sleeping, so thousands of polls take seconds. Before each cycle a seeded random
choice of faults is injected (5xx, 429 storms, fail[], broken bodies, connection
resets, pagination loops, expired tokens, a token endpoint down, ...); after it
the collector is scraped.

Threads, open file descriptors (/proc/self/fd) and resident memory
(/proc/self/status VmRSS) are sampled after a warm-up, in the middle and at the
end, each time after one healthy cycle (so that every session holds its one
keep-alive connection). The last line is the verdict: "verdict: flat" (exit 0)
when threads are unchanged, file descriptors grew by at most 5 and RSS by at
most 20 MB since the warm-up sample; otherwise "verdict: growing" (exit 1).
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from mimecast_exporter.collector import MimecastCollector
from mimecast_exporter.config import (
    Config,
    PollConfig,
)
from mimecast_exporter.demo import demo_config
from mimecast_exporter.poller import Poller
from mimecast_exporter.simulator.faults import TOKEN_PATH, Fault
from mimecast_exporter.simulator.server import DEFAULT_HMAC_TENANT, SimulatorServer
from mimecast_exporter.store import SnapshotStore

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.fakes import FakeClock  # the clock the test suite shares too

INTERVAL = 60.0
MAX_THREAD_GROWTH = 0
MAX_FD_GROWTH = 5
MAX_RSS_GROWTH_MB = 20.0
FAULT_RATE = 0.5  # share of cycles with a fault injected


@dataclass(frozen=True)
class Sample:
    label: str
    polls: int
    threads: int
    fds: int
    rss_mb: float


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS in /proc/self/status")


class _CountingHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.warnings = self.errors = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR:
            self.errors += 1
        else:
            self.warnings += 1


# --- faults --------------------------------------------------------------------------------

Injector = Callable[[SimulatorServer, random.Random], None]


def _add(**kw) -> Injector:
    return lambda sim, rng: sim.faults.add(Fault(**kw))


def _times(rng: random.Random) -> int | None:
    return rng.choice([1, 2, 3, None])


def _status(sim: SimulatorServer, rng: random.Random) -> None:
    sim.faults.add(Fault(kind="status", status=rng.choice([500, 502, 503, 504]), times=_times(rng)))


def _client_error(sim: SimulatorServer, rng: random.Random) -> None:
    sim.faults.add(Fault(kind="status", status=rng.choice([400, 403, 404, 409]), times=None))


def _storm(sim: SimulatorServer, rng: random.Random) -> None:
    reset = str(rng.choice([500, 2500, 20000, 90000]))
    headers = {"X-RateLimit-Reset": reset}
    sim.faults.add(Fault(kind="status", status=429, headers=headers, times=_times(rng)))


def _fail_array(sim: SimulatorServer, rng: random.Random) -> None:
    retryable = rng.random() < 0.5
    sim.faults.add(Fault(kind="fail_array", retryable=retryable, times=_times(rng)))


def _page_n(sim: SimulatorServer, rng: random.Random) -> None:
    sim.faults.add(Fault(kind="status", status=500, page=2, times=None))


def _expire_tokens(sim: SimulatorServer, rng: random.Random) -> None:
    sim.expire_tokens()


def _token_endpoint_down(sim: SimulatorServer, rng: random.Random) -> None:
    sim.expire_tokens()
    kind = rng.choice(["status", "reset"])
    sim.faults.add(Fault(kind=kind, status=503, path=TOKEN_PATH, times=_times(rng)))


def _binding_expired(sim: SimulatorServer, rng: random.Random) -> None:
    hmac_tenant(sim).binding_expired = True


FAULTS: dict[str, Injector] = {
    "5xx": _status,
    "4xx": _client_error,
    "429": _storm,
    "fail_array": _fail_array,
    "malformed_json": _add(kind="malformed_json", times=None),
    "non_json": _add(kind="non_json", times=None),
    "reset": lambda sim, rng: sim.faults.add(Fault(kind="reset", times=_times(rng))),
    "repeat_token": _add(kind="repeat_token", times=None),
    "page_n": _page_n,
    "token_expired": _expire_tokens,
    "token_endpoint_down": _token_endpoint_down,
    "binding_expired": _binding_expired,
}


def hmac_tenant(sim: SimulatorServer):
    return next(t for t in sim.tenants if t.name == DEFAULT_HMAC_TENANT)


def heal(sim: SimulatorServer) -> None:
    sim.faults.clear()
    hmac_tenant(sim).binding_expired = False
    with sim.api.lock:  # the simulator records every request; keep it from growing
        sim.api.requests.clear()


# --- the run -------------------------------------------------------------------------------


def settled_threads(baseline: int | None) -> int:
    """The thread count once simulator handler threads of closed connections have ended."""
    deadline = time.monotonic() + 2.0
    count = threading.active_count()
    while time.monotonic() < deadline and (baseline is None or count > baseline):
        time.sleep(0.02)
        previous, count = count, threading.active_count()
        if baseline is None and count == previous:
            break
    return count


def soak(polls: int, seed: int, out=sys.stdout) -> bool:
    rng = random.Random(seed)
    # Failed polls are expected here: count log lines instead of printing them.
    # An error-level line from the poller means a bug ("poll failed unexpectedly").
    counter = _CountingHandler()
    exporter_log = logging.getLogger("mimecast_exporter")
    exporter_log.addHandler(counter)
    exporter_log.propagate = False
    clock = FakeClock()
    sim = SimulatorServer(scenario="steady", speed=10.0, clock=clock.time, seed=seed)
    sim.start()
    config = Config(
        PollConfig(interval=INTERVAL, timeout=5.0, page_size=50, stale_after=300.0),
        demo_config(sim).accounts,  # the simulator's two built-in tenants
    )
    store = SnapshotStore([a.name for a in config.accounts], config.poll.queues, clock.monotonic)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        MimecastCollector(store, config.poll.stale_after, clock.time, clock.monotonic)
    )
    poller = Poller(config, store, clock)
    keys = poller.keys()
    per_cycle = len(keys)
    cycles = max(3, -(-polls // per_cycle))
    warmup_end, middle = max(1, cycles // 10), cycles // 2
    samples: list[Sample] = []
    injected: Counter[str] = Counter()
    done = failed = scrapes = 0
    started = time.monotonic()

    def take(label: str) -> None:
        heal(sim)
        # One healthy cycle, one poll at a time as in the run: each account's
        # connection pool then holds exactly one connection. Polls at once (as
        # run_cycle makes them) open a second one, or not, depending on how
        # they happen to overlap: not a leak, but samples that do not compare.
        for key in keys:
            future = poller.submit(*key)
            assert future is not None, f"{key}: a poll still running at a sample"
            future.result(timeout=60)
        clock.advance(INTERVAL)
        gc.collect()
        baseline = samples[0].threads if samples else None
        samples.append(Sample(label, done, settled_threads(baseline), open_fds(), rss_mb()))

    print(
        f"soak: {cycles * per_cycle} polls ({cycles} cycles x {per_cycle} queues), seed {seed},"
        f" {FAULT_RATE:.0%} of cycles with a fault, accelerated time",
        file=out,
    )
    try:
        for cycle in range(1, cycles + 1):
            if rng.random() < FAULT_RATE:
                name = rng.choice(sorted(FAULTS))
                FAULTS[name](sim, rng)
                injected[name] += 1
            # One poll at a time (on the poller's own workers): with a shared fake
            # clock, one poll's back-off would otherwise jump time under another's
            # request and fake a timeout.
            for key in keys:
                future = poller.submit(*key)
                if future is not None:
                    done += 1
                    failed += not future.result(timeout=60)
            generate_latest(registry)
            scrapes += 1
            heal(sim)
            clock.advance(INTERVAL)
            if cycle == warmup_end:
                take("warm-up")
            elif cycle == middle:
                take("middle")
        take("end")
    finally:
        poller.stop()
        sim.stop()
        exporter_log.removeHandler(counter)
        exporter_log.propagate = True
    elapsed = time.monotonic() - started

    print(f"{'sample':<8} {'polls':>6} {'threads':>8} {'fds':>5} {'rss_mb':>8}", file=out)
    for s in samples:
        print(f"{s.label:<8} {s.polls:>6} {s.threads:>8} {s.fds:>5} {s.rss_mb:>8.1f}", file=out)
    errors: Counter[str] = Counter()
    for state in store.view().queues.values():
        errors.update({reason: n for reason, n in state.errors.items() if n})
    print(f"polls: {done} ({failed} failed), scrapes: {scrapes}, {elapsed:.1f} s", file=out)
    print(
        f"log lines: {counter.warnings} warnings, {counter.errors} errors (unexpected failures)",
        file=out,
    )
    print("faults injected: " + " ".join(f"{k}={v}" for k, v in sorted(injected.items())), file=out)
    print("errors by reason: " + " ".join(f"{k}={v}" for k, v in sorted(errors.items())), file=out)

    first, last = samples[0], samples[-1]
    growth = {
        "threads": (last.threads - first.threads, MAX_THREAD_GROWTH),
        "fds": (last.fds - first.fds, MAX_FD_GROWTH),
        "rss_mb": (last.rss_mb - first.rss_mb, MAX_RSS_GROWTH_MB),
    }
    over = [f"{k} {v:+.1f} (limit +{limit})" for k, (v, limit) in growth.items() if v > limit]
    if last.threads < first.threads:  # fewer is no leak, but not "equal" either
        over.append(f"threads {first.threads} -> {last.threads}")
    flat = not over
    shown = ", ".join(f"{k} {v:+.1f}" for k, (v, _) in growth.items())
    print(f"growth since warm-up: {shown}", file=out)
    print("verdict: flat" if flat else f"verdict: growing ({'; '.join(over)})", file=out)
    return flat


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--polls", type=int, default=3000, help="polls to run (default 3000)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the fault choice")
    args = parser.parse_args(argv)
    if args.polls < 1:
        parser.error("--polls must be at least 1")
    return 0 if soak(args.polls, args.seed) else 1


if __name__ == "__main__":
    sys.exit(main())
