"""Benchmarks: aggregation speed, memory that does not grow with the queue, scrape cost.

Run with `make bench`. Figures are from one run on a shared machine: compare
the ratios printed, not the absolute numbers.
"""

from __future__ import annotations

import gc
import random
import time
import tracemalloc
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest

from exporter.aggregate import QueueAggregator
from exporter.collector import MimecastCollector
from exporter.store import SnapshotStore

NOW = 1_795_478_400.0
ROUTES = ("inbound", "outbound", "internal", "external")


def pages(total: int, page_size: int = 500, seed: int = 1) -> Iterator[list[dict]]:
    """Synthetic pages, made one at a time as the client would receive them."""
    rng = random.Random(seed)
    for start in range(0, total, page_size):
        yield [
            {
                "id": f"m{i}",
                "routing": rng.choice(ROUTES),
                "size": rng.randint(500, 5_000_000),
                "attempts": rng.randint(1, 30),
                "created": time.strftime(
                    "%Y-%m-%dT%H:%M:%S+0000", time.gmtime(NOW - rng.randint(0, 6 * 86400))
                ),
                "info": "Remote server refused: 421 4.7.0 Try again later",
            }
            for i in range(start, min(total, start + page_size))
        ]


def aggregate(total: int) -> tuple[float, int]:
    """(seconds spent aggregating, peak traced bytes) for a queue of ``total`` messages."""
    gc.collect()
    tracemalloc.start()
    agg = QueueAggregator(NOW)
    spent = 0.0
    for page in pages(total):
        started = time.perf_counter()
        agg.add_json(page)
        spent += time.perf_counter() - started
        del page
    agg.snapshot()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return spent, peak


def scrape_cost(accounts: int, scrapes: int = 200) -> float:
    """Mean seconds for one full text exposition with ``accounts`` busy accounts."""
    store = SnapshotStore([f"a{i}" for i in range(accounts)], ["processing", "bulk_processing"])
    for i in range(accounts):
        for queue in ("processing", "bulk_processing"):
            agg = QueueAggregator(NOW)
            for page in pages(500, seed=i):
                agg.add_json(page)
            store.record_success(f"a{i}", queue, agg.snapshot(), NOW, 1.0)
    registry = CollectorRegistry(auto_describe=True)
    registry.register(MimecastCollector(store, 300.0, lambda: NOW))
    started = time.perf_counter()
    for _ in range(scrapes):
        generate_latest(registry)
    return (time.perf_counter() - started) / scrapes


def main() -> None:
    small, large = 10_000, 100_000
    small_time, small_peak = aggregate(small)
    large_time, large_peak = aggregate(large)
    print(
        f"aggregation, {small:>7} messages: {small / small_time:>10,.0f} msg/s, "
        f"peak {small_peak / 1024:,.0f} KiB"
    )
    print(
        f"aggregation, {large:>7} messages: {large / large_time:>10,.0f} msg/s, "
        f"peak {large_peak / 1024:,.0f} KiB"
    )
    print(
        f"  memory ratio {large}/{small} messages: {large_peak / small_peak:.2f} "
        "(about 1: memory is per page, not per queue)"
    )
    print(f"  time ratio   {large}/{small} messages: {large_time / small_time:.2f} (linear: ~10)")
    one, fifty = scrape_cost(1), scrape_cost(50)
    print(f"scrape,  1 account:  {one * 1000:.2f} ms")
    print(f"scrape, 50 accounts: {fifty * 1000:.2f} ms (ratio {fifty / one:.1f})")


if __name__ == "__main__":
    main()
