"""The configuration's data model: the frozen objects the rest of the exporter uses.

Owns :class:`ConfigError`, :class:`Secret`, the credential and config
dataclasses, and the fixed vocabularies they draw on (queue types, region
shorthands, scheme labels). Nothing here reads YAML or the environment; the
parsing modules build these objects.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

QUEUE_TYPES: tuple[str, ...] = ("processing", "bulk_processing")

# Region shorthands, from Mimecast's list of base URLs (see shared reference).
OAUTH2_REGIONS: dict[str, str] = {
    "global": "https://api.services.mimecast.com",
    "uk": "https://uk-api.services.mimecast.com",
    "us": "https://us-api.services.mimecast.com",
}
HMAC_REGIONS: dict[str, str] = {
    "eu": "https://eu-api.mimecast.com",
    "de": "https://de-api.mimecast.com",
    "us": "https://us-api.mimecast.com",
    "usb": "https://usb-api.mimecast.com",
    "ca": "https://ca-api.mimecast.com",
    "za": "https://za-api.mimecast.com",
    "au": "https://au-api.mimecast.com",
    "je": "https://je-api.mimecast.com",
}

# How each credential scheme is named in messages and in the --config.check summary.
SCHEME_LABELS: dict[str, str] = {"oauth2": "oauth2 (API 2.0)", "hmac": "hmac (API 1.0)"}


class ConfigError(Exception):
    """A configuration problem; the message names the field and what was expected."""

    def __init__(self, field_path: str, problem: str) -> None:
        self.field_path = field_path
        self.problem = problem
        super().__init__(f"{field_path}: {problem}" if field_path else problem)

    @property
    def errors(self) -> list[ConfigError]:
        """Every problem found: this one alone, or all of a :class:`ConfigErrors`."""
        return [self]


class ConfigErrors(ConfigError):
    """Several problems of one file, found in one read: one line each."""

    def __init__(self, errors: list[ConfigError]) -> None:
        flat = [one for error in errors for one in error.errors]
        super().__init__(flat[0].field_path, flat[0].problem)
        self._errors = flat
        self.args = ("\n".join(str(error) for error in flat),)

    @property
    def errors(self) -> list[ConfigError]:
        return self._errors


class Problems:
    """Errors collected while a configuration is read: parsing goes on past one,
    so that ``--config.check`` says every error of a file at once."""

    def __init__(self) -> None:
        self.found: list[ConfigError] = []

    def attempt(self, parse: Callable[..., T], *args: Any, default: T) -> T:
        """``parse(*args)``, or ``default`` once its error is noted."""
        try:
            return parse(*args)
        except ConfigError as error:
            self.found.append(error)
            return default

    def check(self, several: Callable[[list[ConfigError]], ConfigError] = ConfigErrors) -> None:
        """Raise what was found: one error as it is, several as ``several(found)``."""
        if len(self.found) == 1:
            raise self.found[0]
        if self.found:
            raise several(self.found)


class Secret:
    """A credential value that never shows itself in logs, reprs or tracebacks.

    Call :meth:`reveal` at the one place the value is really needed (signing a
    request, asking for a token).
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class OAuth2Credentials:
    """API 2.0: OAuth 2.0 client credentials."""

    client_id: str
    client_secret: Secret

    @property
    def scheme(self) -> str:
        return "oauth2"

    def secrets(self) -> tuple[str, ...]:
        return (self.client_secret.reveal(),)


@dataclass(frozen=True)
class HmacCredentials:
    """API 1.0: the four values of a registered application and its access key binding."""

    app_id: str
    app_key: Secret
    access_key: Secret
    secret_key: Secret

    @property
    def scheme(self) -> str:
        return "hmac"

    def secrets(self) -> tuple[str, ...]:
        return (self.app_key.reveal(), self.access_key.reveal(), self.secret_key.reveal())


Credentials = OAuth2Credentials | HmacCredentials


@dataclass(frozen=True)
class AccountConfig:
    name: str
    base_url: str  # no trailing slash
    credentials: Credentials
    search_by: dict[str, Any] | None = None
    filter_by: tuple[dict[str, Any], ...] | None = None
    ca_file: str | None = None  # extra CA bundle for verifying Mimecast (or a proxy)
    # Rank the K recipient domains with the most queued messages (0: off).
    top_domains: int = 0
    # Show subjects, addresses and info texts of the oldest messages on the status page.
    expose_message_details: bool = False


MAX_TOP_DOMAINS = 50  # K+1 series per queue and route: a bound on label cardinality


@dataclass(frozen=True)
class PollConfig:
    interval: float = 60.0  # seconds
    lookback: float = 7 * 86400.0
    page_size: int = 100
    timeout: float = 30.0
    stale_after: float = 300.0
    queues: tuple[str, ...] = QUEUE_TYPES
    # Request budget of one poll of one queue: find requests, retries included.
    max_pages: int = 15
    concurrency: int = 4  # polls (account, queue) running at once
    max_response_bytes: int = 32 * 1024 * 1024  # larger answers are refused, not read
    # A message whose nextAttempt passed longer ago than this is overdue: its
    # retries are not happening (mimecast_queue_retry_overdue_messages).
    retry_overdue_after: float = 900.0


# The alert thresholds of the mixin (mixin/thresholds.json, copied into the
# package by scripts/generate_mixin.py, a test keeping them equal): the status
# page colours against what the shipped alerts fire on.
_MIXIN = json.loads((Path(__file__).parent.parent / "web" / "thresholds.json").read_text())


@dataclass(frozen=True)
class Thresholds:
    """When the status page says mail is stuck: the shipped alerts' thresholds."""

    queue_backlog_messages: int = int(_MIXIN["queueBacklogMessages"])  # MimecastQueueBacklog
    # MimecastQueueOldestMessageTooOld, seconds
    oldest_message_age: float = float(_MIXIN["oldestMessageAgeSeconds"])
    many_attempts: int = int(_MIXIN["manyAttempts"])  # MimecastMessagesManyAttempts


@dataclass(frozen=True)
class MetricsConfig:
    """Series served beyond the defaults (docs/metrics.md, "Series and cardinality")."""

    # mimecast_queue_message_age_seconds and mimecast_queue_messages_by_status
    # with a route label, not only per queue.
    by_route: bool = False
    size_histogram: bool = False  # mimecast_queue_message_size_bytes


@dataclass(frozen=True)
class Config:
    poll: PollConfig
    accounts: tuple[AccountConfig, ...] = field(default_factory=tuple)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    thresholds: Thresholds = field(default_factory=Thresholds)

    def secrets(self) -> tuple[str, ...]:
        """Every secret value in the config, for scrubbing output."""
        return tuple(s for a in self.accounts for s in a.credentials.secrets() if s)
