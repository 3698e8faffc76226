"""HTTP to one Mimecast host: one keep-alive connection, settings read once.

requests, and urllib3 under it, do a lot around every request: read the
environment for proxies and CA bundles, merge settings, look up pools. At
pages of 500 messages that cost more CPU than decoding the answer (see
BENCHMARKS.md), and the exporter needs none of it per request. So the
environment is read once, here, as requests reads it (``HTTPS_PROXY``,
``NO_PROXY``, ``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``), and a request goes
straight out on a connection kept open between requests, written and read by
:mod:`mimecast_exporter.mimecast.http11` (``http.client`` parses headers with the email
package: more CPU per request than decoding a page). Through a proxy,
urllib3's ProxyManager does the tunnelling.

TLS is always verified: against ``tls_config.ca_file`` when the account has
one, else the environment's bundle, else certifi's (as requests does).

Answers may come compressed (gzip, deflate): they are inflated here, a
bounded amount at a time, so that the caller's size cap bounds the bytes
after inflating, not only those on the wire.
"""

from __future__ import annotations

import os
import select
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import requests.certs
import requests.utils
import urllib3
import urllib3.connection

from mimecast_exporter.deadline_socket import DeadlineSocket
from mimecast_exporter.logs import scrub_and_cut
from mimecast_exporter.mimecast import http11

HEADERS = {"Accept-Encoding": "gzip, deflate", "Connection": "keep-alive"}
# Bytes an answer may take on the wire beyond its body cap: status line,
# headers, chunk framing, compression overhead. Mimecast's headers are ~1 KiB.
HEADER_ALLOWANCE = 256 * 1024


class ConnectTimeout(TimeoutError):
    """No connection (TCP and TLS) within the timeout."""


class BadEncoding(ValueError):
    """An answer compressed in a way the exporter did not ask for, or that does
    not inflate as its Content-Encoding says."""


class Answer(Protocol):
    status: int
    headers: Any  # a case-insensitive mapping

    def read1(self, size: int) -> bytes:
        """Up to ``size`` bytes of the inflated body, as soon as any are there; b"" at the end."""

    def readinto(self, buffer: memoryview) -> int:
        """Bytes of the inflated body into ``buffer`` (as many as fit, unless the
        body ends first): their number, 0 at the end. Not compressed, the body
        goes from the socket into ``buffer`` without a copy in between."""

    def finish(self) -> None:
        """The body was read to the end: keep the connection for the next request."""

    def abort(self) -> None:
        """Give up on the body: close the connection."""


class Transport(Protocol):
    proxy: str | None

    def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float, max_bytes: int
    ) -> Answer:
        """Send a request; the answer's body is left to read.

        ``timeout`` bounds the whole exchange: connecting, sending, the status
        line, headers, chunk framing and the body, however slowly the host
        sends them. ``max_bytes`` bounds every byte read on the wire for it,
        compressed or not, framing and headers included. Raises OSError
        (TimeoutError past the deadline, TooManyBytes past the cap),
        http.client.HTTPException or urllib3's errors (ConnectTimeout, a
        TimeoutError, for a connection that could not be made in time)."""


def transport_for(
    base_url: str, ca_file: str | None, environ: Mapping[str, str] = os.environ
) -> Transport:
    """The transport for one account: its proxy (unless NO_PROXY says not) and CA bundle."""
    bundle = (
        ca_file
        or environ.get("REQUESTS_CA_BUNDLE")
        or environ.get("CURL_CA_BUNDLE")
        or requests.certs.where()  # type: ignore[attr-defined]
    )
    proxy = _proxy_for(base_url)
    if proxy is None:
        return DirectTransport(base_url, bundle)
    return ProxyTransport(proxy, bundle)


