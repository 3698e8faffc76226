"""The exporter's configuration: YAML in, frozen typed objects out.

Everything the daemon needs to know is parsed and validated here, once, at
start-up. Every error names the offending field (``accounts[1].hmac.app_key``)
and says what was expected, so that a typo is fixed in one try.

Public entry points: :func:`load_config` (a file), :func:`parse_config` (an
already-loaded YAML document), :func:`parse_duration` and :func:`describe`
(the ``--config.check`` summary). Secret values are wrapped in :class:`Secret`
as soon as they are read and are never put into an error message.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from exporter.durations import EXAMPLES as DURATION_EXAMPLES
from exporter.durations import format_duration, parse_duration_text

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


class ConfigError(Exception):
    """A configuration problem; the message names the field and what was expected."""

    def __init__(self, field_path: str, problem: str) -> None:
        self.field_path = field_path
        self.problem = problem
        super().__init__(f"{field_path}: {problem}" if field_path else problem)


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


@dataclass(frozen=True)
class PollConfig:
    interval: float = 60.0  # seconds
    lookback: float = 7 * 86400.0
    page_size: int = 100
    timeout: float = 30.0
    stale_after: float = 300.0
    queues: tuple[str, ...] = QUEUE_TYPES
    max_pages: int = 1000  # cap on pages followed in one poll of one queue
    concurrency: int = 4  # polls (account, queue) running at once


@dataclass(frozen=True)
class Config:
    poll: PollConfig
    accounts: tuple[AccountConfig, ...] = field(default_factory=tuple)

    def secrets(self) -> tuple[str, ...]:
        """Every secret value in the config, for scrubbing output."""
        return tuple(s for a in self.accounts for s in a.credentials.secrets() if s)


# --------------------------------------------------------------------------
# Parsing: YAML document -> Config
# --------------------------------------------------------------------------

SEARCH_FIELDS: tuple[str, ...] = ("ALL", "fromAddress", "toAddress", "subject", "info", "remoteIp")

_NAME_RE = re.compile(r"[A-Za-z0-9_-]+")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# "$$" is a literal "$" (so "$${X}" is a literal "${X}"); "${NAME}" is expanded;
# a "${" with no closing brace is reported rather than silently kept.
_ENV_REF_RE = re.compile(r"\$(?:(?P<dollar>\$)|\{(?P<name>[^}]*)\}|(?P<open>\{))")

_TOP_KEYS = ("poll", "accounts")
_POLL_KEYS = tuple(f.name for f in fields(PollConfig))
_ACCOUNT_KEYS = ("name", "base_url", "region", "oauth2", "hmac", "search_by", "filter_by")
_SEARCH_BY_KEYS = ("field_name", "value")
# Credential fields per scheme; each also has a "<name>_file" variant. The
# plain ones are identifiers that may be shown; the rest become Secret.
_OAUTH2_FIELDS = ("client_id", "client_secret")
_HMAC_FIELDS = ("app_id", "app_key", "access_key", "secret_key")
_PLAIN_CREDENTIALS = frozenset({"client_id", "app_id"})
_SCHEME_LABELS = {"oauth2": "oauth2 (API 2.0)", "hmac": "hmac (API 1.0)"}

_MAX_SHOWN = 60  # longest found value quoted in a message


@dataclass(frozen=True)
class _Context:
    """What parsing needs besides the document itself."""

    environ: Mapping[str, str]
    base_dir: Path | None


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _found(value: Any, *, secret: bool = False) -> str:
    """Describe a wrong value for a message; for secrets, only its type."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        kind = "an integer" if isinstance(value, int) else "a number"
        return kind if secret else f"{kind} ({value})"
    if isinstance(value, str):
        if secret:
            return "a string"
        shown = value if len(value) <= _MAX_SHOWN else value[:_MAX_SHOWN] + "..."
        return f"the string {shown!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"  # e.g. a YAML date


def _expect_mapping(
    value: Any, path: str, what: str = "a mapping", *, secret: bool = False
) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise ConfigError(path, f"expected {what}; found {_found(value, secret=secret)}")
    return value


def _check_keys(mapping: Mapping[Any, Any], allowed: tuple[str, ...], path: str) -> None:
    for key in mapping:
        if key not in allowed:
            raise ConfigError(
                _join(path, key), f"unknown key; allowed keys are: {', '.join(allowed)}"
            )


