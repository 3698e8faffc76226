"""Decoding one page of find-processing-messages: fast, lenient and bounded in memory.

Only what the exporter uses is decoded: ``meta.pagination`` (``next``,
``totalCount``), ``fail[]``, and seven fields of each message (``routing``,
``size``, ``attempts``, ``created``, ``info``, ``nextAttempt``,
``lockedUntil``). Everything else is skipped without being built into Python
objects.

Three rules:

- **The envelope must be right.** A JSON object whose ``data`` is a list;
  anything else is ``bad_response``, because reporting an empty queue on a
  garbled answer would hide a backlog.
- **Messages are not judged here.** A field of an unexpected type is passed on
  as it is (a container becomes :data:`NOT_A_SCALAR`) and the aggregator skips
  the bad value but still counts the message. A page that the typed decode
  rejects (a container in one of the four fields, an array element that is not
  an object) is decoded again on a slower, tolerant path with the same result.
- **Memory is bounded before anything is built.** An answer at
  poll.max_response_bytes costs at most 4 times its size: an answer of millions
  of tiny objects is refused, not decoded (see :class:`_Bound`).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Annotated, Any

import msgspec

from mimecast_exporter.mimecast.errors import PollError
from mimecast_exporter.mimecast.responses import fail_errors

Scalar = str | int | float | bool | None
RAW_NULL = msgspec.Raw(b"null")
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]


class Message(msgspec.Struct, gc=False):
    """The fields of one queued message that the exporter reads."""

    routing: Scalar = None
    size: Scalar = None
    attempts: Scalar = None
    created: Scalar = None
    info: Scalar = None  # why it is stuck, in words (mimecast_exporter.status classifies it)
    # UNSET when the answer does not carry the field at all: then whether the
    # message is locked or its retry overdue is not known (never "no"). Decoded
    # as dates by msgspec, in C (this runs per message); a value that is not a
    # date with a zone sends the page down the tolerant path, where it stays
    # the string (or other value) it was.
    next_attempt: AwareDatetime | msgspec.UnsetType | None = msgspec.field(
        default=msgspec.UNSET, name="nextAttempt"
    )
    locked_until: AwareDatetime | msgspec.UnsetType | None = msgspec.field(
        default=msgspec.UNSET, name="lockedUntil"
    )


class Details(msgspec.Struct, gc=False):
    """Where a message goes and what it is, undecoded (slices of the answer).

    Read only when needed: for the few oldest messages (the status page) and,
    with top_domains, for every message. Not part of :class:`Message`, whose
    decoding every poll pays for: three more fields there cost a fifth of
    ``json.loads`` again.
    """

    to: msgspec.Raw = RAW_NULL
    from_env: msgspec.Raw = msgspec.field(default=RAW_NULL, name="fromEnv")
    subject: msgspec.Raw = RAW_NULL


NO_DETAILS = Details()  # a message that says nothing of these: nothing to show
# Details that could not be read (the memory bound, a decode error): not "none".
# Figures built from them (the domain series) are then left out, never guessed.
UNREAD = Details()


class _NotAScalar:
    """A field that held an object or an array: never a usable value."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<object or array>"


NOT_A_SCALAR: Any = _NotAScalar()


class Page:
    """One page of an answer."""

    __slots__ = (
        "body",
        "count",
        "max_bytes",
        "messages",
        "next_token",
        "number",
        "read_details",
        "request_id",
        "total_count",
    )

    def __init__(
        self,
        number: int,
        messages: list[Message],
        next_token: str | None,
        total_count: int | None,  # meta.pagination.totalCount: the whole query's size, if sent
        request_id: str,
        body: bytes | bytearray | None = None,  # the answer, for details()
        max_bytes: int = 0,
        read_details: list[Details] | None = None,  # None: not read yet
    ) -> None:
        self.number = number
        self.messages = messages
        self.next_token = next_token
        self.total_count = total_count
        self.request_id = request_id
        self.body = body
        self.max_bytes = max_bytes
        self.read_details = read_details
        self.count = len(messages)

    def __repr__(self) -> str:
        return f"Page(number={self.number}, count={self.count}, request_id={self.request_id!r})"

    def details(self) -> list[Details]:
        """The Details of each message, in the order of ``messages``: decoded from
        the answer on first use. :data:`UNREAD` where they cannot be had within
        the memory bound (see :data:`COST_PER_DETAIL`) or decoded."""
        if self.read_details is None:
            self.read_details = _details(self.body, self.count, self.max_bytes)
        return self.read_details


