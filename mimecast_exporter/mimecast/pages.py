"""Decoding one page of find-processing-messages: one msgspec struct, tolerant, bounded.

Only what the exporter uses is decoded: ``meta.pagination`` (``next``,
``totalCount``), ``fail[]``, and the fields of each message that
:class:`Message` names. Everything else is skipped without being built into
Python objects.

Three rules:

- **The envelope must be right.** A JSON object whose ``data`` is a list
  whose objects' ``messages`` are lists; anything else is ``bad_response``,
  naming where the answer went wrong, because reporting an empty queue on a
  garbled answer would hide a backlog. An element of those lists that is not
  an object is skipped, and a page counts the ``messages`` entries skipped
  (``Page.unreadable``): a count that leaves them out is not exact.
- **A value that cannot be used costs that value, never the page.** Message
  fields are decoded as whatever JSON value they hold; the aggregator skips a
  bad one and still counts the message. The few values msgspec cannot hold at
  all (bytes that are not UTF-8, an escaped lone surrogate, a number too long
  for Python) are mended before a second decode: the bad bytes of a string
  become U+FFFD, such a number becomes ``{}``, a value of no use anywhere
  (never ``null``, which would read as "absent" in ``next``). See
  :func:`_mend`.
- **Memory is bounded before anything is built.** An answer at
  poll.max_response_bytes costs at most 4 times its size: an answer of millions
  of tiny values is refused, not decoded (see :func:`_admit`).
"""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec

from mimecast_exporter.mimecast.errors import PollError
from mimecast_exporter.mimecast.responses import fail_errors

RAW_NULL = msgspec.Raw(b"null")


class Message(msgspec.Struct, gc=False):
    """One queued message: the fields the exporter reads, as the answer gave them.

    The first eight hold any JSON value (the aggregator judges them); the last
    three stay undecoded (raw JSON) until the status page or top_domains reads
    them (:mod:`mimecast_exporter.recipients`).
    """

    routing: Any = None
    size: Any = None
    attempts: Any = None
    created: Any = None
    info: Any = None  # why it is stuck, in words (mimecast_exporter.status classifies it)
    id: Any = None  # which message: two reads of a queue compare their sets of ids
    # UNSET when the answer does not carry the field at all: then whether the
    # message is locked or its retry overdue is not known (never "no").
    next_attempt: Any = msgspec.field(default=msgspec.UNSET, name="nextAttempt")
    locked_until: Any = msgspec.field(default=msgspec.UNSET, name="lockedUntil")
    to: msgspec.Raw = RAW_NULL
    from_env: msgspec.Raw = msgspec.field(default=RAW_NULL, name="fromEnv")
    subject: msgspec.Raw = RAW_NULL


class Page:
    """One page of an answer."""

    __slots__ = (
        "count",
        "messages",
        "next_token",
        "number",
        "request_id",
        "total_count",
        "unreadable",
    )

    def __init__(
        self,
        number: int,
        messages: list[Message],
        next_token: str | None,
        total_count: int | None,  # meta.pagination.totalCount: the whole query's size, if sent
        request_id: str,
        unreadable: int = 0,  # entries of messages[] that are not objects: skipped
    ) -> None:
        self.number = number
        self.messages = messages
        self.next_token = next_token
        self.total_count = total_count
        self.request_id = request_id
        self.count = len(messages)
        self.unreadable = unreadable

    def __repr__(self) -> str:
        return f"Page(number={self.number}, count={self.count}, request_id={self.request_id!r})"


# Memory the decoded values of one answer may take, in multiples of
# poll.max_response_bytes (see _admit).
ELEMENTS_FACTOR = 2
# What one decoded object can cost at most: a Message (96 bytes) and its list
# slot, or a dict of up to five keys (232 bytes) where a field held an object.
COST_PER_OBJECT = 256
# What one more value or member can cost: a list slot and a number or a short
# string (49 bytes of header; its characters are counted with the answer's
# size), a msgspec.Raw (48), an empty list (56), or the growth of a dict.
COST_PER_ELEMENT = 96
# fail[] is tiny in every real answer; a larger one is not read into objects.
_MAX_FAIL_BYTES = 64 * 1024
_MAX_TOTAL_COUNT = 2**53
# Mimecast's page tokens are about 100 characters. A token is sent back in the
# next request and remembered (as a digest) for loop detection; one this long
# is not a token but an attack or a bug.
MAX_PAGE_TOKEN_LENGTH = 4096