def _one_of(mapping: Mapping[str, Any], first: str, second: str, path: str, hint: str = "") -> str:
    """Return which of two mutually exclusive keys is present; exactly one must be."""
    if first in mapping and second in mapping:
        raise ConfigError(
            _join(path, second), f"cannot be combined with '{first}'; give exactly one of them"
        )
    if first not in mapping and second not in mapping:
        raise ConfigError(
            path, f"needs exactly one of '{first}' or '{second}'{hint}; found neither"
        )
    return first if first in mapping else second


def _required(mapping: Mapping[str, Any], key: str, path: str, what: str) -> Any:
    if key not in mapping:
        raise ConfigError(_join(path, key), f"is required: {what}")
    return mapping[key]


# --- ${ENV} expansion ---------------------------------------------------------


def expand_env(text: str, field_path: str, environ: Mapping[str, str]) -> str:
    """Expand ``${NAME}`` from ``environ``; ``$$`` is a literal ``$``.

    Messages never quote ``text``: it may be a secret.
    """

    def replace(match: re.Match[str]) -> str:
        if match.group("dollar"):
            return "$"
        if match.group("open"):
            raise ConfigError(
                field_path, "has '${' without a closing '}'; write '$${' for a literal '${'"
            )
        name = match.group("name")
        if not _ENV_NAME_RE.fullmatch(name):
            raise ConfigError(
                field_path,
                "has a '${...}' whose name is not an environment variable name "
                "(letters, digits and '_', not starting with a digit); "
                "write '$$' for a literal '$'",
            )
        if name not in environ:
            raise ConfigError(field_path, f"environment variable {name} is not set")
        return environ[name]

    return _ENV_REF_RE.sub(replace, text)


def _expand_tree(node: Any, path: str, ctx: _Context) -> Any:
    """Expand every string inside a pass-through value (keys are left alone)."""
    if isinstance(node, str):
        return expand_env(node, path, ctx.environ)
    if isinstance(node, list):
        return [_expand_tree(item, f"{path}[{i}]", ctx) for i, item in enumerate(node)]
    if isinstance(node, dict):
        return {key: _expand_tree(value, _join(path, key), ctx) for key, value in node.items()}
    return node


def _string(value: Any, path: str, ctx: _Context, *, secret: bool = False) -> str:
    """A string field, after ${ENV} expansion."""
    if not isinstance(value, str):
        raise ConfigError(path, f"expected a string; found {_found(value, secret=secret)}")
    return expand_env(value, path, ctx.environ)


# --- durations and numbers ----------------------------------------------------


def parse_duration(value: Any, field_path: str) -> float:
    """Seconds in a Prometheus-style duration (``500ms``, ``30s``, ``5m``, ``1h30m``, ``7d``).

    Bare numbers are refused: ``interval: 60`` could mean seconds or minutes,
    and Prometheus refuses them too.
    """
    expected = f"expected a duration such as {DURATION_EXAMPLES}"
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigError(field_path, f"{expected}; found {_found(value)}")
    if isinstance(value, int | float):
        hint = f" (did you mean '{value}s'?)" if isinstance(value, int) and value >= 0 else ""
        raise ConfigError(field_path, f"{expected}; found {_found(value)} without a unit{hint}")
    try:
        return parse_duration_text(value)
    except ValueError as err:
        raise ConfigError(field_path, f"{expected}; {err}") from None


def _int_in_range(value: Any, path: str, low: int, high: int | None) -> int:
    expected = f"an integer from {low} to {high}" if high else f"an integer of at least {low}"
    # bool is a subclass of int, but "page_size: yes" is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(path, f"expected {expected}; found {_found(value)}")
    if value < low or (high is not None and value > high):
        raise ConfigError(path, f"expected {expected}; found {value}")
    return value


# --- poll ---------------------------------------------------------------------


