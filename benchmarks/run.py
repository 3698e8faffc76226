"""Benchmarks: what one poll costs as the backlog grows, written to BENCHMARKS.md.

    python benchmarks/run.py [--sizes 0,1000,10000,100000,1000000] [--out BENCHMARKS.md]

For each backlog size, the simulator runs as a separate process (scenario
``backlog``, pages of up to 500), so that what is measured is the exporter's
own work. A fresh child process per size then measures:

- **requests per poll** and **poll wall time** at the default settings
  (``page_size`` 100, ``max_pages`` 15): a large queue is counted, not read;
- **poll CPU / json.loads CPU**: a full scan in pages of 500 (budget large
  enough to read everything), the poll's CPU time over the CPU time
  ``json.loads`` takes to decode the same answers (fetched again, only the
  decoding timed). Scans measured are not the first (a running exporter polls
  the same queue again and again), and start-up objects are frozen for the
  garbage collector, as the exporter freezes them. Small backlogs are
  measured over several rounds of (scan, json.loads) in turns, 100,000
  messages' worth (at most 50): one poll of 1,000 messages takes a few
  milliseconds, as noisy as a timer tick;
- **peak RSS minus idle** during that full scan (VmHWM after resetting it);
- **scrape p50 / p99**: rendering /metrics from the snapshot of the full scan,
  and its ratio to rendering an empty queue's, timed in turns in the same process.

Then the cost of one answer at ``max_response_bytes`` (32 MiB): one of empty
objects (refused) and one of small messages (decoded), peak RSS over its size.

Last, the scrape with many tenants: /metrics as served (prometheus_client's
encoder over the Mimecast and process collectors) with 1 and with 200
accounts of two queues each, a quarter of the queues polled anew between
scrapes (a 15 s scrape of 60 s polls).

Figures come from one run on a shared machine: compare the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIZES = (0, 1_000, 10_000, 100_000, 1_000_000)
FULL_SCAN_PAGE = 500
# The CPU ratio is measured over ROUND_MESSAGES messages' worth of rounds (at
# most ROUNDS_MAX): see _rounds.
ROUND_MESSAGES = 100_000
ROUNDS_MAX = 50
ANSWER_CAP = 32 * 1024 * 1024


# --- the child: one backlog size, measured in a fresh process ----------------------


def _status(field: str) -> int:
    """A /proc/self/status figure in bytes (VmRSS, VmHWM)."""
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M).group(1)) * 1024


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def _poller(url: str, **poll):

    from mimecast_exporter.clock import SystemClock
    from mimecast_exporter.config import (
        AccountConfig,
        Config,
        OAuth2Credentials,
        PollConfig,
        Secret,
    )
    from mimecast_exporter.poller import Poller
    from mimecast_exporter.simulator.tenants import DEFAULT_OAUTH2
    from mimecast_exporter.store import SnapshotStore

    creds = OAuth2Credentials(DEFAULT_OAUTH2["client_id"], Secret(DEFAULT_OAUTH2["client_secret"]))
    config = Config(
        PollConfig(
            queues=("processing",), interval=600.0, timeout=120.0, stale_after=600.0, **poll
        ),
        (AccountConfig("sim-oauth2", url, creds),),
    )
    store = SnapshotStore(["sim-oauth2"], ["processing"])
    return Poller(config, store, SystemClock()), store, config


def _poll(url: str, *, warm: bool = True, **poll) -> tuple[float, float, int, object]:
    """(wall s, cpu s, find requests, (store, config)) of one poll of the processing queue.

    ``warm``: a token and a connection first, as a running exporter has them.
    """
    from mimecast_exporter.mimecast.budget import RequestBudget
    from mimecast_exporter.mimecast.client import Query

    poller, store, config = _poller(url, **poll)
    scan = poller._scans[("sim-oauth2", "processing")]
    if warm:
        start, end = scan.client.window()
        scan.client.find(
            Query("processing", start, end, 1),
            budget=RequestBudget(1),
            deadline=time.monotonic() + 60,
            number=1,
        )
    wall, cpu = time.perf_counter(), time.process_time()
    ok = poller.poll_queue("sim-oauth2", "processing")
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if not ok:
        raise SystemExit(f"poll failed against {url}")
    poller.stop()
    return wall, cpu, scan.requests, (store, config)


def _json_loads_cpu(url: str) -> float:
    """CPU seconds json.loads takes for the answers of a full scan (pages of 500)."""
    from mimecast_exporter.mimecast.client import Query

    poller, _, config = _poller(url, page_size=FULL_SCAN_PAGE, max_pages=10**6)
    client = poller._scans[("sim-oauth2", "processing")].client
    account = config.accounts[0]
    start, end = client.window()
    token, spent = None, 0.0
    while True:
        query = Query("processing", start, end, FULL_SCAN_PAGE, token)
        # The same request as the poll's, its answer read raw.
        bearer = client._bearer_token(account.credentials, time.monotonic() + 60)
        answer = client.transport.post(
            account.base_url + "/api/gateway/find-processing-messages",
            json.dumps(client._request_body(query)).encode(),
            {"Authorization": f"Bearer {bearer}", "Content-Type": "application/json"},
            120.0,
            client.max_response_bytes,
        )
        raw = answer.body
        started = time.process_time()
        page = json.loads(raw)
        spent += time.process_time() - started
        token = page["meta"]["pagination"].get("next")
        if not token or not page["data"][0]["messages"]:
            return spent


def _metrics_page(store):
    """/metrics as the exporter serves it from ``store``: one registry, the
    Mimecast collector and the process, platform and GC collectors."""
    from prometheus_client import (
        CollectorRegistry,
        GCCollector,
        PlatformCollector,
        ProcessCollector,
    )

    from mimecast_exporter.collector import MimecastCollector

    registry = CollectorRegistry(auto_describe=True)
    registry.register(MimecastCollector(store, 10**10, time.time))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def _timed_turns(renders, count: int, before=None) -> list[list[float]]:
    """Sorted times of each render, taken in turns (a paired comparison, not runs
    on a machine whose speed drifts); ``before(i)`` runs untimed before render i."""
    times: list[list[float]] = [[] for _ in renders]
    warm = min(50, max(count // 5, 1))
    for turn in range(warm + count):  # the first ones warm up
        for i, (render, sink) in enumerate(zip(renders, times, strict=True)):
            if before is not None:
                before(i)
            started = time.perf_counter()
            render()
            if turn >= warm:
                sink.append(time.perf_counter() - started)
    return [sorted(t) for t in times]


def _scrape_times(store, config, count: int = 400) -> tuple[list[float], list[float]]:
    """Render times of /metrics from ``store`` and from an empty queue's snapshot."""
    from prometheus_client import generate_latest

    from mimecast_exporter.aggregate import QueueAggregator
    from mimecast_exporter.store import SnapshotStore

    empty = SnapshotStore(["sim-oauth2"], ["processing"])
    empty.record_success("sim-oauth2", "processing", QueueAggregator(time.time()).snapshot(), 0, 0)
    pages = [_metrics_page(source) for source in (store, empty)]
    full, nothing = _timed_turns([lambda p=page: generate_latest(p) for page in pages], count)
    return full, nothing