class DirectTransport:
    """One connection to the host, opened when needed and kept between requests;
    each exchange read by :mod:`mimecast_exporter.mimecast.http11`."""

    proxy: str | None = None

    def __init__(self, base_url: str, bundle: str) -> None:
        parts = urlsplit(base_url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if self._https else 80)
        # The Host header: the URL's host and port, as written there.
        self._host_header = parts.netloc.rpartition("@")[2]
        self._context: ssl.SSLContext | None = None
        if self._https:
            self._context = ssl.create_default_context(
                cafile=None if os.path.isdir(bundle) else bundle,
                capath=bundle if os.path.isdir(bundle) else None,
            )
        self._sock: DeadlineSocket | None = None

    def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float, max_bytes: int
    ) -> Answer:
        # Not sent again here if the host drops the connection: a request id and
        # signature are good once, so the client's retry makes a new request.
        deadline = time.monotonic() + timeout
        request = http11.request_bytes(
            "POST", urlsplit(url).path, self._host_header, {**HEADERS, **headers}, body
        )
        sock = self._connection(timeout)
        try:
            sock.arm(deadline, max_bytes + HEADER_ALLOWANCE)
            sock.sendall(request)
            exchange = http11.Exchange(sock)
        except BaseException:
            self.close()
            raise
        return _DirectAnswer(exchange, self)

    def _connection(self, timeout: float) -> DeadlineSocket:
        sock = self._sock
        if sock is not None and not _dropped(sock):
            return sock
        self.close()
        try:
            raw = socket.create_connection((self._host, self._port), timeout=timeout)
        except TimeoutError as exc:
            raise ConnectTimeout(f"no connection to {self._host}:{self._port}") from exc
        try:
            # A request goes out in one piece: no waiting for an ACK of a first part.
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._context is not None:
                raw = self._context.wrap_socket(raw, server_hostname=self._host)
        except TimeoutError as exc:
            raw.close()
            raise ConnectTimeout(f"no TLS connection to {self._host}:{self._port}") from exc
        except BaseException:
            raw.close()
            raise
        self._sock = DeadlineSocket(raw)
        return self._sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _dropped(sock: Any) -> bool:
    """An idle keep-alive connection the host has closed reads as readable (EOF).

    poll, not select: select() cannot watch a descriptor past 1024, and with the
    open-files limit raised the exporter's descriptors may well be.
    """
    try:
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True


class _DirectAnswer:
    def __init__(self, exchange: http11.Exchange, transport: DirectTransport) -> None:
        self._exchange = exchange
        self._transport = transport
        self.status = exchange.status
        self.headers = exchange.headers
        self._body = _Inflating(exchange, exchange.headers.get("Content-Encoding"))

    def read1(self, size: int) -> bytes:
        return self._body.read1(size)

    def readinto(self, buffer: memoryview) -> int:
        return self._body.readinto(buffer)

    def finish(self) -> None:
        # Kept for the next request only when this answer ended cleanly and the
        # host did not say it would close.
        if self._exchange.will_close or not self._exchange.complete:
            self._transport.close()

    def abort(self) -> None:
        self._transport.close()


class ProxyTransport:
    """Through a proxy (CONNECT for HTTPS), by urllib3's ProxyManager."""

    proxy: str | None

    def __init__(self, proxy: str, bundle: str) -> None:
        tls: dict[str, Any] = {"cert_reqs": "CERT_REQUIRED"}
        tls["ca_cert_dir" if os.path.isdir(bundle) else "ca_certs"] = bundle
        parts = urlsplit(proxy)
        proxy_headers = None
        if parts.username is not None:
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            proxy_headers = urllib3.make_headers(proxy_basic_auth=credentials)
            proxy = proxy.replace(parts.netloc, parts.netloc.rpartition("@")[2], 1)
        self.proxy = proxy
        self._manager = urllib3.ProxyManager(proxy, proxy_headers=proxy_headers, **tls)
        self._manager.pool_classes_by_scheme = {
            "http": _DeadlineHTTPPool,
            "https": _DeadlineHTTPSPool,
        }

    def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float, max_bytes: int
    ) -> Answer:
        # The connection classes below arm their socket from this, whether
        # urlopen() reuses a connection or opens one.
        _exchange.limits = (time.monotonic() + timeout, max_bytes + HEADER_ALLOWANCE)
        try:
            response = self._manager.urlopen(
                "POST",
                url,
                body=body,
                headers={**HEADERS, **headers},
                timeout=urllib3.Timeout(connect=timeout, read=timeout),
                retries=False,
                redirect=False,
                preload_content=False,
                decode_content=False,
            )
        finally:
            _exchange.limits = None
        return _ProxiedAnswer(response)


# (deadline, byte cap) of the exchange this thread is making through a proxy.
_exchange = threading.local()