def _parse_poll(raw: Any, ctx: _Context) -> PollConfig:
    if raw is None:  # "poll:" with nothing under it
        return PollConfig()
    poll = _expect_mapping(raw, "poll", "a mapping of poll settings (interval, timeout, ...)")
    _check_keys(poll, _POLL_KEYS, "poll")
    defaults = PollConfig()

    def duration(key: str) -> float:
        if key not in poll:
            return float(getattr(defaults, key))
        path = f"poll.{key}"
        value = poll[key]
        if isinstance(value, str):
            value = expand_env(value, path, ctx.environ)
        return parse_duration(value, path)

    def shown(key: str, seconds: float) -> str:
        # Say when the offending value is a default, or the user hunts for it in vain.
        return format_duration(seconds) + ("" if key in poll else " (the default)")

    interval, timeout = duration("interval"), duration("timeout")
    lookback, stale_after = duration("lookback"), duration("stale_after")
    if interval <= 0:
        raise ConfigError(
            "poll.interval", f"must be greater than zero; found {shown('interval', 0)}"
        )
    if timeout <= 0:
        raise ConfigError("poll.timeout", f"must be greater than zero; found {shown('timeout', 0)}")
    if timeout > interval:
        raise ConfigError(
            "poll.timeout",
            f"must be at most poll.interval ({format_duration(interval)}) so that a request "
            f"ends before the next poll is due; found {shown('timeout', timeout)}",
        )
    if lookback <= 0:
        raise ConfigError(
            "poll.lookback", f"must be greater than zero; found {shown('lookback', 0)}"
        )
    if stale_after < interval:
        raise ConfigError(
            "poll.stale_after",
            f"must be at least poll.interval ({format_duration(interval)}), or series would be "
            f"dropped between two polls; found {shown('stale_after', stale_after)}",
        )

    def integer(key: str, low: int, high: int | None) -> int:
        if key not in poll:
            return int(getattr(defaults, key))
        return _int_in_range(poll[key], f"poll.{key}", low, high)

    return PollConfig(
        interval=interval,
        lookback=lookback,
        page_size=integer("page_size", 1, 10000),
        timeout=timeout,
        stale_after=stale_after,
        queues=_parse_queues(poll["queues"], ctx) if "queues" in poll else defaults.queues,
        max_pages=integer("max_pages", 1, None),
        concurrency=integer("concurrency", 1, 64),
    )


def _parse_queues(raw: Any, ctx: _Context) -> tuple[str, ...]:
    allowed = ", ".join(QUEUE_TYPES)
    if not isinstance(raw, list):
        raise ConfigError(
            "poll.queues", f"expected a list of queue types ({allowed}); found {_found(raw)}"
        )
    if not raw:
        raise ConfigError(
            "poll.queues", f"must list at least one queue type ({allowed}); found an empty list"
        )
    queues: list[str] = []
    for i, item in enumerate(raw):
        path = f"poll.queues[{i}]"
        queue = _string(item, path, ctx)
        if queue not in QUEUE_TYPES:
            raise ConfigError(path, f"expected one of: {allowed}; found {_found(queue)}")
        if queue in queues:
            raise ConfigError(path, f"duplicate queue type {queue!r}")
        queues.append(queue)
    return tuple(queues)


# --- accounts -----------------------------------------------------------------


def _parse_accounts(root: Mapping[str, Any], ctx: _Context) -> tuple[AccountConfig, ...]:
    raw = _required(root, "accounts", "", "a list with at least one account")
    if not isinstance(raw, list):
        raise ConfigError("accounts", f"expected a list of accounts; found {_found(raw)}")
    if not raw:
        raise ConfigError("accounts", "must list at least one account; found an empty list")
    accounts: list[AccountConfig] = []
    first_use: dict[str, int] = {}
    for i, item in enumerate(raw):
        account = _parse_account(item, f"accounts[{i}]", ctx)
        if account.name in first_use:
            raise ConfigError(
                f"accounts[{i}].name",
                f"duplicate account name {account.name!r} (also used by "
                f"accounts[{first_use[account.name]}]); names must be unique",
            )
        first_use[account.name] = i
        accounts.append(account)
    return tuple(accounts)


def _parse_account(raw: Any, path: str, ctx: _Context) -> AccountConfig:
    account = _expect_mapping(raw, path, "an account (a mapping with name, base_url, ...)")
    _check_keys(account, _ACCOUNT_KEYS, path)
    name = _parse_name(account, path, ctx)
    scheme = _one_of(account, "oauth2", "hmac", path, " (API 2.0 or API 1.0 credentials)")
    if scheme == "oauth2":
        credentials: Credentials = _parse_oauth2(account["oauth2"], _join(path, "oauth2"), ctx)
    else:
        credentials = _parse_hmac(account["hmac"], _join(path, "hmac"), ctx)
    search_by = account.get("search_by")
    filter_by = account.get("filter_by")
    return AccountConfig(
        name=name,
        base_url=_parse_endpoint(account, path, scheme, ctx),
        credentials=credentials,
        # "search_by:" left empty means the same as leaving it out.
        search_by=None if search_by is None else _parse_search_by(search_by, path, ctx),
        filter_by=None if filter_by is None else _parse_filter_by(filter_by, path, ctx),
    )


