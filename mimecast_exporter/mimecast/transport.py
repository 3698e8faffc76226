"""HTTP to one Mimecast account's host: urllib3, bounded in time and bytes.

One :class:`Transport` per account carries every request to it, token and
find, directly or through a proxy. It is urllib3 (a pool of kept-alive
connections, a ProxyManager for ``HTTPS_PROXY``), with three things added:

- **One deadline per exchange**, whatever phase it is in. A socket timeout
  bounds each read, not an exchange: a peer that sends a byte just before
  every timeout holds it open for ever. So a watchdog thread shuts down the
  socket of an exchange that outlives its deadline: connecting (the TCP
  connect itself has the time left as its timeout), a proxy's answer to
  CONNECT, the TLS handshake, the status line, headers, chunk framing, the
  body and its decompression all end there. It holds its own duplicate of the
  socket's descriptor, which stays valid while ``ssl`` wraps the socket.
- **A byte cap per exchange**: every byte read on the wire, framing and
  headers included, counts (:class:`~mimecast_exporter.deadline_socket.DeadlineSocket`,
  armed with the cap only), and the inflated body may not pass the caller's
  cap (urllib3 2.6 and later inflate a bounded amount per read).
- **No stale bytes**: a kept-alive connection is used again only if it holds
  nothing unread, in the socket or in a TLS record already decrypted
  (``SSLSocket.pending()``); urllib3 checks the socket, this checks the rest.

The environment is read once, at start: ``HTTPS_PROXY``/``HTTP_PROXY``,
``NO_PROXY``, ``REQUESTS_CA_BUNDLE`` and ``CURL_CA_BUNDLE``, as requests reads
them. Nothing else of it, and never ``~/.netrc``: the exporter's own
credentials are the only ones sent. TLS is always verified: against
``tls_config.ca_file`` when the account has one, else the environment's
bundle, else certifi's (requests' own, as requests does).
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import http.client
import itertools
import math
import os
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import requests.certs
import requests.utils
import urllib3
import urllib3.connection

from mimecast_exporter.deadline_socket import DeadlineSocket, TooManyBytes
from mimecast_exporter.mimecast.errors import PollError
from mimecast_exporter.mimecast.responses import upstream_text

HEADERS = {"Accept-Encoding": "gzip, deflate"}
# Encodings urllib3 inflates for us; the ones asked for above, and none.
_ENCODINGS = frozenset({"", "identity", "gzip", "x-gzip", "deflate"})
# Bytes an answer may take on the wire beyond its body cap: status line,
# headers, chunk framing, compression overhead. Mimecast's headers are ~1 KiB.
HEADER_ALLOWANCE = 256 * 1024
_READ = 256 * 1024  # inflated bytes asked for per read


class _Refused(ValueError):
    """The answer is too large, or compressed in a way not asked for."""


class DeadlinePassed(TimeoutError):
    """The watchdog ended the exchange at its deadline."""


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]  # looked up case-insensitively
    body: bytes


class Transport:
    """Every request to one account's host; safe to share between its queues."""

    def __init__(
        self,
        base_url: str,
        ca_file: str | None,
        environ: Mapping[str, str] = os.environ,
        *,
        connections: int = 2,
    ) -> None:
        bundle = (
            ca_file
            or environ.get("REQUESTS_CA_BUNDLE")
            or environ.get("CURL_CA_BUNDLE")
            or requests.certs.where()  # type: ignore[attr-defined]
        )
        options: dict[str, Any] = {
            "cert_reqs": "CERT_REQUIRED",
            "ca_cert_dir" if os.path.isdir(bundle) else "ca_certs": bundle,
            "maxsize": connections,
            "retries": False,
        }
        self.proxy = proxy_for(base_url)
        manager: urllib3.PoolManager
        if self.proxy is None:
            manager = urllib3.PoolManager(**options)
        else:
            parts = urlsplit(self.proxy)
            proxy_headers = None
            if parts.username is not None:
                credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
                proxy_headers = urllib3.make_headers(proxy_basic_auth=credentials)
                self.proxy = self.proxy.replace(parts.netloc, parts.netloc.rpartition("@")[2], 1)
            manager = urllib3.ProxyManager(self.proxy, proxy_headers=proxy_headers, **options)
        manager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
        self._manager = manager

    def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float, max_bytes: int
    ) -> Response:
        """POST and read the whole answer within ``timeout`` seconds.

        Raises :class:`PollError`: ``timeout`` at the deadline, ``bad_response``
        past ``max_bytes`` of body (inflated) or of bytes on the wire (plus
        HEADER_ALLOWANCE) or for a malformed answer, ``local`` when the
        exporter's own host failed, ``connection`` for everything else."""
        exchange = _Exchange(time.monotonic() + timeout, max_bytes + HEADER_ALLOWANCE)
        _current.exchange = exchange
        _WATCHDOG.watch(exchange)
        response = None
        try:
            response = self._manager.urlopen(
                "POST",
                url,
                body=body,
                headers={**HEADERS, **headers},
                timeout=urllib3.Timeout(connect=timeout, read=timeout),
                redirect=False,
                preload_content=False,
                decode_content=True,
            )
            data = _read(response, max_bytes)
            if exchange.end():  # it ended as the body was complete: its socket is shut
                raise DeadlinePassed
        except BaseException as exc:
            expired = exchange.end()
            status = None if response is None else response.status
            if response is not None:
                response.close()  # the rest is unread: the connection is not used again
            raise _failure(exc, expired, exchange.connected, status, timeout) from exc
        finally:
            _current.exchange = None
        # urllib3 keeps the connection only if the answer ended as its framing
        # says and the host did not ask to close; before it is used again, it
        # must hold nothing unread (_BoundedConnection.is_connected).
        response.release_conn()
        return Response(response.status, response.headers, data)


