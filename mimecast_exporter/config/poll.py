"""The ``poll`` section: durations, numeric limits and queue types.

Owns :func:`parse_duration` (a duration field, in seconds, with a message
naming the field) and the cross-checks between poll settings (timeout within
interval, stale_after at least interval).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from mimecast_exporter.config.expand import (
    Context,
    check_keys,
    expand_env,
    expect_mapping,
    found,
    number_text,
    string_value,
)
from mimecast_exporter.config.model import QUEUE_TYPES, ConfigError, PollConfig, Problems
from mimecast_exporter.durations import EXAMPLES as DURATION_EXAMPLES
from mimecast_exporter.durations import format_duration, parse_duration_text

_POLL_KEYS = tuple(f.name for f in fields(PollConfig))


def parse_duration(value: Any, field_path: str) -> float:
    """Seconds in a Prometheus-style duration (``500ms``, ``30s``, ``5m``, ``1h30m``, ``7d``).

    Bare numbers are refused: ``interval: 60`` could mean seconds or minutes,
    and Prometheus refuses them too.
    """
    expected = f"expected a duration such as {DURATION_EXAMPLES}"
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigError(field_path, f"{expected}; found {found(value)}")
    if isinstance(value, int | float):
        hint = (
            f" (did you mean '{value}s'?)" if isinstance(value, int) and 0 <= value < 1e60 else ""
        )
        raise ConfigError(field_path, f"{expected}; found {found(value)} without a unit{hint}")
    try:
        return parse_duration_text(value)
    except ValueError as err:
        raise ConfigError(field_path, f"{expected}; {err}") from None


def int_in_range(value: Any, path: str, low: int, high: int | None) -> int:
    expected = f"an integer from {low} to {high}" if high else f"an integer of at least {low}"
    # bool is a subclass of int, but "page_size: yes" is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(path, f"expected {expected}; found {found(value)}")
    if value < low or (high is not None and value > high):
        raise ConfigError(path, f"expected {expected}; found {number_text(value)}")
    return value


# --- poll ---------------------------------------------------------------------


def derived_timeout(interval: float) -> float:
    """poll.timeout when unset: 30 s, or the whole interval when that is shorter."""
    return min(PollConfig.timeout, interval)


def derived_stale_after(interval: float, timeout: float) -> float:
    """poll.stale_after when unset: 5 minutes, or two intervals and a timeout when
    that is longer, so that one slow or failed poll never drops the series."""
    return max(PollConfig.stale_after, 2 * interval + timeout)


def parse_poll(raw: Any, ctx: Context) -> PollConfig:
    if raw is None:  # "poll:" with nothing under it
        return PollConfig()
    poll = expect_mapping(raw, "poll", "a mapping of poll settings (interval, timeout, ...)")
    defaults = PollConfig()
    problems = Problems()  # every key read, whatever the others hold
    problems.attempt(check_keys, poll, _POLL_KEYS, "poll", default=None)

    def duration(key: str) -> float | None:
        """The key's seconds (its default when absent); None once its error is noted."""
        if key not in poll:
            return float(getattr(defaults, key))
        path = f"poll.{key}"

        def parse() -> float:
            value = poll[key]
            if isinstance(value, str):
                value = expand_env(value, path, ctx.environ)
            return parse_duration(value, path)

        return problems.attempt(parse, default=None)

    def shown(key: str, seconds: float) -> str:
        # Say when the offending value is a default, or the user hunts for it in vain.
        return format_duration(seconds) + ("" if key in poll else " (the default)")

    def positive(key: str, seconds: float | None) -> float | None:
        if seconds is not None and seconds <= 0:
            problems.found.append(
                ConfigError(f"poll.{key}", f"must be greater than zero; found {shown(key, 0)}")
            )
            return None
        return seconds

    interval = positive("interval", duration("interval"))
    # Unset, timeout and stale_after follow the interval (see derived_timeout):
    # "interval: 1s" or "interval: 10m" alone is a working configuration.
    timeout = (
        duration("timeout")
        if "timeout" in poll
        else (derived_timeout(interval) if interval is not None else None)
    )
    timeout = positive("timeout", timeout)
    lookback = positive("lookback", duration("lookback"))
    retry_overdue_after = positive("retry_overdue_after", duration("retry_overdue_after"))
    stale_after = (
        duration("stale_after")
        if "stale_after" in poll
        else (
            derived_stale_after(interval, timeout)
            if interval is not None and timeout is not None
            else None
        )
    )
    if interval is not None and timeout is not None and timeout > interval:
        problems.found.append(
            ConfigError(
                "poll.timeout",
                f"must be at most poll.interval ({format_duration(interval)}) so that a request "
                f"ends before the next poll is due; found {shown('timeout', timeout)}",
            )
        )
    if interval is not None and stale_after is not None and stale_after < interval:
        problems.found.append(
            ConfigError(
                "poll.stale_after",
                f"must be at least poll.interval ({format_duration(interval)}), or series would "
                f"be dropped between two polls; found {shown('stale_after', stale_after)}",
            )
        )

    def integer(key: str, low: int, high: int | None) -> int:
        default = int(getattr(defaults, key))
        if key not in poll:
            return default
        return problems.attempt(int_in_range, poll[key], f"poll.{key}", low, high, default=default)

    page_size = integer("page_size", 1, 10000)
    queues = (
        problems.attempt(_parse_queues, poll["queues"], ctx, default=defaults.queues)
        if "queues" in poll
        else defaults.queues
    )
    max_pages = integer("max_pages", 1, None)
    concurrency = integer("concurrency", 1, 64)
    max_response_bytes = integer("max_response_bytes", 1024, None)
    problems.check()
    assert None not in (interval, timeout, lookback, stale_after, retry_overdue_after)
    return PollConfig(
        interval=float(interval or 0),
        lookback=float(lookback or 0),
        page_size=page_size,
        timeout=float(timeout or 0),
        stale_after=float(stale_after or 0),
        queues=queues,
        max_pages=max_pages,
        concurrency=concurrency,
        max_response_bytes=max_response_bytes,
        retry_overdue_after=float(retry_overdue_after or 0),
    )


def _parse_queues(raw: Any, ctx: Context) -> tuple[str, ...]:
    allowed = ", ".join(QUEUE_TYPES)
    if not isinstance(raw, list):
        raise ConfigError(
            "poll.queues", f"expected a list of queue types ({allowed}); found {found(raw)}"
        )
    if not raw:
        raise ConfigError(
            "poll.queues", f"must list at least one queue type ({allowed}); found an empty list"
        )
    queues: list[str] = []
    for i, item in enumerate(raw):
        path = f"poll.queues[{i}]"
        queue = string_value(item, path, ctx)
        if queue not in QUEUE_TYPES:
            raise ConfigError(path, f"expected one of: {allowed}; found {found(queue)}")
        if queue in queues:
            raise ConfigError(path, f"duplicate queue type {queue!r}")
        queues.append(queue)
    return tuple(queues)
