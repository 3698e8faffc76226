"""Request-time security of the HTTP endpoints: basic auth, rate limit, client SANs.

:mod:`mimecast_exporter.web.config` reads and validates ``--web.config.file``; this
module holds what is applied to each connection and request once a
configuration is in force, gathered in one :class:`WebSecurity` snapshot per
(re)load. :mod:`mimecast_exporter.web.server` asks a snapshot three things: wrap a new
connection in TLS (:meth:`WebSecurity.handshake`), admit a request or say why
not (:meth:`WebSecurity.refusal`), and which extra headers to send.

Basic auth follows exporter-toolkit's design, so that no request can stall
another:

- every result of a check is cached, failures too, by a keyed hash of user,
  stored hash and password (never the password itself): a scraper calling
  every second costs one bcrypt computation, and so does an attacker
  repeating one wrong password. Successes and failures are cached apart, so
  a flood of distinct wrong passwords never evicts a scraper's success;
- an unknown user is checked against a fixed dummy hash of cost 10, as
  exporter-toolkit does, not one at the highest configured cost: a user of
  one expensive hash must not make every unknown name cost as much;
- no global lock: a check never waits for another (bcrypt releases the GIL),
  and at most :data:`MAX_CONCURRENT_CHECKS` run at once, so a flood costs a
  bounded number of cores while cached requests go straight through.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import os
import select
import socket
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence

import bcrypt

REALM = "mimecast-exporter"
# Successes: one per (user, password) in use; exporter-toolkit keeps 100 too.
AUTH_CACHE_SIZE = 100
# Failures: cached apart, so that they never push a success out.
FAILED_AUTH_CACHE_SIZE = 1024
# bcrypt computations at once, whatever the number of requests.
MAX_CONCURRENT_CHECKS = max(2, min(8, os.cpu_count() or 2))
# What an unknown user is checked against: bcrypt of a random password, cost 10
# (exporter-toolkit's dummy has cost 10 too). Costs ~50 ms, like a real check.
DUMMY_HASH = b"$2b$10$nFUdlw5k8xssZ5ZOYqfO0eWYTCfplZQBa3CeLDnP0YhH2LuzU949."
HANDSHAKE_TIMEOUT = 10.0  # seconds a new connection gets to finish the TLS handshake
# bcrypt only reads the first 72 bytes; the bcrypt package refuses longer
# passwords rather than silently truncating, and so does Go's (exporter-toolkit).
_BCRYPT_MAX_PASSWORD = 72

Checkpw = Callable[[bytes, bytes], bool]
Refusal = tuple[int, bytes, Sequence[tuple[str, str]]]


class ClientCertRejected(ssl.SSLError):
    """The client's certificate is valid but names none of ``client_allowed_sans``."""


class AuthCache:
    """Remembers the results of (user, hash, password) checks, by keyed hash only.

    The key is an HMAC with a per-process random key, so the cache holds
    nothing from which a password could be recovered offline. It outlives
    reloads: a changed hash gives a different key, so a replaced password is
    never admitted from the cache. Successes and failures are kept in two
    bounded LRU maps, so that failures never evict successes.
    """

    def __init__(self, size: int = AUTH_CACHE_SIZE, failures: int = FAILED_AUTH_CACHE_SIZE) -> None:
        self._secret = os.urandom(32)
        self._sizes = {True: size, False: failures}
        self._entries: dict[bool, OrderedDict[bytes, None]] = {
            True: OrderedDict(),
            False: OrderedDict(),
        }
        self._lock = threading.Lock()

    def key(self, user: bytes, hashed: bytes, password: bytes) -> bytes:
        mac = hmac.new(self._secret, digestmod=hashlib.sha256)
        for part in (user, hashed, password):  # length-prefixed: no ambiguous joins
            mac.update(len(part).to_bytes(4, "big"))
            mac.update(part)
        return mac.digest()

    def get(self, key: bytes) -> bool | None:
        """The cached result for ``key``, or None if it was not checked lately."""
        with self._lock:
            for result, entries in self._entries.items():
                if key in entries:
                    entries.move_to_end(key)
                    return result
            return None

    def __contains__(self, key: bytes) -> bool:
        return self.get(key) is True

    def add(self, key: bytes, result: bool = True) -> None:
        with self._lock:
            entries = self._entries[result]
            entries[key] = None
            entries.move_to_end(key)
            while len(entries) > self._sizes[result]:
                entries.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return sum(len(entries) for entries in self._entries.values())


