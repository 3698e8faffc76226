"""One HTTP/1.1 exchange on a kept-alive connection, read lean.

``http.client`` parses every answer's headers with the ``email`` package and
goes through several layers of buffered file objects: about half a
millisecond of CPU per request, more than decoding a page of 100 messages,
and paid on every page of a poll. A poll's exchanges with Mimecast are all
alike (a POST with a small JSON body; an answer with a body of known length
or chunked), so this module does just that, on a :class:`DeadlineSocket`
that bounds the whole exchange in time and bytes:

- the request is written in one piece; header names and values are checked
  as ``http.client`` checks them (a line break in a value is refused, never
  sent);
- the status line and headers are read into one buffer and split once: at
  most :data:`MAX_HEAD_BYTES` and :data:`MAX_HEADERS` lines, 1xx answers
  skipped;
- the body is read straight into the caller's buffer: by Content-Length,
  chunked, or until the host closes; a body cut short is an error, never a
  shorter answer.

A head or framing that breaks a rule or bound raises :class:`BadFraming`
(reported as ``bad_response``); an answer cut short, ``http.client``'s own
exceptions (``IncompleteRead``, ``RemoteDisconnected``: ``connection``); the
socket, ``OSError``.
"""

from __future__ import annotations

import http.client
import re
from collections.abc import Iterator, Mapping
from typing import Any

from mimecast_exporter.deadline_socket import DeadlineSocket

# The status line and all headers of one answer (Mimecast's are about 1 KiB).
MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 100  # as http.client
MAX_CHUNK_LINE = 4096  # a chunk size, its extensions, a trailer line
_RECV = 64 * 1024  # bytes asked of the socket at a time for the head and chunk lines

# http.client's own checks (Lib/http/client.py): a name is a token; a value
# may not hold a line break (unless folded, which nothing here sends).
_LEGAL_NAME = re.compile(rb"[^:\s][^:\r\n]*").fullmatch
_ILLEGAL_VALUE = re.compile(rb"\n(?![ \t])|\r(?![ \t\n])").search
_STATUS = re.compile(rb"HTTP/(\d)\.(\d) (\d{3})(?: [^\r\n]*)?")


class BadFraming(http.client.HTTPException):
    """The answer's head or chunk framing breaks a rule or a bound: a malformed
    answer (``bad_response``), not a failed connection."""


