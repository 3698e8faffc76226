"""The ``poll`` section: durations, numeric limits and queue types.

Owns :func:`parse_duration` (a duration field, in seconds, with a message
naming the field), :class:`Settings` (a section read key by key, which the
thresholds section uses too) and the cross-checks between poll settings
(timeout within interval, stale_after at least interval).
"""

from __future__ import annotations

from collections.abc import Mapping
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


class Settings:
    """One section of settings read key by key: an absent key is its default in
    ``defaults``, and every error is noted in ``problems``, so that parsing goes
    on past it."""

    def __init__(self, section: Mapping[str, Any], where: str, defaults: Any, ctx: Context) -> None:
        self.section = section
        self.where = where
        self.defaults = defaults
        self.ctx = ctx
        self.problems = Problems()
        self.problems.attempt(
            check_keys, section, tuple(f.name for f in fields(defaults)), where, default=None
        )

    def path(self, key: str) -> str:
        return f"{self.where}.{key}"

    def duration(self, key: str) -> float | None:
        """The key's seconds (its default when absent); None once its error is noted."""
        if key not in self.section:
            return float(getattr(self.defaults, key))

        def parse() -> float:
            value = self.section[key]
            if isinstance(value, str):
                value = expand_env(value, self.path(key), self.ctx.environ)
            return parse_duration(value, self.path(key))

        return self.problems.attempt(parse, default=None)

    def shown(self, key: str, seconds: float) -> str:
        # Say when the offending value is a default, or the user hunts for it in vain.
        return format_duration(seconds) + ("" if key in self.section else " (the default)")

    def positive(self, key: str, seconds: float | None) -> float | None:
        if seconds is not None and seconds <= 0:
            problem = f"must be greater than zero; found {self.shown(key, 0)}"
            self.problems.found.append(ConfigError(self.path(key), problem))
            return None
        return seconds

    def integer(self, key: str, low: int, high: int | None) -> int:
        default = int(getattr(self.defaults, key))
        if key not in self.section:
            return default
        value = self.section[key]
        return self.problems.attempt(
            int_in_range, value, self.path(key), low, high, default=default
        )


def parse_poll(raw: Any, ctx: Context) -> PollConfig:
    if raw is None:  # "poll:" with nothing under it
        return PollConfig()
    poll = expect_mapping(raw, "poll", "a mapping of poll settings (interval, timeout, ...)")
    read = Settings(poll, "poll", PollConfig(), ctx)  # every key read, whatever the others hold
    problems = read.problems

    interval = read.positive("interval", read.duration("interval"))
    # Unset, timeout and stale_after follow the interval (see derived_timeout):
    # "interval: 1s" or "interval: 10m" alone is a working configuration.
    timeout = (
        read.duration("timeout")
        if "timeout" in poll
        else (derived_timeout(interval) if interval is not None else None)
    )
    timeout = read.positive("timeout", timeout)
    lookback = read.positive("lookback", read.duration("lookback"))
    retry_overdue_after = read.positive("retry_overdue_after", read.duration("retry_overdue_after"))
    stale_after = (
        read.duration("stale_after")
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
                f"ends before the next poll is due; found {read.shown('timeout', timeout)}",
            )
        )
    if interval is not None and stale_after is not None and stale_after < interval:
        problems.found.append(
            ConfigError(
                "poll.stale_after",
                f"must be at least poll.interval ({format_duration(interval)}), or series would "
                f"be dropped between two polls; found {read.shown('stale_after', stale_after)}",
            )
        )

    page_size = read.integer("page_size", 1, 10000)
    queues = (
        problems.attempt(_parse_queues, poll["queues"], ctx, default=PollConfig.queues)
        if "queues" in poll
        else PollConfig.queues
    )
    max_pages = read.integer("max_pages", 1, None)
    concurrency = read.integer("concurrency", 1, 64)
    max_response_bytes = read.integer("max_response_bytes", 1024, None)
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