# Memory the decoded array elements of one answer may take, in multiples of
# poll.max_response_bytes (see _Bound).
ELEMENTS_FACTOR = 2
# What one decoded array element can cost at most: a Message (72 bytes: seven
# fields), its list slot, and the object headers of its string values (49 bytes
# each; their characters are counted with the answer's size); on the tolerant
# path also a msgspec.Raw.
COST_PER_ELEMENT = 400
# What reading a message's Details adds: the struct, its list slot and three
# msgspec.Raw. Details are read only when all the elements of the answer fit
# the same budget with this on top.
COST_PER_DETAIL = 224
# fail[] is tiny in every real answer; a larger one is not read into objects.
_MAX_FAIL_BYTES = 64 * 1024
_MAX_TOTAL_COUNT = 2**53
# Mimecast's page tokens are about 100 characters. A token is sent back in the
# next request and remembered (as a digest) for loop detection; one this long
# is not a token but an attack or a bug.
MAX_PAGE_TOKEN_LENGTH = 4096


class _Envelope(msgspec.Struct):
    meta: msgspec.Raw = msgspec.Raw(b"null")
    data: msgspec.Raw = msgspec.Raw(b"")  # empty: no data at all
    fail: msgspec.Raw = msgspec.Raw(b"null")


class _FastItem(msgspec.Struct):
    messages: list[Message] | None = None


class _FastEnvelope(msgspec.Struct):
    meta: msgspec.Raw = msgspec.Raw(b"null")
    data: list[_FastItem] | msgspec.UnsetType = msgspec.UNSET
    fail: msgspec.Raw = msgspec.Raw(b"null")


class _DataItem(msgspec.Struct):
    messages: msgspec.Raw = msgspec.Raw(b"null")


class _Meta(msgspec.Struct):
    pagination: msgspec.Raw = msgspec.Raw(b"null")


class _Pagination(msgspec.Struct):
    next: msgspec.Raw = msgspec.Raw(b"null")
    totalCount: msgspec.Raw = msgspec.Raw(b"null")


class _LooseMessage(msgspec.Struct, gc=False):
    routing: msgspec.Raw = msgspec.Raw(b"null")
    size: msgspec.Raw = msgspec.Raw(b"null")
    attempts: msgspec.Raw = msgspec.Raw(b"null")
    created: msgspec.Raw = msgspec.Raw(b"null")
    info: msgspec.Raw = msgspec.Raw(b"null")
    next_attempt: msgspec.Raw | msgspec.UnsetType = msgspec.field(
        default=msgspec.UNSET, name="nextAttempt"
    )
    locked_until: msgspec.Raw | msgspec.UnsetType = msgspec.field(
        default=msgspec.UNSET, name="lockedUntil"
    )
    to: msgspec.Raw = RAW_NULL
    from_env: msgspec.Raw = msgspec.field(default=RAW_NULL, name="fromEnv")
    subject: msgspec.Raw = RAW_NULL


class _DetailsItem(msgspec.Struct):
    messages: list[Details] | None = None


class _DetailsEnvelope(msgspec.Struct):
    data: list[_DetailsItem] | msgspec.UnsetType = msgspec.UNSET


