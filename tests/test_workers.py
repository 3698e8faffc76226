"""The poll worker pool: bounded, daemon threads, futures, shutdown."""

import threading

import pytest

from mimecast_exporter.workers import DaemonPool


def test_runs_jobs_and_delivers_results_and_errors():
    pool = DaemonPool(2, "t")
    assert pool.submit(lambda a, b: a + b, 2, 3).result(timeout=5) == 5
    failing = pool.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        failing.result(timeout=5)
    pool.shutdown()


def test_at_most_n_jobs_at_once_and_workers_are_daemons():
    pool = DaemonPool(2, "bounded")
    release, lock = threading.Event(), threading.Lock()
    running, peak = [0], [0]

    def job():
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        release.wait(5)
        with lock:
            running[0] -= 1

    futures = [pool.submit(job) for _ in range(5)]
    two_running = threading.Event()
    deadline = threading.Event()
    for _ in range(500):  # up to 5 s for both workers to pick a job up
        with lock:
            if running[0] == 2:
                two_running.set()
                break
        deadline.wait(0.01)
    assert two_running.is_set()
    workers = [t for t in threading.enumerate() if t.name.startswith("bounded-")]
    assert len(workers) == 2 and all(t.daemon for t in workers)
    release.set()
    for future in futures:
        future.result(timeout=5)
    assert peak[0] == 2
    pool.shutdown()


def test_after_shutdown_nothing_new_starts():
    pool = DaemonPool(1, "closed")
    pool.shutdown()
    assert pool.submit(lambda: 1).cancelled()


def test_a_smaller_pool_after_a_reload_starts_no_job_past_its_new_size():
    pool = DaemonPool(3, "resized")
    lock = threading.Lock()
    running, peak_later, started = [0], [0], []
    first_three_done = threading.Event()
    release_later = threading.Event()
    gates = [threading.Event() for _ in range(3)]

    def job(i):
        with lock:
            running[0] += 1
            started.append(i)
            if first_three_done.is_set():
                peak_later[0] = max(peak_later[0], running[0])
        (gates[i] if i < 3 else release_later).wait(5)
        with lock:
            running[0] -= 1

    futures = [pool.submit(job, i) for i in range(9)]
    for _ in range(500):
        with lock:
            if running[0] == 3:
                break
        threading.Event().wait(0.01)
    assert sorted(started) == [0, 1, 2]
    pool.resize(1)
    first_three_done.set()  # from now on, count what runs at once
    release_later.set()
    for gate in gates:  # the three under way finish
        gate.set()
    for future in futures:
        future.result(timeout=5)
    assert peak_later[0] == 1  # the six queued ones ran one at a time
    pool.resize(2)
    assert pool.submit(lambda: 7).result(timeout=5) == 7
    pool.shutdown()