def _parse_name(account: Mapping[str, Any], path: str, ctx: _Context) -> str:
    field_path = _join(path, "name")
    raw = _required(account, "name", path, "a label value matching [A-Za-z0-9_-]+")
    name = _string(raw, field_path, ctx)
    if not _NAME_RE.fullmatch(name):
        raise ConfigError(
            field_path,
            "must match [A-Za-z0-9_-]+ (letters, digits, '_' and '-'; it becomes the "
            f"'account' label); found {_found(name)}",
        )
    return name


# --- credentials --------------------------------------------------------------


def _parse_oauth2(raw: Any, path: str, ctx: _Context) -> OAuth2Credentials:
    # secret=True: "oauth2: <the secret>" is a plausible slip; don't echo it.
    section = _expect_mapping(raw, path, "a mapping with client_id and client_secret", secret=True)
    _check_keys(section, _with_file_variants(_OAUTH2_FIELDS), path)
    values = {key: _credential(section, key, path, ctx) for key in _OAUTH2_FIELDS}
    return OAuth2Credentials(
        client_id=values["client_id"], client_secret=Secret(values["client_secret"])
    )


def _parse_hmac(raw: Any, path: str, ctx: _Context) -> HmacCredentials:
    section = _expect_mapping(
        raw, path, "a mapping with app_id, app_key, access_key and secret_key", secret=True
    )
    _check_keys(section, _with_file_variants(_HMAC_FIELDS), path)
    values = {key: _credential(section, key, path, ctx) for key in _HMAC_FIELDS}
    _check_base64(values["secret_key"], _join(path, "secret_key"))
    return HmacCredentials(
        app_id=values["app_id"],
        app_key=Secret(values["app_key"]),
        access_key=Secret(values["access_key"]),
        secret_key=Secret(values["secret_key"]),
    )