_FAST = msgspec.json.Decoder(_FastEnvelope)
_DETAILS = msgspec.json.Decoder(_DetailsEnvelope)
_ENVELOPE = msgspec.json.Decoder(_Envelope)
_MESSAGES = msgspec.json.Decoder(list[Message])
_DETAILS_LIST = msgspec.json.Decoder(list[Details])
_ELEMENTS = msgspec.json.Decoder(list[msgspec.Raw])
_ANY = msgspec.json.Decoder()
_DATA_ITEM = msgspec.json.Decoder(_DataItem)
_DATA_ITEMS = msgspec.json.Decoder(list[_DataItem])
_LOOSE = msgspec.json.Decoder(_LooseMessage)
_META = msgspec.json.Decoder(_Meta)
_PAGINATION = msgspec.json.Decoder(_Pagination)


def decode_page(body: bytes | bytearray, number: int, request_id: str, max_bytes: int) -> Page:
    """One page of a 200 answer. A non-empty ``fail[]`` is an error even on 200.

    ``max_bytes`` is poll.max_response_bytes: decoding builds at most
    ELEMENTS_FACTOR times that in array elements.
    """
    bound = _Bound(body, request_id, max_bytes)
    bound.admit_objects()
    messages, details, meta = _decode_answer(body, bound)
    next_token, total_count = _pagination(meta, request_id)
    return Page(
        number,
        messages,
        next_token,
        total_count,
        request_id,
        body if details is None else None,
        max_bytes,
        details,
    )


def _decode_answer(
    body: bytes | bytearray, bound: _Bound
) -> tuple[list[Message], list[Details] | None, msgspec.Raw]:
    """(messages, their Details if the tolerant path read them, else None, and
    ``meta``), with msgspec. ``fail[]`` is checked first."""
    request_id = bound.request_id
    try:  # one pass over the answer, for every well-formed page
        fast = _FAST.decode(body)
    except msgspec.ValidationError:
        fast = None  # something is off: the careful path below finds and says what
    except (msgspec.DecodeError, RecursionError) as exc:
        raise _bad(f"answer is not valid JSON: {exc}", request_id) from exc
    if fast is not None and fast.data is not msgspec.UNSET:
        _raise_for_fail(fast.fail, request_id)
        if len(fast.data) == 1:  # as in every answer seen: no copy
            return fast.data[0].messages or [], None, fast.meta
        messages = [m for item in fast.data if item.messages for m in item.messages]
        return messages, None, fast.meta
    envelope = _decode_envelope(body, request_id)
    _raise_for_fail(envelope.fail, request_id)
    details: list[Details] = []
    return _careful_messages(envelope.data, bound, details), details, envelope.meta


def _details(body: bytes | bytearray | None, count: int, max_bytes: int) -> list[Details]:
    """Details of a page the fast path decoded: same arrays, same order."""
    if not count:
        return []
    missing = [UNREAD] * count
    if body is None:
        return missing
    if not _Bound(body, "", max_bytes).details_fit():
        return missing  # the messages and their details would not fit the bound together
    try:
        envelope = _DETAILS.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return missing  # e.g. "to" where an object was expected: nothing is shown of them
    if envelope.data is msgspec.UNSET:
        return missing
    details = [d for item in envelope.data if item.messages for d in item.messages]
    return details if len(details) == count else missing


def _careful_messages(data: msgspec.Raw, bound: _Bound, details: list[Details]) -> list[Message]:
    """The messages of ``data``, part by part, saying what is wrong with the envelope."""
    if _first_byte(data) != b"[":
        raise _bad("answer has no 'data' list", bound.request_id)
    messages: list[Message] = []
    for item in _data_items(data, bound):
        batch = item.messages
        first = _first_byte(batch)
        if first == b"n":  # null
            continue
        if first != b"[":
            raise _bad("'data[].messages' is not a list", bound.request_id)
        messages.extend(_messages(batch, bound, details))
    return messages