class _Pagination(msgspec.Struct):
    next: Any = None
    totalCount: Any = None  # Mimecast's name


class _Meta(msgspec.Struct):
    pagination: _Pagination | None = None


# An element that is not an object is not a message (nor a data item): skipped.
_NotAnObject = str | int | float | bool | None | list[Any]


class _Item(msgspec.Struct):
    messages: list[Message | _NotAnObject] | None = None


class _Answer(msgspec.Struct):
    meta: _Meta | None = None
    data: list[_Item | _NotAnObject] | msgspec.UnsetType = msgspec.UNSET
    fail: msgspec.Raw = RAW_NULL


# float_hook: a float too large for a double (1e999) is inf, not an error;
# the aggregator rejects it as it rejects any float that is not a count.
_ANSWER = msgspec.json.Decoder(_Answer, float_hook=float)


def decode_page(body: bytes | bytearray, number: int, request_id: str, max_bytes: int) -> Page:
    """One page of a 200 answer. A non-empty ``fail[]`` is an error even on 200.

    ``max_bytes`` is poll.max_response_bytes: decoding builds at most
    ELEMENTS_FACTOR times that in values.
    """
    _admit(body, max_bytes, request_id)
    answer = _decode(body, request_id)
    _raise_for_fail(answer.fail, request_id)
    if answer.data is msgspec.UNSET:
        raise _bad("answer has no 'data' list", request_id)
    listed = [item.messages for item in answer.data if type(item) is _Item and item.messages]
    messages = [message for entries in listed for message in entries if type(message) is Message]
    pagination = answer.meta.pagination if answer.meta is not None else None
    next_token, total_count = _pagination(pagination, request_id)
    unreadable = sum(map(len, listed)) - len(messages)
    return Page(number, messages, next_token, total_count, request_id, unreadable)


def _decode(body: bytes | bytearray, request_id: str) -> _Answer:
    try:
        return _ANSWER.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        error: Exception = exc
    except RecursionError as exc:
        raise _bad(f"answer is nested too deeply: {exc}", request_id) from exc
    mended = _mend(body)
    if mended is not None:
        try:
            return _ANSWER.decode(mended)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
            error = exc
    if isinstance(error, msgspec.ValidationError):
        # "Expected `array`, got `object` - at `$.data`": msgspec names the place.
        raise _bad(f"answer is not shaped as find-processing-messages answers: {error}", request_id)
    raise _bad(f"answer is not valid JSON: {error}", request_id)


# A JSON string, or a number: the two tokens whose values msgspec may refuse.
# Strings are matched whole, so digits inside a string are never a number.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|-?[0-9][0-9.eE+-]*', re.DOTALL)
_SURROGATE = re.compile("[\ud800-\udfff]")
# Python parses at most this many digits (sys.get_int_max_str_digits()).
_MAX_DIGITS = 4300


def _mend(body: bytes | bytearray) -> bytes | None:
    """``body`` with every string and number that msgspec cannot hold replaced
    (see the module docstring); None when there is none. Only the tokens
    changed are copied apart: an answer costs twice its size here at most."""
    pieces: list[bytes | bytearray] = []
    done = 0
    for token in _TOKEN.finditer(body):
        value = token.group()
        mended = _mend_string(value) if value[:1] == b'"' else _mend_number(value)
        if mended is not None:
            pieces += (body[done : token.start()], mended)
            done = token.end()
    if not pieces:
        return None
    pieces.append(body[done:])
    return b"".join(pieces)


