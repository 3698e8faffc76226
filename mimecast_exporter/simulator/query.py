"""The find-processing-messages request: validating its body, filtering, ordering, paging.

Everything here is pure: a parsed :class:`Query` applied to a list of message
dicts gives one page. Page tokens are opaque to clients (signed, so a forged or
foreign token is refused) and carry the offset and the 1-based page number.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mimecast_exporter.simulator.clock import parse_mc_date
from mimecast_exporter.simulator.scenarios import QUEUES, ROUTES

DEFAULT_PAGE_SIZE = 25
DEFAULT_LOOKBACK = 7 * 86400.0
SEARCH_FIELDS = ("ALL", "fromAddress", "toAddress", "subject", "info", "remoteIp")
_SORT_ORDERS = {"asc": False, "ascending": False, "desc": True, "descending": True}


class QueryError(Exception):
    """The request body is invalid: answer 400 with ``code`` in ``fail[]``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Query:
    queue: str = "processing"
    start: float = 0.0
    end: float = float("inf")
    search_field: str | None = None
    search_value: str = ""  # lower case
    routes: frozenset[str] | None = None  # None: every route
    # Routes matched as spelled ("INBOUND" is not "inbound"), not in any case:
    # fixed lists only (a backlog's routes are lower case).
    routes_as_spelled: bool = False
    attachments: bool | None = None
    descending: bool = True  # the documented default
    page_size: int = DEFAULT_PAGE_SIZE
    offset: int = 0
    page: int = 1


class PageTokens:
    """Issues and checks page tokens, bound to one tenant and queue."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(16)

    def _mac(self, payload: bytes) -> str:
        return hmac.new(self._key, payload, hashlib.sha256).hexdigest()[:16]

    def encode(self, tenant: str, queue: str, offset: int, page: int) -> str:
        payload = json.dumps([tenant, queue, offset, page]).encode()
        raw = payload + b"." + self._mac(payload).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def decode(self, token: object) -> tuple[str, str, int, int] | None:
        """(tenant, queue, offset, page) of a token this simulator issued, else None."""
        if not isinstance(token, str) or not token:
            return None
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            payload, _, mac = raw.rpartition(b".")
            if not hmac.compare_digest(mac, self._mac(payload).encode()):
                return None
            tenant, queue, offset, page = json.loads(payload)
        except (ValueError, TypeError):
            return None
        return tenant, queue, offset, page


def page_of(body: Any, tokens: PageTokens) -> int | None:
    """The 1-based page a request asks for, read leniently (for page-targeted faults).

    None when the page token is present but not one of ours.
    """
    try:
        token = body["meta"]["pagination"]["pageToken"]
    except (KeyError, TypeError):
        return 1
    if token is None or token == "":
        return 1
    decoded = tokens.decode(token)
    return decoded[3] if decoded else None


def route_asked(body: Any) -> str | None:
    """The single route a request's filterBy asks for, read leniently (for faults)."""
    try:
        routes, _ = _filters(body["data"][0].get("filterBy"))
    except (KeyError, IndexError, TypeError, AttributeError, QueryError):
        return None
    return next(iter(routes)) if routes is not None and len(routes) == 1 else None


def parse_query(
    body: Any, *, now: float, tenant: str, tokens: PageTokens, page_size_cap: int
) -> Query:
    """Validate a request body; QueryError says what is wrong."""
    if not isinstance(body, dict):
        raise QueryError("invalid_request", "the body must be a JSON object")
    data = body.get("data")
    if not isinstance(data, list) or len(data) != 1 or not isinstance(data[0], dict):
        raise QueryError("invalid_request", "'data' must be a list holding exactly one object")
    item = data[0]

    # An explicit null means "not given" for every optional field.
    queue = item.get("type") if item.get("type") is not None else "processing"
    if queue not in QUEUES:
        raise QueryError("invalid_type", f"'type' must be one of {', '.join(QUEUES)}")
    start = _date(item, "start", now - DEFAULT_LOOKBACK)
    end = _date(item, "end", now)
    search_field, search_value = _search(item.get("searchBy"))
    routes, attachments = _filters(item.get("filterBy"))
    order = item.get("sortOrder") if item.get("sortOrder") is not None else "descending"
    if not isinstance(order, str) or order.lower() not in _SORT_ORDERS:
        raise QueryError(
            "invalid_sort_order", "'sortOrder' must be asc/desc or ascending/descending"
        )
    sort_by = item.get("sortBy")
    if sort_by is not None and sort_by != "createTime":  # the one sort field published
        raise QueryError("invalid_sort_by", "'sortBy' must be createTime")
    page_size, offset, page = _pagination(body.get("meta"), tenant, queue, tokens, page_size_cap)
    return Query(
        queue=queue,
        start=start,
        end=end,
        search_field=search_field,
        search_value=search_value,
        routes=routes,
        attachments=attachments,
        descending=_SORT_ORDERS[order.lower()],
        page_size=page_size,
        offset=offset,
        page=page,
    )


def _date(item: dict[str, Any], name: str, default: float) -> float:
    if item.get(name) is None:
        return default
    value = parse_mc_date(item[name])
    if value is None:
        raise QueryError("invalid_date", f"'{name}' must look like 2015-11-16T14:49:18+0000")
    return value


def _search(search: Any) -> tuple[str | None, str]:
    if search is None:
        return None, ""
    if not isinstance(search, dict):
        raise QueryError("invalid_search", "'searchBy' must be an object")
    field_name, value = search.get("fieldName"), search.get("value")
    if field_name not in SEARCH_FIELDS:
        raise QueryError("invalid_search", f"'searchBy.fieldName' must be one of {SEARCH_FIELDS}")
    if not isinstance(value, str):
        raise QueryError("invalid_search", "'searchBy.value' must be a string")
    return field_name, value.lower()


