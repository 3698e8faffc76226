"""Why a message is stuck: its free-text ``info`` as one of a few status classes.

Mimecast's ``info`` carries whatever the last attempt said: its own wording
("Queued for Processing"), or the receiving server's SMTP reply ("451 4.7.1
Greylisted, please try again later"). The classes are few and fixed, so the
``status`` label stays bounded whatever the text.

:data:`PATTERNS` is the one table, read top to bottom: the first pattern that
matches decides. Words come before codes, because the same code stands for
different causes (4.7.1 is greylisting at one site and a policy block at
another); the reply codes (SMTP 4xx/5xx, RFC 3463 enhanced codes X.Y.Z) decide
only when no wording did.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

STATUSES: tuple[str, ...] = (
    "processing",
    "connection_refused",
    "timeout",
    "dns_failure",
    "tls_failure",
    "greylisted",
    "throttled",
    "mailbox_full",
    "rejected_permanent",
    "deferred_temporary",
    "other",
    "none",
)

_I = re.IGNORECASE


def _enhanced(klass: str, subject: str, detail: str) -> str:
    """An RFC 3463 code such as 5.2.2, not a piece of an IP address or version."""
    return rf"(?<![\d.]){klass}\.{subject}\.{detail}(?![\d.])"


def _reply(klass: str) -> str:
    """An SMTP reply code (550, 451): where replies stand, not any number."""
    where = r"(?:^|said:\s*|returned\s*['\"]?|reply:\s*|response:\s*|['\"(])"
    return where + klass + r"\d\d(?=[\s-]|$)"


# Verdict words: no, without saying whether for good.
_VERDICT = r"rejected|not accepted|access denied|blocked|refused"
_ENHANCED_4 = _enhanced("4", r"\d{1,3}", r"\d{1,3}")


class Rule(NamedTuple):
    """One line of the table: ``example`` is a real text that this rule, and no
    rule above it, decides (tests/test_status.py checks every one)."""

    status: str
    pattern: re.Pattern[str]
    example: str


# The first rule that matches decides. Words first, codes last. To add a
# wording: a Rule with its status, its pattern and a real example, placed
# before any rule that would catch the example first.
PATTERNS: tuple[Rule, ...] = (
    # Mimecast's own steps. "Time out waiting for cached result" is an internal
    # wait, not a network timeout: it must come before "timeout".
    Rule(
        "processing",
        re.compile(
            r"queued for (processing|delivery)|time ?out waiting for cached result"
            r"|being processed",
            _I,
        ),
        "Time out waiting for cached result to finish for 3fa2c1e09b7d, result is empty",
    ),
    # Greylisting says "try again later" too: before throttling and deferrals.
    Rule(
        "greylisted",
        re.compile(r"gr[ea]ylist", _I),
        "451 4.7.1 Greylisted, please try again in 300 seconds",
    ),
    Rule(
        "throttled",
        re.compile(
            r"throttl|rate.?limit|too many (concurrent )?(connections|messages|recipients)"
            r"|sending (rate|limit)|unusual rate|receiving mail at a rate"
            r"|exceeded the (maximum|sending)|mail system congestion|unexpected volume",
            _I,
        ),
        "421 4.7.28 Our system has detected an unusual rate of unsolicited mail",
    ),
    Rule(
        "mailbox_full",
        re.compile(
            r"mailbox (is )?full|over ?quota|quota ?exceed|exceeded (the )?(storage|quota)"
            r"|insufficient (system )?storage|out of storage|mailbox size limit",
            _I,
        ),
        "552 5.2.2 The email account that you tried to reach is over quota",
    ),
    Rule(
        "tls_failure",
        re.compile(r"\btls\b|starttls|\bssl\b|certificate|handshake", _I),
        "TLS negotiation failed with error SocketError",
    ),
    Rule(
        "dns_failure",
        re.compile(
            r"no mx record|\bdns\b|name or service not known|host not found|unknown host"
            r"|nxdomain|domain (name )?not found|nonexistent domain|could not resolve"
            r"|unable to resolve|no such domain|name service error",
            _I,
        ),
        "No MX records are available",
    ),
    Rule(
        "connection_refused",
        re.compile(
            r"connection refused|actively refused|unable to connect|could not connect"
            r"|connection (was )?(reset|closed|dropped)|no route to host"
            r"|network (is )?unreachable|host (is )?unreachable",
            _I,
        ),
        "Unable to connect to the remote host",
    ),
    Rule(
        "timeout",
        re.compile(r"timed? ?out|timeout", _I),
        "Connection timed out",
    ),
    # Words that can only mean never, without naming a cause above.
    Rule(
        "rejected_permanent",
        re.compile(
            r"user unknown|does not exist|no such user|recipient not found"
            r"|undeliverable|unable to relay",
            _I,
        ),
        "550 5.1.1 <bob@partner.example>: Recipient address rejected: User unknown",
    ),
    # A verdict ("rejected") says no, not whether for good: the reply's class
    # does. "450 4.7.1 Client host rejected" is a deferral; "550 5.4.1 Recipient
    # address rejected" (a code that RFC 3463 gives to no-answer) is final.
    Rule(
        "deferred_temporary",
        # Anchored: the verdict is looked for once, from the start, not from every
        # position of the text (that would be quadratic in its length).
        re.compile(
            r"\A(?=.*?(?:" + _VERDICT + r")).*?(?:" + _reply("4") + "|" + _ENHANCED_4 + ")",
            _I | re.S,
        ),
        "450 4.7.1 <unknown[203.0.113.9]>: Client host rejected: cannot find your hostname",
    ),
    Rule(
        "rejected_permanent",
        re.compile(_VERDICT, _I),
        "550 5.4.1 Recipient address rejected: Access denied",
    ),
    # The codes, when no wording said more. Enhanced codes by subject first.
    Rule(
        "mailbox_full",
        re.compile(_enhanced("[45]", "2", "2")),
        "Remote server returned '552 5.2.2'",
    ),
    Rule(
        "timeout",
        re.compile(_enhanced("[45]", "4", "[17]")),
        "Remote server returned '441 4.4.1'",
    ),
    Rule(
        "connection_refused",
        re.compile(_enhanced("[45]", "4", "2")),
        "Remote server returned '442 4.4.2'",
    ),
    Rule(
        "dns_failure",
        re.compile(_enhanced("[45]", "4", "[34]")),
        "Remote server returned '550 5.4.4'",
    ),
    Rule(
        "throttled",
        re.compile(_enhanced("[45]", "4", "5") + "|" + _enhanced("4", "7", "28")),
        "Remote server returned '421 4.7.28'",
    ),
    Rule(
        "rejected_permanent",
        re.compile(_reply("5") + "|" + _enhanced("5", r"\d{1,3}", r"\d{1,3}")),
        "Remote server returned '554 5.7.1'",
    ),
    Rule(
        "deferred_temporary",
        re.compile(_reply("4") + "|" + _enhanced("4", r"\d{1,3}", r"\d{1,3}")),
        "Remote server returned '451 4.3.2'",
    ),
    # Not-now words, when no code said more.
    Rule(
        "deferred_temporary",
        re.compile(r"temporar|try again|deferred|retr(y|ied)", _I),
        "Delivery temporarily suspended",
    ),
)

STATUS_INDEX: dict[str, int] = {status: i for i, status in enumerate(STATUSES)}
# Distinct texts classified, remembered as their index in STATUSES: a queue
# repeats the same few texts. The aggregator's loop reads it directly.
_MAX_CACHED = 4096
INDEX_CACHE: dict[str, int] = {}


def classify(info: Any) -> str:
    """The status class of one message's ``info``: one of :data:`STATUSES`."""
    return STATUSES[status_index(info)]


def status_index(info: Any) -> int:
    """:func:`classify`, as an index into :data:`STATUSES`."""
    if not isinstance(info, str):
        return STATUS_INDEX["none" if info is None else "other"]
    index = INDEX_CACHE.get(info)
    if index is None:
        index = STATUS_INDEX[_classify(info)]
        if len(INDEX_CACHE) >= _MAX_CACHED:
            INDEX_CACHE.clear()
        INDEX_CACHE[info] = index
    return index


def _classify(text: str) -> str:
    text = text.strip()
    if not text:
        return "none"
    for status, pattern, _ in PATTERNS:
        if pattern.search(text):
            return status
    return "other"
