"""Authentication for both API generations.

API 1.0 signs every request with HMAC-SHA1 over date, request id, path and
application key. API 2.0 sends a bearer token obtained with OAuth 2.0 client
credentials; the token is cached until shortly before it expires.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
from dataclasses import dataclass
from email.utils import formatdate

from mimecast_exporter.config import HmacCredentials


def mc_date(epoch_seconds: float) -> str:
    """The x-mc-date format, e.g. ``Tue, 24 Nov 2015 12:50:11 UTC`` (always UTC)."""
    # formatdate(usegmt=True) gives RFC 1123 with "GMT"; Mimecast's samples say "UTC".
    return formatdate(epoch_seconds, usegmt=True)[:-3] + "UTC"


def hmac_signature(secret_key_b64: str, date: str, request_id: str, uri: str, app_key: str) -> str:
    """base64(HMAC-SHA1(key=base64decode(secretKey), msg="date:req-id:uri:appKey"))."""
    key = base64.b64decode(secret_key_b64)
    message = ":".join((date, request_id, uri, app_key)).encode("utf-8")
    digest = hmac.new(key, message, hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def hmac_headers(
    creds: HmacCredentials, uri: str, request_id: str, epoch_seconds: float
) -> dict[str, str]:
    """The four API 1.0 headers for one request; date and id must be fresh each time."""
    date = mc_date(epoch_seconds)
    signature = hmac_signature(
        creds.secret_key.reveal(), date, request_id, uri, creds.app_key.reveal()
    )
    return {
        "Authorization": f"MC {creds.access_key.reveal()}:{signature}",
        "x-mc-date": date,
        "x-mc-req-id": request_id,
        "x-mc-app-id": creds.app_id,
    }


def token_safety_margin(expires_in: float) -> float:
    """How long before expiry a cached token is replaced.

    A minute for Mimecast's usual 30-minute tokens, a tenth of the lifetime for
    short ones, so that a 30 s token is still used for 27 s rather than never.
    """
    return min(60.0, max(expires_in, 0.0) / 10.0)


@dataclass(frozen=True)
class _Token:
    value: str
    refresh_at: float  # monotonic


class TokenCache:
    """One account's OAuth 2.0 bearer token, shared by the polls of its queues.

    ``lock`` serialises fetching so that two queues polled at once ask for one
    token, not two.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._token: _Token | None = None

    def current(self, now_monotonic: float) -> str | None:
        token = self._token
        if token is None or now_monotonic >= token.refresh_at:
            return None
        return token.value

    def store(self, value: str, expires_in: float, now_monotonic: float) -> None:
        self._token = _Token(value, now_monotonic + expires_in - token_safety_margin(expires_in))

    def invalidate(self, value: str) -> None:
        """Drop the token if it is still the one that was refused."""
        if self._token is not None and self._token.value == value:
            self._token = None