TENANTS = 200


def tenants_child() -> dict:
    """Scrape cost with 1 and with TENANTS accounts (see the module docstring)."""
    import gc
    import random

    from prometheus_client import generate_latest

    from mimecast_exporter.aggregate import QueueAggregator
    from mimecast_exporter.collector import MimecastCollector
    from mimecast_exporter.mimecast.pages import decode_page
    from mimecast_exporter.store import SnapshotStore

    now = time.time()
    infos = ["Queued for Processing", "451 4.7.1 Greylisted", "550 5.1.1 User unknown", ""]

    def snapshot():
        agg = QueueAggregator(now)
        messages = [
            {
                "routing": ("inbound", "outbound", "internal", "external")[i % 4],
                "size": 1000 + i,
                "attempts": i % 7,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(now - 60 * i)),
                "info": infos[i % 4],
                "nextAttempt": None,
                "lockedUntil": None,
            }
            for i in range(40)
        ]
        body = json.dumps({"data": [{"messages": messages}]}).encode()
        agg.add(decode_page(body, 1, "bench", ANSWER_CAP).messages)
        return agg.snapshot()

    queues = ("processing", "bulk_processing")
    stores = {}
    for count in (1, TENANTS):
        accounts = [f"tenant-{i:03d}" for i in range(count)]
        store = SnapshotStore(accounts, queues)
        for account in accounts:
            store.record_response(account, "find-processing-messages", 200, 900.0)
            for queue in queues:
                store.record_success(account, queue, snapshot(), now, 0.2)
        stores[count] = store
    rng = random.Random(1)
    fresh = snapshot()

    def churn(i: int) -> None:
        # A quarter of the queues were polled since the last scrape: new snapshots.
        store = stores[(1, TENANTS)[i]]
        for account in store.view().accounts:
            for queue in queues:
                if rng.random() < 0.25:
                    store.record_success(account, queue, fresh, now, 0.2)

    pages = [_metrics_page(stores[1]), _metrics_page(stores[TENANTS])]
    gc.collect()
    gc.freeze()  # as the exporter does once started (cli._freeze_start_up_objects)
    renders = [lambda: generate_latest(pages[0]), lambda: generate_latest(pages[1])]
    one, many = _timed_turns(renders, 60, before=churn)
    samples = sum(
        len(family.samples) for family in MimecastCollector(stores[1], 10**10, time.time).collect()
    )
    return {
        "one": [one[len(one) // 2], one[int(len(one) * 0.99)]],
        "many": [many[len(many) // 2], many[int(len(many) * 0.99)]],
        "bytes": len(renders[1]()),
        "samples": samples,
    }


def _rounds(size: int) -> int:
    """Rounds of (full scan, json.loads) for one backlog size: enough that each
    side takes some 0.3 s of CPU, so that a 1,000-message poll (a few ms) is
    not one timer tick's noise; one for the largest."""
    return max(1, min(ROUNDS_MAX, ROUND_MESSAGES // max(size, 1)))


def child(url: str, size: int) -> dict:
    import gc

    _poll(url)  # imports, caches
    default_wall, _, requests, _ = _poll(url)
    # A running exporter has read the queue before (its connections are open,
    # its code is warm): measure that steady state, not the first poll.
    _poll(url, page_size=FULL_SCAN_PAGE, max_pages=10**6)
    gc.collect()
    gc.freeze()  # as the exporter does once started (cli._freeze_start_up_objects)
    idle = _status("VmRSS")
    peak_reset = _reset_peak()
    _, scan_cpu, scan_requests, (store, config) = _poll(
        url, page_size=FULL_SCAN_PAGE, max_pages=10**6
    )
    peak = _status("VmHWM") - idle if peak_reset else None
    loads_cpu = _json_loads_cpu(url)
    rounds = _rounds(size)
    for _ in range(rounds - 1):  # in turns, so that a slow spell of the machine hits both
        scan_cpu += _poll(url, page_size=FULL_SCAN_PAGE, max_pages=10**6)[1]
        loads_cpu += _json_loads_cpu(url)
    scrapes, empty = _scrape_times(store, config)
    return {
        "requests": requests,
        "wall": default_wall,
        "scan_cpu": scan_cpu / rounds,
        "scan_requests": scan_requests,
        "loads_cpu": loads_cpu / rounds,
        "rounds": rounds,
        "peak": peak,
        "p50": scrapes[len(scrapes) // 2],
        "p99": scrapes[int(len(scrapes) * 0.99)],
        "p50_ratio": scrapes[len(scrapes) // 2] / empty[len(empty) // 2],
        "p99_ratio": scrapes[int(len(scrapes) * 0.99)] / empty[int(len(empty) * 0.99)],
    }


def answer_child(kind: str) -> dict:
    """Peak RSS of reading and counting one answer of ANSWER_CAP bytes, over its size."""
    from mimecast_exporter.aggregate import QueueAggregator
    from mimecast_exporter.mimecast.errors import PollError
    from mimecast_exporter.mimecast.pages import (
        COST_PER_ELEMENT,
        COST_PER_OBJECT,
        ELEMENTS_FACTOR,
        decode_page,
    )

    if kind == "empty-objects":
        body = bytearray(b'{"data":[{"messages":[' + b"{}," * (ANSWER_CAP // 3 - 10) + b"{}]}]}")
    else:  # the smallest messages the bound lets through in one answer at the cap
        # One object and five other values (four fields after the first, and
        # the comma before the next message): info as short as the bound allows.
        cost = COST_PER_OBJECT + 5 * COST_PER_ELEMENT
        fields = (
            b'{"routing":"outbound","size":123456,"attempts":3,'
            b'"created":"2026-11-23T23:00:00+0000","info":""},'
        )
        pad = max(0, -(-cost // ELEMENTS_FACTOR) - len(fields))
        one = fields[:-3] + b"x" * pad + b'"}'
        count = ANSWER_CAP // (len(one) + 1) - 2  # room for the envelope
        # small-messages ends with a message without fields, whose defaults
        # the loop must look at; well-formed has every field.
        last = b"{}" if kind == "small-messages" else one
        body = bytearray(b'{"data":[{"messages":[' + (one + b",") * count + last + b"]}]}")
    # The answer's own bytes count: the client holds them as it reads them.
    idle = _status("VmRSS") - len(body)
    _reset_peak()
    try:
        page = decode_page(body, 1, "bench", ANSWER_CAP)
        aggregator = QueueAggregator(time.time())
        aggregator.add(page.messages)
        outcome = f"decoded, {aggregator.scanned:,} messages"
    except PollError as error:
        outcome = f"refused ({error.reason})"
    return {"size": len(body), "peak": _status("VmHWM") - idle, "outcome": outcome}


# --- the parent: simulators, children, the report ----------------------------------


def _python() -> str:
    return sys.executable


def start_simulator(size: int) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [
            _python(),
            "-m",
            "mimecast_exporter.simulator",
            "--listen",
            "127.0.0.1:0",
            "--scenario",
            "backlog",
            "--backlog-messages",
            str(size),
            "--page-size-cap",
            str(FULL_SCAN_PAGE),
            "--rate-limit",
            "10000000/60s",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        match = re.search(r"listening on (http://\S+)", line)
        if match:
            return process, match.group(1)
        if not line and process.poll() is not None:
            break
    process.kill()
    raise SystemExit(f"the simulator for a backlog of {size} did not start")


def run_child(*args: str) -> dict:
    out = subprocess.run(
        [_python(), __file__, *args], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise SystemExit(f"benchmark child {args} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def mib(value: float | None) -> str:
    # A peak a page below idle is no growth: shown as 0.
    return "n/a" if value is None else f"{max(value, 0) / 2**20:.1f} MiB"


def report(
    results: dict[int, dict], answers: dict[str, dict], tenants: dict, seconds: float
) -> str:
    lines = [
        "# Benchmarks",
        "",
        f"`make bench`, one run on {platform.node() or 'this machine'} "
        f"({os.cpu_count()} cores, Python {platform.python_version()}), "
        f"{time.strftime('%Y-%m-%d', time.gmtime())}, {seconds:.0f} s in all. "
        "Figures from one run on a shared machine: read the ratios.",
        "",
        "One poll of one queue against the simulator (a separate process), by backlog size:",
        "",
        "| queued messages | requests per poll | poll wall time | poll CPU / json.loads CPU "
        "(full scan) | peak RSS minus idle (full scan) | scrape p50 | scrape p99 | "
        "scrape p50 / p99 vs empty |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size, r in results.items():
        ratio = r["scan_cpu"] / r["loads_cpu"] if size else None
        lines.append(
            f"| {size:,} | {r['requests']} | {r['wall'] * 1000:.0f} ms | "
            + (f"{ratio:.2f}" if ratio is not None else "n/a (nothing to decode)")
            + f" | {mib(r['peak'])} | {r['p50'] * 1000:.2f} ms | {r['p99'] * 1000:.2f} ms | "
            f"{r['p50_ratio']:.2f} / {r['p99_ratio']:.2f} |"
        )
    lines += [
        "",
        "- *requests per poll*, *poll wall time*: default settings (`page_size` 100, "
        "`max_pages` 15), token requests not counted.",
        "- *poll CPU / json.loads CPU*: a full scan in pages of 500 (the budget raised so "
        "that it reads everything; not the first, as a running exporter polls again), "
        "over the CPU `json.loads` needs for the same answers; in rounds of both in turns, "
        "100,000 messages' worth (at most 50 rounds, 1 at 1,000,000). "
        "Target: at most 1.0.",
        "- *peak RSS minus idle*: during that full scan. Target at 1,000,000: at most 20 MiB.",
        "- *scrape*: rendering /metrics from the snapshot; the ratio to an empty queue's "
        "(timed in turns in the same process) shows that a scrape does not grow with the "
        "backlog.",
        "",
        f"One answer of `max_response_bytes` ({ANSWER_CAP // 2**20} MiB), peak RSS over its "
        "size (target: at most 4):",
        "",
        "| answer | outcome | peak RSS minus idle | ratio to its size |",
        "|---|---|---:|---:|",
    ]
    for kind, a in answers.items():
        lines.append(
            f"| {kind} | {a['outcome']} | {mib(a['peak'])} | {a['peak'] / a['size']:.2f} |"
        )
    one = tenants["one"]
    lines += [
        "",
        "- *small-messages* ends with a message without fields, whose defaults the loop "
        "must look at. *well-formed-messages* has every field.",
        "",
        f"Scrape with many tenants: /metrics as served, a quarter of the queues polled anew "
        f"between scrapes ({TENANTS} accounts: {tenants['bytes'] / 2**20:.1f} MiB of text):",
        "",
        "| accounts | scrape p50 | scrape p99 | p50 / p99 vs one account |",
        "|---|---:|---:|---:|",
    ]
    for label, (p50, p99) in (("1", one), (f"{TENANTS}", tenants["many"])):
        lines.append(
            f"| {label} | {p50 * 1000:.2f} ms | {p99 * 1000:.2f} ms | "
            f"{p50 / one[0]:.1f} / {p99 / one[1]:.1f} |"
        )
    lines += [
        "",
        f"Target: p99 of a scrape of {TENANTS} accounts at most 1 s. One account of two "
        f"queues serves {tenants['samples']} Mimecast samples (target: at most 150).",
        "",
        "Reproduce: `make bench` (or `.venv/bin/python benchmarks/run.py`).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    parser.add_argument("--child", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--answer", metavar="KIND", help=argparse.SUPPRESS)
    parser.add_argument("--tenants", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tenants:
        print(json.dumps(tenants_child()))
        return
    if args.child:
        url, size = args.child.rsplit("#", 1)
        print(json.dumps(child(url, int(size))))
        return
    if args.answer:
        print(json.dumps(answer_child(args.answer)))
        return
    started = time.monotonic()
    results: dict[int, dict] = {}
    for size in (int(s) for s in args.sizes.split(",")):
        process, url = start_simulator(size)
        try:
            results[size] = run_child("--child", f"{url}#{size}")
        finally:
            process.terminate()
            process.wait(timeout=10)
        print(f"{size:>9,} messages: {json.dumps(results[size])}", flush=True)
    kinds = ("empty-objects", "small-messages", "well-formed-messages")
    answers = {kind: run_child("--answer", kind) for kind in kinds}
    tenants = run_child("--tenants")
    print(f"tenants: {json.dumps(tenants)}", flush=True)
    text = report(results, answers, tenants, time.monotonic() - started)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
