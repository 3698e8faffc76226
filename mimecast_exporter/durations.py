"""Prometheus-style durations: ``500ms``, ``30s``, ``5m``, ``1h30m``, ``7d``, ``1w``.

The grammar is Prometheus's own (``model.ParseDuration``): one or more
``<integer><unit>`` parts, units from largest to smallest, each unit at most
once. Operators already know it from ``scrape_interval``, so the exporter's
config reads the same way.

This module knows nothing about configuration files: it raises ``ValueError``
with a message that does not mention any field, and
:func:`mimecast_exporter.config.parse_duration` turns that into a ``ConfigError`` that
names the field. Keeping it free of ``mimecast_exporter.config`` avoids an import cycle.
"""

from __future__ import annotations

import math
import re

# Seconds per unit, largest first: the order is also the order the grammar
# requires and the order format_duration() emits.
UNITS: tuple[tuple[str, float], ...] = (
    ("y", 365 * 86400.0),
    ("w", 7 * 86400.0),
    ("d", 86400.0),
    ("h", 3600.0),
    ("m", 60.0),
    ("s", 1.0),
    ("ms", 0.001),
)

EXAMPLES = "500ms, 30s, 5m, 1h, 7d, 1w or 1h30m"

# The longest duration taken. Every value must also work where it is used:
# a lookback of 100 years still names a date, a wait of 100 years is still
# one threading can do (threading.TIMEOUT_MAX is some 292 years).
MAX_SECONDS = 100 * 365 * 86400.0
MAX_TEXT = "100y"

# One optional group per unit, in order. "ms" comes after "s" in UNITS, but
# the regex must try "m" only when it is not the start of "ms", hence (?!s).
_PATTERN = re.compile(
    "".join(rf"(?:(?P<{unit}>[0-9]+){unit}{'(?!s)' if unit == 'm' else ''})?" for unit, _ in UNITS)
)


def parse_duration_text(text: str) -> float:
    """Return the number of seconds in ``text``; raise ``ValueError`` saying why not.

    The message starts with "found ..." so that callers can prefix what was expected.
    """
    stripped = text.strip()
    shown = repr(text if len(text) <= 40 else text[:40] + "...")
    if not stripped:
        raise ValueError("found an empty string")
    if stripped.startswith("-"):
        raise ValueError(f"found {shown}, which is negative")
    if stripped.isdigit():
        raise ValueError(f"found {shown}, which has no unit (did you mean '{stripped}s'?)")
    match = _PATTERN.fullmatch(stripped)
    if match is None or not any(match.groupdict().values()):
        raise ValueError(
            f"found {shown} (units are ms, s, m, h, d, w, y; integers only; "
            "largest unit first, each at most once)"
        )
    seconds = 0.0
    try:
        for unit, scale in UNITS:
            digits = match.group(unit)
            if digits is not None:
                seconds += int(digits) * scale
    except (OverflowError, ValueError):  # int too large for a float / for int()
        seconds = math.inf
    if not math.isfinite(seconds * 1000):  # format_duration() works in milliseconds
        raise ValueError(f"found {shown}, which is too large")
    if seconds > MAX_SECONDS:
        raise ValueError(f"found {shown}, longer than {MAX_TEXT}, the longest duration taken")
    return seconds


def format_duration(seconds: float) -> str:
    """Render seconds the way they are written in the config: 90 -> ``1m30s``.

    Used in messages and in ``--config.check`` output, so that what is shown
    can be pasted back into the file.
    """
    if seconds == 0:
        return "0s"
    remaining_ms = round(seconds * 1000)
    parts: list[str] = []
    for unit, scale in UNITS:
        unit_ms = round(scale * 1000)
        count, remaining_ms = divmod(remaining_ms, unit_ms)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
