"""A socket whose reads and writes all end by one deadline and stop at a byte cap.

A socket timeout bounds each read, not an exchange: a peer that sends one byte
just before every timeout holds the exchange open for ever (the status line,
each header, chunk sizes, the body). Wrapped in a :class:`DeadlineSocket`,
every operation gets the time left until the deadline as its timeout, raises
:class:`TimeoutError` once it has passed, and reads raise
:class:`TooManyBytes` past the byte cap, whatever reads them: http.client's
status line, header and chunk parsing, or the body.

Used on both sides. The exporter's own HTTP server (:mod:`mimecast_exporter.web.server`)
arms both, so that a client that trickles its request cannot hold a connection
for ever. Requests to Mimecast (:mod:`mimecast_exporter.mimecast.transport`) arm
only the byte cap: their deadline is the transport's watchdog, which also
covers the TLS handshake and a proxy's CONNECT answer.
"""

from __future__ import annotations

import io
import math
import socket
import time
from typing import Any


class TooManyBytes(OSError):
    """More bytes arrived in one exchange than its cap allows."""


class DeadlinePassed(TimeoutError):
    """The exchange's deadline came (rather than a pause longer than the
    per-operation timeout): bytes may well have been arriving all along."""


class DeadlineSocket:
    """Wraps a connected socket (plain or TLS); see the module's docstring.

    :meth:`arm` starts an exchange: its deadline (monotonic) and byte cap. The
    per-operation timeout given to :meth:`settimeout`, if any, still applies
    when it is shorter than the time left.
    """

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._deadline = math.inf
        self._bytes_left = math.inf
        self._op_timeout: float | None = sock.gettimeout()
        self._io_refs = 0
        self._closed = False

    @property
    def wrapped(self) -> Any:
        return self._sock

    def arm(self, deadline: float, max_bytes: float = math.inf) -> None:
        """From now on: nothing after ``deadline``, at most ``max_bytes`` read."""
        self._deadline = deadline
        self._bytes_left = max_bytes

    def settimeout(self, timeout: float | None) -> None:
        self._op_timeout = timeout

    def gettimeout(self) -> float | None:
        return self._op_timeout

    def _before_io(self) -> None:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise DeadlinePassed("deadline passed")
        if self._op_timeout is not None:
            left = min(left, self._op_timeout)
        self._sock.settimeout(left if math.isfinite(left) else None)

    def _count(self, received: int) -> int:
        self._bytes_left -= received
        if self._bytes_left < 0:
            raise TooManyBytes("more bytes than this exchange may read")
        return received

    # -- the operations http.client, socketserver and ssl use --------------------

    def _timed_out(self, exc: TimeoutError) -> TimeoutError:
        """The socket's timeout, as DeadlinePassed when it was the deadline's."""
        if time.monotonic() >= self._deadline:  # timeouts round up: never before it
            passed = DeadlinePassed("deadline passed")
            passed.__cause__ = exc
            return passed
        return exc

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        self._before_io()
        try:
            received: int = self._sock.recv_into(buffer, nbytes, flags)
        except TimeoutError as exc:
            raise self._timed_out(exc) from exc
        return self._count(received)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        self._before_io()
        try:
            data: bytes = self._sock.recv(bufsize, flags)
        except TimeoutError as exc:
            raise self._timed_out(exc) from exc
        self._count(len(data))
        return data

    def send(self, data: Any, flags: int = 0) -> int:
        self._before_io()
        try:
            sent: int = self._sock.send(data, flags)
        except TimeoutError as exc:
            raise self._timed_out(exc) from exc
        return sent

    def sendall(self, data: Any, flags: int = 0) -> None:
        # In slices, so that the deadline is checked between them.
        view = memoryview(data).cast("B")
        while view:
            sent = self.send(view[: 1 << 16], flags)
            view = view[sent:]

    def makefile(self, mode: str = "r", buffering: int | None = None, **_: Any) -> Any:
        """Binary file objects only, as http.client and socketserver ask for."""
        raw_mode = "".join(c for c in mode if c in "rw")
        raw = socket.SocketIO(self, raw_mode)  # type: ignore[arg-type]
        self._io_refs += 1
        if buffering == 0:
            return raw
        size = io.DEFAULT_BUFFER_SIZE if buffering in (None, -1) else buffering
        if raw_mode == "r":
            return io.BufferedReader(raw, size)
        if raw_mode == "w":
            return io.BufferedWriter(raw, size)
        return io.BufferedRWPair(raw, raw, size)

    def _decref_socketios(self) -> None:  # called by SocketIO.close()
        if self._io_refs > 0:
            self._io_refs -= 1
        if self._closed and self._io_refs <= 0:
            self._sock.close()

    def close(self) -> None:
        # As socket.close(): the descriptor stays open while a file made from it is.
        self._closed = True
        if self._io_refs <= 0:
            self._sock.close()

    def __getattr__(self, name: str) -> Any:  # fileno, shutdown, getpeername, ...
        return getattr(self._sock, name)
