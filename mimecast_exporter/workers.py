"""A bounded pool of daemon worker threads for the polls."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any


class DaemonPool:
    """A number of daemon worker threads, resized on a reload.

    Not ThreadPoolExecutor: its workers are joined at interpreter exit, so a
    request hanging on a dead Mimecast host would hold up SIGTERM for the
    whole request timeout. Daemon workers die with the process.
    """

    def __init__(self, workers: int, name: str) -> None:
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = threading.Event()
        self._name = name
        self._lock = threading.Lock()
        self._workers = 0  # alive
        self._target = 0
        self.resize(workers)

    def resize(self, workers: int) -> None:
        """Run at most ``workers`` jobs at once from now on. A job under way
        finishes; no job starts while more than ``workers`` run."""
        with self._lock:
            self._target = workers
            while self._workers < self._target:
                self._workers += 1
                thread = threading.Thread(
                    target=self._work, name=f"{self._name}-{self._workers}", daemon=True
                )
                thread.start()
        for _ in range(max(0, self._workers - workers)):
            self._jobs.put(None)  # one leaves for each, once its job is done

    def submit(self, fn: Callable[..., object], *args: object) -> Future[Any]:
        future: Future[Any] = Future()
        if self._closed.is_set():
            future.cancel()
            return future
        self._jobs.put((future, fn, args))
        return future

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                with self._lock:
                    if self._workers > self._target or self._closed.is_set():
                        self._workers -= 1
                        return
                continue  # a leave-note for a worker already gone
            with self._lock:
                if self._workers > self._target:  # one too many since a resize
                    self._workers -= 1
                    self._jobs.put(job)  # for a worker that stays
                    return
            future, fn, args = job
            if self._closed.is_set() or not future.set_running_or_notify_cancel():
                future.cancel()
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as error:  # delivered to whoever waits on the future
                future.set_exception(error)

    def shutdown(self) -> None:
        """Start no more jobs; jobs under way finish or die with the process."""
        self._closed.set()
        with self._lock:
            alive = self._workers
        for _ in range(alive):
            self._jobs.put(None)
