"""Requests to find-processing-messages: one call, the retry policy, pagination.

Each failure becomes a :class:`PollError` whose ``reason`` is a metric label.
Retries (tenacity) cover connection errors, timeouts, 5xx, 429 and ``fail[]``
errors that Mimecast marks retryable, with exponential back-off and jitter;
every retry of one poll ends before the poll's deadline. After a 429 no request
goes to the account before the reset Mimecast announced has passed.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from tenacity import RetryCallState, Retrying, retry_if_exception, wait_exponential_jitter

from mimecast_exporter import __version__
from mimecast_exporter.clock import Clock
from mimecast_exporter.config import AccountConfig, HmacCredentials, OAuth2Credentials, PollConfig
from mimecast_exporter.mimecast.answers import Answer, first_code, header_number, raise_for_status
from mimecast_exporter.mimecast.auth import TokenCache, hmac_headers, mc_date
from mimecast_exporter.mimecast.budget import RequestBudget
from mimecast_exporter.mimecast.dialect import ROUTE_FILTERS, SORTS, Choice
from mimecast_exporter.mimecast.errors import PollError
from mimecast_exporter.mimecast.filters import route_filter
from mimecast_exporter.mimecast.pages import Page, decode_page
from mimecast_exporter.mimecast.ratelimit import RateLimitGate, rate_limit_wait
from mimecast_exporter.mimecast.responses import parse_token
from mimecast_exporter.mimecast.transport import Transport

log = logging.getLogger(__name__)

API_PATH = "/api/gateway/find-processing-messages"
TOKEN_PATH = "/oauth/token"
USER_AGENT = f"mimecast-exporter/{__version__}"

# Attempts per page (first try included). Deadlines usually end retrying first.
MAX_ATTEMPTS = 5
# Answers larger than this are refused rather than read into memory: a page of
# 500 messages is well under 1 MiB.
MAX_RESPONSE_BYTES = 32 * 1024 * 1024
# A 401/403 whose Date header is further than this from our clock gets a hint in
# its message: API 1.0 signs x-mc-date, and Mimecast refuses skewed dates.

# Called after every HTTP answer with (endpoint, status code, X-RateLimit-Remaining
# or None); the endpoint is one of ENDPOINTS.
ResponseHook = Callable[[str, int, float | None], None]
# The `endpoint` label of mimecast_api_requests_total, by request path.
ENDPOINTS: dict[str, str] = {
    "/oauth/token": "token",
    "/api/gateway/find-processing-messages": "find-processing-messages",
}


def _no_hook(endpoint: str, status: int, remaining: float | None) -> None:
    return None


@dataclass(frozen=True)
class Query:
    """What one find-processing-messages request asks for."""

    queue: str
    start: str
    end: str
    page_size: int
    token: str | None = None  # the page token of the previous answer
    route: str | None = None  # count one route: filterBy [{"route": route}]


def format_api_date(epoch_seconds: float) -> str:
    """``yyyy-MM-dd'T'HH:mm:ssZ``, as the endpoint's page gives it: 2015-11-16T14:49:18+0000."""
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


