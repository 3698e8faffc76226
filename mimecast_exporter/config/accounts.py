"""The ``accounts`` list: one :class:`AccountConfig` per entry.

Owns account names (unique label values), choosing the credential scheme,
and the ``search_by`` / ``filter_by`` pass-through to the API. Credentials
and endpoints are delegated to :mod:`.credentials` and :mod:`.endpoints`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mimecast_exporter.config.credentials import parse_hmac, parse_oauth2
from mimecast_exporter.config.endpoints import parse_endpoint
from mimecast_exporter.config.expand import (
    Context,
    check_keys,
    expand_tree,
    expect_mapping,
    flag,
    found,
    join,
    one_of,
    required,
    string_value,
)
from mimecast_exporter.config.files import MAX_PEM_BYTES, FileProblem, read_text
from mimecast_exporter.config.model import (
    MAX_TOP_DOMAINS,
    AccountConfig,
    ConfigError,
    Problems,
)

SEARCH_FIELDS: tuple[str, ...] = ("ALL", "fromAddress", "toAddress", "subject", "info", "remoteIp")

_NAME_RE = re.compile(r"[A-Za-z0-9_-]+")
_ACCOUNT_KEYS = (
    "name",
    "base_url",
    "region",
    "oauth2",
    "hmac",
    "search_by",
    "filter_by",
    "tls_config",
    "top_domains",
    "expose_message_details",
)
_TLS_KEYS = ("ca_file",)
_SEARCH_BY_KEYS = ("field_name", "value")


def parse_accounts(root: Mapping[str, Any], ctx: Context) -> tuple[AccountConfig, ...]:
    raw = required(root, "accounts", "", "a list with at least one account")
    if not isinstance(raw, list):
        raise ConfigError("accounts", f"expected a list of accounts; found {found(raw)}")
    if not raw:
        raise ConfigError("accounts", "must list at least one account; found an empty list")
    accounts: list[AccountConfig] = []
    first_use: dict[str, int] = {}
    problems = Problems()
    for i, item in enumerate(raw):
        account = problems.attempt(_parse_account, item, f"accounts[{i}]", ctx, default=None)
        if account is None:
            continue
        if account.name in first_use:
            problems.found.append(
                ConfigError(
                    f"accounts[{i}].name",
                    f"duplicate account name {account.name!r} (also used by "
                    f"accounts[{first_use[account.name]}]); names must be unique",
                )
            )
            continue
        first_use[account.name] = i
        accounts.append(account)
    problems.check()
    return tuple(accounts)


def _parse_account(raw: Any, path: str, ctx: Context) -> AccountConfig:
    account = expect_mapping(raw, path, "an account (a mapping with name, base_url, ...)")
    problems = Problems()  # every field read, whatever the others hold
    problems.attempt(check_keys, account, _ACCOUNT_KEYS, path, default=None)
    name = problems.attempt(_parse_name, account, path, ctx, default="")
    scheme = problems.attempt(
        one_of, account, "oauth2", "hmac", path, " (API 2.0 or API 1.0 credentials)", default=""
    )
    credentials: Any = None
    if scheme == "oauth2":
        credentials = problems.attempt(
            parse_oauth2, account["oauth2"], join(path, "oauth2"), ctx, default=None
        )
    elif scheme == "hmac":
        credentials = problems.attempt(
            parse_hmac, account["hmac"], join(path, "hmac"), ctx, default=None
        )
    search_by = account.get("search_by")
    filter_by = account.get("filter_by")
    parsed = AccountConfig(
        name=name,
        base_url=problems.attempt(
            parse_endpoint, account, path, scheme or "oauth2", ctx, default=""
        ),
        credentials=credentials,
        # "search_by:" left empty means the same as leaving it out.
        search_by=None
        if search_by is None
        else problems.attempt(_parse_search_by, search_by, path, ctx, default=None),
        filter_by=None
        if filter_by is None
        else problems.attempt(_parse_filter_by, filter_by, path, ctx, default=None),
        ca_file=problems.attempt(
            _parse_tls_config, account.get("tls_config"), path, ctx, default=None
        ),
        top_domains=problems.attempt(
            _parse_top_domains,
            account.get("top_domains", 0),
            join(path, "top_domains"),
            default=0,
        ),
        expose_message_details=problems.attempt(
            flag,
            account.get("expose_message_details", False),
            join(path, "expose_message_details"),
            default=False,
        ),
    )
    problems.check()
    return parsed


def _parse_top_domains(value: Any, path: str) -> int:
    """K, from 0 (off) to MAX_TOP_DOMAINS: each queue and route gets K+1 series."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(
            path, f"expected an integer from 0 (off) to {MAX_TOP_DOMAINS}; found {found(value)}"
        )
    if not 0 <= value <= MAX_TOP_DOMAINS:
        raise ConfigError(
            path,
            f"expected an integer from 0 (off) to {MAX_TOP_DOMAINS} (each queue and route gets"
            f" top_domains + 1 series); found {value}",
        )
    return value


