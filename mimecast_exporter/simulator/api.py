"""The two Mimecast endpoints, from an incoming request to a :class:`Response`.

Order of checks for every API request: identify the credential (to charge its
rate-limit window) -> quota (429) -> path (404) -> method (405) ->
authentication (401/418; on ``/oauth/token`` faults come first) -> injected
faults -> body validation (400) -> the answer. Every answer carries the
``X-RateLimit-*`` headers, except a connection reset, which answers nothing.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hmac
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from typing import Any
from urllib.parse import parse_qs

from mimecast_exporter.simulator.auth import (
    AuthError,
    HmacVerifier,
    TokenStore,
    bearer_token,
    parse_mc_authorization,
)
from mimecast_exporter.simulator.clock import Clock
from mimecast_exporter.simulator.faults import FIND_PATH, PASS_THROUGH, TOKEN_PATH, Fault, FaultList
from mimecast_exporter.simulator.model import Churn
from mimecast_exporter.simulator.query import (
    PageTokens,
    QueryError,
    page_of,
    page_of_results,
    parse_query,
    route_asked,
)
from mimecast_exporter.simulator.ratelimit import RateLimiter
from mimecast_exporter.simulator.responses import (
    Response,
    json_response,
    mimecast_error,
    oauth_error,
)
from mimecast_exporter.simulator.scenarios import ApiBehaviour
from mimecast_exporter.simulator.tenants import Tenant


@dataclass
class Incoming:
    """A request as the API sees it; ``headers`` is looked up case-insensitively."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)

    @cached_property
    def json(self) -> Any | None:
        """The body parsed as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            return None


@dataclass
class Quirks:
    """Ways to answer like a server that does not honour everything it is sent.

    Mimecast documents ``sortOrder``, ``filterBy`` and ``totalCount``; whether
    every server honours them is unknown, and a client must stay right when one
    does not. Each switch makes the simulator play such a server.
    """

    ignore_sort_order: bool = False  # always newest first, the documented default
    ignore_filter_by: bool = False  # every route, with or without attachments
    omit_total_count: bool = False  # no meta.pagination.totalCount
    # sortOrder in one spelling only, 400 for the other: API 2.0's text says
    # asc/desc, API 1.0's and the endpoint's page ascending/descending.
    only_short_sort_order: bool = False
    only_long_sort_order: bool = False
    # With one of those: the other spelling is answered in the default order
    # (newest first), as if not given, instead of 400.
    unknown_sort_order_ignored: bool = False
    # filterBy items keyed "route" (the endpoint's field table) ignored, or
    # refused with 400: the server knows only {"fieldName": "route", "value": R}.
    ignore_route_key: bool = False
    refuse_route_key: bool = False
    # sortBy (the endpoint's JSON sample: createTime) refused with 400, as by a
    # server that knows only the field table; or needed: without it, sortOrder
    # is ignored (newest first).
    refuse_sort_by: bool = False
    sort_needs_sort_by: bool = False
    # filterBy routes matched as the messages spell them: a message routed
    # "INBOUND" is not counted for route "inbound".
    route_filter_case_sensitive: bool = False
    # totalCount as the number of messages on the page, not in the whole query
    # (the reference says the whole query's): a misreading a client must catch.
    total_count_of_page: bool = False

    @classmethod
    def from_dict(cls, raw: Any) -> Quirks:
        names = {f.name for f in fields(cls)}
        if not isinstance(raw, dict) or not set(raw) <= names:
            raise ValueError(f"quirks are an object with keys among {sorted(names)}")
        if not all(isinstance(v, bool) for v in raw.values()):
            raise ValueError("each quirk is true or false")
        return cls(**raw)


@dataclass
class RecordedRequest:
    """One API request as received, and the status it was answered with (None: reset)."""

    time: float
    method: str
    path: str
    headers: dict[str, str]
    json: Any | None
    status: int | None
    tenant: str | None
    body: bytes = field(default=b"", repr=False)
    response_headers: dict[str, str] = field(default_factory=dict, repr=False)


# Requests the simulator remembers for tests and /_simulator/requests.
MAX_RECORDED_REQUESTS = 10_000


class MimecastApi:
    """The state behind the endpoints: tenants, tokens, quotas, faults, recorded requests."""

    def __init__(
        self,
        *,
        clock: Clock,
        token_lifetime: float,
        page_size_cap: int,
        rate_limit_quota: int,
        rate_limit_window: float,
        max_clock_skew: float,
        quirks: Quirks | None = None,
        recorded_requests: int = MAX_RECORDED_REQUESTS,
        behaviour: ApiBehaviour | None = None,
    ) -> None:
        if page_size_cap < 1:
            raise ValueError("page_size_cap must be at least 1")
        self.clock = clock
        self.page_size_cap = page_size_cap
        # One lock for all state; held while an answer is computed, never during I/O or delays.
        self.lock = threading.RLock()
        self.tenants: list[Tenant] = []
        self.tokens = TokenStore(clock, token_lifetime)
        self.hmac = HmacVerifier(clock, max_clock_skew)
        self.limiter = RateLimiter(clock, rate_limit_quota, rate_limit_window)
        self.faults = FaultList()
        self.pages = PageTokens()
        # The latest requests only: a simulator running for days (the demo,
        # a fire drill) must not grow without bound.
        self.requests: deque[RecordedRequest] = deque(maxlen=recorded_requests)
        self.quirks = quirks or Quirks()
        self.churn = Churn()  # none: the queue stays still while it is read
        self.behaviour = behaviour or ApiBehaviour()

    def add_tenant(self, tenant: Tenant) -> Tenant:
        with self.lock:
            for other in self.tenants:
                if other.name == tenant.name:
                    raise ValueError(f"a tenant named {tenant.name!r} exists already")
                if tenant.client_id and other.client_id == tenant.client_id:
                    raise ValueError(f"client_id {tenant.client_id!r} is already in use")
                if tenant.access_key and other.access_key == tenant.access_key:
                    raise ValueError("that access key is already in use")
            self.tenants.append(tenant)
        return tenant

    # --- the pipeline ---------------------------------------------------------------------
    def handle(self, req: Incoming) -> Response:
        received = self.clock()
        with self.lock:
            tenant = self._identify(req)
            known_path = req.path in (FIND_PATH, TOKEN_PATH)
            decision = self.limiter.hit(
                (tenant.name if tenant else None, req.path if known_path else None)
            )
            outcome = self._admit(req, allowed=decision.allowed)
        fault = outcome if isinstance(outcome, Fault) else None
        response = outcome if isinstance(outcome, Response) else None
        # The only real sleeps in the simulator: a delay fault, a slow scenario.
        if fault is not None and fault.kind == "delay":
            time.sleep(fault.seconds)
        if req.path == FIND_PATH and self.behaviour.answer_delay and response is None:
            time.sleep(self.behaviour.answer_delay)
        if response is None:
            with self.lock:
                response = self._answer(req, tenant)
                if fault is not None and fault.kind == "repeat_token" and tenant is not None:
                    response = self._repeat_token(req, tenant, response)
        outcome = response
        headers = decision.headers()
        headers.update(outcome.headers)
        outcome.headers = headers
        with self.lock:
            self.requests.append(
                RecordedRequest(
                    time=received,
                    method=req.method,
                    path=req.path,
                    headers=dict(req.headers),
                    json=req.json,
                    status=None if outcome.reset else outcome.status,
                    tenant=tenant.name if tenant else None,
                    body=req.body,
                    response_headers=dict(outcome.headers),
                )
            )
        return outcome

    def _identify(self, req: Incoming) -> Tenant | None:
        """Whose request this claims to be, before checking it."""
        if req.path == TOKEN_PATH:
            client_id = self._client_credentials(req)[0]
            return next((t for t in self.tenants if client_id and t.client_id == client_id), None)
        auth = req.header("Authorization")
        token = bearer_token(auth)
        if token:
            return self.tokens.owner(token)
        parsed = parse_mc_authorization(auth)
        return self._by_access_key().get(parsed[0]) if parsed else None

    def _by_access_key(self) -> dict[str, Tenant]:
        return {t.access_key: t for t in self.tenants if t.access_key}

    def _admit(self, req: Incoming, *, allowed: bool) -> Response | Fault | None:
        """An early answer, a pass-through fault (delay, repeat_token) to apply around
        the normal answer, or None to answer normally."""
        if not allowed:
            return mimecast_error(429, "rate_limit_exceeded", "quota exceeded", retryable=True)
        if req.path not in (FIND_PATH, TOKEN_PATH):
            return mimecast_error(404, "not_found", f"no endpoint at {req.path}")
        if req.method != "POST":
            resp = mimecast_error(405, "method_not_allowed", "use POST")
            resp.headers["Allow"] = "POST"
            return resp
        if req.path == FIND_PATH:
            try:
                self._authenticate(req)
            except AuthError as err:
                return mimecast_error(err.status, err.code, err.message)
            if self.behaviour.credentials_expired:
                return self._credentials_expired(req)
        page = page_of(req.json, self.pages) if req.path == FIND_PATH else None
        route = route_asked(req.json) if req.path == FIND_PATH else None
        fault = self.faults.take(req.path, page, route)
        if fault is None:
            return None
        return fault if fault.kind in PASS_THROUGH else fault.response()

    @staticmethod
    def _credentials_expired(req: Incoming) -> Response:
        """What a lapsed credential gets once its signature or token checked out."""
        if bearer_token(req.header("Authorization")):
            return mimecast_error(401, "token_expired", "the access token is no longer valid")
        return mimecast_error(418, "err_xdk_binding_expired", "the access key binding has expired")

    def _authenticate(self, req: Incoming) -> Tenant:
        auth = req.header("Authorization")
        token = bearer_token(auth)
        if token:
            return self.tokens.check(token)
        if auth is None and not any(req.header(h) for h in ("x-mc-date", "x-mc-app-id")):
            raise AuthError(401, "unauthorized", "missing Authorization header")
        return self.hmac.verify(req.header, req.path, self._by_access_key())

    def _answer(self, req: Incoming, tenant: Tenant | None) -> Response:
        if req.path == TOKEN_PATH:
            return self._issue_token(req, tenant)
        assert tenant is not None  # authenticated in _admit
        return self._find(req, tenant)

    # --- POST /oauth/token ----------------------------------------------------------------
    @staticmethod
    def _form(req: Incoming) -> dict[str, str]:
        try:
            parsed = parse_qs(req.body.decode(), keep_blank_values=True)
        except UnicodeDecodeError:
            return {}
        return {k: v[0] for k, v in parsed.items()}

    def _client_credentials(self, req: Incoming) -> tuple[str | None, str | None]:
        """From the form, or from HTTP Basic auth (which RFC 6749 also allows)."""
        form = self._form(req)
        auth = req.header("Authorization") or ""
        if "client_id" not in form and auth[:6].lower() == "basic ":
            try:
                user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return None, None
            return user, password
        return form.get("client_id"), form.get("client_secret")

    def _issue_token(self, req: Incoming, tenant: Tenant | None) -> Response:
        grant = self._form(req).get("grant_type")
        if not grant:
            return oauth_error(400, "invalid_request", "grant_type is required")
        if grant != "client_credentials":
            return oauth_error(400, "unsupported_grant_type", "use client_credentials")
        _, secret = self._client_credentials(req)
        if (
            tenant is None
            or secret is None
            or not hmac.compare_digest(secret.encode(), (tenant.client_secret or "").encode())
        ):
            return oauth_error(401, "invalid_client", "unknown client or wrong secret")
        if self.behaviour.credentials_expired:
            return oauth_error(401, "invalid_client", "the client credentials have expired")
        token = self.tokens.issue(tenant)
        return json_response(
            200,
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": int(self.tokens.lifetime),
            },
            {"Cache-Control": "no-store"},
        )

    # --- POST /api/gateway/find-processing-messages -----------------------------------------
    def _repeat_token(self, req: Incoming, tenant: Tenant, resp: Response) -> Response:
        """The ``repeat_token`` fault: a 200 page whose ``next`` is the token just used
        (or, on a first page, a token for that same first page): a pagination loop."""
        if resp.status != 200:
            return resp
        payload = json.loads(resp.body)
        pagination = payload.setdefault("meta", {}).setdefault("pagination", {})
        try:
            token = req.json["meta"]["pagination"]["pageToken"]  # type: ignore[index]
        except (KeyError, TypeError):
            token = None
        if not token:
            queue = (req.json or {}).get("data", [{}])[0].get("type") or "processing"
            token = self.pages.encode(tenant.name, queue, 0, 1)
        pagination["next"] = token
        return json_response(200, payload, resp.headers)

    def _find(self, req: Incoming, tenant: Tenant) -> Response:
        if req.json is None:
            return mimecast_error(400, "invalid_json", "the request body must be JSON")
        now = self.clock()
        quirks = self.quirks
        body = req.json
        keyed = _route_keyed(body)
        if keyed and quirks.refuse_route_key:
            return mimecast_error(400, "invalid_filter", "unknown field 'route' in filterBy")
        if keyed and quirks.ignore_route_key:
            body = copy.deepcopy(body)
            for item in _route_keyed(body):
                del item["route"]
        try:
            q = parse_query(
                body,
                now=now,
                tenant=tenant.name,
                tokens=self.pages,
                page_size_cap=self.page_size_cap,
            )
        except QueryError as err:
            return mimecast_error(400, err.code, err.message)
        if self.churn != Churn():
            tenant.model.churn(q.queue, self.churn, now)
        spelled = str(body["data"][0].get("sortOrder") or "").lower()
        if (quirks.only_short_sort_order and spelled in ("ascending", "descending")) or (
            quirks.only_long_sort_order and spelled in ("asc", "desc")
        ):
            if not quirks.unknown_sort_order_ignored:
                words = "asc or desc" if quirks.only_short_sort_order else "ascending or descending"
                return mimecast_error(400, "invalid_sort_order", f"'sortOrder' must be {words}")
            q = replace(q, descending=True)
        sort_by = body["data"][0].get("sortBy")
        if sort_by is not None and quirks.refuse_sort_by:
            return mimecast_error(400, "invalid_request", "unknown field 'sortBy'")
        if quirks.ignore_sort_order or (quirks.sort_needs_sort_by and sort_by is None):
            q = replace(q, descending=True)  # the documented default order
        if quirks.ignore_filter_by:
            q = replace(q, routes=None, attachments=None)
        if quirks.route_filter_case_sensitive:
            q = replace(q, routes_as_spelled=True)
        messages = tenant.model.select(q, now)
        page, pagination = page_of_results(messages, q, self.pages, tenant.name)
        if quirks.omit_total_count:
            del pagination["totalCount"]
        elif quirks.total_count_of_page:
            pagination["totalCount"] = len(page)
        return json_response(
            200,
            {
                "meta": {"status": 200, "pagination": pagination},
                "data": [{"messages": page}],
                "fail": [],
            },
        )


def _route_keyed(body: Any) -> list[dict[str, Any]]:
    """The filterBy items of a find request that carry a "route" key."""
    try:
        items = body["data"][0].get("filterBy")
    except (KeyError, IndexError, TypeError, AttributeError):
        return []
    items = [items] if isinstance(items, dict) else items
    if not isinstance(items, list):
        return []
    return [item for item in items if isinstance(item, dict) and "route" in item]