def parse_basic_authorization(header: str | None) -> tuple[bytes, bytes] | None:
    """``Authorization: Basic base64(user:password)`` -> (user, password), or None."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = raw.partition(b":")
    return (user, password) if sep else None


class BasicAuth:
    """Checks ``Authorization`` headers against bcrypt hashes.

    ``users`` maps user names to hashes in the ``$2b$`` spelling (the parser
    converts ``$2y$``). ``checkpw`` is bcrypt's by default; pass a wrapper to
    observe how many bcrypt computations run. ``slots`` bounds how many run at
    once (shared across reloads); it is not a lock: checks run side by side.
    """

    def __init__(
        self,
        users: Mapping[str, bytes],
        cache: AuthCache,
        checkpw: Checkpw = bcrypt.checkpw,
        slots: threading.Semaphore | None = None,
    ) -> None:
        self._users = {name.encode("utf-8"): hashed for name, hashed in users.items()}
        self._cache = cache
        self._checkpw = checkpw
        self._slots = slots or threading.BoundedSemaphore(MAX_CONCURRENT_CHECKS)

    def check(self, authorization: str | None) -> bool:
        credentials = parse_basic_authorization(authorization)
        if credentials is None:
            return False
        user, password = credentials
        hashed = self._users.get(user)
        key = self._cache.key(user, hashed or DUMMY_HASH, password)
        cached = self._cache.get(key)
        if cached is not None:
            return cached and hashed is not None
        if len(password) > _BCRYPT_MAX_PASSWORD:
            ok = False
        else:
            with self._slots:
                ok = bool(self._checkpw(password, hashed or DUMMY_HASH))
        ok = ok and hashed is not None
        self._cache.add(key, ok)
        return ok


class RateLimiter:
    """A token bucket: ``burst`` requests at once, then one per ``interval`` seconds."""

    def __init__(
        self, interval: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._interval = interval
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._last = clock()
        self._lock = threading.Lock()

    def allow(self) -> bool:
        with self._lock:
            now = self._clock()
            elapsed = max(0.0, now - self._last)
            self._last = now
            self._tokens = min(self._burst, self._tokens + elapsed / self._interval)
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False


# Go's answer to plain HTTP on a TLS port (net/http), word for word.
PLAIN_HTTP_ANSWER = (
    b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Connection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
)
# How a plain HTTP request starts; a TLS ClientHello starts with 0x16.
_HTTP_STARTS = (b"GET ", b"HEAD ", b"POST ", b"PUT ", b"DELETE ", b"OPTIONS ", b"PATCH ")


def _wait(sock: socket.socket, event: int, end: float) -> None:
    """Until ``sock`` is ready for ``event`` (poll, not select: descriptors past
    1024 are fine), or TimeoutError at ``end``."""
    left = end - time.monotonic()
    if left <= 0:
        raise TimeoutError("TLS handshake took too long")
    poller = select.poll()
    poller.register(sock, event)
    if not poller.poll(left * 1000):
        raise TimeoutError("TLS handshake took too long")


def _sends_plain_http(sock: socket.socket, end: float) -> bool:
    """Whether the client's first bytes are an HTTP request line (peeked, not read)."""
    need = max(len(start) for start in _HTTP_STARTS)
    seen = b""
    sock.setblocking(False)
    try:
        while len(seen) < need:
            _wait(sock, select.POLLIN, end)
            try:
                seen = sock.recv(need, socket.MSG_PEEK)
            except BlockingIOError:
                continue
            if not seen or seen[:1] == b"\x16":  # closed, or a TLS handshake record
                return False
            if not any(start.startswith(seen) or seen.startswith(start) for start in _HTTP_STARTS):
                return False
            if any(seen.startswith(start) for start in _HTTP_STARTS):
                return True
            time.sleep(0.01)  # a prefix of a method: wait for more bytes
        return False
    finally:
        sock.setblocking(True)


