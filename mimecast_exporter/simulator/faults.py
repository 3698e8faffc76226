"""Injected misbehaviour: error statuses, fail[] answers, broken bodies, delays, resets.

Faults are checked in the order they were added; the first one matching a
request (path and, optionally, page number or the route asked for) applies and uses up one of its
``times``. On the API path faults apply after authentication; on
``/oauth/token`` they apply before the credentials are checked.

``repeat_token`` answers normally except for ``meta.pagination.next``: it is
the request's own page token (or, on a first page, a token for that same first
page), so a client that follows ``next`` is handed the same token forever.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field
from typing import Any

from mimecast_exporter.simulator.responses import Response, mimecast_error

FIND_PATH = "/api/gateway/find-processing-messages"
TOKEN_PATH = "/oauth/token"
KINDS = ("status", "fail_array", "malformed_json", "delay", "non_json", "reset", "repeat_token")
# Kinds that answer normally, changed (delay: later; repeat_token: its next token).
PASS_THROUGH = ("delay", "repeat_token")

# A cut-off answer: valid JSON up to a point, then nothing.
_TRUNCATED = b'{"meta":{"status":200,"pagination":{"pageSize":25}},"data":[{"messages":[{"id":"eNo'
_HTML = (
    b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
    b"<body><h1>Bad Gateway</h1><p>The upstream server is unavailable.</p></body></html>"
)


@dataclass
class Fault:
    """One injected fault; see the module docstring for when it applies."""

    kind: str
    status: int = 500
    code: str | None = None
    message: str | None = None
    retryable: bool = False
    # fail[] items carry code/message directly (the API 2.0 form) instead of in errors[].
    flat: bool = False
    seconds: float = 0.0
    path: str = FIND_PATH
    page: int | None = None
    # Only requests whose filterBy asks for this route (the exporter's route counts).
    route: str | None = None
    times: int | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.path not in (FIND_PATH, TOKEN_PATH):
            raise ValueError(f"path must be {FIND_PATH} or {TOKEN_PATH}")
        if self.kind == "repeat_token" and self.path != FIND_PATH:
            raise ValueError(f"repeat_token applies to {FIND_PATH} only")
        if not isinstance(self.status, int) or not 100 <= self.status <= 599:
            raise ValueError("status must be an HTTP status code")
        if self.times is not None and self.times < 1:
            raise ValueError("times must be at least 1 (or null for until cleared)")
        if self.page is not None and self.page < 1:
            raise ValueError("page counts from 1")
        if self.seconds < 0:
            raise ValueError("seconds must not be negative")

    @classmethod
    def from_dict(cls, data: Any) -> Fault:
        """A fault from JSON (the control API); ValueError on unknown or bad fields."""
        if not isinstance(data, dict):
            raise ValueError("a fault is a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fault fields: {', '.join(unknown)}")
        try:
            return cls(**data)
        except TypeError as exc:  # e.g. kind missing
            raise ValueError(str(exc)) from None

    def matches(self, path: str, page: int | None, route: str | None = None) -> bool:
        return (
            self.path == path
            and (self.page is None or self.page == page)
            and (self.route is None or self.route == route)
        )

    def response(self) -> Response | None:
        """The answer this fault gives; None for the PASS_THROUGH kinds, which answer normally."""
        code = self.code or ("simulated_fault" if self.kind == "fail_array" else "simulated_error")
        message = self.message or f"simulated {self.kind} fault"
        if self.kind == "status":
            resp = mimecast_error(self.status, code, message, retryable=self.retryable)
        elif self.kind == "fail_array":
            resp = mimecast_error(200, code, message, retryable=self.retryable, flat=self.flat)
        elif self.kind == "malformed_json":
            resp = Response(200, _TRUNCATED)
        elif self.kind == "non_json":
            resp = Response(200, _HTML, "text/html; charset=utf-8")
        elif self.kind == "reset":
            resp = Response(0, reset=True)
        else:
            return None
        resp.headers.update(self.headers)
        return resp


class FaultList:
    """The active faults of one simulator, safe to change while it serves.

    Use counts are kept here, not on the :class:`Fault`, so a caller's fault
    object stays as it was written.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: list[list[Any]] = []  # [fault, remaining uses or None]

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._active.append([fault, fault.times])
        return fault

    def clear(self) -> None:
        with self._lock:
            self._active.clear()

    def active(self) -> list[Fault]:
        """The faults still in force, in the order they apply."""
        with self._lock:
            return [fault for fault, _ in self._active]

    def __len__(self) -> int:
        with self._lock:
            return len(self._active)

    def take(self, path: str, page: int | None, route: str | None = None) -> Fault | None:
        """The first fault matching this request, counting it as used once."""
        with self._lock:
            for i, entry in enumerate(self._active):
                fault, remaining = entry
                if fault.matches(path, page, route):
                    if remaining is not None:
                        entry[1] = remaining - 1
                        if entry[1] == 0:
                            del self._active[i]
                    return fault  # type: ignore[no-any-return]
        return None
