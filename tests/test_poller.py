"""Whole polls through the store and collector: isolation, partial failures, schedule."""

from __future__ import annotations

import itertools
import threading
import time

from prometheus_client import CollectorRegistry

from mimecast_exporter.collector import MimecastCollector
from mimecast_exporter.config import Config
from mimecast_exporter.poller import Poller, account_offsets, first_turns
from mimecast_exporter.simulator.faults import Fault
from mimecast_exporter.store import SnapshotStore
from tests.conftest import hmac_account, make_messages, oauth_account, poll_config


def build(sim, clock, accounts, **poll):
    config = Config(poll_config(**poll), tuple(accounts))
    store = SnapshotStore([a.name for a in accounts], config.poll.queues, clock.monotonic)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        MimecastCollector(store, config.poll.stale_after, clock.time, clock.monotonic)
    )
    poller = Poller(config, store, clock)
    return poller, store, registry


def sample(registry, name, **labels):
    return registry.get_sample_value(name, labels)


def test_account_isolation_bad_credentials_next_to_healthy(sim, clock):
    sim.oauth_tenant.model.set_messages("processing", make_messages(4))
    accounts = [
        oauth_account(sim.url, name="good"),
        oauth_account(sim.url, name="bad", secret="not-the-secret"),
    ]
    poller, store, registry = build(sim, clock, accounts)
    try:
        assert poller.run_cycle() is False
    finally:
        poller.stop()
    assert sample(registry, "mimecast_up", account="good") == 1
    assert sample(registry, "mimecast_up", account="bad") == 0
    assert (
        sample(
            registry,
            "mimecast_queue_messages",
            account="good",
            queue="processing",
            route="outbound",
        )
        == 4
    )
    assert (
        sample(
            registry, "mimecast_queue_messages", account="bad", queue="processing", route="outbound"
        )
        is None
    )
    assert (
        sample(
            registry, "mimecast_poll_errors_total", account="bad", queue="processing", reason="auth"
        )
        == 1
    )
    assert (
        sample(
            registry,
            "mimecast_poll_errors_total",
            account="good",
            queue="processing",
            reason="auth",
        )
        == 0
    )
    assert store.view().first_cycle_done


def test_failure_mid_pagination_publishes_nothing(sim, clock):
    sim.hmac_tenant.model.set_messages("processing", make_messages(120))
    poller, store, registry = build(sim, clock, [hmac_account(sim.url)], page_size=50)
    labels = {"account": "legacy", "queue": "processing", "route": "outbound"}
    try:
        assert poller.poll_queue("legacy", "processing")
        assert sample(registry, "mimecast_queue_messages", **labels) == 120
        # the queue grows, then page 2 of 4 fails: the old complete snapshot stays
        sim.hmac_tenant.model.set_messages("processing", make_messages(180))
        sim.faults.add(Fault(kind="status", status=400, page=2, times=None))
        assert not poller.poll_queue("legacy", "processing")
    finally:
        poller.stop()
    assert sample(registry, "mimecast_queue_messages", **labels) == 120
    assert (
        sample(
            registry,
            "mimecast_poll_errors_total",
            reason="http_4xx",
            account="legacy",
            queue="processing",
        )
        == 1
    )


def test_stale_after_repeated_failures_then_recovery(sim, clock):
    sim.hmac_tenant.model.set_messages("processing", make_messages(3))
    poller, store, registry = build(
        sim, clock, [hmac_account(sim.url)], stale_after=120.0, queues=("processing",)
    )
    labels = {"account": "legacy", "queue": "processing"}
    try:
        assert poller.poll_queue("legacy", "processing")
        first_success = sample(registry, "mimecast_last_success_timestamp_seconds", **labels)
        sim.faults.add(Fault(kind="status", status=403, times=None))
        for _ in range(3):
            clock.advance(60)
            assert not poller.poll_queue("legacy", "processing")
        assert sample(registry, "mimecast_queue_messages", route="outbound", **labels) is None
        assert sample(registry, "mimecast_up", account="legacy") == 0
        assert sample(registry, "mimecast_last_success_timestamp_seconds", **labels) == (
            first_success
        )
        sim.faults.clear()
        assert poller.poll_queue("legacy", "processing")
    finally:
        poller.stop()
    assert sample(registry, "mimecast_queue_messages", route="outbound", **labels) == 3
    assert sample(registry, "mimecast_up", account="legacy") == 1


def test_poll_still_running_is_not_started_twice(sim, clock):
    poller, store, registry = build(sim, clock, [hmac_account(sim.url)])
    entered, release = threading.Event(), threading.Event()
    calls = []
    real_poll = poller.poll_queue

    def slow_poll(account, queue):
        calls.append((account, queue))
        entered.set()
        release.wait(10)
        return real_poll(account, queue)

    poller.poll_queue = slow_poll
    try:
        first = poller.submit("legacy", "processing")
        assert entered.wait(10)
        assert poller.submit("legacy", "processing") is None
        release.set()
        assert first.result(timeout=10)
        assert poller.submit("legacy", "processing").result(timeout=10)
    finally:
        poller.stop()
    assert calls == [("legacy", "processing")] * 2


