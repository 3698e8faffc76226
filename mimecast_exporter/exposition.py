"""/metrics formatted when the state changes, not at every scrape.

A scrape of two hundred accounts would otherwise format some 80,000 samples
(10 MB) that have not changed since the last poll: over a second of CPU per
scrape with prometheus_client's encoder. Here the state is cut into parts: one
per (account, queue) (its snapshot and poll health) and one per account (up,
API requests). The store calls :meth:`MetricsPage.changed` from the poll
thread that changed a part, and the part is formatted there, once, by
prometheus_client's own encoders (classic text and OpenMetrics), then cut into
per-family chunks. A scrape joins bytes, and formats only the one figure that
moves with the clock, the oldest message's age, from prefixes made in advance.
The content is the registry's: tests compare the two.

A part says when it changed with a *token*, compared with ``is`` element by
element: the store replaces its immutable state objects on every change, so
identity is exact and cheap. A part whose token changed without a call (a
snapshot going stale) is formatted at the scrape that notices.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass

from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.registry import Collector

Encoder = Callable[[Collector], bytes]
FORMATS: dict[str, Encoder] = {"text": generate_latest, "openmetrics": generate_openmetrics}


@dataclass(frozen=True)
class Part:
    key: Hashable
    token: tuple[object, ...]  # the part changed when an element is not the same object
    build: Callable[[], Iterable[Metric]]  # its families (may be empty of samples)


class _Families(Collector):
    def __init__(self, families: Sequence[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


def split_families(text: bytes) -> tuple[list[str], dict[str, bytes], dict[str, bytes]]:
    """Exposition text as (family order, header per family, samples per family).

    A family starts at its ``# HELP`` line; gauge histograms in the classic
    text format come out as three (``x``, ``x_gcount``, ``x_gsum``), each its
    own family here.
    """
    order: list[str] = []
    headers: dict[str, list[bytes]] = {}
    samples: dict[str, list[bytes]] = {}
    current = ""
    for line in text.splitlines(keepends=True):
        if line.startswith(b"# HELP "):
            current = line.split(b" ", 3)[2].decode()
            order.append(current)
            headers[current] = [line]
            samples[current] = []
        elif line.startswith(b"# EOF"):
            continue
        elif line.startswith(b"#"):
            headers[current].append(line)  # TYPE, UNIT
        else:
            samples[current].append(line)
    return (
        order,
        {name: b"".join(lines) for name, lines in headers.items()},
        {name: b"".join(lines) for name, lines in samples.items()},
    )


@dataclass(frozen=True)
class _Formatted:
    """One exposition format's families, as published to scrapes."""

    order: tuple[str, ...]
    headers: dict[str, bytes]
    chunks: dict[str, dict[Hashable, bytes]]  # family -> part key -> samples


