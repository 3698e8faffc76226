"""``--web.config.file``: TLS and basic auth, in exporter-toolkit's web configuration format.

The format is that of Prometheus's exporter-toolkit
(https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md),
so the same file works for this exporter and for Go exporters::

    tls_server_config:
      cert_file: server.crt          # relative paths: to this file's directory
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert
      client_ca_file: ca.crt
      min_version: TLS12             # the default
    http_server_config:
      headers: {X-Frame-Options: deny}
    basic_auth_users:
      alice: $2y$10$...              # bcrypt hashes

This module owns the format: :func:`load_web_config` reads and validates a
file completely (unknown keys, the certificate and key are loaded into an
``SSLContext``, every hash is checked to be bcrypt) into a :class:`WebConfig`
and raises :class:`WebConfigError`, naming the file and the field; a file
with problems in several sections (or several users or headers) raises
:class:`WebConfigErrors` with each of them. The ``tls_server_config``
section and its ``SSLContext`` are
:mod:`mimecast_exporter.web.tls`'s. :class:`~mimecast_exporter.web.watch.WebConfigWatcher` keeps
the configuration in force: it re-reads the file when it, or a certificate,
key or CA file it names, changes, and keeps the last good configuration when
an edit is bad. What a configuration enforces per connection and request
lives in :mod:`mimecast_exporter.web.auth`.

It behaves as exporter-toolkit does, down to its own test cases (ported in
``tests/web/test_web_exporter_toolkit.py``): a ``tls_server_config`` without any
certificate, key, client CA or ``client_auth_type`` leaves TLS off; inline
``cert``, ``key`` and ``client_ca`` work; without ``client_ca_file`` client
certificates are verified against the system's CAs; ``RequireAnyClientCert``
and ``RequestClientCert`` accept any certificate; ``curve_preferences`` and
``prefer_server_cipher_suites`` are applied; ``rate_limit.interval: 0`` turns
the limiter off. Differences: ``http2`` is validated but there is no HTTP/2
to turn on (the server speaks HTTP/1.1); TLS cannot be switched on or off by
a reload (a restart can).
"""

from __future__ import annotations

import logging
import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mimecast_exporter.config.expand import found, join
from mimecast_exporter.config.files import (
    MAX_CONFIG_BYTES,
    MAX_PEM_BYTES,
    BadYaml,
    FileProblem,
    load_yaml,
    read_file,
    read_text,
)
from mimecast_exporter.config.model import ConfigError, ConfigErrors, Problems
from mimecast_exporter.durations import parse_duration_text
from mimecast_exporter.web.tls import CLIENT_AUTH_TYPES as CLIENT_AUTH_TYPES
from mimecast_exporter.web.tls import TLS_VERSIONS as TLS_VERSIONS
from mimecast_exporter.web.tls import TLSServerConfig, parse_tls

logger = logging.getLogger(__name__)

_TOP_KEYS = (
    "tls_server_config",
    "http_server_config",
    "basic_auth_users",
    "auth_excluded_paths",
    "rate_limit",
)
_HTTP_KEYS = ("http2", "headers")
_RATE_LIMIT_KEYS = ("interval", "burst")

# exporter-toolkit allows exactly these headers (and these values where listed).
HEADERS: dict[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}

# RFC 9110 field-value characters: visible ASCII, space, tab, and obs-text.
_SENDABLE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
_BCRYPT = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")


class WebConfigError(ConfigError):
    """A problem in the web configuration file; ``file`` is its path."""

    def __init__(self, file: Path, field_path: str, problem: str) -> None:
        self.file = file
        super().__init__(field_path, problem)
        self.args = (f"{file}: {self.args[0]}",)  # "web.yml: tls_server_config.x: problem"


class WebConfigErrors(WebConfigError):
    """Several problems of the web configuration file, found in one read: a
    :class:`ConfigErrors` that is a :class:`WebConfigError` too."""

    errors = ConfigErrors.errors

    def __init__(self, errors: list[ConfigError]) -> None:
        several = ConfigErrors(errors)
        first = several.errors[0]
        super().__init__(getattr(first, "file", Path()), first.field_path, first.problem)
        self._errors, self.args = several.errors, several.args


