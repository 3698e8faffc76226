"""The user's ``filter_by`` and the exporter's own route filter, combined.

A route count asks for one route with ``filterBy: [{"route": R}]`` (or the
other published shape, see :mod:`mimecast_exporter.mimecast.dialect`). The user's
own filters still apply to it: their route part decides which routes are
asked for at all (a route the user filtered out is not requested), the rest
(attachments, other fields) is sent along unchanged.

Both published shapes are understood: ``{"route": R, "attachments": B}`` and
``{"fieldName": "route", "value": R}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mimecast_exporter.snapshot import ROUTES


def _route_of(item: dict[str, Any]) -> Any:
    """The route an item names, or None."""
    if "route" in item:
        return item["route"]
    name = item.get("fieldName")
    if isinstance(name, str) and name.lower() == "route":
        return item.get("value")
    return None


def requested_routes(filter_by: Sequence[dict[str, Any]] | None) -> tuple[str, ...]:
    """The routes the user's filters let through (all four when they name none, or 'all')."""
    named = set()
    for item in filter_by or ():
        route = _route_of(item)
        if route is not None:
            named.add(str(route).strip().lower())
    if not named or "all" in named:
        return ROUTES
    return tuple(route for route in ROUTES if route in named)


def route_filter(
    filter_by: Sequence[dict[str, Any]] | None, route: str | None, key: str = "route"
) -> list[dict[str, Any]] | None:
    """``filterBy`` for one request: the user's filters, with ``route`` instead of
    theirs, keyed ``key``: ``{"route": R}``, or ``{"fieldName": "route", "value": R}``."""
    if route is None:
        return [dict(item) for item in filter_by] if filter_by is not None else None
    kept = []
    for item in filter_by or ():
        if "route" in item:
            rest = {k: v for k, v in item.items() if k != "route"}
            if rest:
                kept.append(rest)
        elif _route_of(item) is None:
            kept.append(dict(item))
    own = {"route": route} if key == "route" else {"fieldName": "route", "value": route}
    return [*kept, own]