def test_schedule_first_at_start_then_every_interval_with_account_offset(sim, clock):
    accounts = [hmac_account(sim.url, name=f"a{i}") for i in range(3)]
    poller, store, registry = build(sim, clock, accounts, interval=60.0)
    try:
        turns = {a.name: 0 for a in accounts}
        # The first polls at start, a quarter of a second apart.
        assert len(poller.due_accounts(0.0, 0.0, turns)) == 1
        assert len(poller.due_accounts(0.0, 0.5, turns)) == 2
        assert poller.due_accounts(0.0, 39.9, turns) == []
        wakeup = poller.next_wakeup(0.0, turns)
        assert wakeup == 40.0  # the first of three phases 20 s apart, centred on 60 s
        due_times = {}
        for t in range(3000, 9001):  # step through a minute in 10 ms steps
            for account in poller.due_accounts(0.0, t / 100, turns):
                due_times.setdefault(account, []).append(t / 100)
        assert sorted(t for times in due_times.values() for t in times) == [40.0, 60.0, 80.0]
        # a host suspended for ten intervals skips the missed turns
        assert sorted(poller.due_accounts(0.0, 700.0, turns)) == ["a0", "a1", "a2"]
        assert poller.due_accounts(0.0, 700.0, turns) == []
        assert poller.next_wakeup(0.0, turns) > 700.0
    finally:
        poller.stop()


def test_two_hundred_accounts_are_spread_evenly_over_the_whole_interval():
    names = [f"tenant-{i:03d}" for i in range(200)]
    offsets = account_offsets(names, 60.0)
    phases = sorted(offsets.values())
    assert phases[0] > -30.0 and phases[-1] < 30.0  # centred on the nominal turn times
    gaps = {round(b - a, 9) for a, b in itertools.pairwise(phases)}
    assert gaps == {0.3}  # one account every 0.3 s: a trickle, never a burst
    assert account_offsets(reversed(names), 60.0) == offsets  # stable: by name, not order
    assert account_offsets(["only"], 60.0) == {"only": 0.0}


def test_the_first_polls_of_many_accounts_are_spread_too():
    names = [f"tenant-{i:03d}" for i in range(200)]
    first = first_turns(names, 60.0)
    assert sorted(first.values())[0] == 0.0 and max(first.values()) < 50.0
    assert first_turns(["only"], 60.0) == {"only": 0.0}  # one account: at once
    assert max(first_turns(names[:20], 1.0).values()) < 1.0  # never past one interval


def test_concurrency_stays_bounded_with_many_accounts(sim, clock):
    accounts = [hmac_account(sim.url, name=f"t{i}") for i in range(40)]
    poller, store, registry = build(sim, clock, accounts, concurrency=3)
    running, most, lock = 0, 0, threading.Lock()
    real_poll = poller.poll_queue

    def counted(account, queue):
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        try:
            return real_poll(account, queue)
        finally:
            with lock:
                running -= 1

    poller.poll_queue = counted
    try:
        assert poller.run_cycle()
    finally:
        poller.stop()
    assert 1 < most <= 3  # concurrent, and never more than poll.concurrency
    assert store.view().first_cycle_done


def test_no_accounts_is_ready_at_once(sim, clock):
    poller, store, registry = build(sim, clock, [])
    try:
        poller.start()
        assert store.view().first_cycle_done
        assert poller.run_cycle()
    finally:
        poller.stop()


def test_ready_only_after_every_queue_polled_once(sim, clock):
    poller, store, registry = build(sim, clock, [hmac_account(sim.url), oauth_account(sim.url)])
    try:
        assert not store.view().first_cycle_done
        poller.submit("legacy", "processing").result(timeout=10)
        assert not store.view().first_cycle_done
        poller.run_cycle()
    finally:
        poller.stop()
    assert store.view().first_cycle_done


def test_rate_limit_gate_is_shared_by_the_queues_of_an_account(make_sim, clock):
    sim = make_sim(rate_limit_quota=1, rate_limit_window=30.0)
    poller, store, registry = build(sim, clock, [hmac_account(sim.url)])
    try:
        assert poller.poll_queue("legacy", "processing")
        assert poller.poll_queue("legacy", "bulk_processing")
    finally:
        poller.stop()
    calls = [r for r in sim.requests if r.path.endswith("find-processing-messages")]
    assert [c.status for c in calls] == [200, 200]
    reset = float(calls[0].response_headers["X-RateLimit-Reset"]) / 1000
    assert reset > 0
    # the second queue's first request waited for the reset the first queue was told of
    assert calls[1].time - calls[0].time >= reset