class MimecastClient:
    """Polls one account's processing queues. One instance per (account, queue)
    worker; the token cache and the rate-limit gate are shared per account."""

    def __init__(
        self,
        account: AccountConfig,
        poll: PollConfig,
        *,
        clock: Clock,
        gate: RateLimitGate,
        token_cache: TokenCache | None = None,
        on_response: ResponseHook = _no_hook,
        transport: Transport | None = None,
        max_attempts: int = MAX_ATTEMPTS,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self.account = account
        self.poll = poll
        self.clock = clock
        self.gate = gate
        self.token_cache = token_cache or TokenCache()
        self.on_response = on_response
        self.transport = transport or Transport(
            account.base_url, account.ca_file, connections=len(poll.queues)
        )
        self.max_attempts = max_attempts
        self.max_response_bytes = max_response_bytes
        self._retrying = self._retry_policy()
        # What the reference spells two ways (mimecast_exporter.mimecast.dialect).
        self.sort_order = Choice("the sort", SORTS)
        self.route_filter = Choice("a route in filterBy keyed", ROUTE_FILTERS)

    # -- one logical request ----------------------------------------------

    def window(self) -> tuple[str, str]:
        """``start``/``end`` for one poll: fixed for all its requests so that they agree.

        ``end`` is the last whole second before the poll began: a message that
        arrives while the poll reads the queue is created after it, so it is
        outside every request of the poll (dates are to the second). The queue
        a poll sees can then only lose messages while it is read, and every
        loss shows in ``totalCount`` (see :mod:`mimecast_exporter.scan`).
        """
        end = math.floor(self.clock.time()) - 1
        return format_api_date(end - self.poll.lookback), format_api_date(end)

    def find(self, query: Query, *, budget: RequestBudget, deadline: float, number: int) -> Page:
        """One page for ``query``, retried as the policy allows within ``budget``.

        ``deadline`` is monotonic; no request or retry starts past it. Every
        request made, retries included, is taken from ``budget``; the caller
        makes sure it has at least one left. A request refused as invalid is
        asked again in another spelling of what the reference spells two ways
        (:mod:`mimecast_exporter.mimecast.dialect`), until one is answered.
        """
        while True:
            sort, shape = self.sort_order.index, self.route_filter.index
            try:
                page: Page = self._retrying(
                    self._call_once, self._request_body(query), budget, deadline, number
                )
            except PollError as error:
                if not self._spelled_otherwise(error, query, sort, shape, budget):
                    raise
                continue
            self.sort_order.answered()
            if query.route is not None:
                self.route_filter.answered()
            return page

    def _spelled_otherwise(
        self, error: PollError, query: Query, sort: int, shape: int, budget: RequestBudget
    ) -> bool:
        """Whether a request refused as invalid is asked again with another
        spelling of what the reference leaves open: sortOrder until a request
        was answered, then a route count's filterBy."""
        if not error.refused:
            return False
        context = {"account": self.account.name, **error.log_fields(), "error": error.message}
        if not self.sort_order.settled:
            moved_on = self.sort_order.refused(sort, context)
        else:
            moved_on = query.route is not None and self.route_filter.refused(shape, context)
        # With no request left in this poll's budget, the next poll asks so.
        return moved_on and budget.remaining > 0

    def _request_body(self, query: Query) -> dict[str, Any]:
        criteria: dict[str, Any] = {
            "type": query.queue,
            "start": query.start,
            "end": query.end,
        }
        # Oldest first: a scan that stops early has still seen the oldest messages.
        criteria.update(self.sort_order.current or {})
        if self.account.search_by is not None:
            criteria["searchBy"] = dict(self.account.search_by)
        filter_by = route_filter(self.account.filter_by, query.route, self.route_filter.current)
        if filter_by is not None:
            criteria["filterBy"] = filter_by
        pagination: dict[str, Any] = {"pageSize": query.page_size}
        if query.token is not None:
            pagination["pageToken"] = query.token
        return {"meta": {"pagination": pagination}, "data": [criteria]}

    # -- retries ----------------------------------------------------------
    # One tenacity policy for every attempt of every request of this client:
    # exponential back-off with jitter, never sooner than the rate-limit reset,
    # and no attempt past max_attempts, the request budget or the deadline.
    # Each call's own budget and deadline are read from its arguments
    # (RetryCallState.args: body, budget, deadline, page number).

    def _retry_policy(self) -> Retrying:
        backoff = wait_exponential_jitter(max=30, jitter=1)

        def wait(state: RetryCallState) -> float:
            return max(backoff(state), self.gate.remaining(self.clock.monotonic()))

        def stop(state: RetryCallState) -> bool:
            _, budget, deadline, _ = state.args
            if state.attempt_number >= self.max_attempts or budget.remaining <= 0:
                return True
            return bool(self.clock.monotonic() + (state.upcoming_sleep or 0.0) >= deadline)

        def before_sleep(state: RetryCallState) -> None:
            body, _, _, page_number = state.args
            error = state.outcome.exception() if state.outcome else None
            fields = error.log_fields() if isinstance(error, PollError) else {}
            log.warning(
                "request failed, retrying",
                extra={
                    **self._log_context(body),
                    **fields,
                    "page": page_number,
                    "attempt": state.attempt_number,
                    "retry_in_seconds": round(state.upcoming_sleep or 0.0, 3),
                    "error": str(error),
                },
            )

        return Retrying(
            retry=retry_if_exception(lambda e: isinstance(e, PollError) and e.retryable),
            wait=wait,
            stop=stop,
            sleep=lambda seconds: self.clock.sleep(seconds),
            before_sleep=before_sleep,
            reraise=True,
        )

    def _log_context(self, body: dict[str, Any]) -> dict[str, object]:
        return {"account": self.account.name, "queue": body["data"][0]["type"]}

    # -- one call ---------------------------------------------------------

    def _call_once(
        self, body: dict[str, Any], budget: RequestBudget, deadline: float, page_number: int
    ) -> Page:
        self._wait_for_rate_limit(deadline)
        payload = json.dumps(body).encode("utf-8")
        creds = self.account.credentials
        if not budget.take():
            raise RuntimeError("no request left in this poll's budget")  # the caller checks first
        if isinstance(creds, OAuth2Credentials):
            token = self._bearer_token(creds, deadline)
            answer = self._post(API_PATH, payload, self._bearer_headers(token), deadline)
            if answer.status == 401 and budget.take():
                # Expired or revoked: one fresh token, one more try. A 401 after
                # that is a real credentials problem.
                self.token_cache.invalidate(token)
                log.info(
                    "bearer token refused, fetching a new one",
                    extra={
                        **self._log_context(body),
                        "status": 401,
                        "code": first_code(answer),
                        "request_id": answer.request_id,
                    },
                )
                token = self._bearer_token(creds, deadline)
                answer = self._post(API_PATH, payload, self._bearer_headers(token), deadline)
        else:
            answer = self._post(API_PATH, payload, None, deadline, hmac_creds=creds)
        raise_for_status(answer, self.clock.time())
        return decode_page(answer.body, page_number, answer.request_id, self.max_response_bytes)

    def _bearer_headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def _bearer_token(self, creds: OAuth2Credentials, deadline: float) -> str:
        with self.token_cache.lock:
            token = self.token_cache.current(self.clock.monotonic())
            if token is not None:
                return token
            form = {
                "client_id": creds.client_id,
                "client_secret": creds.client_secret.reveal(),
                "grant_type": "client_credentials",
            }
            answer = self._post(TOKEN_PATH, None, None, deadline, form=form)
            raise_for_status(answer, self.clock.time(), token_request=True)
            value, expires_in = parse_token(answer.body, answer.request_id)
            self.token_cache.store(value, expires_in, self.clock.monotonic())
            return value

    def _wait_for_rate_limit(self, deadline: float) -> None:
        now = self.clock.monotonic()
        remaining = self.gate.remaining(now)
        if remaining <= 0:
            return
        if now + remaining >= deadline:
            raise PollError(
                "rate_limited",
                f"rate limit resets in {remaining:.1f}s, after this poll's deadline",
            )
        self.clock.sleep(remaining)

    def _post(
        self,
        path: str,
        payload: bytes | None,
        headers: dict[str, str] | None,
        deadline: float,
        *,
        form: dict[str, str] | None = None,
        hmac_creds: HmacCredentials | None = None,
    ) -> Answer:
        request_id = str(uuid.uuid4())
        all_headers = {
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
            "x-mc-req-id": request_id,
        }
        if payload is not None:
            all_headers["Content-Type"] = "application/json"
        if hmac_creds is not None:
            # Signed last: date and request id must be those of this very request.
            all_headers.update(hmac_headers(hmac_creds, path, request_id, self.clock.time()))
        else:
            all_headers["x-mc-date"] = mc_date(self.clock.time())
        if headers:
            all_headers.update(headers)
        timeout = min(self.poll.timeout, deadline - self.clock.monotonic())
        if timeout <= 0:
            raise PollError("timeout", "poll deadline reached before the request", retryable=False)
        if form is not None:
            payload = urlencode(form).encode("ascii")
            all_headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            response = self.transport.post(
                self.account.base_url + path,
                payload or b"",
                all_headers,
                timeout,
                self.max_response_bytes,
            )
        except PollError as error:
            error.request_id = request_id
            raise
        answer = Answer(response.status, response.headers, response.body, request_id)
        self._note_rate_limit(ENDPOINTS[path], answer)
        return answer

    def _note_rate_limit(self, endpoint: str, answer: Answer) -> None:
        remaining = header_number(answer.headers, "X-RateLimit-Remaining")
        self.on_response(endpoint, answer.status, remaining)
        exhausted = remaining is not None and remaining <= 0
        if answer.status == 429 or exhausted:
            wait = rate_limit_wait(answer.headers, self.clock.time())
            if wait is not None:
                self.gate.block_for(self.clock.monotonic(), wait)
