"""Where an account's API lives: ``base_url`` or a ``region`` shorthand.

Owns validating ``https://host[:port]`` base URLs (plain http only for a
loopback host), loopback detection, and mapping region names to base URLs for
the account's credential scheme.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from mimecast_exporter.config.expand import Context, join, one_of, string_value
from mimecast_exporter.config.model import HMAC_REGIONS, OAUTH2_REGIONS, SCHEME_LABELS, ConfigError
from mimecast_exporter.mimecast.transport import ProxyError, proxy_for


def parse_endpoint(account: Mapping[str, Any], path: str, scheme: str, ctx: Context) -> str:
    key = one_of(account, "base_url", "region", path)
    field_path = join(path, key)
    value = string_value(account[key], field_path, ctx)
    url = (
        _parse_base_url(value, field_path)
        if key == "base_url"
        else _region_url(value, field_path, scheme)
    )
    try:  # the environment's proxy for it is input too, checked as early
        proxy_for(url)
    except ProxyError as err:
        raise ConfigError(field_path, str(err)) from None
    return url


def _region_url(region: str, field_path: str, scheme: str) -> str:
    own, other = (
        (OAUTH2_REGIONS, HMAC_REGIONS) if scheme == "oauth2" else (HMAC_REGIONS, OAUTH2_REGIONS)
    )
    other_scheme = "hmac" if scheme == "oauth2" else "oauth2"
    key = region.strip().lower()
    if key in own:
        return own[key]
    valid = f"for {SCHEME_LABELS[scheme]} accounts use one of: {', '.join(own)}"
    if key in other:
        raise ConfigError(
            field_path, f"{region!r} is a region of {SCHEME_LABELS[other_scheme]}; {valid}"
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