def _filters(filters: Any) -> tuple[frozenset[str] | None, bool | None]:
    """Routes and attachment presence from ``filterBy``.

    Both published shapes are understood: ``{"route": X, "attachments": B}`` and
    ``{"fieldName": "route", "value": X}``; anything else is ignored.
    """
    if filters is None:
        return None, None
    if isinstance(filters, dict):
        filters = [filters]
    if not isinstance(filters, list):
        raise QueryError("invalid_filter", "'filterBy' must be a list of objects")
    routes: set[str] = set()
    attachments = None
    for f in filters:
        if not isinstance(f, dict):
            continue
        route, attach = f.get("route"), f.get("attachments")
        name = f.get("fieldName")
        if isinstance(name, str) and name.lower() == "route":
            route = f.get("value")
        elif isinstance(name, str) and name.lower() in ("attachment", "attachments"):
            attach = f.get("value")
        if route is not None:
            if not isinstance(route, str) or route.lower() not in (*ROUTES, "all"):
                raise QueryError("invalid_filter", f"route must be all or one of {ROUTES}")
            routes.add(route.lower())
        if isinstance(attach, str) and attach.lower() in ("true", "false"):
            attach = attach.lower() == "true"
        if isinstance(attach, bool):
            attachments = attach
    if not routes or "all" in routes:
        return None, attachments
    return frozenset(routes), attachments


def _pagination(
    meta: Any, tenant: str, queue: str, tokens: PageTokens, cap: int
) -> tuple[int, int, int]:
    pagination = meta.get("pagination") if isinstance(meta, dict) else None
    if pagination is None:
        return min(DEFAULT_PAGE_SIZE, cap), 0, 1
    if not isinstance(pagination, dict):
        raise QueryError("invalid_pagination", "'meta.pagination' must be an object")
    size = pagination.get("pageSize", DEFAULT_PAGE_SIZE)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise QueryError("invalid_page_size", "'pageSize' must be a positive integer")
    token = pagination.get("pageToken")
    if token is None or token == "":
        return min(size, cap), 0, 1
    decoded = tokens.decode(token)
    if decoded is None or decoded[:2] != (tenant, queue):
        raise QueryError("invalid_page_token", "'pageToken' is not valid for this request")
    return min(size, cap), decoded[2], decoded[3]


# --- applying a query ---------------------------------------------------------------------
def _address(msg: dict[str, Any], key: str) -> str:
    value = msg.get(key)
    return _text(value.get("emailAddress")) if isinstance(value, dict) else ""


def _addresses(msg: dict[str, Any], key: str) -> list[str]:
    """``to`` is a list of address objects (one object accepted too)."""
    value = msg.get(key)
    items = value if isinstance(value, list) else [value]
    return [_text(i.get("emailAddress")) for i in items if isinstance(i, dict)] or [""]


def _text(value: Any) -> str:
    return "" if value is None or isinstance(value, dict | list) else str(value).lower()


def _search_texts(msg: dict[str, Any], field_name: str) -> list[str]:
    fields: dict[str, Callable[[], list[str]]] = {
        "fromAddress": lambda: [_address(msg, "fromEnv"), _address(msg, "fromHeader")],
        "toAddress": lambda: _addresses(msg, "to"),
        "subject": lambda: [_text(msg.get("subject"))],
        "info": lambda: [_text(msg.get("info"))],
        "remoteIp": lambda: [_text(msg.get("remoteIp"))],
    }
    if field_name == "ALL":
        return [text for get in fields.values() for text in get()]
    return fields[field_name]()


def matches(msg: Any, q: Query) -> bool:
    """Whether one message is selected by the query's window and filters."""
    if not isinstance(msg, dict):
        return True  # malformed on purpose (set by a test): pass it through untouched
    created = parse_mc_date(msg.get("created"))
    # Messages without a readable `created` cannot be placed in time; they are
    # returned rather than hidden, so a client sees the malformed data.
    if created is not None and not q.start <= created <= q.end:
        return False
    if q.routes is not None:
        routing = msg.get("routing")
        if (routing if q.routes_as_spelled else _text(routing)) not in q.routes:
            return False
    if q.attachments is not None and msg.get("attachment") is not q.attachments:
        return False
    if q.search_field is not None:
        return any(q.search_value in t for t in _search_texts(msg, q.search_field))
    return True


def select(messages: list[Any], q: Query) -> list[Any]:
    """The messages matching ``q``, ordered by creation time (then id).

    Messages whose ``created`` cannot be read come last, in their given order,
    whatever the sort order.
    """
    chosen = [m for m in messages if matches(m, q)]
    dated: list[tuple[float, str, Any]] = []
    undated: list[tuple[None, str, Any]] = []
    for m in chosen:
        created = parse_mc_date(m.get("created")) if isinstance(m, dict) else None
        if created is None:
            undated.append((None, str(m.get("id")), m))
        else:
            dated.append((created, str(m.get("id")), m))
    dated.sort(key=lambda t: (t[0], t[1]), reverse=q.descending)
    return [t[2] for t in dated] + [t[2] for t in undated]


def page_of_results(
    messages: Sequence[Any], q: Query, tokens: PageTokens, tenant: str
) -> tuple[list[Any], dict[str, Any]]:
    """One page of ``messages`` (already selected) and its ``meta.pagination``."""
    total = len(messages)
    page = list(messages[q.offset : q.offset + q.page_size])
    pagination: dict[str, Any] = {"pageSize": q.page_size, "totalCount": total}
    if q.offset + q.page_size < total:
        pagination["next"] = tokens.encode(tenant, q.queue, q.offset + q.page_size, q.page + 1)
    return page, pagination