class PartCache:
    """The formatted chunks of every part, in both exposition formats.

    Kept family by family (format -> family -> part key -> samples), so that a
    scrape joins each family's chunks of every part at C speed. Published copy
    on write: a change builds new dicts and swaps them in, so scrapes read
    without a lock (two hundred scrapers do not queue on one) and never see a
    dict change under them. Writers take the lock among themselves.
    """

    def __init__(self, describe: Callable[[], Sequence[Metric]]) -> None:
        self._lock = threading.Lock()
        self._formats: dict[str, _Formatted] = {}
        for fmt, encode in FORMATS.items():
            order, headers, _ = split_families(encode(_Families(describe())))
            self._formats[fmt] = _Formatted(tuple(order), headers, {f: {} for f in order})
        self._tokens: dict[Hashable, tuple[object, ...]] = {}

    def refresh(self, part: Part) -> None:
        """Format the part anew, unless its token is unchanged."""
        token = self._tokens.get(part.key)
        if token is not None and _same(token, part.token):
            return
        families = list(part.build())
        formatted = {
            fmt: split_families(encode(_Families(families))) for fmt, encode in FORMATS.items()
        }
        with self._lock:
            for fmt, (order, headers, chunks) in formatted.items():
                self._formats[fmt] = self._with(
                    self._formats[fmt], part.key, order, headers, chunks
                )
            self._tokens = {**self._tokens, part.key: part.token}

    def render(
        self, parts: Iterable[Part], fmt: str, extra: dict[str, bytes], tail: bytes = b""
    ) -> bytes:
        """Every family, in the order of ``describe``, each header once; ``extra``
        holds the samples of families formatted at the scrape (none of a part);
        ``tail`` goes last. One join: the page can be megabytes."""
        live = set()
        for part in parts:
            live.add(part.key)
            self.refresh(part)
        gone = self._tokens.keys() - live
        if gone:  # accounts and queues no longer served
            self._forget(gone)
        formatted = self._formats[fmt]  # one read: a consistent, never-changed copy
        out: list[bytes] = []
        for family in formatted.order:
            out.append(formatted.headers[family])
            if family in extra:
                out.append(extra[family])
            out.extend(formatted.chunks[family].values())
        out.append(tail)
        return b"".join(out)

    def _forget(self, keys: set[Hashable]) -> None:
        with self._lock:
            self._tokens = {k: v for k, v in self._tokens.items() if k not in keys}
            for fmt, formatted in self._formats.items():
                self._formats[fmt] = _Formatted(
                    formatted.order,
                    formatted.headers,
                    {
                        family: {k: v for k, v in by_part.items() if k not in keys}
                        for family, by_part in formatted.chunks.items()
                    },
                )

    @staticmethod
    def _with(
        formatted: _Formatted,
        key: Hashable,
        order: list[str],
        headers: dict[str, bytes],
        chunks: dict[str, bytes],
    ) -> _Formatted:
        """``formatted`` with the part's new chunks. Families only seen with
        samples (a gauge histogram's _gcount and _gsum in the classic format)
        are placed after the family they follow in ``order``."""
        known_order, known = list(formatted.order), dict(formatted.headers)
        previous: str | None = None
        for family in order:
            if family not in known:
                known[family] = headers[family]
                at = known_order.index(previous) + 1 if previous in known else len(known_order)
                known_order.insert(at, family)
            previous = family
        new_chunks = {}
        for family in known_order:
            by_part = formatted.chunks.get(family, {})
            if chunks.get(family):
                by_part = {**by_part, key: chunks[family]}
            elif key in by_part:
                by_part = {k: v for k, v in by_part.items() if k != key}
            new_chunks[family] = by_part
        return _Formatted(tuple(known_order), known, new_chunks)


def _same(a: tuple[object, ...], b: tuple[object, ...]) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


class Parted(Collector):
    """A collector that can also give its series as parts, and the few that move
    with the clock as ready-made sample lines."""

    def describe(self) -> Iterable[Metric]:
        """Every family, without samples: the page's order and headers."""
        raise NotImplementedError

    def parts(self, only: Iterable[Hashable] | None = None) -> list[Part]:
        """Every part (``only``: just those keys), as of now."""
        raise NotImplementedError

    def scrape_samples(self) -> dict[str, bytes]:
        """family name -> sample lines, computed at the scrape."""
        raise NotImplementedError


class MetricsPage:
    """/metrics: ``parted``'s series from the part cache, then the rest of the
    registry (process, platform, build) formatted as usual."""

    def __init__(self, parted: Parted, rest: Collector) -> None:
        self.parted = parted
        self.rest = rest
        self.cache = PartCache(lambda: list(parted.describe()))

    def changed(self, key: Hashable) -> None:
        """A store listener: format the part now, in the thread that changed it."""
        for part in self.parted.parts(only=(key,)):
            self.cache.refresh(part)

    def render(self, encoder: Encoder, content_type: str) -> bytes:
        fmt = "openmetrics" if content_type.startswith("application/openmetrics-text") else "text"
        extra = self.parted.scrape_samples()
        # The rest last: the OpenMetrics encoder ends its output with "# EOF".
        return self.cache.render(self.parted.parts(), fmt, extra, encoder(self.rest))