@dataclass(frozen=True)
class WebConfig:
    """A validated web configuration. ``ssl_context`` is built and loaded when TLS is on."""

    path: Path
    tls: TLSServerConfig | None = None
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False, compare=False)
    # user -> bcrypt hash, "$2b$" spelling; kept out of repr: hashes are secrets too.
    basic_auth_users: Mapping[str, bytes] = field(default_factory=dict, repr=False)
    http2: bool = True
    headers: tuple[tuple[str, str], ...] = ()
    auth_excluded_paths: tuple[str, ...] = ()
    rate_limit: tuple[float, int] | None = None  # (interval seconds, burst)
    files: tuple[Path, ...] = ()  # the file itself and every file it names


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys, as Go's yaml.UnmarshalStrict does."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    keys: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if not isinstance(key, str | int | float | bool):
            continue  # unhashable or odd keys are reported by the parser
        if key in keys:
            # The key only, never the value: under basic_auth_users it is a user name.
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        keys.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_web_config(path: str | os.PathLike[str], *, files: list[Path] | None = None) -> WebConfig:
    """Read and validate a web configuration file; raises :class:`WebConfigError`.

    Every file read (the configuration, then certificate, key and CA files) is
    appended to ``files`` when given, also when validation fails part-way, so
    a watcher knows what to watch after a bad edit too.
    """
    config_path = Path(path)
    seen = files if files is not None else []
    seen.append(config_path)
    try:
        text = read_text(config_path, MAX_CONFIG_BYTES)
    except FileProblem as problem:
        raise WebConfigError(config_path, "", f"cannot read the file: {problem}") from None
    try:
        data = load_yaml(text, _StrictLoader)
    except BadYaml as err:
        raise WebConfigError(config_path, "", str(err)) from None
    return _Parser(config_path, seen).parse(data)