def _with_file_variants(names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(k for name in names for k in (name, f"{name}_file"))


def _credential(section: Mapping[str, Any], key: str, path: str, ctx: _Context) -> str:
    """One credential, given inline or as ``<key>_file``; surrounding whitespace removed.

    Whitespace is never part of a Mimecast credential, but a trailing newline
    is in nearly every secret file (and often in a pasted value).
    """
    secret = key not in _PLAIN_CREDENTIALS
    file_key = f"{key}_file"
    if _one_of(section, key, file_key, path) == key:
        field_path = _join(path, key)
        value = _string(section[key], field_path, ctx, secret=secret).strip()
        if not value:
            raise ConfigError(field_path, "is empty")
        return value
    field_path = _join(path, file_key)
    filename = _string(section[file_key], field_path, ctx)
    if not filename.strip():
        raise ConfigError(field_path, f"is empty; expected the path of a file holding {key}")
    return _read_credential_file(filename, field_path, ctx.base_dir)


def _read_credential_file(filename: str, field_path: str, base_dir: Path | None) -> str:
    path = Path(filename).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path  # relative to the config file, not to the working directory
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(field_path, f"cannot read {path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(field_path, f"cannot read {path}: it is a directory") from None
    except PermissionError:
        raise ConfigError(field_path, f"cannot read {path}: permission denied") from None
    except UnicodeDecodeError:
        raise ConfigError(field_path, f"cannot read {path}: not UTF-8 text") from None
    except OSError as err:
        raise ConfigError(field_path, f"cannot read {path}: {err.strerror or err}") from None
    value = text.strip()
    if not value:
        raise ConfigError(field_path, f"file {path} is empty")
    return value


def _check_base64(value: str, field_path: str) -> None:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        # Never quote the value: this is the signing key.
        raise ConfigError(
            field_path,
            "is not valid base64 (it is base64-decoded to sign requests); check that the "
            "secret key was copied whole, without spaces or line breaks",
        ) from None


# --- endpoint -----------------------------------------------------------------


def _parse_endpoint(account: Mapping[str, Any], path: str, scheme: str, ctx: _Context) -> str:
    key = _one_of(account, "base_url", "region", path)
    field_path = _join(path, key)
    value = _string(account[key], field_path, ctx)
    if key == "base_url":
        return _parse_base_url(value, field_path)
    return _region_url(value, field_path, scheme)


def _region_url(region: str, field_path: str, scheme: str) -> str:
    own, other = (
        (OAUTH2_REGIONS, HMAC_REGIONS) if scheme == "oauth2" else (HMAC_REGIONS, OAUTH2_REGIONS)
    )
    other_scheme = "hmac" if scheme == "oauth2" else "oauth2"
    key = region.strip().lower()
    if key in own:
        return own[key]
    valid = f"for {_SCHEME_LABELS[scheme]} accounts use one of: {', '.join(own)}"
    if key in other:
        raise ConfigError(
            field_path, f"{region!r} is a region of {_SCHEME_LABELS[other_scheme]}; {valid}"
        )
    raise ConfigError(field_path, f"unknown region {region!r}; {valid}")


def _parse_base_url(url: str, field_path: str) -> str:
    """Validate ``https://host[:port]`` and return it without a trailing slash."""
    expected = "expected https://host[:port], e.g. https://api.services.mimecast.com"
    if any(ch.isspace() for ch in url):
        raise ConfigError(field_path, f"must not contain whitespace; {expected}")
    try:
        parts = urlsplit(url)
        port = parts.port  # parses, and raises on a bad port
    except ValueError as err:
        raise ConfigError(field_path, f"is not a valid URL ({err}); {expected}") from None
    if "@" in parts.netloc:
        # Not quoted: it may hold a password.
        raise ConfigError(field_path, f"must not contain a user name or password; {expected}")
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        found = f"scheme {scheme!r}" if scheme else "no scheme"
        raise ConfigError(field_path, f"{expected}; found {found} in {url!r}")
    host = parts.hostname
    if not host:
        raise ConfigError(field_path, f"has no host; {expected}")
    if parts.path not in ("", "/"):
        raise ConfigError(
            field_path,
            f"must not have a path (found {parts.path!r}); the exporter appends the API paths "
            f"itself; {expected}",
        )
    if parts.query or parts.fragment or url.rstrip("/").endswith(("?", "#")):
        raise ConfigError(field_path, f"must not have a query or fragment; {expected}")
    if scheme == "http" and not _is_loopback(host):
        raise ConfigError(
            field_path,
            f"must use https:// ({url!r} is plain http); http:// is only allowed for a "
            "loopback host (localhost, 127.0.0.0/8, ::1), e.g. a local simulator",
        )
    netloc = f"[{host}]" if ":" in host else host
    return f"{scheme}://{netloc}" + (f":{port}" if port is not None else "")


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- search_by / filter_by ----------------------------------------------------


def _parse_search_by(raw: Any, path: str, ctx: _Context) -> dict[str, Any]:
    """Convert ``{field_name, value}`` into the API's ``{"fieldName", "value"}``."""
    path = _join(path, "search_by")
    search_by = _expect_mapping(raw, path, "a mapping with field_name and value")
    _check_keys(search_by, _SEARCH_BY_KEYS, path)
    allowed = ", ".join(SEARCH_FIELDS)
    field_name = _string(
        _required(search_by, "field_name", path, f"one of {allowed}"),
        _join(path, "field_name"),
        ctx,
    )
    if field_name not in SEARCH_FIELDS:
        raise ConfigError(
            _join(path, "field_name"), f"expected one of: {allowed}; found {_found(field_name)}"
        )
    value = _string(
        _required(search_by, "value", path, "the string to search for"), _join(path, "value"), ctx
    )
    return {"fieldName": field_name, "value": value}


def _parse_filter_by(raw: Any, path: str, ctx: _Context) -> tuple[dict[str, Any], ...]:
    """Pass filters through to the API, only renaming ``field_name`` to ``fieldName``."""
    path = _join(path, "filter_by")
    if not isinstance(raw, list):
        raise ConfigError(
            path, f"expected a list of mappings such as [{{route: outbound}}]; found {_found(raw)}"
        )
    filters: list[dict[str, Any]] = []
    for i, item in enumerate(raw):
        item_path = f"{path}[{i}]"
        mapping = _expect_mapping(item, item_path, "a mapping such as {route: outbound}")
        converted: dict[str, Any] = {}
        for key, value in mapping.items():
            if not isinstance(key, str):
                raise ConfigError(item_path, f"keys must be strings; found {_found(key)}")
            wire_key = "fieldName" if key == "field_name" else key
            if wire_key in converted:
                raise ConfigError(
                    _join(item_path, key), "given twice, as 'field_name' and as 'fieldName'"
                )
            converted[wire_key] = _expand_tree(value, _join(item_path, key), ctx)
        filters.append(converted)
    return tuple(filters)


# --- entry points -------------------------------------------------------------


def parse_config(
    data: Any,
    *,
    base_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Validate a loaded YAML document and build the :class:`Config`.

    ``base_dir`` anchors relative ``*_file`` paths (the config file's
    directory); ``environ`` feeds ``${VAR}`` expansion (default ``os.environ``).
    """
    ctx = _Context(environ=os.environ if environ is None else environ, base_dir=base_dir)
    if data is None:
        raise ConfigError("", "the configuration is empty; expected a mapping with 'accounts'")
    root = _expect_mapping(data, "", "a mapping with 'poll' and 'accounts' at the top level")
    _check_keys(root, _TOP_KEYS, "")
    return Config(poll=_parse_poll(root.get("poll"), ctx), accounts=_parse_accounts(root, ctx))


def load_config(
    path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
) -> Config:
    """Read, parse and validate a YAML config file.

    File-level problems (missing, unreadable, bad YAML) are ConfigErrors with
    an empty field_path whose message names the file.
    """
    config_path = Path(path)
    try:
        text = config_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("", f"cannot read config file {config_path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError("", f"cannot read config file {config_path}: it is a directory") from None
    except UnicodeDecodeError:
        raise ConfigError("", f"cannot read config file {config_path}: not UTF-8 text") from None
    except OSError as err:
        reason = err.strerror or str(err)
        raise ConfigError("", f"cannot read config file {config_path}: {reason}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError("", _yaml_error_message(config_path, err)) from None
    return parse_config(data, base_dir=config_path.absolute().parent, environ=environ)


def _yaml_error_message(path: Path, err: yaml.YAMLError) -> str:
    # str(err) quotes the offending source line, which may hold a secret:
    # use only the problem description and its position.
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(err, "problem", None) or "syntax error"
    return f"invalid YAML in {path}{where}: {problem}"


# --------------------------------------------------------------------------
# describe(): the --config.check summary
# --------------------------------------------------------------------------

_MASK = "********"


def describe(config: Config) -> str:
    """A human summary of ``config`` in which every secret reads ``********``."""
    poll = config.poll
    lines = [
        "poll:",
        f"  interval: {format_duration(poll.interval)}",
        f"  lookback: {format_duration(poll.lookback)}",
        f"  page_size: {poll.page_size}",
        f"  timeout: {format_duration(poll.timeout)}",
        f"  stale_after: {format_duration(poll.stale_after)}",
        f"  queues: {', '.join(poll.queues)}",
        f"  max_pages: {poll.max_pages}",
        f"  concurrency: {poll.concurrency}",
        f"accounts: {len(config.accounts)}",
    ]
    for account in config.accounts:
        lines += _describe_account(account)
    text = "\n".join(lines)  # no trailing newline: callers print() it
    # Belt and braces: a secret could also have been pasted into, say, a
    # search_by value. Longest first, so a secret containing another is
    # masked whole.
    for secret in sorted(set(config.secrets()), key=len, reverse=True):
        text = text.replace(secret, _MASK)
    return text


def _describe_account(account: AccountConfig) -> list[str]:
    creds = account.credentials
    lines = [
        f"  - name: {account.name}",
        f"    base_url: {account.base_url}",
        f"    auth: {_SCHEME_LABELS[creds.scheme]}",
    ]
    if isinstance(creds, OAuth2Credentials):
        lines += [f"    client_id: {creds.client_id}", f"    client_secret: {_MASK}"]
    else:
        lines += [f"    app_id: {creds.app_id}"]
        lines += [f"    {key}: {_MASK}" for key in ("app_key", "access_key", "secret_key")]
    lines.append(f"    search_by: {account.search_by if account.search_by else 'none'}")
    filters = ", ".join(str(f) for f in account.filter_by) if account.filter_by else "none"
    lines.append(f"    filter_by: {filters}")
    return lines