def _data_items(raw: msgspec.Raw, bound: _Bound) -> list[_DataItem]:
    bound.admit_objects()
    try:
        return _DATA_ITEMS.decode(raw)
    except msgspec.ValidationError:
        pass  # an item that is not an object: it carries no messages
    except (msgspec.DecodeError, RecursionError) as exc:
        raise _bad(f"answer is not valid JSON: {exc}", bound.request_id) from exc
    return [
        _decode(_DATA_ITEM, item, bound.request_id)
        for item in _elements(raw, bound)
        if _first_byte(item) == b"{"
    ]


def _decode_envelope(body: bytes | bytearray, request_id: str) -> _Envelope:
    try:
        return _ENVELOPE.decode(body)
    except msgspec.ValidationError as exc:
        # "Expected `object`, got `array`": say what the answer was instead.
        found = re.search(r"got `(\w+)`", str(exc))
        kind = found.group(1) if found else "value"
        raise _bad(f"answer is a JSON {kind}, not an object", request_id) from exc
    except (msgspec.DecodeError, RecursionError) as exc:
        raise _bad(f"answer is not valid JSON: {exc}", request_id) from exc


def _decode(decoder: msgspec.json.Decoder[Any], raw: Any, request_id: str) -> Any:
    try:
        return decoder.decode(raw)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise _bad(f"answer is not valid JSON: {exc}", request_id) from exc


def _messages(raw: msgspec.Raw, bound: _Bound, details: list[Details]) -> list[Message]:
    """The messages of one array; their Details appended to ``details``."""
    bound.admit_objects()
    try:
        messages = _MESSAGES.decode(raw)
        details.extend(_array_details(raw, len(messages), bound))
        return messages
    except msgspec.ValidationError:
        pass
    except (msgspec.DecodeError, RecursionError) as exc:
        raise _bad(f"answer is not valid JSON: {exc}", bound.request_id) from exc
    # The tolerant path: element by element, fields as raw JSON.
    messages = []
    for element in _elements(raw, bound):
        if _first_byte(element) != b"{":
            continue  # not an object: not a message
        loose = _decode(_LOOSE, element, bound.request_id)
        messages.append(
            Message(
                _scalar(loose.routing),
                _scalar(loose.size),
                _scalar(loose.attempts),
                _scalar(loose.created),
                _scalar(loose.info),
                # Not dates here (that is why this page is on this path): strings
                # or other values, which the aggregator parses or rejects itself.
                _unset_or_scalar(loose.next_attempt),
                _unset_or_scalar(loose.locked_until),
            )
        )
        details.append(Details(loose.to, loose.from_env, loose.subject))
    return messages


def _array_details(raw: msgspec.Raw, count: int, bound: _Bound) -> list[Details]:
    if not bound.details_fit():
        return [UNREAD] * count
    try:
        details = _DETAILS_LIST.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return [UNREAD] * count
    return details if len(details) == count else [UNREAD] * count


def _elements(raw: msgspec.Raw, bound: _Bound) -> list[msgspec.Raw]:
    bound.admit_elements()
    try:
        return _ELEMENTS.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
        raise _bad(f"answer is not valid JSON: {exc}", bound.request_id) from exc


def _scalar(raw: msgspec.Raw) -> Any:
    """The value of a raw JSON field, or NOT_A_SCALAR for an object or an array."""
    if _first_byte(raw) in (b"{", b"["):
        return NOT_A_SCALAR
    try:
        return _ANY.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return NOT_A_SCALAR


def _unset_or_scalar(raw: Any) -> Any:
    return msgspec.UNSET if raw is msgspec.UNSET else _scalar(raw)


def _first_byte(raw: Any) -> bytes:
    view = memoryview(raw)
    return view[:1].tobytes() if view.nbytes else b""