class _Parser:
    def __init__(self, path: Path, files: list[Path]) -> None:
        self.path = path
        self.base_dir = path.absolute().parent
        self.files = files

    def error(self, field_path: str, problem: str) -> WebConfigError:
        return WebConfigError(self.path, field_path, problem)

    def mapping(self, value: Any, where: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(where, f"expected a mapping; found {found(value)}")
        for key in value:
            if key not in allowed:
                raise self.error(
                    join(where, key), f"unknown key; allowed keys are: {', '.join(allowed)}"
                )
        return value

    def string(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.error(where, f"expected a non-empty string; found {found(value)}")
        return value.strip()

    def strings(self, value: Any, where: str) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.error(where, f"expected a list of strings; found {found(value)}")
        return tuple(self.string(item, f"{where}[{i}]") for i, item in enumerate(value))

    def boolean(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise self.error(where, f"expected true or false; found {found(value)}")
        return value

    def path_of(self, value: Any, where: str) -> Path:
        """A file name from the config, relative to the config file's directory."""
        name = self.string(value, where)
        return Path(name) if os.path.isabs(name) else self.base_dir / name

    def read(self, path: Path, where: str) -> bytes:
        self.files.append(path)
        try:
            return read_file(path, MAX_PEM_BYTES)
        except FileProblem as problem:
            raise self.error(where, f"cannot read {path}: {problem}") from None

    def parse(self, data: Any) -> WebConfig:
        root = self.mapping(data, "", _TOP_KEYS)
        # Each section is read past another's error, so that every one is told at once.
        problems = Problems()
        no_users: dict[str, bytes] = {}
        users = problems.attempt(self.users, root.get("basic_auth_users"), default=no_users)
        no_headers: tuple[tuple[str, str], ...] = ()
        http2, headers = problems.attempt(
            self.http, root.get("http_server_config"), default=(True, no_headers)
        )
        no_tls: tuple[TLSServerConfig | None, ssl.SSLContext | None] = (None, None)
        tls, context = problems.attempt(
            parse_tls, self, root.get("tls_server_config"), default=no_tls
        )
        no_paths: tuple[str, ...] = ()
        excluded = problems.attempt(
            self.excluded, root.get("auth_excluded_paths"), default=no_paths
        )
        rate_limit = problems.attempt(self.rate_limit, root.get("rate_limit"), default=None)
        problems.check(several=WebConfigErrors)
        return WebConfig(
            path=self.path,
            tls=tls,
            ssl_context=context,
            basic_auth_users=users,
            http2=http2,
            headers=headers,
            auth_excluded_paths=excluded,
            rate_limit=rate_limit,
            files=tuple(dict.fromkeys(self.files)),
        )

    def excluded(self, value: Any) -> tuple[str, ...]:
        excluded = self.strings(value, "auth_excluded_paths")
        for i, item in enumerate(excluded):
            if not item.startswith("/"):
                raise self.error(f"auth_excluded_paths[{i}]", "expected a path starting with /")
        return excluded

    def users(self, value: Any) -> dict[str, bytes]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(
                "basic_auth_users",
                f"expected a mapping of user names to bcrypt hashes; found {found(value)}",
            )
        problems = Problems()
        users = {
            name: problems.attempt(self.user, name, hashed, default=b"")
            for name, hashed in value.items()
        }
        problems.check(several=WebConfigErrors)
        return users

    def user(self, name: Any, hashed: Any) -> bytes:
        """One user's hash, in the "$2b$" spelling."""
        where = join("basic_auth_users", name)
        if not isinstance(name, str) or not name:
            raise self.error(where, f"user names must be strings; found {found(name)}")
        if ":" in name:
            raise self.error(where, "a user name cannot contain ':' (basic auth splits on it)")
        # Never quote the value: it is a password hash, or worse, a password.
        if not isinstance(hashed, str) or not _BCRYPT.fullmatch(hashed.strip()):
            raise self.error(
                where,
                f"expected a bcrypt hash ($2a$, $2b$ or $2y$, cost 04-31, 60 characters); "
                f"found {found(hashed, secret=True)} that is not one "
                "(make one with: htpasswd -nBC 10 \"\" | tr -d ':\\n')",
            )
        # Go and htpasswd write $2y$; the bcrypt package checks the same hash as $2b$.
        return b"$2b$" + hashed.strip()[4:].encode("ascii")

    def http(self, value: Any) -> tuple[bool, tuple[tuple[str, str], ...]]:
        section = self.mapping(value, "http_server_config", _HTTP_KEYS)
        http2 = True
        if section.get("http2") is not None:
            http2 = self.boolean(section["http2"], "http_server_config.http2")
        where = "http_server_config.headers"
        raw = self.mapping(section.get("headers"), where, tuple(HEADERS))
        problems = Problems()
        headers = [
            (name, header_value)
            for name, value in raw.items()
            if (header_value := problems.attempt(self.header, name, value, default=None))
        ]
        problems.check(several=WebConfigErrors)
        return http2, tuple(headers)

    def header(self, name: str, header_value: Any) -> str | None:
        """One header's value; None when blank ("Unset if blank")."""
        at = join("http_server_config.headers", name)
        if header_value is None or header_value == "":
            return None
        if isinstance(header_value, bool):  # Go reads YAML scalars as strings
            header_value = "true" if header_value else "false"
        elif isinstance(header_value, int | float):
            header_value = str(header_value)  # X-XSS-Protection: 1
        if not isinstance(header_value, str) or any(c in header_value for c in "\r\n\0"):
            raise self.error(at, f"expected a one-line string; found {found(header_value)}")
        if not _SENDABLE.fullmatch(header_value):
            # http.server writes headers in Latin-1: anything else would
            # fail every answer, not this check.
            raise self.error(
                at,
                "expected a value that can be sent in an HTTP header (printable Latin-1 "
                f"characters, no control characters); found {found(header_value)}",
            )
        allowed = HEADERS[name]
        if allowed and header_value not in allowed:
            raise self.error(
                at, f"expected one of {', '.join(allowed)}; found {found(header_value)}"
            )
        return header_value

    def rate_limit(self, value: Any) -> tuple[float, int] | None:
        """(interval, burst), or None when the limiter is off (no interval, or 0)."""
        section = self.mapping(value, "rate_limit", _RATE_LIMIT_KEYS)
        interval = self.interval(section.get("interval"))
        if interval == 0:
            return None  # exporter-toolkit: 0 turns the limiter off, whatever the burst
        burst = section.get("burst", 0)
        if not isinstance(burst, int) or isinstance(burst, bool) or burst < 0:
            raise self.error(
                "rate_limit.burst", f"expected an integer of at least 0; found {found(burst)}"
            )
        if burst == 0:
            logger.warning(
                "rate_limit.burst is 0: every request is refused with 429, as exporter-toolkit "
                "does; set burst to at least 1 to let requests through",
                extra={"file": str(self.path)},
            )
        return interval, burst

    def interval(self, value: Any) -> float:
        """A Go duration: a string such as 1s, or an integer of nanoseconds (YAML 0)."""
        where = "rate_limit.interval"
        if value is None:
            return 0.0
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value / 1e9
        if not isinstance(value, str):
            raise self.error(where, f"expected a duration such as 1s; found {found(value)}")
        if value.strip() == "0":
            return 0.0
        try:
            return parse_duration_text(value)
        except ValueError as err:
            raise self.error(where, str(err)) from None
