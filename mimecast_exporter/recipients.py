"""Where a message is going, and the few details the status page shows of it.

Read only for the messages that need it: the oldest few of a queue (the
status page) and, with ``top_domains``, every message. The fields come as raw
JSON (:class:`mimecast_exporter.mimecast.pages.Message` keeps them undecoded);
anything malformed reads as absent.

A recipient domain becomes a label value, so it is made safe here: lowercase,
internationalised names in their ASCII (IDNA 2008, UTS 46) form, and only valid
host names with at least one dot; anything else counts as no domain. The dot
also keeps every domain apart from the label value ``other``.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import idna
import msgspec

from mimecast_exporter.logs import scrub_and_cut

_ANY = msgspec.json.Decoder()
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# RFC 5321: an address has at most 254 characters (a path at most 256).
_MAX_ADDRESS = 320
# The recipients read of one message, bounded whatever comes. A message with
# more is not counted by domain at all: the domain series are then left out.
MAX_RECIPIENTS = 1000
SUBJECT_CHARS = 200
INFO_CHARS = 300


_UNREADABLE: Any = object()


def _value(raw: Any) -> Any:
    """A raw JSON field as a Python value; _UNREADABLE when msgspec cannot read
    it (a skipped field is not checked for UTF-8 when the page is decoded)."""
    if isinstance(raw, msgspec.Raw):
        try:
            return _ANY.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            return _UNREADABLE
    return raw


def addresses(raw: Any) -> list[str]:
    """The email addresses of ``to`` (a list of {emailAddress}, or one such object)."""
    return _addresses(_value(raw))


def _addresses(value: Any) -> list[str]:
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
            # IDNA 2008 with UTS 46 mapping, as browsers and registries do; not
            # Python's codec, IDNA 2003, which maps straße.de to strasse.de:
            # another registered domain.
            domain = idna.encode(domain, uts46=True).decode("ascii")
        except (UnicodeError, ValueError):  # idna.IDNAError is a UnicodeError
            return None
    if len(domain) > 253:
        return None
    labels = domain.split(".")
    if len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        return None
    return domain


class Unknown(Exception):
    """A message's recipient domains cannot be known exactly: ``reason`` is a
    word for the log, ``why`` the sentence."""

    def __init__(self, reason: str, why: str) -> None:
        super().__init__(why)
        self.reason = reason
        self.why = why


def domains(raw: Any) -> set[str]:
    """The distinct recipient domains of a message's ``to``. Raises
    :class:`Unknown` when they cannot all be read: then no count of domains can
    be exact, and none is served."""
    value = _value(raw)
    if value is _UNREADABLE:
        raise Unknown("unread", "the recipients of a message could not be read (not UTF-8)")
    if isinstance(value, list) and len(value) > MAX_RECIPIENTS:
        raise Unknown(
            "too_many_recipients",
            f"a message has {len(value)} recipients, more than the {MAX_RECIPIENTS} "
            "read of one message",
        )
    return {d for d in map(domain_of, _addresses(value)) if d is not None}


def text(raw: Any, limit: int) -> str | None:
    """A free-text field (subject, info), scrubbed of secrets and cut."""
    value = _value(raw)
    if not isinstance(value, str) or not value:
        return None
    return scrub_and_cut(value, limit)
