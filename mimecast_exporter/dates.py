"""Mimecast's date strings (``2015-10-07T20:03:56+0000``) to epoch seconds: the one parser.

``datetime.fromisoformat`` reads every zone style seen in the wild (``+0000``,
``+00:00``, ``Z``), fractions, and a space for the ``T``; no zone means UTC.
In C, it is also the fastest way there is: about 0.25 µs a date, less than a
cache of minutes written in Python took (see docs/development.md, Design
decisions).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def parse_mimecast_date(value: Any) -> float | None:
    """Epoch seconds of an ISO 8601 date and time; None when ``value`` is not
    one, or not one that ``datetime`` can hold (year 0, month 13, ...)."""
    if type(value) is not str:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        try:  # rare: spaces around it
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    # Not astimezone(UTC): it overflows for 0001-01-01 east of UTC and 9999-12-31 west of it.
    return parsed.timestamp()