def _raise_for_fail(raw: msgspec.Raw, request_id: str) -> None:
    if _first_byte(raw) in (b"n", b"") or bytes(raw).strip() == b"[]":
        return  # absent, null, or empty as in every good answer: nothing to parse
    size = memoryview(raw).nbytes
    if size > _MAX_FAIL_BYTES:
        raise PollError(
            "api_fail",
            f"HTTP 200 with a fail[] of {size} bytes, too large to read",
            status=200,
            request_id=request_id,
        )
    try:
        errors = fail_errors({"fail": json.loads(bytes(raw))})
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


def _pagination(meta: msgspec.Raw, request_id: str) -> tuple[str | None, int | None]:
    """(next page token, totalCount) from ``meta.pagination``; both optional."""
    if _first_byte(meta) != b"{":
        return None, None
    pagination = _decode(_META, meta, request_id).pagination
    if _first_byte(pagination) != b"{":
        return None, None
    fields = _decode(_PAGINATION, pagination, request_id)
    token = _scalar(fields.next)
    if token is None or token == "":
        token = None
    elif isinstance(token, bool) or not isinstance(token, str | int):
        kind = "object or array" if token is NOT_A_SCALAR else type(token).__name__
        raise _bad(f"'meta.pagination.next' is a {kind}", request_id)
    else:
        token = str(token)
        if len(token) > MAX_PAGE_TOKEN_LENGTH:
            raise _bad(
                f"'meta.pagination.next' is {len(token)} characters long, "
                f"more than the {MAX_PAGE_TOKEN_LENGTH} a page token may have",
                request_id,
            )
    total = _scalar(fields.totalCount)
    if isinstance(total, bool) or not isinstance(total, int) or not 0 <= total <= _MAX_TOTAL_COUNT:
        total = None  # absent or unusable: counts that need it are not served
    return token, total


class _Bound:
    """What decoding one answer may build: at most ``ELEMENTS_FACTOR`` times the
    answer size cap in array elements, counted before anything is built.

    Every element of an array of structs is an object and starts with ``{``;
    every element of an array of anything but the first follows a ``,``. So
    counting those bytes in the whole answer (fast, no copy) bounds what any
    decode below can build. Field values are at most the answer's own size
    again, so an answer at the cap costs at most 4 times its size in all:
    its bytes, its values, and elements worth twice its size.
    """

    def __init__(self, body: bytes | bytearray, request_id: str, max_bytes: int) -> None:
        self.request_id = request_id
        self.size = len(body)
        self.budget = ELEMENTS_FACTOR * max(max_bytes, self.size)
        self._body = body
        self._admitted: set[bytes] = set()

    def admit_objects(self) -> None:
        """Before decoding into structs: only objects are built."""
        self._check(b"{", "objects")

    def admit_elements(self) -> None:
        """Before decoding into a list of msgspec.Raw: every element is built."""
        self._check(b",", "array elements")

    def details_fit(self) -> bool:
        """Whether every object of the answer could also have its Details read."""
        cost = COST_PER_ELEMENT + COST_PER_DETAIL
        if (self.size // 2 + 1) * cost <= self.budget:
            return True
        return self._body.count(b"{") * cost <= self.budget

    def _check(self, byte: bytes, what: str) -> None:
        # Every element takes at least two bytes ("{}", or "1,"): an answer this
        # small cannot hold more than the budget, so counting is not needed.
        if (self.size // 2 + 1) * COST_PER_ELEMENT <= self.budget or byte in self._admitted:
            return
        # Each object starts with "{"; each element but the first follows a ",".
        upper = self._body.count(byte) + (byte == b",")
        if upper * COST_PER_ELEMENT > self.budget:
            raise _bad(
                f"answer of {self.size} bytes holds up to {upper} {what}; decoding them could "
                f"take more than {ELEMENTS_FACTOR} times poll.max_response_bytes in memory",
                self.request_id,
            )
        self._admitted.add(byte)  # counted once per answer, however many arrays follow


def _bad(message: str, request_id: str) -> PollError:
    return PollError("bad_response", message, status=200, request_id=request_id)
