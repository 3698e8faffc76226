"""The exporter's HTTP endpoints: metrics, landing page, health and readiness.

This module owns the listening socket, routing, and everything answered on
it but the landing page's HTML (:mod:`mimecast_exporter.web.landing`). It only reads what
the poller already knows (the metrics registry and a :class:`StatusSource`),
so no request ever calls Mimecast or waits on a poll.

Routes: the telemetry path (``/metrics`` by default), ``/`` (and
``/index.html``), ``/-/healthy`` and ``/-/ready``. Everything else is 404, and
methods other than GET and HEAD are 405.

Where it listens (``--web.listen-address``) is parsed and bound by
:mod:`mimecast_exporter.web.listen`. Every connection is bounded
(:mod:`mimecast_exporter.web.connections`, :mod:`mimecast_exporter.deadline_socket`):
at most ``--web.max-connections`` open, the oldest idle one giving way to a
new one; a request must arrive within REQUEST_SECONDS of connecting (TLS
handshake included) and its answer be taken within RESPONSE_SECONDS; accept()
backs off instead of spinning when out of file descriptors. With a web
configuration (``--web.config.file``, :mod:`mimecast_exporter.web.config`, kept
in force by :mod:`mimecast_exporter.web.watch`)
connections are TLS, the handshake done in the connection's own thread, and
every path is behind basic auth when users are configured (see
:mod:`mimecast_exporter.web.auth`).
"""

from __future__ import annotations

import gzip
import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted

from mimecast_exporter.deadline_socket import DeadlineSocket
from mimecast_exporter.web.connections import AcceptBackoff, ConnectionTable, Slot
from mimecast_exporter.web.landing import AccountStatus as AccountStatus
from mimecast_exporter.web.landing import QueueStatus as QueueStatus
from mimecast_exporter.web.landing import StatusSource, render_index
from mimecast_exporter.web.listen import bind, parse_listen_address

if TYPE_CHECKING:
    from mimecast_exporter.web.auth import WebSecurity
    from mimecast_exporter.web.watch import WebConfigWatcher

logger = logging.getLogger(__name__)

NOT_READY_TEXT = "Not ready: first poll cycle has not finished"
# Default of --web.max-connections. Scrapes take milliseconds; this many at
# once is a crowd, and leaves most of the open-files limit to the polls.
MAX_CONNECTIONS = 512
# From accepting a connection to the end of its request's headers, TLS
# handshake included: the whole of it, however slowly the bytes come.
REQUEST_SECONDS = 10.0
# From the end of the headers to the last byte of the answer.
RESPONSE_SECONDS = 60.0
# Bytes a client may send on one connection: a request line and headers.
MAX_REQUEST_BYTES = 1024 * 1024
_ALLOW = "GET, HEAD"
_TEXT = "text/plain; charset=utf-8"
# A client that hangs up mid-response is routine (scrape timeouts), not an error.
_CLIENT_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)


def _gzip_level(size: int) -> int:
    """6 as usual (9 costs CPU for next to nothing); 1 for pages of megabytes
    (hundreds of accounts): five times faster, a quarter larger."""
    return 6 if size < 1 << 20 else 1


