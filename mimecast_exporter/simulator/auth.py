"""Who is calling: OAuth 2.0 bearer tokens (API 2.0) and HMAC-SHA1 signatures (API 1.0).

:class:`TokenStore` issues and checks tokens; :class:`HmacVerifier` checks a
signed request exactly as the reference describes it, including the date
window and replayed request ids. Both raise :class:`AuthError`, which carries
the HTTP status and the ``fail[]`` code to answer with.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from mimecast_exporter.simulator.clock import Clock, parse_header_date
from mimecast_exporter.simulator.tenants import Tenant

_HMAC_HEADERS = ("x-mc-date", "x-mc-req-id", "x-mc-app-id")
# Tokens expired longer ago than this are forgotten (and then answer
# "unauthorized" rather than "token_expired"), so a long demo stays small.
_TOKEN_MEMORY = 86400.0

Headers = Callable[[str], str | None]  # case-insensitive header lookup


class AuthError(Exception):
    """Authentication failed; answer ``status`` with ``code`` in ``fail[]``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass
class _Token:
    tenant: Tenant
    expires_at: float
    revoked: bool = False


class TokenStore:
    """Bearer tokens issued by ``/oauth/token``; lifetimes measured on the wall clock."""

    def __init__(self, clock: Clock, lifetime: float) -> None:
        self.clock = clock
        self.lifetime = float(lifetime)
        self._tokens: dict[str, _Token] = {}

    def issue(self, tenant: Tenant) -> str:
        now = self.clock()
        self._forget_old(now)
        token = secrets.token_urlsafe(32)
        self._tokens[token] = _Token(tenant, now + self.lifetime)
        return token

    def owner(self, token: str) -> Tenant | None:
        """The tenant a token was issued to, valid or not (for rate-limit accounting)."""
        entry = self._tokens.get(token)
        return entry.tenant if entry else None

    def check(self, token: str) -> Tenant:
        entry = self._tokens.get(token)
        if entry is None:
            raise AuthError(401, "unauthorized", "unknown bearer token")
        if entry.revoked or self.clock() >= entry.expires_at:
            raise AuthError(401, "token_expired", "the access token has expired")
        return entry.tenant

    def expire_all(self) -> int:
        """Make every token issued so far answer ``token_expired``; returns how many."""
        for entry in self._tokens.values():
            entry.revoked = True
        return len(self._tokens)

    def _forget_old(self, now: float) -> None:
        old = [t for t, e in self._tokens.items() if now - e.expires_at > _TOKEN_MEMORY]
        for token in old:
            del self._tokens[token]


def parse_mc_authorization(value: str | None) -> tuple[str, str] | None:
    """``MC {accessKey}:{signature}`` -> (access key, signature), or None."""
    if not value or not value.startswith("MC "):
        return None
    access_key, sep, signature = value[3:].strip().rpartition(":")
    if not sep or not access_key or not signature:
        return None
    return access_key, signature


def bearer_token(value: str | None) -> str | None:
    if value and value[:7].lower() == "bearer ":
        return value[7:].strip() or None
    return None


def expected_signature(tenant: Tenant, date: str, req_id: str, path: str) -> str:
    """base64(HMAC-SHA1(base64decode(secretKey), date:req_id:path:appKey))."""
    data = ":".join((date, req_id, path, tenant.app_key or ""))
    digest = hmac.new(tenant.secret_bytes, data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


class HmacVerifier:
    """Checks API 1.0 signed requests and remembers request ids to refuse replays."""

    def __init__(self, clock: Clock, max_skew: float) -> None:
        self.clock = clock
        self.max_skew = float(max_skew)
        # (access key, req id) -> when it can be forgotten: by then its date is
        # outside the accepted window, so a replay fails the date check anyway.
        self._seen: dict[tuple[str, str], float] = {}

    def verify(self, headers: Headers, path: str, by_access_key: Mapping[str, Tenant]) -> Tenant:
        for name in ("Authorization", *_HMAC_HEADERS):
            if not headers(name):
                raise AuthError(401, "err_missing_header", f"missing required header {name}")
        parsed = parse_mc_authorization(headers("Authorization"))
        if parsed is None:
            raise AuthError(401, "err_auth_header_invalid", "Authorization must be 'MC key:sig'")
        access_key, signature = parsed
        tenant = by_access_key.get(access_key)
        if tenant is None:
            raise AuthError(401, "err_unknown_access_key", "unknown access key")
        if headers("x-mc-app-id") != tenant.app_id:
            raise AuthError(401, "err_app_id_mismatch", "x-mc-app-id does not match the binding")
        date, req_id = headers("x-mc-date") or "", headers("x-mc-req-id") or ""
        expected = expected_signature(tenant, date, req_id, path)
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            raise AuthError(401, "err_signature_invalid", "the request signature is invalid")
        if tenant.binding_expired:
            raise AuthError(418, "err_xdk_binding_expired", "the access key binding has expired")
        sent = parse_header_date(date)
        if sent is None:
            raise AuthError(401, "err_date_invalid", "x-mc-date is not like 'Tue, 24 Nov 2015 …'")
        now = self.clock()
        if abs(now - sent) > self.max_skew:
            raise AuthError(401, "err_date_skew", "x-mc-date is too far from the server time")
        self._forget_old(now)
        key = (access_key, req_id)
        if key in self._seen:
            raise AuthError(401, "err_request_replayed", "x-mc-req-id was already used")
        self._seen[key] = sent + self.max_skew
        return tenant

    def _forget_old(self, now: float) -> None:
        for key in [k for k, until in self._seen.items() if until < now]:
            del self._seen[key]
