"""Tenants: each credential the simulator accepts, and the queues behind it.

Every credential (an OAuth 2.0 client or an API 1.0 access key binding) is its
own tenant with its own, independent :class:`~mimecast_exporter.simulator.model.QueueModel`,
so tests can give two accounts different queues.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from mimecast_exporter.simulator.model import QueueModel

# Deterministic credentials of the two tenants every simulator starts with, so
# a demo config can be written once. They guard nothing: loopback use only.
DEFAULT_OAUTH2 = {
    "client_id": "mimecast-sim-client",
    "client_secret": "mimecast-sim-client-secret",
}
DEFAULT_HMAC = {
    "app_id": "5f2c5d3e-7a9b-4c1d-8e6f-0a1b2c3d4e5f",
    "app_key": "mimecast-sim-app-key-0a1b2c3d",
    "access_key": "mYtOL3XZCOwG96BOiFTZRmSimulatorAccessKey0001",
    "secret_key": base64.b64encode(hashlib.sha512(b"mimecast-simulator").digest()).decode(),
}


@dataclass
class Tenant:
    """One credential and its queues. ``binding_expired`` makes an HMAC key answer 418."""

    name: str
    kind: str  # "oauth2" or "hmac"
    model: QueueModel
    client_id: str | None = None
    client_secret: str | None = None
    app_id: str | None = None
    app_key: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    binding_expired: bool = False

    def __post_init__(self) -> None:
        if self.kind == "hmac":
            # Fail when the key is added, not on the first request.
            decode_secret_key(self.secret_key or "")

    @property
    def secret_bytes(self) -> bytes:
        return decode_secret_key(self.secret_key or "")


def decode_secret_key(secret_key: str) -> bytes:
    """The HMAC key bytes of an API 1.0 secret key; ValueError if it is not base64."""
    try:
        key = base64.b64decode(secret_key, validate=True)
    except binascii.Error as exc:
        raise ValueError("secret_key must be valid base64") from exc
    if not key:
        raise ValueError("secret_key must not be empty")
    return key
