"""mimecast_exporter.status: realistic `info` texts (Mimecast's own, Postfix, Exchange,
Gmail, Microsoft 365) to their status class; every pattern of the table used."""

from __future__ import annotations

import pytest

from mimecast_exporter.status import PATTERNS, STATUSES, _classify, classify

CASES = [
    # Mimecast's own wordings
    ("Queued for Processing", "processing"),
    ("Queued for delivery", "processing"),
    ("Time out waiting for cached result to finish for mx.partner.example", "processing"),
    ("No MX records are available", "dns_failure"),
    ("Unable to connect to the remote host", "connection_refused"),
    ("451 Internal resource is temporarily unavailable", "deferred_temporary"),
    # A verdict with a 4xx reply is a deferral, whatever the words (Postfix)
    (
        "450 4.7.1 <unknown[203.0.113.9]>: Client host rejected: cannot find your hostname",
        "deferred_temporary",
    ),
    ("Remote server refused: 421 4.7.0 Try again later", "deferred_temporary"),
    # Postfix
    (
        "host mx.partner.example[203.0.113.7] said: 550 5.1.1 <bob@partner.example>: "
        "Recipient address rejected: User unknown in virtual mailbox table",
        "rejected_permanent",
    ),
    (
        "host mx.partner.example[203.0.113.7] said: 450 4.7.1 <a@b.example>: Recipient "
        "address rejected: Greylisted, see http://postgrey.schweikert.ch/help/b.example.html",
        "greylisted",
    ),
    ("connect to mx.partner.example[203.0.113.7]:25: Connection refused", "connection_refused"),
    ("connect to mx.partner.example[203.0.113.7]:25: Connection timed out", "timeout"),
    ("Host or domain name not found. Name service error for name=partner.example", "dns_failure"),
    (
        "host mx.partner.example[203.0.113.7] said: 552 5.2.2 <c@partner.example>: Mailbox full",
        "mailbox_full",
    ),
    ("Cannot start TLS: handshake failure", "tls_failure"),
    (
        "conversation with mx.partner.example[203.0.113.7] timed out while receiving the "
        "initial server greeting",
        "timeout",
    ),
    # Exchange
    (
        "452 4.3.1 Insufficient system resources",
        "deferred_temporary",
    ),
    (
        "Remote server returned '554 5.4.4 SMTPSEND.DNS.NonExistentDomain; nonexistent domain'",
        "dns_failure",
    ),
    (
        '451 4.4.0 Primary target IP address responded with: "421 4.2.1 Unable to connect."',
        "connection_refused",
    ),
    ("Remote server returned '550 5.7.1 Unable to relay'", "rejected_permanent"),
    ("421 4.4.2 Connection dropped due to SocketError", "connection_refused"),
    # Gmail
    (
        "421 4.7.0 [TSS04] Messages from 198.51.100.2 temporarily deferred due to unexpected "
        "volume or user complaints",
        "throttled",
    ),
    (
        "452 4.2.2 The email account that you tried to reach is over quota.",
        "mailbox_full",
    ),
    (
        "550 5.7.26 This mail has been blocked because the sender is unauthenticated.",
        "rejected_permanent",
    ),
    (
        "421 4.7.28 Gmail has detected an unusual rate of unsolicited mail originating "
        "from your IP",
        "throttled",
    ),
    ("550 5.1.1 The email account that you tried to reach does not exist.", "rejected_permanent"),
    # Microsoft 365
    (
        "451 4.7.500 Server busy. Please try again later from [198.51.100.2]. (S77714)",
        "deferred_temporary",
    ),
    (
        "452 4.5.3 Too many recipients (AS780090)",
        "throttled",
    ),
    (
        "550 5.4.1 Recipient address rejected: Access denied. AS(201806281)",
        "rejected_permanent",
    ),
    ("554 5.2.2 mailbox full; STOREDRV.Deliver.Exception:QuotaExceededException", "mailbox_full"),
    ("421 4.7.66 TLS version not supported", "tls_failure"),
    # codes alone, when no word says more
    ("550 5.7.1", "rejected_permanent"),
    ("554", "rejected_permanent"),
    ("451", "deferred_temporary"),
    ("4.4.1", "timeout"),
    ("5.4.3 routing server failure", "dns_failure"),
    ("4.4.5", "throttled"),
    ("421 4.4.2", "connection_refused"),
    ("4.7.28", "throttled"),
    ("4.4.7", "timeout"),
    ("4.2.2", "mailbox_full"),
    ("message will be retried", "deferred_temporary"),
    ("Delivery blocked by policy", "rejected_permanent"),
    # nothing known, or nothing at all
    ("something happened", "other"),
    ("", "none"),
    ("   ", "none"),
]


@pytest.mark.parametrize(("info", "status"), CASES, ids=[c[0][:50] for c in CASES])
def test_realistic_texts(info, status):
    assert classify(info) == status


def test_every_rule_decides_its_own_example():
    """The example beside each rule: classified as the rule says, by that rule."""
    for index, rule in enumerate(PATTERNS):
        deciding = next(i for i, other in enumerate(PATTERNS) if other.pattern.search(rule.example))
        assert deciding == index, (
            f"rule {index} ({rule.status}): its example is decided by {deciding}"
        )
        assert classify(rule.example) == rule.status


def test_every_pattern_decides_at_least_one_case():
    decided = set()
    for info, _ in CASES:
        text = info.strip()
        for index, (_, pattern, _) in enumerate(PATTERNS):
            if text and pattern.search(text):
                decided.add(index)
                break
    assert decided == set(range(len(PATTERNS)))


def test_numbers_that_are_not_codes_are_not_codes():
    assert classify("port 587 used; 10.20.5.1.2 route; version 4.4.1.9") == "other"


def test_words_come_before_codes():
    # 4.7.1 is greylisting here, a policy block elsewhere: the words decide.
    assert classify("450 4.7.1 Greylisted, try again later") == "greylisted"
    assert classify("554 5.7.1 Service unavailable; Client host blocked") == "rejected_permanent"


def test_not_a_string():
    assert classify(None) == "none"
    assert classify(12) == "other"
    assert classify({"a": 1}) == "other"


def test_every_class_is_reachable_and_bounded():
    assert {status for _, status in CASES} == set(STATUSES)
    for text in ("x" * 100_000, "\x00\u2028", "ü" * 50):
        assert classify(text) in STATUSES
    assert _classify("Queued for Processing") == "processing"