def _read(response: urllib3.BaseHTTPResponse, max_bytes: int) -> bytes:
    coding = (response.headers.get("Content-Encoding") or "").strip().lower()
    if coding not in _ENCODINGS:
        shown = coding[:40].encode("ascii", "backslashreplace").decode()
        raise _Refused(f"answer compressed as {shown!r}, which was not asked for")
    declared = response.headers.get("Content-Length", "").strip()
    digits = declared.isascii() and declared.isdigit() and not coding
    if digits and (len(declared) > 18 or int(declared) > max_bytes):
        shown = declared if len(declared) <= 20 else f"a {len(declared)}-digit number of"
        raise _Refused(f"answer of {shown} bytes is larger than the {max_bytes} byte cap")
    # A declared length is read in one go (a third of a request's CPU, against
    # reads of _READ joined: 0.26 ms for a page of 500 messages); http.client
    # reads no more than it. Otherwise in _READ steps, up to the cap.
    step = int(declared) if digits else _READ
    chunks: list[bytes] = []
    size = 0
    while True:
        data = response.read(min(step, max_bytes + 1 - size))
        if not data:
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.append(data)
        size += len(data)
        if size > max_bytes:
            raise _Refused(f"answer larger than the {max_bytes} byte cap")


class _Exchange:
    """One request's deadline and byte cap, and the socket the watchdog shuts
    down if the deadline comes first."""

    __slots__ = ("_handle", "_lock", "connected", "deadline", "expired", "finished", "max_bytes")

    def __init__(self, deadline: float, max_bytes: int) -> None:
        self.deadline = deadline
        self.max_bytes = max_bytes
        self.expired = False
        self.finished = False
        self.connected = False  # a TCP connection carries it
        self._handle: socket.socket | None = None
        self._lock = threading.Lock()

    def attach(self, handle: socket.socket | None) -> None:
        """The connection that carries this exchange, from now on."""
        with self._lock:
            self._handle = handle
            self.connected = True
            if self.expired:
                _shut(handle)

    def expire(self) -> None:
        """Called by the watchdog at the deadline."""
        with self._lock:
            if not self.finished:
                self.expired = True
                _shut(self._handle)

    def end(self) -> bool:
        """The exchange is over: whether its deadline had passed."""
        with self._lock:
            self.finished = True
            self._handle = None
            return self.expired


