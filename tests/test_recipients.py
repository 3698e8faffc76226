"""Where messages are going (top_domains) and the oldest messages the status page lists."""

from __future__ import annotations

import json
import logging
import random

import msgspec
import pytest

from mimecast_exporter import aggregate
from mimecast_exporter.aggregate import MAX_DOMAINS, OLDEST_MESSAGES, QueueAggregator
from mimecast_exporter.mimecast.pages import decode_page
from mimecast_exporter.recipients import addresses, domain_of, domains, text

NOW = 1_795_478_400.0  # 2026-11-24T00:00:00Z


def created(minutes_ago: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(NOW - 60 * minutes_ago, UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def msg(*to, minutes_ago=10, route="outbound", **fields):
    return {
        "routing": route,
        "size": 1000,
        "attempts": 2,
        "created": created(minutes_ago),
        "info": "451 4.7.1 Greylisted, please try again later",
        "to": [{"emailAddress": a, "displayableName": "Someone"} for a in to],
        "fromEnv": {"emailAddress": "sender@acme.example"},
        "subject": "Quarterly numbers",
        **fields,
    }


def page(messages):
    """Through the real page decoder: the fields come as raw JSON, as in production."""
    body = json.dumps({"meta": {}, "data": [{"messages": messages}], "fail": []}).encode()
    decoded = decode_page(body, 1, "req", 1 << 25)
    return decoded.messages


# --- domains as label values ------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "domain"),
    [
        ("Bob@Partner.Example", "partner.example"),
        ("bob@partner.example.", "partner.example"),  # the root's dot
        ("bob@münchen.de", "xn--mnchen-3ya.de"),  # IDNA: ASCII only in labels
        ("bob@XN--MNCHEN-3YA.DE", "xn--mnchen-3ya.de"),
        # IDNA 2008 (UTS 46): ß is a letter of its own; IDNA 2003 made it "ss",
        # strasse.de, another registered domain.
        ("bob@straße.de", "xn--strae-oqa.de"),
        ("bob@STRASSE.de", "strasse.de"),
        ("bob@faß.example", "xn--fa-hia.example"),
        ("bob@Bücher.example", "xn--bcher-kva.example"),  # UTS 46 maps case first
        ("bob@xn--mnchen-3ya.de", "xn--mnchen-3ya.de"),
        ("bob@a\u200db.example", None),  # a joiner where IDNA 2008 forbids it
        ('"a@b"@mail.example.com', "mail.example.com"),  # the last @ separates
        ("bob@localhost", None),  # no dot: could be read as "other"
        ("bob@[192.0.2.1]", None),  # an address literal is not a domain
        ("bob@bad_domain.example", None),
        ("bob@-dash.example", None),
        ("bob@" + "a" * 64 + ".example", None),  # a label over 63
        ("bob@" + ("a" * 60 + ".") * 5 + "example", None),  # over 253
        ("no-at-sign", None),
        ("bob@exa mple.com", None),
        ("bob@evil.example\n", "evil.example"),
        ('bob@evil.example"}', None),  # label injection
        ("bob@xn--.example", None),
    ],
)
def test_domains_are_safe_label_values(address, domain):
    assert domain_of(address) == domain


def test_recipients_in_every_shape():
    assert addresses(
        msgspec.Raw(b'[{"emailAddress":"a@x.example"},{"emailAddress":"b@y.example"}]')
    ) == [
        "a@x.example",
        "b@y.example",
    ]
    assert addresses(msgspec.Raw(b'{"emailAddress":"a@x.example"}')) == [
        "a@x.example"
    ]  # one object
    for bad in (b"null", b"[1, 2]", b'"a@x.example"', b'{"emailAddress": 5}', b"[[[]]]", b"{"):
        assert addresses(msgspec.Raw(bad)) == []
    assert domains([{"emailAddress": "a@x.example"}, {"emailAddress": "b@X.example"}]) == {
        "x.example"
    }
    assert addresses([{"emailAddress": "x" * 400 + "@a.example"}]) == []  # not an address


def test_free_text_is_scrubbed_and_cut():
    assert text(msgspec.Raw(b'"' + b"s" * 500 + b'"'), 200) == "s" * 197 + "..."
    assert text(msgspec.Raw(b"null"), 200) is None
    assert text(msgspec.Raw(b"{}"), 200) is None


# --- top_domains ------------------------------------------------------------------------


def by_domain(snapshot, route="outbound"):
    return {d: (n, oldest) for d, n, oldest in snapshot.routes[route].sums.by_domain}


def test_the_top_k_domains_then_other():
    agg = QueueAggregator(NOW, top_domains=2)
    agg.add(
        page(
            [
                *(msg("a@alpha.example", minutes_ago=m) for m in (5, 50, 7)),
                *(msg("b@beta.example", minutes_ago=m) for m in (3, 4)),
                msg("c@gamma.example", minutes_ago=90),
                msg(minutes_ago=1),  # no recipient: counted in other
                msg("a2@Alpha.example", "c2@gamma.example", minutes_ago=2),  # under both
            ]
        )
    )
    top = by_domain(agg.snapshot())
    assert top == {
        "alpha.example": (4, NOW - 50 * 60),
        "beta.example": (2, NOW - 4 * 60),
        "other": (3, NOW - 90 * 60),  # gamma twice, and the message without one
    }
    assert list(top) == ["alpha.example", "beta.example", "other"]  # most first
    assert agg.snapshot().routes["inbound"].sums.by_domain == (("other", 0, None),)


def test_never_more_than_k_plus_one_series_per_route():
    agg = QueueAggregator(NOW, top_domains=3)
    agg.add(page([msg(f"u@d{i % 40}.example", minutes_ago=i) for i in range(400)]))
    top = agg.snapshot().routes["outbound"].sums.by_domain
    assert len(top) == 4 and top[-1][0] == "other"
    assert sum(n for _, n, _ in top) == 400
    assert [n for _, n, _ in top[:3]] == [10, 10, 10]
    assert [d for d, _, _ in top[:3]] == ["d0.example", "d1.example", "d10.example"]  # ties by name


def test_off_by_default_and_absent_when_a_date_is_missing():
    agg = QueueAggregator(NOW)
    agg.add(page([msg("a@alpha.example")]))
    assert agg.snapshot().routes["outbound"].sums.by_domain is None
    agg = QueueAggregator(NOW, top_domains=5)
    agg.add(page([msg("a@alpha.example"), msg("a@alpha.example", created="not a date")]))
    # Counted, but no domain's oldest is certain when a message has no usable date.
    assert by_domain(agg.snapshot()) == {"alpha.example": (2, None), "other": (0, None)}


def test_too_many_domains_to_rank_exactly_leaves_them_out_and_says_so_once(caplog, monkeypatch):
    monkeypatch.setattr(aggregate, "MAX_DOMAINS", 50)
    monkeypatch.setattr(aggregate, "_WARNED_DOMAINS", set())
    for _ in range(2):  # two polls: one warning
        agg = QueueAggregator(NOW, {"account": "acme", "queue": "processing"}, top_domains=5)
        with caplog.at_level(logging.WARNING):
            agg.add(page([msg(f"u@d{i}.example") for i in range(60)]))
        snapshot = agg.snapshot()
        assert snapshot.routes["outbound"].sums.by_domain is None
        assert snapshot.routes["outbound"].messages == 60  # everything else still counted
    warnings = [r for r in caplog.records if "distinct recipient domains" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].account == "acme"
    assert MAX_DOMAINS == 10_000


def test_the_domain_limit_counts_distinct_domains_not_route_domain_pairs(monkeypatch):
    monkeypatch.setattr(aggregate, "MAX_DOMAINS", 50)
    agg = QueueAggregator(NOW, top_domains=5)
    # 40 domains on each of two routes: 40 distinct domains, 80 (route, domain) pairs.
    for route in ("outbound", "external"):
        agg.add(page([msg(f"u@d{i}.example", route=route) for i in range(40)]))
    routes = agg.snapshot().routes
    assert routes["outbound"].sums.by_domain is not None
    assert routes["external"].sums.by_domain is not None


def test_no_recipient_is_dropped_past_a_cap(caplog, monkeypatch):
    """A message with more recipients than are read is not counted partly: the
    domain series are left out, and a warning says why."""
    from mimecast_exporter import recipients

    monkeypatch.setattr(aggregate, "_WARNED_DOMAINS", set())
    many = [f"u{i}@d{i % 7}.example" for i in range(recipients.MAX_RECIPIENTS + 1)]
    agg = QueueAggregator(NOW, {"account": "acme", "queue": "processing"}, top_domains=5)
    with caplog.at_level(logging.WARNING):
        agg.add(page([msg("a@alpha.example"), msg(*many)]))
    snapshot = agg.snapshot()
    assert snapshot.routes["outbound"].sums.by_domain is None
    assert snapshot.routes["outbound"].messages == 2
    assert f"more than the {recipients.MAX_RECIPIENTS} read of one message" in caplog.text
    # At the cap, every recipient is read and counted.
    agg = QueueAggregator(NOW, top_domains=10)
    agg.add(page([msg(*many[: recipients.MAX_RECIPIENTS])]))
    ranked = dict((d, n) for d, n, _ in agg.snapshot().routes["outbound"].sums.by_domain)
    assert sum(ranked.values()) == 7  # seven distinct domains, the message under each


# --- the oldest messages ------------------------------------------------------------------


def test_the_oldest_messages_across_pages_oldest_first():
    rng = random.Random(3)
    ages = list(range(1, 101))
    rng.shuffle(ages)
    agg = QueueAggregator(NOW)
    for start in range(0, 100, 25):  # four pages in no order
        agg.add(page([msg(f"u{a}@d{a}.example", minutes_ago=a) for a in ages[start : start + 25]]))
    oldest = agg.snapshot().oldest_messages
    assert len(oldest) == OLDEST_MESSAGES
    assert [round((NOW - m.created) / 60) for m in oldest] == list(range(100, 90, -1))
    first = oldest[0]
    assert (first.route, first.status, first.attempts, first.domain) == (
        "outbound",
        "greylisted",
        2,
        "d100.example",
    )
    # Without expose_message_details: no subject, address or info text.
    assert (first.subject, first.sender, first.to, first.info) == (None, None, (), None)


def test_details_only_when_exposed():
    agg = QueueAggregator(NOW, details=True)
    agg.add(
        page(
            [
                msg(
                    "Bob@Partner.Example",
                    nextAttempt=created(-5),
                    lockedUntil=created(-1),
                    subject="x" * 500,
                )
            ]
        )
    )
    (old,) = agg.snapshot().oldest_messages
    assert old.subject == "x" * 197 + "..."
    assert (old.sender, old.to, old.domain) == (
        "sender@acme.example",
        ("Bob@Partner.Example",),
        "partner.example",
    )
    assert old.info.startswith("451 4.7.1")
    assert old.next_attempt == NOW + 300 and old.locked_until == NOW + 60


def test_undated_messages_are_never_among_the_oldest():
    agg = QueueAggregator(NOW)
    agg.add(page([msg(created=None), msg(minutes_ago=3), msg(created="garbage")]))
    assert [round((NOW - m.created) / 60) for m in agg.snapshot().oldest_messages] == [3]
