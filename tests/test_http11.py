"""mimecast_exporter.mimecast.http11: one exchange, written and read over a real socket pair."""

from __future__ import annotations

import http.client
import socket
import time

import pytest

from mimecast_exporter.deadline_socket import DeadlineSocket
from mimecast_exporter.mimecast import http11
from mimecast_exporter.mimecast.http11 import BadFraming, Exchange, request_bytes
from mimecast_exporter.mimecast.transport import DirectTransport
from tests.rawserver import LoopbackServer


def exchange_of(answer: bytes, *, then_close: bool = True) -> Exchange:
    """The Exchange read from a peer that sends ``answer`` (and closes)."""
    ours, theirs = socket.socketpair()
    theirs.sendall(answer)
    if then_close:
        theirs.close()
    sock = DeadlineSocket(ours)
    sock.arm(time.monotonic() + 5)
    return Exchange(sock)


def body_of(exchange: Exchange, step: int = 7) -> bytes:
    """The whole body, read in small pieces (every framing edge crossed)."""
    out = bytearray()
    buffer = bytearray(step)
    while got := exchange.readinto(memoryview(buffer)):
        out += buffer[:got]
    return bytes(out)


# --- the request ---------------------------------------------------------------------


def test_the_request_is_one_piece_with_host_and_length():
    raw = request_bytes("POST", "/api/x", "example.com:8443", {"A": "1", "B": "two"}, b"{}")
    assert raw == (
        b"POST /api/x HTTP/1.1\r\nHost: example.com:8443\r\nA: 1\r\nB: two\r\n"
        b"Content-Length: 2\r\n\r\n{}"
    )


@pytest.mark.parametrize("value", ["abc\r\nX-Injected: 1", "abc\ndef", "abc\rdef"])
def test_a_line_break_in_a_header_value_is_refused_without_quoting_it(value):
    with pytest.raises(ValueError) as info:
        request_bytes("POST", "/", "h", {"Authorization": value}, b"")
    assert "abc" not in str(info.value)


@pytest.mark.parametrize("name", ["", " A", "A:B", "A\r\n"])
def test_an_invalid_header_name_is_refused(name):
    with pytest.raises(ValueError):
        request_bytes("POST", "/", "h", {name: "1"}, b"")


# --- the head ------------------------------------------------------------------------


def test_status_and_headers_any_case_first_of_a_repeated_name():
    answer = exchange_of(
        b"HTTP/1.1 429 Too Many\r\nX-RateLimit-Reset: 1000\r\nx-ratelimit-reset: 5\r\n"
        b"Folded: one\r\n two\r\nNo colon here\r\nContent-Length: 0\r\n\r\n"
    )
    assert answer.status == 429 and answer.version == 11
    assert answer.headers.get("x-ratelimit-RESET") == "1000"
    assert answer.headers["Folded"] == "one two"
    assert answer.headers.get("Missing", "d") == "d" and "No colon here" not in answer.headers
    assert body_of(answer) == b"" and answer.complete


def test_interim_answers_are_skipped_and_bare_line_feeds_accepted():
    answer = exchange_of(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\nContent-Length: 2\n\n{}")
    assert answer.status == 200 and body_of(answer) == b"{}"


@pytest.mark.parametrize(
    "answer, error",
    [
        (b"", http.client.RemoteDisconnected),
        (b"HTTP/1.1 200 OK\r\nContent-Le", http.client.IncompleteRead),
        (b"SMTP ready\r\n\r\n", http.client.BadStatusLine),
        (b"HTTP/1.1 2000 OK\r\n\r\n", http.client.BadStatusLine),
        (b"HTTP/2.0 200 OK\r\n\r\n", http.client.UnknownProtocol),
        (b"HTTP/1.1 200 OK\r\n" + b"X: 1\r\n" * 101 + b"\r\n", BadFraming),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70_000 + b"\r\n\r\n", BadFraming),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", BadFraming),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1e3\r\n\r\n", BadFraming),
    ],
    ids=[
        "closed",
        "cut-head",
        "not-http",
        "bad-status",
        "http2",
        "101-headers",
        "huge-head",
        "negative-length",
        "float-length",
    ],
)
def test_a_broken_head_is_an_error_of_its_kind(answer, error):
    with pytest.raises(error):
        exchange_of(answer)


def test_a_length_of_absurdly_many_digits_is_kept_huge_not_converted():
    answer = exchange_of(b"HTTP/1.1 200 OK\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n")
    assert answer.length == 10**18  # the client refuses it against its cap


# --- the body ------------------------------------------------------------------------


