"""Helpers for tests of the Grafana dashboard: load it, walk its panels, and turn
its queries into plain PromQL that Prometheus's HTTP API accepts."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GRAFANA_DIR = ROOT / "grafana"
DASHBOARD_PATH = GRAFANA_DIR / "dashboards" / "mimecast-queue.json"

# Grafana's built-in variables that this module knows how to replace.
BUILTIN_VARIABLES = frozenset(
    {
        "__rate_interval",
        "__interval",
        "__interval_ms",
        "__range",
        "__range_s",
        "__range_ms",
    }
)

# $name, ${name}, ${name:format} and the deprecated [[name]] / [[name:format]].
VARIABLE = re.compile(
    r"\$\{(?P<braced>\w+)(?::[\w-]+)?\}|\[\[(?P<bracketed>\w+)(?::[\w-]+)?\]\]|\$(?P<plain>\w+)"
)
_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNIT_MS = {
    "ms": 1,
    "s": 1000,
    "m": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
    "w": 604_800_000,
    "y": 31_536_000_000,
}


def load_dashboard(path: Path | str = DASHBOARD_PATH) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def iter_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows included, and the panels nested in (collapsed) rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from iter_panels(panel)


def iter_targets(dashboard: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(panel, target) for every target of every panel."""
    for panel in iter_panels(dashboard):
        for target in panel.get("targets", []):
            yield panel, target


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) for every target, in dashboard order."""
    return [
        (panel.get("title", ""), target.get("expr", ""))
        for panel, target in iter_targets(dashboard)
    ]


def variable_names(text: str) -> set[str]:
    """Names of the variables that ``text`` refers to."""
    return {next(name for name in m.groups() if name) for m in VARIABLE.finditer(text)}


def duration_ms(duration: str) -> int:
    """Milliseconds in a Prometheus duration such as ``90s``, ``1h30m``."""
    if not duration or _DURATION_PART.sub("", duration):
        raise ValueError(f"not a Prometheus duration: {duration!r}")
    return sum(int(n) * _UNIT_MS[unit] for n, unit in _DURATION_PART.findall(duration))


def substitute(
    expr: str,
    *,
    account: str = ".*",
    queue: str = ".*",
    job: str = "mimecast-exporter",
    instance: str = ".*",
    rate_interval: str = "1m",
    interval: str = "1m",
    time_range: str = "6h",
) -> str:
    """``expr`` with Grafana's variables replaced, ready for Prometheus.

    ``account`` and ``queue`` are inserted as they are (the dashboard uses them
    in ``=~`` matchers, so a regex such as ``acme|legacy`` works); ``time_range``
    stands for the dashboard's time range (``$__range``). An unknown variable
    raises ValueError rather than reaching Prometheus.
    """
    values = {
        "job": job,
        "instance": instance,
        "account": account,
        "queue": queue,
        "__rate_interval": rate_interval,
        "__interval": interval,
        "__interval_ms": str(duration_ms(interval)),
        "__range": time_range,
        "__range_s": str(duration_ms(time_range) // 1000),
        "__range_ms": str(duration_ms(time_range)),
    }

    def replace(match: re.Match[str]) -> str:
        name = next(name for name in match.groups() if name)
        if name not in values:
            raise ValueError(f"unknown dashboard variable ${name} in {expr!r}")
        return values[name]

    return VARIABLE.sub(replace, expr)
