"""Bounds on the exporter's own HTTP connections: how many, how long, how idle.

A client that connects and says nothing costs a file descriptor and a thread.
A thousand of them used to exhaust the open-file limit, after which scrapes
timed out, polls failed with EMFILE and the accept loop spun at 100 % CPU.
So:

- :func:`raise_open_files_limit` lifts the soft ``RLIMIT_NOFILE`` to the hard
  limit at start, as Go programs do;
- :class:`ConnectionTable` caps the open connections. When it is full, a new
  connection takes the place of the oldest one that has not sent a request
  line yet (a scraper always gets in; an idle crowd does not keep it out),
  and is refused only when every slot is busy with a request;
- :class:`AcceptBackoff` sleeps after an accept() that failed for lack of
  descriptors, 5 ms doubling to 1 s as Go's net/http does, instead of spinning.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import threading
import time
from collections import OrderedDict

log = logging.getLogger(__name__)

# Errors of accept() that mean "no resources now", not "this client is bad".
RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# When the hard limit is "unlimited", the soft one is raised this far.
_UNLIMITED_NOFILE = 1 << 20


def raise_open_files_limit() -> tuple[int, int] | None:
    """Raise the soft open-files limit to the hard one; (old, new), or None if unchanged."""
    try:
        import resource
    except ImportError:  # not on this platform
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = _UNLIMITED_NOFILE if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft >= target:
        return None
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as err:
        log.warning("could not raise the open files limit", extra={"error": str(err)})
        return None
    return soft, target


class Slot:
    """One open connection: its socket, and whether a request has started on it."""

    __slots__ = ("busy", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.busy = False  # the request line has arrived

    def replace_socket(self, sock: socket.socket) -> None:
        """The socket now in charge of the connection (the TLS one, once wrapped)."""
        self.sock = sock

    def evict(self) -> None:
        """Make the connection's thread give up: its blocked read returns at once."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)


class ConnectionTable:
    """At most ``limit`` open connections; see the module's docstring."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"connection limit {limit}: must be at least 1")
        self.limit = limit
        self._open: OrderedDict[int, Slot] = OrderedDict()  # oldest first
        self._lock = threading.Lock()
        self.evicted = 0
        self.refused = 0

    def admit(self, slot: Slot) -> bool:
        """Take ``slot`` in, evicting the oldest idle connection if full; False if all are busy."""
        with self._lock:
            if len(self._open) >= self.limit:
                victim = next((s for s in self._open.values() if not s.busy), None)
                if victim is None:
                    self.refused += 1
                    return False
                del self._open[id(victim)]
                victim.evict()
                self.evicted += 1
            self._open[id(slot)] = slot
            return True

    def release(self, slot: Slot) -> None:
        with self._lock:
            self._open.pop(id(slot), None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._open)


class AcceptBackoff:
    """How long to pause after accept() failed for lack of resources."""

    FIRST, LONGEST = 0.005, 1.0

    def __init__(self) -> None:
        self._delay = 0.0
        self._last_warning = -1e9

    def failed(self, err: OSError) -> None:
        """Pause (in the accept thread) if ``err`` means no descriptors or memory."""
        if err.errno not in RESOURCE_ERRNOS:
            return
        self._delay = min(self.LONGEST, max(self.FIRST, self._delay * 2))
        now = time.monotonic()
        if now - self._last_warning >= 60:  # at most once a minute
            self._last_warning = now
            log.warning(
                "cannot accept connections: out of file descriptors or memory; "
                "backing off (see --web.max-connections and the open files limit)",
                extra={"error": str(err), "retry_in_seconds": self._delay},
            )
        time.sleep(self._delay)

    def succeeded(self) -> None:
        self._delay = 0.0
