"""Process signals as a queue the main thread reads, never as work done in a handler.

A Python signal handler runs in the main thread between two bytecodes,
possibly while that thread holds a lock: ``threading.Event.wait`` holds its
condition's lock around the wait, and logging holds its handler's. A handler
that takes a lock itself (``Event.set()``, a log line) can then wait on its
own thread forever: a storm of SIGHUPs deadlocked the main loop that way, and
SIGTERM was ignored after it. So the handlers installed here do nothing; the
interpreter's C-level handler writes each signal's number to a wakeup socket,
and ``wait`` reads them with ``select``, which takes no lock.
"""

from __future__ import annotations

import select
import signal
import socket
from collections.abc import Iterable


def _nothing(signum: int, frame: object) -> None:
    """A Python handler must exist for the C handler to write the wakeup byte."""


class Signals:
    """Catch ``signums`` from now on; ``wait`` says which of them came. A
    context manager: on leaving it the wakeup socket is let go (the handlers
    stay, so a late signal is still caught, and ignored).

    Only one instance at a time, made in the main thread (the wakeup socket
    is process-wide, and ``signal.signal`` works only there).
    """

    def __init__(self, signums: Iterable[int]) -> None:
        self._read, self._write = socket.socketpair()
        self._read.setblocking(False)
        self._write.setblocking(False)
        # A full buffer (a storm of thousands) drops bytes silently: the bytes
        # already queued wake the reader all the same.
        signal.set_wakeup_fd(self._write.fileno(), warn_on_full_buffer=False)
        for signum in signums:
            signal.signal(signum, _nothing)

    def __enter__(self) -> Signals:
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop writing to the socket before closing it: a signal's byte must
        never land in whatever file reuses its descriptor number."""
        signal.set_wakeup_fd(-1)
        self._read.close()
        self._write.close()

    def wait(self, timeout: float | None = None) -> set[int]:
        """The signals that came since the last call, waiting up to ``timeout``
        seconds (for ever with None) for one when none has; an empty set when
        none came."""
        select.select([self._read], [], [], None if timeout is None else max(timeout, 0.0))
        came: set[int] = set()
        while True:
            try:
                data = self._read.recv(4096)
            except BlockingIOError:
                return came
            if not data:
                return came
            came.update(data)