class WebServer:
    """Serves the endpoints on ``listen_address`` from a daemon thread or the caller's."""

    def __init__(
        self,
        listen_address: str,
        registry: CollectorRegistry,
        status: StatusSource,
        telemetry_path: str = "/metrics",
        version: str = "",
        web_config: WebConfigWatcher | None = None,
        max_connections: int = MAX_CONNECTIONS,
        dashboard_url: str | None = None,
    ) -> None:
        if max_connections < 1:
            raise ValueError(f"max connections {max_connections}: must be at least 1")
        if not telemetry_path.startswith("/") or any(c in telemetry_path for c in "?# \t\r\n"):
            raise ValueError(
                f"telemetry path {telemetry_path!r}: must start with / and hold no ?, # or spaces"
            )
        self._host, self._port = parse_listen_address(listen_address)
        self.registry = registry
        self.dashboard_url = dashboard_url  # linked from the status page
        self.status = status
        self.telemetry_path = telemetry_path
        self.version = version
        self.web_config = web_config  # None: plain HTTP, no auth
        self.max_connections = max_connections
        self._lock = threading.Lock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._serving_thread: threading.Thread | None = None
        self._closed = False

    def start(self) -> None:
        """Bind the socket and serve from a daemon thread; returns once bound."""
        httpd = self._bind()
        self._thread = self._serving_thread = threading.Thread(
            target=self._serve, args=(httpd,), name="exporter-web", daemon=True
        )
        self._thread.start()

    def serve_forever(self) -> None:
        """Bind and serve from the calling thread until :meth:`shutdown`.

        To stop from a signal handler in this same thread, just call
        :meth:`shutdown`: it notices and does not wait on itself.
        """
        self._serving_thread = threading.current_thread()
        self._serve(self._bind())

    @property
    def port(self) -> int:
        """The bound port (the configured one before binding)."""
        return self._port

    @property
    def url(self) -> str:
        """Base URL a local client can reach, e.g. ``http://127.0.0.1:9836`` (https with TLS)."""
        host = self._host
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"  # the wildcard binds (dual-stack included) take IPv4 loopback
        if ":" in host:
            host = f"[{host}]"
        scheme = "https" if self.web_config is not None and self.web_config.tls else "http"
        return f"{scheme}://{host}:{self.port}"

    def shutdown(self) -> None:
        """Stop serving and close the socket. Safe to call repeatedly or before start."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            httpd = self._httpd
        if httpd is None:
            return
        if threading.current_thread() is self._serving_thread:
            # Called from the serving thread itself, i.e. from a signal handler
            # interrupting serve_forever(): BaseServer.shutdown() would wait forever
            # for its own loop. Ask from a helper thread; the loop notices within
            # its poll interval and serve_forever() returns.
            threading.Thread(target=httpd.shutdown, daemon=True).start()
            return
        httpd.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _bind(self) -> _HTTPServer:
        with self._lock:
            if self._closed:
                raise RuntimeError("web server was shut down")
            if self._httpd is not None:
                raise RuntimeError("web server already started")
            self._httpd = bind(self._host, self._port, self._make_server)
            self._port = self._httpd.socket.getsockname()[1]  # the real one if 0 was asked
        logger.debug("listening", extra={"address": self.url, "path": self.telemetry_path})
        return self._httpd

    def _make_server(self, sockaddr: Any, family: int, dual_stack: bool) -> _HTTPServer:
        return _HTTPServer(sockaddr, family, self, dual_stack=dual_stack)

    def _serve(self, httpd: _HTTPServer) -> None:
        try:
            httpd.serve_forever(poll_interval=0.25)
        finally:
            httpd.server_close()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a stuck scraper must never hold up process exit
    # Room for a crowd of scrapers connecting at once (many Prometheus
    # replicas, federation, curl loops): a full accept queue would leave
    # clients hanging on a half-open connection for seconds.
    request_queue_size = 1024

    def __init__(self, sockaddr: Any, family: int, app: WebServer, dual_stack: bool) -> None:
        self.address_family = family
        self.app = app
        self._dual_stack = dual_stack
        self.connections = ConnectionTable(app.max_connections)
        self._backoff = AcceptBackoff()
        super().__init__(sockaddr, _Handler, bind_and_activate=False)
        try:
            self.server_bind()
            self.server_activate()
        except BaseException:
            self.server_close()
            raise

    def server_bind(self) -> None:
        if self._dual_stack:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        # Skip HTTPServer.server_bind: its socket.getfqdn() can stall on reverse DNS.
        TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]  # type: ignore[assignment]

    def get_request(self) -> tuple[socket.socket, Any]:
        try:
            request = self.socket.accept()
        except OSError as err:
            self._backoff.failed(err)  # EMFILE and the like: pause, do not spin
            raise
        self._backoff.succeeded()
        return request

    def process_request(self, request: Any, client_address: Any) -> None:
        # In the accept thread: admit (or refuse) before any thread is started.
        slot = Slot(request)
        if not self.connections.admit(slot):
            _refuse(request, self.app.web_config is not None and self.app.web_config.tls)
            logger.debug("connection refused: every slot busy", extra={"client": client_address[0]})
            return
        try:
            threading.Thread(
                target=self._serve_connection, args=(slot, client_address), daemon=True
            ).start()
        except RuntimeError:  # can't start new thread: out of resources, like EMFILE
            self.connections.release(slot)
            self.shutdown_request(request)

    def _serve_connection(self, slot: Slot, client_address: Any) -> None:
        try:
            self._finish(slot, client_address)
        except Exception:
            self.handle_error(slot.sock, client_address)
        finally:
            self.connections.release(slot)
            self.shutdown_request(slot.sock)

    def _finish(self, slot: Slot, client_address: Any) -> None:
        # Runs in the connection's own thread, so the TLS handshake and a config
        # reload never hold up accept().
        deadline = time.monotonic() + REQUEST_SECONDS
        watcher = self.app.web_config
        security = watcher.current() if watcher is not None else None
        if security is None or not security.tls:
            conn = DeadlineSocket(slot.sock)
            conn.arm(deadline, MAX_REQUEST_BYTES)
            _Handler(conn, client_address, self, security, slot)
            return
        try:
            # Takes over the socket: from here on only tls can close it (after
            # the slot is released, so that an eviction never hits a reused fd).
            tls = security.handshake(slot.sock, deadline, on_wrapped=slot.replace_socket)
        except (OSError, ValueError) as err:  # ssl.SSLError, timeouts, resets
            logger.debug(
                "TLS handshake failed", extra={"client": client_address[0], "error": str(err)}
            )
            return
        conn = DeadlineSocket(tls)
        conn.arm(deadline, MAX_REQUEST_BYTES)
        _Handler(conn, client_address, self, security, slot)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The default prints a traceback to stderr; keep it in the log instead.
        logger.debug("connection error", exc_info=True, extra={"client": client_address[0]})


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    # One request per connection, as prometheus_client's server: no idle
    # keep-alive threads outlive shutdown() or pile up.
    protocol_version = "HTTP/1.0"
    timeout = RESPONSE_SECONDS  # per read or write; the connection's deadline bounds all
    sys_version = ""

    def __init__(
        self,
        request: Any,
        client_address: Any,
        server: Any,
        security: WebSecurity | None = None,
        slot: Slot | None = None,
    ) -> None:
        self.security = security
        self.slot = slot
        super().__init__(request, client_address, server)

    def parse_request(self) -> bool:
        # The request line is in: this connection is no longer idle (never evicted).
        if self.slot is not None:
            self.slot.busy = True
        if not super().parse_request():
            return False
        if isinstance(self.connection, DeadlineSocket):  # the headers are in, too
            self.connection.arm(time.monotonic() + RESPONSE_SECONDS, MAX_REQUEST_BYTES)
        return True

    def version_string(self) -> str:
        version = self.server.app.version
        return f"mimecast-exporter/{version}" if version else "mimecast-exporter"

    def do_GET(self) -> None:
        self._dispatch(head=False)

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def __getattr__(self, name: str) -> Any:
        # BaseHTTPRequestHandler answers 501 for a method without a do_X; every
        # method but GET/HEAD is merely not allowed here, so answer 405.
        if name.startswith("do_"):
            return self._method_not_allowed
        raise AttributeError(name)

    def _method_not_allowed(self) -> None:
        # Read a small body so closing the socket does not reset the connection
        # before the client has read our answer.
        length = self.headers.get("Content-Length", "")
        if length.isdigit() and int(length) <= 65536:
            self.rfile.read(int(length))
        self._dispatch(head=False, route=self._send_405)

    def _send_405(self, head: bool) -> None:
        self._send(405, b"Method Not Allowed\n", _TEXT, head, [("Allow", _ALLOW)])

    def _dispatch(self, head: bool, route: Callable[[bool], None] | None = None) -> None:
        started = time.monotonic()
        self._status = 0
        try:
            if self.security is not None and not self._admitted(head):
                return
            (route or self._route)(head)
        except _CLIENT_GONE:
            logger.debug("client went away", extra={"client": self.client_address[0]})
        except Exception:
            logger.exception("request failed", extra={"path": self.path})
            if not self._status:
                self._send(500, b"Internal Server Error\n", _TEXT, head)
        finally:
            logger.debug(
                "request",
                extra={
                    "client": self.client_address[0],
                    "method": self.command,
                    "path": self.path,
                    "status": self._status,
                    "duration_seconds": round(time.monotonic() - started, 6),
                },
            )

    def _admitted(self, head: bool) -> bool:
        """Rate limit and basic auth, on every path; answers the refusal itself."""
        assert self.security is not None
        path = urlsplit(self.path).path
        refusal = self.security.refusal(path, self.headers.get("Authorization"))
        if refusal is None:
            return True
        code, body, headers = refusal
        # Neither the user name nor anything else from the header: it may be a password.
        logger.debug("request refused", extra={"client": self.client_address[0], "status": code})
        self._send(code, body, _TEXT, head, headers)
        return False

    def _route(self, head: bool) -> None:
        app = self.server.app
        path = urlsplit(self.path).path
        if path == app.telemetry_path:  # first: it wins even if set to "/"
            self._metrics(head)
        elif path in ("/", "/index.html"):
            page = render_index(app, time.time())
            self._send(200, page.encode(), "text/html; charset=utf-8", head)
        elif path == "/-/healthy":
            self._send(200, b"OK", _TEXT, head)
        elif path == "/-/ready":
            if app.status.is_ready():
                self._send(200, b"Ready", _TEXT, head)
            else:
                self._send(503, NOT_READY_TEXT.encode(), _TEXT, head)
        else:
            self._send(404, b"404 page not found\n", _TEXT, head)

    def _metrics(self, head: bool) -> None:
        """Expose the registry exactly as prometheus_client's MetricsHandler does."""
        app = self.server.app
        accept = self.headers.get("Accept")
        try:
            encoder, content_type = choose_encoder(accept or "")
        except (TypeError, ValueError):
            # prometheus_client raises on e.g. "version=abc"; serve the classic format.
            logger.debug("unparsable Accept header", extra={"accept": accept})
            encoder, content_type = choose_encoder("")
        registry: Any = app.registry
        names = parse_qs(urlsplit(self.path).query).get("name[]")
        if names:
            registry = registry.restricted_registry(names)
        try:
            output = encoder(registry)
        except Exception as err:
            # A broken collector must cost one scrape, not the server.
            logger.error("collecting metrics failed", exc_info=True)
            body = f"An error has occurred while collecting metrics: {type(err).__name__}\n"
            self._send(500, body.encode(), _TEXT, head)
            return
        headers = [("Vary", "Accept, Accept-Encoding")]
        if gzip_accepted(self.headers.get("Accept-Encoding") or ""):
            output = gzip.compress(output, compresslevel=_gzip_level(len(output)))
            headers.append(("Content-Encoding", "gzip"))
        self._send(200, output, content_type, head, headers)

    def _send(
        self,
        code: int,
        body: bytes,
        content_type: str,
        head: bool,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        self._status = code
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def end_headers(self) -> None:
        if self.security is not None:  # http_server_config.headers, on every answer
            for name, value in self.security.headers:
                self.send_header(name, value)
        super().end_headers()

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        """Requests are logged once, at DEBUG, by _dispatch."""

    def log_message(self, format: str, *args: Any) -> None:
        # Replaces BaseHTTPRequestHandler's per-request stderr lines.
        logger.debug(format, *args, extra={"client": self.client_address[0]})


_BUSY = b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def _refuse(sock: socket.socket, tls: bool) -> None:
    """Close a connection that found every slot busy, with a 503 if it speaks plain HTTP."""
    try:
        if not tls:
            sock.setblocking(False)  # never wait on this client: best effort only
            sock.send(_BUSY)
    except OSError:
        pass
    finally:
        sock.close()
