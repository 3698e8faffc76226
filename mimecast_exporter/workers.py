"""A bounded pool of daemon worker threads for the polls."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any


class DaemonPool:
    """A fixed number of daemon worker threads.

    Not ThreadPoolExecutor: its workers are joined at interpreter exit, so a
    request hanging on a dead Mimecast host would hold up SIGTERM for the
    whole request timeout. Daemon workers die with the process.
    """

    def __init__(self, workers: int, name: str) -> None:
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = threading.Event()
        self._workers = workers
        for i in range(workers):
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True).start()

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
        for _ in range(self._workers):
            self._jobs.put(None)