def test_a_poll_hanging_past_its_deadline_is_a_failed_poll(clock):
    """mimecast_up never stays 1 while a poll hangs; the late result is dropped."""
    import json
    import time

    from tests.rawserver import RawServer

    release = threading.Event()
    answered = []

    def reply(conn):
        answered.append(1)
        if len(answered) == 1:
            body = json.dumps({"meta": {"status": 200}, "data": [], "fail": []}).encode()
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
                + body
            )
            return
        release.wait(20)  # the second poll hangs (as if on a stuck resolver)

    with RawServer(reply) as server:
        account = hmac_account(server.url)
        poller, store, registry = build(
            None, clock, [account], interval=60.0, timeout=30.0, queues=("processing",)
        )
        try:
            assert poller.run_cycle() is True
            assert sample(registry, "mimecast_up", account="legacy") == 1
            hung = poller.submit("legacy", "processing")
            while len(answered) < 2:
                time.sleep(0.01)
            assert poller.check_overdue() is not None  # not yet past the deadline
            clock.advance(60 + 2)
            assert poller.check_overdue() is None
            errors = {"account": "legacy", "queue": "processing", "reason": "timeout"}
            assert sample(registry, "mimecast_up", account="legacy") == 0
            assert sample(registry, "mimecast_poll_errors_total", **errors) == 1
            poller.check_overdue()  # counted once, not at every check
            assert sample(registry, "mimecast_poll_errors_total", **errors) == 1
            release.set()
            assert hung.result(timeout=20) is False
            # The late end of the hung poll is not counted again.
            assert sample(registry, "mimecast_poll_errors_total", **errors) == 1
            assert (
                sum(
                    sample(registry, "mimecast_poll_errors_total", **{**errors, "reason": r}) or 0
                    for r in ("connection", "bad_response", "local")
                )
                == 0
            )
        finally:
            release.set()
            poller.stop()


def test_a_poll_under_way_at_a_reload_never_runs_beside_the_new_ones(sim, clock):
    """A changed account's poll under way finishes alone, its result dropped;
    the new configuration polls that queue only after it."""
    from dataclasses import replace

    sim.oauth_tenant.model.set_messages("processing", make_messages(4))
    account = oauth_account(sim.url)
    poller, store, registry = build(sim, clock, [account], queues=("processing",))
    sim.faults.add(Fault(kind="delay", seconds=1.0, times=1))  # real sleep in the simulator
    try:
        under_way = poller.submit(account.name, "processing")
        assert under_way is not None
        time.sleep(0.2)
        changed = replace(account, top_domains=3)
        poller.reconfigure(Config(poll_config(queues=("processing",)), (changed,)))
        assert poller.submit(account.name, "processing") is None  # not beside it
        assert under_way.result(timeout=10) is False  # finished, and dropped
        assert sample(registry, "mimecast_last_success_timestamp_seconds",
                      account="acme", queue="processing") is None  # fmt: skip
        assert poller.submit(account.name, "processing").result(timeout=10) is True
    finally:
        poller.stop()
    assert sample(registry, "mimecast_queue_messages",
                  account="acme", queue="processing", route="outbound") == 4  # fmt: skip


def test_a_poll_that_ends_past_its_deadline_unnoticed_publishes_nothing(sim, clock, caplog):
    """Past poll.interval (plus grace) when it ends, though no overdue check
    counted it: its result is not published, and the poll is a timeout."""
    sim.oauth_tenant.model.set_messages("processing", make_messages(4))
    account = oauth_account(sim.url)
    poller, _, registry = build(sim, clock, [account], interval=60.0, queues=("processing",))
    labels = {"account": account.name, "queue": "processing", "route": "outbound"}
    try:
        assert poller.poll_queue(account.name, "processing")
        scan = poller._scans[(account.name, "processing")]
        run = scan.run

        def slow_run(*args):
            snapshot = run(*args)
            clock.advance(60 + 2)
            return snapshot

        scan.run = slow_run
        sim.oauth_tenant.model.set_messages("processing", make_messages(9))
        assert poller.poll_queue(account.name, "processing") is False
    finally:
        poller.stop()
    errors = {"account": account.name, "queue": "processing", "reason": "timeout"}
    assert sample(registry, "mimecast_poll_errors_total", **errors) == 1
    assert sample(registry, "mimecast_up", account=account.name) == 0
    assert sample(registry, "mimecast_queue_messages", **labels) == 4  # not the late 9
    assert "finished after its deadline (poll.interval); result dropped" in caplog.text


def test_an_error_of_the_exporters_own_fails_the_poll_not_the_daemon(sim, clock, caplog):
    """A bug of ours in a poll is a failed poll (bad_response, with its
    traceback in the log); the next poll runs as usual."""
    sim.oauth_tenant.model.set_messages("processing", make_messages(4))
    account = oauth_account(sim.url)
    poller, _, registry = build(sim, clock, [account], queues=("processing",))
    scan = poller._scans[(account.name, "processing")]
    run = scan.run

    def broken(*args):
        raise RuntimeError("a bug")

    errors = {"account": account.name, "queue": "processing", "reason": "bad_response"}
    try:
        scan.run = broken
        assert poller.poll_queue(account.name, "processing") is False
        assert sample(registry, "mimecast_poll_errors_total", **errors) == 1
        assert sample(registry, "mimecast_up", account=account.name) == 0
        scan.run = run
        assert poller.poll_queue(account.name, "processing") is True
    finally:
        poller.stop()
    assert sample(registry, "mimecast_up", account=account.name) == 1
    assert "poll failed unexpectedly: RuntimeError: a bug" in caplog.text
    assert "Traceback" in caplog.text