def _mend_string(token: bytes) -> bytes | None:
    """The string with bytes that are not UTF-8 and lone surrogates as U+FFFD."""
    try:
        token.decode("utf-8")
        valid = True
    except UnicodeDecodeError:
        valid = False
    if valid and b"\\u" not in token:
        return None
    try:
        value = json.loads(token.decode("utf-8", "replace"))
    except ValueError:
        return None  # malformed in another way: msgspec's error stands
    mended = _SURROGATE.sub("\ufffd", value)
    if valid and mended == value:
        return None
    return json.dumps(mended).encode("ascii")


def _mend_number(token: bytes) -> bytes | None:
    if len(token) <= 20:  # any such number fits an int64 or a double
        return None
    digits = len(token.lstrip(b"-").split(b".")[0].split(b"e")[0].split(b"E")[0])
    return b"{}" if digits > _MAX_DIGITS else None


def _admit(body: bytes | bytearray, max_bytes: int, request_id: str) -> None:
    """Refuse an answer whose decoded values could take more than
    ``ELEMENTS_FACTOR`` times poll.max_response_bytes, before anything is built.

    Every object starts with ``{``, every array with ``[``, and every value
    but the first of an array or an object follows a ``,``: counting those
    bytes in the whole answer (fast, no copy) bounds what the decode can
    build. String characters cost at most the answer's own size again, so an
    answer at the cap costs at most 4 times its size in all.
    """
    size = len(body)
    budget = ELEMENTS_FACTOR * max(max_bytes, size)
    # Every value takes at least two bytes ("{}", or "1,"): an answer this small
    # cannot hold more than the budget, so counting is not needed.
    if (size // 2 + 1) * COST_PER_OBJECT <= budget:
        return
    objects = body.count(b"{")
    elements = body.count(b",") + body.count(b"[")
    cost = objects * COST_PER_OBJECT + elements * COST_PER_ELEMENT
    if cost > budget:
        raise _bad(
            f"answer of {size} bytes holds up to {objects} objects and {elements} other "
            f"values; decoding them could take more than {ELEMENTS_FACTOR} times "
            "poll.max_response_bytes in memory",
            request_id,
        )


def _raise_for_fail(raw: msgspec.Raw, request_id: str) -> None:
    text = bytes(raw).strip()
    if text in (b"null", b"[]", b""):
        return  # absent, null, or empty as in every good answer: nothing to parse
    if len(text) > _MAX_FAIL_BYTES:
        raise PollError(
            "api_fail",
            f"HTTP 200 with a fail[] of {len(text)} bytes, too large to read",
            status=200,
            request_id=request_id,
        )
    try:
        # A text that is not UTF-8, or a number too long, costs that value: the
        # answer is still the error it says it is.
        errors = fail_errors({"fail": json.loads(_mend(text) or text)})
    except (ValueError, RecursionError) as exc:
        raise _bad(f"'fail' is not readable JSON: {type(exc).__name__}", request_id) from exc
    if errors:
        code, message, _ = errors[0]
        raise PollError(
            "api_fail",
            f"HTTP 200 with fail[]: {message or code or 'no message'}",
            status=200,
            code=code,
            request_id=request_id,
            retryable=any(retryable for _, _, retryable in errors),
        )


def _pagination(pagination: _Pagination | None, request_id: str) -> tuple[str | None, int | None]:
    """(next page token, totalCount) from ``meta.pagination``; both optional."""
    if pagination is None:
        return None, None
    token = pagination.next
    if token is None or token == "":
        token = None
    elif isinstance(token, bool) or not isinstance(token, str | int):
        kind = "object or array" if isinstance(token, dict | list) else type(token).__name__
        raise _bad(f"'meta.pagination.next' is a {kind}", request_id)
    else:
        token = str(token)
        if len(token) > MAX_PAGE_TOKEN_LENGTH:
            raise _bad(
                f"'meta.pagination.next' is {len(token)} characters long, "
                f"more than the {MAX_PAGE_TOKEN_LENGTH} a page token may have",
                request_id,
            )
    total = pagination.totalCount
    if isinstance(total, bool) or not isinstance(total, int) or not 0 <= total <= _MAX_TOTAL_COUNT:
        total = None  # absent or unusable: counts that need it are not served
    return token, total


def _bad(message: str, request_id: str) -> PollError:
    return PollError("bad_response", message, status=200, request_id=request_id)
