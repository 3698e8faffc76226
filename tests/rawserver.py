"""A loopback TCP server whose answers a test writes byte by byte, for what the
simulator cannot produce: stalls mid-body, trickles, broken framing."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable


class LoopbackServer:
    """Accepts connections on 127.0.0.1 and hands each to ``handle`` in its own thread."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._stop = threading.Event()
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn: socket.socket) -> None:
        raise NotImplementedError


class RawServer(LoopbackServer):
    """Reads one request per connection, then lets the test's handler answer."""

    def __init__(self, handler: Callable[[socket.socket], None]) -> None:
        super().__init__()
        self.handler = handler

    def handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            read_request(conn)
            with contextlib.suppress(OSError):
                self.handler(conn)


def read_request(conn: socket.socket) -> bytes:
    """Read one request (headers and a Content-Length body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        body += conn.recv(65536)
    return head + b"\r\n\r\n" + body