def _answer_plain_http(sock: socket.socket, end: float) -> None:
    """Send the 400, then read what the client sent (a little, briefly) before
    closing: closing on unread bytes would reset the connection, and the
    client would see a reset instead of the answer."""
    try:
        sock.settimeout(max(0.01, min(1.0, end - time.monotonic())))
        sock.sendall(PLAIN_HTTP_ANSWER)
        sock.shutdown(socket.SHUT_WR)
        drained = 0
        while drained < 65536 and (chunk := sock.recv(4096)):
            drained += len(chunk)
    except OSError:
        pass
    finally:
        sock.close()


def _handshake_by(tls: ssl.SSLSocket, end: float) -> None:
    """The server side of the handshake, non-blocking, all of it before ``end``."""
    tls.setblocking(False)
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            _wait(tls, select.POLLIN, end)
        except ssl.SSLWantWriteError:
            _wait(tls, select.POLLOUT, end)
    tls.setblocking(True)


def _normalize_san(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return value


def peer_sans(tls: ssl.SSLSocket) -> list[str]:
    """DNS names, IP addresses, e-mail addresses and URIs of the verified peer cert."""
    cert = tls.getpeercert() or {}
    names: list[str] = []
    sans: tuple[tuple[str, str], ...] = cert.get("subjectAltName", ())  # type: ignore[assignment]
    for kind, value in sans:
        if kind in ("DNS", "email", "URI"):
            names.append(str(value))
        elif kind == "IP Address":
            names.append(_normalize_san(str(value)))
    return names


class WebSecurity:
    """What one loaded web configuration enforces; immutable once built."""

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        basic_auth: BasicAuth | None = None,
        headers: Iterable[tuple[str, str]] = (),
        auth_excluded_paths: Iterable[str] = (),
        rate_limiter: RateLimiter | None = None,
        client_allowed_sans: Iterable[str] = (),
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
    ) -> None:
        self.ssl_context = ssl_context
        self.basic_auth = basic_auth
        self.headers = tuple(headers)
        self.auth_excluded_paths = frozenset(auth_excluded_paths)
        self.rate_limiter = rate_limiter
        self.client_allowed_sans = frozenset(_normalize_san(s) for s in client_allowed_sans)
        self.handshake_timeout = handshake_timeout

    @property
    def tls(self) -> bool:
        return self.ssl_context is not None

    def handshake(
        self,
        sock: socket.socket,
        deadline: float | None = None,
        on_wrapped: Callable[[ssl.SSLSocket], None] | None = None,
    ) -> ssl.SSLSocket:
        """TLS-wrap an accepted connection; raises OSError (ssl.SSLError) on failure.

        Runs in the connection's own thread. The whole handshake ends by
        ``deadline`` (monotonic) and within the handshake timeout, however
        slowly the client sends, so a silent or trickling client holds up
        nobody. Plain HTTP sent to the TLS port gets a 400 that says so, as
        Go's servers answer.
        """
        assert self.ssl_context is not None
        end = time.monotonic() + self.handshake_timeout
        if deadline is not None:
            end = min(end, deadline)
        if _sends_plain_http(sock, end):
            _answer_plain_http(sock, end)
            raise ssl.SSLError("client sent an HTTP request to the TLS port")
        tls = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        if on_wrapped is not None:
            on_wrapped(tls)  # sock is detached now: whoever may close it early needs tls
        try:
            _handshake_by(tls, end)
            if self.client_allowed_sans and not self.client_allowed_sans.intersection(
                peer_sans(tls)
            ):
                raise ClientCertRejected("client certificate names none of client_allowed_sans")
        except BaseException:
            tls.close()
            raise
        return tls

    def refusal(self, path: str, authorization: str | None) -> Refusal | None:
        """None to serve the request, else (status, body, extra headers) to answer."""
        if self.rate_limiter is not None and not self.rate_limiter.allow():
            return 429, b"Too Many Requests\n", ()
        if self.basic_auth is None or path in self.auth_excluded_paths:
            return None
        if self.basic_auth.check(authorization):
            return None
        return 401, b"Unauthorized\n", (("WWW-Authenticate", f'Basic realm="{REALM}"'),)