def _shut(handle: socket.socket | None) -> None:
    if handle is not None:
        with contextlib.suppress(OSError):  # already closed: nothing left to end
            handle.shutdown(socket.SHUT_RDWR)


_current = threading.local()  # .exchange: the one this thread is making


class _Watchdog:
    """One thread for the process: expires each exchange at its deadline."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, _Exchange]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, exchange: _Exchange) -> None:
        with self._wake:
            heapq.heappush(self._heap, (exchange.deadline, next(self._order), exchange))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="exchange-watchdog", daemon=True
                )
                self._thread.start()
            if self._heap[0][2] is exchange:
                self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                now = time.monotonic()
                while self._heap and (self._heap[0][2].finished or self._heap[0][0] <= now):
                    _, _, exchange = heapq.heappop(self._heap)
                    if not exchange.finished:
                        exchange.expire()
                wait = self._heap[0][0] - now if self._heap else None
                self._wake.wait(wait)


_WATCHDOG = _Watchdog()


class _BoundedConnection:
    """Mixed into urllib3's connections: each exchange's deadline and byte cap
    hold on the socket, and a connection with bytes left unread is not reused."""

    sock: Any
    _handle: socket.socket | None = None

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()  # type: ignore[misc]
        # The watchdog's own descriptor of this connection: ssl detaches the
        # socket object it wraps, but not the connection.
        self._handle = sock.dup()
        exchange = getattr(_current, "exchange", None)
        if exchange is not None:
            exchange.attach(self._handle)
        counted = DeadlineSocket(sock)  # a proxy's answer to CONNECT counts too
        counted.arm(math.inf, exchange.max_bytes if exchange is not None else math.inf)
        return counted  # type: ignore[return-value]

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        if not isinstance(self.sock, DeadlineSocket):  # wrapped for TLS: count again
            self.sock = DeadlineSocket(self.sock)

    def request(self, *args: Any, **kwargs: Any) -> None:
        exchange = getattr(_current, "exchange", None)
        if exchange is not None:
            exchange.attach(self._handle)
            if isinstance(self.sock, DeadlineSocket):
                self.sock.arm(math.inf, exchange.max_bytes)
        super().request(*args, **kwargs)  # type: ignore[misc]

    @property
    def is_connected(self) -> bool:
        if not super().is_connected:  # type: ignore[misc]
            return False
        inner = self.sock.wrapped if isinstance(self.sock, DeadlineSocket) else self.sock
        pending = getattr(inner, "pending", None)
        return not (pending is not None and pending())

    def close(self) -> None:
        super().close()  # type: ignore[misc]
        if self._handle is not None:
            self._handle.close()
            self._handle = None


class _HTTPConnection(_BoundedConnection, urllib3.connection.HTTPConnection):
    pass


class _HTTPSConnection(_BoundedConnection, urllib3.connection.HTTPSConnection):
    pass


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class ProxyError(ValueError):
    """The proxy the environment names for a host cannot be used. The message
    shows no part of its user name or password."""


def proxy_for(url: str) -> str | None:
    """The proxy for ``url`` from the environment, as requests chooses it
    (``NO_PROXY`` with host suffixes, ports and CIDR ranges); raises
    :class:`ProxyError` when it cannot be used."""
    proxies = requests.utils.get_environ_proxies(url)  # {} when NO_PROXY matches
    key = urlsplit(url).scheme
    if not proxies.get(key):
        key = "all"
    proxy = proxies.get(key)
    if not proxy:
        return None
    proxy = proxy if "://" in proxy else f"http://{proxy}"
    _check_proxy(proxy, f"{key.upper()}_PROXY")
    return proxy


def _check_proxy(proxy: str, variable: str) -> None:
    parts = urlsplit(proxy)
    try:
        parts.port  # noqa: B018 - raises on a port that is not one
        port_ok = True
    except ValueError:
        port_ok = False
    if parts.scheme not in ("http", "https"):
        problem = "only http:// and https:// proxies are supported"
    elif not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment:
        problem = (
            "it does not read as scheme://[login:password@]host[:port]; a login or "
            "password holding '/', '#', '?' or '@' must be percent-encoded "
            "(%2F, %23, %3F, %40)"
        )
    elif not port_ok:
        problem = "its port is not a number from 0 to 65535"
    else:
        try:
            urllib3.util.parse_url(proxy)
            return
        except urllib3.exceptions.LocationParseError:
            problem = "urllib3 cannot parse it"
    # What follows the last "@" is the host, whatever the password holds.
    scheme, _, rest = proxy.partition("://")
    shown = f"{scheme}://...@{rest.rpartition('@')[2]}" if "@" in rest else proxy
    raise ProxyError(f"the proxy in {variable} ({shown}) cannot be used: {problem}")


# Errors of the exporter's own host, not of Mimecast or the network to it.
_LOCAL_ERRNOS = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.EADDRNOTAVAIL}
)
# What http.client says of an answer whose head breaks its bounds.
_MALFORMED = (http.client.LineTooLong, http.client.UnknownProtocol)


def _failure(
    exc: BaseException, expired: bool, connected: bool, status: int | None, timeout: float
) -> PollError:
    """What a failed exchange means, as the PollError the client raises."""
    causes = list(_causes(exc))

    def error(reason: str, message: str, retryable: bool = False) -> PollError:
        return PollError(reason, message, status=status, retryable=retryable)

    if expired or any(_is_timeout(cause) for cause in causes):
        if status is not None:
            return error("timeout", "answer still arriving at the request deadline", True)
        if not connected or any(_is_connect_timeout(cause) for cause in causes):
            return error("timeout", f"could not connect within {timeout:.1f}s", True)
        return error("timeout", f"no answer within {timeout:.1f}s", True)
    for cause in causes:
        if isinstance(cause, TooManyBytes):
            return error(
                "bad_response", "answer larger than the byte cap (headers and framing included)"
            )
        if isinstance(cause, _Refused):
            return error("bad_response", str(cause))
        if isinstance(cause, urllib3.exceptions.DecodeError):
            return error("bad_response", f"answer does not inflate: {_short(cause)}")
        if isinstance(cause, _MALFORMED) or "more than 100 headers" in str(cause):
            return error("bad_response", f"answer malformed: {_short(cause)}")
        if isinstance(cause, OSError) and cause.errno in _LOCAL_ERRNOS:
            return error(
                "local",
                f"the exporter's host could not make the request: {os.strerror(cause.errno)}",
                True,
            )
    if isinstance(exc, ValueError) and not isinstance(exc, OSError):  # ssl's errors are both
        # http.client refuses a header value with a line break; its message
        # quotes the value, which may be a credential: never passed on.
        return error(
            "local", "request not sent: a header value is invalid (a credential with a line break?)"
        )
    where = "connection failed mid-body" if status is not None else "connection failed"
    return error("connection", f"{where}: {_short(exc)}", True)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what caused it, however urllib3 wrapped it; each once (a chain
    can loop: an exception raised while handling its own cause)."""
    seen: BaseException | None = exc
    met: set[int] = set()
    while seen is not None and id(seen) not in met:
        met.add(id(seen))
        yield seen
        seen = (
            seen.__cause__
            or seen.__context__
            or (seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None)
        )


def _is_timeout(exc: BaseException) -> bool:
    # NewConnectionError (refused, DNS) subclasses ConnectTimeoutError: not a timeout.
    return not isinstance(exc, urllib3.exceptions.NewConnectionError) and isinstance(
        exc, urllib3.exceptions.TimeoutError | TimeoutError
    )


def _is_connect_timeout(exc: BaseException) -> bool:
    return _is_timeout(exc) and isinstance(exc, urllib3.exceptions.ConnectTimeoutError)


def _short(exc: BaseException) -> str:
    """The innermost cause, one line: 'Connection refused', not a urllib3 essay."""
    inner: BaseException = exc
    met = {id(exc)}
    while inner.__context__ is not None and id(inner.__context__) not in met:
        inner = inner.__context__
        met.add(id(inner))
    text = str(inner)
    return upstream_text(text.splitlines()[0]) if text.strip() else type(inner).__name__