def test_a_body_by_length_stops_there_and_keeps_the_connection():
    answer = exchange_of(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789")
    assert body_of(answer, step=3) == b"0123456789"
    assert answer.complete and not answer.will_close


def test_bytes_after_the_body_make_the_connection_unusable():
    answer = exchange_of(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}HTTP/1.1 200 OK\r\n")
    assert body_of(answer) == b"{}"
    assert not answer.complete  # DirectTransport closes it rather than read a stray answer


def test_a_body_cut_short_is_an_error_not_a_shorter_body():
    answer = exchange_of(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234")
    with pytest.raises(http.client.IncompleteRead):
        body_of(answer)


def test_chunks_with_extensions_and_trailers():
    answer = exchange_of(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: 1\r\n\r\n"
    )
    assert body_of(answer, step=2) == b"hello world"
    assert answer.complete and not answer.will_close


@pytest.mark.parametrize(
    "chunks, error",
    [
        (b"z\r\nhello\r\n0\r\n\r\n", BadFraming),
        (b"-5\r\nhello\r\n0\r\n\r\n", BadFraming),
        (b"2\r\nhello\r\n0\r\n\r\n", BadFraming),  # more data than the size said
        (b"5\r\nhel", http.client.IncompleteRead),
        (b"5\r\nhello\r\n", http.client.IncompleteRead),  # no last chunk
        (b"5;" + b"e" * 5000 + b"\r\nhello\r\n0\r\n\r\n", BadFraming),
        (b"0\r\n" + b"T: 1\r\n" * 102 + b"\r\n", BadFraming),
    ],
    ids=["not-hex", "negative", "overlong", "cut", "unfinished", "long-line", "trailers"],
)
def test_broken_chunks_are_errors(chunks, error):
    answer = exchange_of(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks)
    with pytest.raises(error):
        body_of(answer)


def test_chunked_wins_over_a_length():
    answer = exchange_of(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n"
    )
    assert body_of(answer) == b"hello"


def test_without_length_or_chunks_the_body_ends_with_the_connection():
    answer = exchange_of(b"HTTP/1.1 200 OK\r\n\r\nall of it")
    assert answer.will_close
    assert body_of(answer) == b"all of it"


@pytest.mark.parametrize(
    "head, closes",
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n", False),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n", True),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n", True),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n", False),
    ],
)
def test_whether_the_host_keeps_the_connection(head, closes):
    assert exchange_of(head + b"\r\n").will_close is closes


def test_no_content_has_no_body():
    answer = exchange_of(b"HTTP/1.1 204 No Content\r\n\r\n", then_close=False)
    assert body_of(answer) == b"" and answer.complete


# --- the transport: one connection kept between requests --------------------------


def test_the_connection_is_kept_while_the_host_allows_and_replaced_when_not():
    closing = [False, False, True, False]  # the third answer says Connection: close

    def serve(conn: socket.socket) -> None:
        buffer = b""
        while True:
            data = conn.recv(65536)
            if not data:
                return
            buffer += data
            while b"\r\n\r\n" in buffer:
                head, _, rest = buffer.partition(b"\r\n\r\n")
                length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                buffer = rest[length:]
                close = closing.pop(0)
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                    + (b"Connection: close\r\n" if close else b"")
                    + b"\r\n{}"
                )
                if close:
                    conn.close()
                    return

    class KeepAlive(LoopbackServer):
        def handle(self, conn: socket.socket) -> None:
            with conn:
                serve(conn)

    with KeepAlive() as server:
        transport = DirectTransport(server.url, "/nonexistent-bundle")
        for _ in range(4):
            answer = transport.post(server.url + "/p", b"x", {}, 5, 1 << 20)
            buffer = bytearray(10)
            assert answer.readinto(memoryview(buffer)) == 2 and bytes(buffer[:2]) == b"{}"
            answer.finish()
        transport.close()
    assert server.connections == 2  # three requests on the first connection, one on the second


def test_module_bounds_are_what_the_docs_say():
    assert http11.MAX_HEADERS == 100 and http11.MAX_HEAD_BYTES == 64 * 1024


def test_checked_header_lines_are_kept_within_their_bound():
    for i in range(http11._MAX_CHECKED_LINES + 50):
        request_bytes("POST", "/", "h", {"x-mc-req-id": f"id-{i}"}, b"")
    assert len(http11._checked_lines) <= http11._MAX_CHECKED_LINES
    # A line refused once is refused again: only good lines are kept.
    for _ in range(2):
        with pytest.raises(ValueError):
            request_bytes("POST", "/", "h", {"Authorization": "a\r\nb"}, b"")