def _arm(conn: Any) -> None:
    limits = getattr(_exchange, "limits", None)
    if limits is not None and isinstance(conn.sock, DeadlineSocket):
        conn.sock.arm(*limits)


class _Deadlined:
    """Mixed into urllib3's connections: the socket bounded by the exchange's deadline."""

    sock: Any

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self.sock = DeadlineSocket(self.sock)
        _arm(self)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _arm(self)
        super().request(*args, **kwargs)  # type: ignore[misc]


class _DeadlineConnection(_Deadlined, urllib3.connection.HTTPConnection):
    pass


class _DeadlineHTTPSConnection(_Deadlined, urllib3.connection.HTTPSConnection):
    pass


class _DeadlineHTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _DeadlineConnection


class _DeadlineHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _DeadlineHTTPSConnection


class _ProxiedAnswer:
    def __init__(self, response: urllib3.BaseHTTPResponse) -> None:
        self._response = response
        self.status = response.status
        self.headers = response.headers
        self._body = _Inflating(_Raw(response), response.headers.get("Content-Encoding"))

    def read1(self, size: int) -> bytes:
        return self._body.read1(size)

    def readinto(self, buffer: memoryview) -> int:
        return self._body.readinto(buffer)

    def finish(self) -> None:
        self._response.release_conn()

    def abort(self) -> None:
        self._response.close()


class _Raw:
    """The bytes as they came (urllib3 inflating nothing: _Inflating does, bounded)."""

    def __init__(self, response: urllib3.BaseHTTPResponse) -> None:
        self._response = response

    def read1(self, size: int) -> bytes:
        data: bytes = self._response.read1(size, decode_content=False)
        return data

    def readinto(self, buffer: memoryview) -> int:
        return _read1_into(self, buffer)


class _Inflating:
    """A body, inflated at most ``size`` bytes per read whatever the ratio."""

    def __init__(self, raw: Any, encoding: str | None) -> None:
        self._raw = raw
        coding = (encoding or "identity").strip().lower()
        self._unsupported = None
        if coding == "identity":
            self._inflater = None
        elif coding in ("gzip", "x-gzip"):
            self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif coding == "deflate":
            self._inflater = zlib.decompressobj()
        else:  # said when the body is read, where the caller expects trouble
            shown = scrub_and_cut(coding, 40)
            self._unsupported = f"answer compressed as {shown!r}, which was not asked for"
        self._ended = False

    def read1(self, size: int) -> bytes:
        if self._unsupported:
            raise BadEncoding(self._unsupported)
        inflater = self._inflater
        if inflater is None:
            return self._read_raw(size)
        while True:
            data = inflater.unconsumed_tail or (b"" if self._ended else self._read_raw(size))
            if not data:
                self._ended = True
                return inflater.flush()  # what is left of the last input: little
            try:
                out = inflater.decompress(data, size)
            except zlib.error as exc:
                raise BadEncoding(f"answer does not inflate: {exc}") from exc
            if inflater.eof and inflater.unused_data:
                # A second gzip member, or junk: nothing Mimecast sends. Refused
                # rather than read on (its bytes would pile up in unused_data).
                raise BadEncoding("answer has data after its compressed body")
            if out:
                return out

    def readinto(self, buffer: memoryview) -> int:
        if self._unsupported or self._inflater is not None:
            return _read1_into(self, buffer)
        got: int = self._raw.readinto(buffer)
        return got

    def _read_raw(self, size: int) -> bytes:
        # A body cut short raises where it is read (http11.Exchange, urllib3).
        data: bytes = self._raw.read1(size)
        return data


def _read1_into(reader: Any, buffer: memoryview) -> int:
    """``readinto`` for a reader that only has ``read1``: one copy."""
    data = reader.read1(len(buffer))
    buffer[: len(data)] = data
    return len(data)


def _proxy_for(url: str) -> str | None:
    """The proxy for ``url`` from the environment, as requests chooses it."""
    proxies = requests.utils.get_environ_proxies(url)  # {} when NO_PROXY matches
    scheme = urlsplit(url).scheme
    proxy = proxies.get(scheme) or proxies.get("all")
    if not proxy:
        return None
    return proxy if "://" in proxy else f"http://{proxy}"