def _parse_tls_config(raw: Any, path: str, ctx: Context) -> str | None:
    """``tls_config.ca_file``: a CA bundle (PEM) trusted for this account's requests.

    Verification itself can never be turned off: there is no key for that.
    """
    if raw is None:
        return None
    path = join(path, "tls_config")
    tls = expect_mapping(raw, path, "a mapping with ca_file")
    check_keys(tls, _TLS_KEYS, path)
    field_path = join(path, "ca_file")
    ca_file = Path(
        string_value(required(tls, "ca_file", path, "the path of a PEM CA bundle"), field_path, ctx)
    )
    try:
        ca_file = ca_file.expanduser()
    except RuntimeError:  # "~user/..." for a user that does not exist
        raise ConfigError(field_path, f"cannot read {ca_file}: unknown user in '~'") from None
    if not ca_file.is_absolute() and ctx.base_dir is not None:
        ca_file = ctx.base_dir / ca_file
    try:
        text = read_text(ca_file, MAX_PEM_BYTES)
    except FileProblem as problem:
        raise ConfigError(field_path, f"cannot read {ca_file}: {problem}") from None
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise ConfigError(field_path, f"{ca_file} holds no PEM certificate")
    return str(ca_file)


def _parse_name(account: Mapping[str, Any], path: str, ctx: Context) -> str:
    field_path = join(path, "name")
    raw = required(account, "name", path, "a label value matching [A-Za-z0-9_-]+")
    name = string_value(raw, field_path, ctx)
    if not _NAME_RE.fullmatch(name):
        raise ConfigError(
            field_path,
            "must match [A-Za-z0-9_-]+ (letters, digits, '_' and '-'; it becomes the "
            f"'account' label); found {found(name)}",
        )
    return name


# --- search_by / filter_by ----------------------------------------------------


def _parse_search_by(raw: Any, path: str, ctx: Context) -> dict[str, Any]:
    """Convert ``{field_name, value}`` into the API's ``{"fieldName", "value"}``."""
    path = join(path, "search_by")
    search_by = expect_mapping(raw, path, "a mapping with field_name and value")
    check_keys(search_by, _SEARCH_BY_KEYS, path)
    allowed = ", ".join(SEARCH_FIELDS)
    field_name = string_value(
        required(search_by, "field_name", path, f"one of {allowed}"),
        join(path, "field_name"),
        ctx,
    )
    if field_name not in SEARCH_FIELDS:
        raise ConfigError(
            join(path, "field_name"), f"expected one of: {allowed}; found {found(field_name)}"
        )
    value = string_value(
        required(search_by, "value", path, "the string to search for"), join(path, "value"), ctx
    )
    return {"fieldName": field_name, "value": value}


def _parse_filter_by(raw: Any, path: str, ctx: Context) -> tuple[dict[str, Any], ...]:
    """Pass filters through to the API, only renaming ``field_name`` to ``fieldName``."""
    path = join(path, "filter_by")
    if not isinstance(raw, list):
        raise ConfigError(
            path, f"expected a list of mappings such as [{{route: outbound}}]; found {found(raw)}"
        )
    filters: list[dict[str, Any]] = []
    for i, item in enumerate(raw):
        item_path = f"{path}[{i}]"
        mapping = expect_mapping(item, item_path, "a mapping such as {route: outbound}")
        converted: dict[str, Any] = {}
        for key, value in mapping.items():
            if not isinstance(key, str):
                raise ConfigError(item_path, f"keys must be strings; found {found(key)}")
            wire_key = "fieldName" if key == "field_name" else key
            if wire_key in converted:
                raise ConfigError(
                    join(item_path, key), "given twice, as 'field_name' and as 'fieldName'"
                )
            try:
                converted[wire_key] = expand_tree(value, join(item_path, key), ctx)
            except RecursionError:  # e.g. a YAML alias to an enclosing node: &f [{a: *f}]
                raise ConfigError(
                    join(item_path, key), "is nested too deeply, or contains itself (a YAML alias)"
                ) from None
        filters.append(converted)
    return tuple(filters)