class Headers(Mapping[str, str]):
    """An answer's headers: names without regard to case; the first of a repeated
    name, as ``http.client`` (``email.message.Message.get``) gives it."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._pairs = pairs
        self._first: dict[str, str] = {}
        for name, value in pairs:
            self._first.setdefault(name.lower(), value)

    def __getitem__(self, name: str) -> str:
        return self._first[name.lower()]

    def get(self, name: str, default: Any = None) -> Any:
        return self._first.get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._first

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._pairs)

    def __len__(self) -> int:
        return len(self._pairs)

    def items(self) -> list[tuple[str, str]]:  # type: ignore[override]
        return list(self._pairs)

    def __repr__(self) -> str:
        return f"Headers({[name for name, _ in self._pairs]})"


def request_bytes(
    method: str, path: str, host: str, headers: Mapping[str, str], body: bytes
) -> bytes:
    """The request as sent: request line, Host, the headers, Content-Length, body."""
    lines = [f"{method} {path} HTTP/1.1".encode("ascii"), b"Host: " + host.encode("idna")]
    for name, value in headers.items():
        line = _checked_lines.get((name, value))
        if line is None:
            line = _header_line(name, value)
            if len(_checked_lines) >= _MAX_CHECKED_LINES:
                _checked_lines.clear()
            _checked_lines[(name, value)] = line
        lines.append(line)
    lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


# Header lines already checked: most are the same at every request of a poll
# (Accept, User-Agent, a bearer token until it is renewed). Bounded: a request
# id and a date are new each time.
_checked_lines: dict[tuple[str, str], bytes] = {}
_MAX_CHECKED_LINES = 256


def _header_line(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode("ascii"), value.encode("latin-1")
    if not _LEGAL_NAME(raw_name):
        raise ValueError(f"invalid header name {name!r}")
    if _ILLEGAL_VALUE(raw_value):
        # The value is not quoted: it may be a credential (see client._post).
        raise ValueError(f"invalid value for header {name!r}")
    return raw_name + b": " + raw_value


class Exchange:
    """The answer to one request, read from ``sock``: status and headers on
    construction, the body by :meth:`readinto` / :meth:`read1`."""

    def __init__(self, sock: DeadlineSocket) -> None:
        self._sock = sock
        self._buffer = bytearray()  # received and not yet handed on
        self.status, self.version, self.headers = self._read_head()
        encoding = (self.headers.get("Transfer-Encoding") or "").strip().lower()
        self._chunked = encoding == "chunked"
        self.length: int | None = None  # body bytes still to come, when known
        declared = self.headers.get("Content-Length")
        if not self._chunked and declared is not None:
            declared = declared.strip()
            if not (declared.isascii() and declared.isdigit()):
                raise BadFraming("invalid Content-Length")
            # A length of more digits than any answer can have is left as huge as
            # it is (the client refuses it against its cap), not converted.
            self.length = int(declared) if len(declared) <= 18 else 10**18
        self._chunk_left = 0  # of the current chunk
        self._done = self.status in (204, 304) or self.length == 0
        connection = (self.headers.get("Connection") or "").lower()
        self.will_close = (
            "close" in connection
            or (self.version == 10 and "keep-alive" not in connection)
            or (not self._chunked and self.length is None and not self._done)
        )

    # -- the head ---------------------------------------------------------------

    def _read_head(self) -> tuple[int, int, Headers]:
        while True:
            head = self._take_head()
            lines = head.split(b"\n")
            match = _STATUS.fullmatch(lines[0].rstrip(b"\r"))
            if match is None:
                shown = lines[0][:80].decode("latin-1")
                raise http.client.BadStatusLine(repr(shown))
            major, minor, status = (int(group) for group in match.groups())
            if major != 1:
                raise http.client.UnknownProtocol(f"HTTP/{major}.{minor}")
            if 100 <= status < 200 and status != 101:
                continue  # an interim answer (100 Continue): the real one follows
            return status, 10 + min(minor, 1), _parse_headers(lines[1:])

    def _take_head(self) -> bytes:
        """Bytes up to the empty line that ends the head (removed from the buffer)."""
        searched = 0
        while True:
            end = _head_end(self._buffer, searched)
            if end is not None and len(end[0]) <= MAX_HEAD_BYTES:
                head, stop = end
                del self._buffer[:stop]
                return head
            if end is not None or len(self._buffer) > MAX_HEAD_BYTES:
                raise BadFraming(f"status line and headers larger than {MAX_HEAD_BYTES} bytes")
            searched = max(len(self._buffer) - 3, 0)
            if not self._receive():
                if not self._buffer:
                    raise http.client.RemoteDisconnected(
                        "Remote end closed connection without response"
                    )
                raise http.client.IncompleteRead(bytes(self._buffer[:80]))

    def _receive(self) -> int:
        """More bytes into the buffer; 0 when the host has closed."""
        scratch = bytearray(_RECV)
        got = self._sock.recv_into(scratch)
        self._buffer += memoryview(scratch)[:got]
        return got

    # -- the body -----------------------------------------------------------------

    @property
    def complete(self) -> bool:
        """The whole body was read, and nothing came after it."""
        return self._done and not self._buffer

    def readinto(self, target: memoryview) -> int:
        """Body bytes into ``target``: as many as fit and are still to come in the
        current piece; 0 at the end of the body."""
        if self._done or not len(target):
            return 0
        if self._chunked:
            if not self._chunk_left and not self._next_chunk():
                return 0
            target = target[: self._chunk_left]
        elif self.length is not None:
            target = target[: self.length]
        got = self._from_buffer(target)
        if not got:
            got = self._sock.recv_into(target)
            if not got:
                return self._ended_early()
        if self._chunked:
            self._chunk_left -= got
            if not self._chunk_left:
                self._end_of_chunk()
        elif self.length is not None:
            self.length -= got
            self._done = not self.length
        return got

    def read1(self, size: int) -> bytes:
        buffer = bytearray(size)
        got = self.readinto(memoryview(buffer))
        del buffer[got:]
        return bytes(buffer)

    def _from_buffer(self, target: memoryview) -> int:
        count = min(len(target), len(self._buffer))
        if count:
            target[:count] = self._buffer[:count]
            del self._buffer[:count]
        return count

    def _ended_early(self) -> int:
        if self._chunked or self.length is not None:
            raise http.client.IncompleteRead(b"", self.length or self._chunk_left)
        self._done = True  # no length, no chunks: the body ends where the connection does
        return 0

    def _line(self) -> bytes:
        """One line of chunk framing (without its line break)."""
        searched = 0
        while True:
            end = self._buffer.find(b"\n", searched)
            if 0 <= end <= MAX_CHUNK_LINE:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                return line.rstrip(b"\r")
            if end >= 0 or len(self._buffer) > MAX_CHUNK_LINE:
                raise BadFraming(f"a chunk framing line longer than {MAX_CHUNK_LINE} bytes")
            searched = len(self._buffer)
            if not self._receive():
                raise http.client.IncompleteRead(b"")

    def _next_chunk(self) -> bool:
        """Start the next chunk; False at the last (after its trailers)."""
        size = self._line().split(b";", 1)[0].strip()
        if not size or len(size) > 16 or not all(c in b"0123456789abcdefABCDEF" for c in size):
            raise BadFraming("a malformed chunk size")
        self._chunk_left = int(size, 16)
        if self._chunk_left:
            return True
        for _ in range(MAX_HEADERS + 1):  # trailers, up to an empty line
            if not self._line():
                self._done = True
                return False
        raise BadFraming(f"more than {MAX_HEADERS} trailer lines")

    def _end_of_chunk(self) -> None:
        if self._line():
            raise BadFraming("chunk data longer than its size")


def _head_end(buffer: bytearray, start: int) -> tuple[bytes, int] | None:
    """(head, bytes it takes with its end) once ``buffer`` holds the empty line
    that ends it: a line break right after another, with or without a CR."""
    ends = [(buffer.find(mark, start), len(mark)) for mark in (b"\n\r\n", b"\n\n")]
    found = [end for end in ends if end[0] >= 0]
    if not found:
        return None
    at, length = min(found)
    return bytes(buffer[:at]), at + length


def _parse_headers(lines: list[bytes]) -> Headers:
    if len(lines) > MAX_HEADERS:
        raise BadFraming(f"more than {MAX_HEADERS} headers")
    pairs: list[tuple[str, str]] = []
    for raw in lines:
        line = raw.rstrip(b"\r").decode("latin-1")
        if line[:1] in (" ", "\t") and pairs:  # folded onto the previous header
            name, value = pairs[-1]
            pairs[-1] = (name, f"{value} {line.strip()}")
            continue
        name, colon, value = line.partition(":")
        if colon and name and name == name.strip():
            pairs.append((name, value.strip()))
    return Headers(pairs)
