"""Where a message is going, and the few details the status page shows of it.

Read only for the messages that need it: the oldest few of a queue (the
status page) and, with ``top_domains``, every message. The fields come as raw
JSON (:class:`mimecast_exporter.mimecast.pages.Message` keeps them undecoded), or as
decoded values on the JSON path; anything malformed reads as absent.

A recipient domain becomes a label value, so it is made safe here: lowercase,
internationalised names in their ASCII (IDNA, punycode) form, and only valid
host names with at least one dot; anything else counts as no domain. The dot
also keeps every domain apart from the label value ``other``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

import msgspec

from mimecast_exporter.logs import scrub_and_cut

_ANY = msgspec.json.Decoder()
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# RFC 5321: an address has at most 254 characters (a path at most 256).
_MAX_ADDRESS = 320
# The recipients read of one message: enough for the page, bounded whatever comes.
MAX_RECIPIENTS = 100
SUBJECT_CHARS = 200
INFO_CHARS = 300


def _value(raw: Any) -> Any:
    """A raw JSON field as a Python value; None when it is not readable JSON."""
    if isinstance(raw, msgspec.Raw):
        try:
            return _ANY.decode(raw)
        except (msgspec.DecodeError, RecursionError):
            return None
    return raw


def addresses(raw: Any) -> list[str]:
    """The email addresses of ``to`` (a list of {emailAddress}, or one such object)."""
    value = _value(raw)
    items = value if isinstance(value, list) else [value]
    found = []
    for item in items[:MAX_RECIPIENTS]:
        address = item.get("emailAddress") if isinstance(item, dict) else None
        if isinstance(address, str) and 0 < len(address) <= _MAX_ADDRESS:
            found.append(address.strip())
    return found


def sender(raw: Any) -> str | None:
    """fromEnv's address."""
    found = addresses(raw)
    return found[0] if found else None


@functools.lru_cache(maxsize=8192)  # recipients repeat: the same few domains, mostly
def domain_of(address: str) -> str | None:
    """The address's domain as a safe label value, or None."""
    _, at, domain = address.rpartition("@")
    if not at:
        return None
    domain = domain.strip().rstrip(".").lower()
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except (UnicodeError, ValueError):
            return None
    if len(domain) > 253:
        return None
    labels = domain.split(".")
    if len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        return None
    return domain


def domains(raw: Any) -> set[str]:
    """The distinct recipient domains of a message's ``to``."""
    return {d for d in map(domain_of, addresses(raw)) if d is not None}


def text(raw: Any, limit: int) -> str | None:
    """A free-text field (subject, info), scrubbed of secrets and cut."""
    value = _value(raw)
    if not isinstance(value, str) or not value:
        return None
    return scrub_and_cut(value, limit)


@dataclass(frozen=True)
class OldMessage:
    """One of the oldest messages of a queue, as the status page lists it.

    Without ``expose_message_details`` only the first four lines of fields are
    filled: no subject, no address, no info text (it can quote addresses).
    """

    created: float  # Unix seconds
    route: str
    status: str  # mimecast_exporter.status class of its info
    attempts: int | None
    domain: str | None  # of its first recipient with a valid domain
    recipients: int  # how many addresses its `to` lists
    next_attempt: float | None
    locked_until: float | None
    subject: str | None = None
    sender: str | None = None
    to: tuple[str, ...] = ()
    info: str | None = None
