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

:func:`load_web_config` reads and validates a file completely (unknown keys,
the certificate and key are loaded into an ``SSLContext``, every hash is
checked to be bcrypt) and raises :class:`WebConfigError`, naming the file and
the field, on the first problem. :class:`WebConfigWatcher` keeps the
configuration in force: it re-reads the file when it, or a certificate, key or
CA file it names, changes, and keeps the last good configuration when an edit
is bad. What a configuration enforces per connection and request lives in
:mod:`exporter.webauth`.

Differences from exporter-toolkit, all forced by Python's ``ssl`` module or
``http.server``: ``RequireAnyClientCert`` verifies the certificate against
``client_ca_file`` (which it therefore needs); ``RequestClientCert`` does not
ask for a certificate at all (neither uses it); ``curve_preferences`` and
``http2`` are validated but not applied; the inline ``cert``, ``key`` and
``client_ca`` are not supported; TLS cannot be switched on or off by a reload.
"""

from __future__ import annotations

import logging
import math
import os
import re
import ssl
import threading
import time
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import bcrypt
import yaml

from exporter.config.expand import found, join
from exporter.config.model import ConfigError
from exporter.durations import parse_duration_text
from exporter.logs import add_secrets
from exporter.webauth import (
    HANDSHAKE_TIMEOUT,
    AuthCache,
    BasicAuth,
    Checkpw,
    RateLimiter,
    WebSecurity,
)

logger = logging.getLogger(__name__)

_TOP_KEYS = (
    "tls_server_config",
    "http_server_config",
    "basic_auth_users",
    "auth_excluded_paths",
    "rate_limit",
)
_TLS_KEYS = (
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "min_version",
    "max_version",
    "cipher_suites",
    "prefer_server_cipher_suites",
    "curve_preferences",
    "client_allowed_sans",
)
_TLS_INLINE_KEYS = ("cert", "key", "client_ca")  # exporter-toolkit has them; we do not
_HTTP_KEYS = ("http2", "headers")
_RATE_LIMIT_KEYS = ("interval", "burst")

TLS_VERSIONS: dict[str, ssl.TLSVersion] = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# client_auth_type -> (verify mode, whether client_ca_file is required)
CLIENT_AUTH_TYPES: dict[str, tuple[ssl.VerifyMode, bool]] = {
    "NoClientCert": (ssl.CERT_NONE, False),
    # Asking for a certificate nobody checks or uses admits the same clients
    # as not asking; Python's ssl cannot ask without verifying.
    "RequestClientCert": (ssl.CERT_NONE, False),
    # Python's ssl cannot require a certificate without verifying it: verify
    # against client_ca_file, which is therefore required.
    "RequireAnyClientCert": (ssl.CERT_REQUIRED, True),
    "VerifyClientCertIfGiven": (ssl.CERT_OPTIONAL, True),
    "RequireAndVerifyClientCert": (ssl.CERT_REQUIRED, True),
}
_CLIENT_AUTH_ALIASES = {"RequireClientCert": "RequireAnyClientCert"}  # exporter-toolkit's too
_REQUIRES_CLIENT_CERT = ("RequireAnyClientCert", "RequireAndVerifyClientCert")

# Go's names (crypto/tls CipherSuites()) -> OpenSSL's, for TLS 1.2 and below.
_CIPHERS: dict[str, str] = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
}
# TLS 1.3 suites are accepted, and, as in Go, not configurable.
_TLS13_CIPHERS = (
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
)
_CURVES = ("CurveP256", "CurveP384", "CurveP521", "X25519", "X25519MLKEM768")

# exporter-toolkit allows exactly these headers (and these values where listed).
HEADERS: dict[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}

_BCRYPT = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")


class WebConfigError(ConfigError):
    """A problem in the web configuration file; ``file`` is its path."""

    def __init__(self, file: Path, field_path: str, problem: str) -> None:
        self.file = file
        super().__init__(field_path, problem)
        self.args = (f"{file}: {self.args[0]}",)  # "web.yml: tls_server_config.x: problem"


@dataclass(frozen=True)
class TLSServerConfig:
    cert_file: Path
    key_file: Path
    client_auth_type: str = "NoClientCert"
    client_ca_file: Path | None = None
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    max_version: ssl.TLSVersion | None = None
    cipher_suites: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True
    curve_preferences: tuple[str, ...] = ()
    client_allowed_sans: tuple[str, ...] = ()


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


def _yaml_problem(err: yaml.YAMLError) -> str:
    # str(err) quotes the offending line, which may hold a hash: position only.
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"invalid YAML{where}: {getattr(err, 'problem', None) or 'syntax error'}"


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
        text = config_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise WebConfigError(config_path, "", f"cannot read the file: {_reason(err)}") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        raise WebConfigError(config_path, "", _yaml_problem(err)) from None
    return _Parser(config_path, seen).parse(data)


def _reason(err: BaseException) -> str:
    if isinstance(err, FileNotFoundError):
        return "no such file"
    if isinstance(err, IsADirectoryError):
        return "it is a directory"
    if isinstance(err, UnicodeDecodeError):
        return "not UTF-8 text"
    if isinstance(err, OSError):
        return err.strerror or str(err)
    return str(err)


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
            return path.read_bytes()
        except OSError as err:
            raise self.error(where, f"cannot read {path}: {_reason(err)}") from None

    def parse(self, data: Any) -> WebConfig:
        root = self.mapping(data, "", _TOP_KEYS)
        users = self.users(root.get("basic_auth_users"))
        http2, headers = self.http(root.get("http_server_config"))
        tls, context = self.tls(root.get("tls_server_config"))
        excluded = self.strings(root.get("auth_excluded_paths"), "auth_excluded_paths")
        for i, item in enumerate(excluded):
            if not item.startswith("/"):
                raise self.error(f"auth_excluded_paths[{i}]", "expected a path starting with /")
        return WebConfig(
            path=self.path,
            tls=tls,
            ssl_context=context,
            basic_auth_users=users,
            http2=http2,
            headers=headers,
            auth_excluded_paths=excluded,
            rate_limit=self.rate_limit(root.get("rate_limit")),
            files=tuple(dict.fromkeys(self.files)),
        )

    def users(self, value: Any) -> dict[str, bytes]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(
                "basic_auth_users",
                f"expected a mapping of user names to bcrypt hashes; found {found(value)}",
            )
        users: dict[str, bytes] = {}
        for name, hashed in value.items():
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
            users[name] = b"$2b$" + hashed.strip()[4:].encode("ascii")
        return users

    def http(self, value: Any) -> tuple[bool, tuple[tuple[str, str], ...]]:
        section = self.mapping(value, "http_server_config", _HTTP_KEYS)
        http2 = True
        if section.get("http2") is not None:
            http2 = self.boolean(section["http2"], "http_server_config.http2")
        where = "http_server_config.headers"
        raw = self.mapping(section.get("headers"), where, tuple(HEADERS))
        headers: list[tuple[str, str]] = []
        for name, header_value in raw.items():
            at = join(where, name)
            if header_value is None or header_value == "":
                continue  # "Unset if blank"
            if not isinstance(header_value, str) or any(c in header_value for c in "\r\n\0"):
                raise self.error(at, f"expected a one-line string; found {found(header_value)}")
            allowed = HEADERS[name]
            if allowed and header_value not in allowed:
                raise self.error(
                    at, f"expected one of {', '.join(allowed)}; found {found(header_value)}"
                )
            headers.append((name, header_value))
        return http2, tuple(headers)

    def rate_limit(self, value: Any) -> tuple[float, int] | None:
        section = self.mapping(value, "rate_limit", _RATE_LIMIT_KEYS)
        if not section:
            return None
        interval = 0.0
        if section.get("interval") is not None:
            text = section["interval"]
            if not isinstance(text, str):
                raise self.error(
                    "rate_limit.interval", f"expected a duration such as 1s; found {found(text)}"
                )
            try:
                interval = parse_duration_text(text)
            except ValueError as err:
                raise self.error("rate_limit.interval", str(err)) from None
        if interval == 0:
            return None  # exporter-toolkit: 0 disables the limiter
        burst = section.get("burst")
        if not isinstance(burst, int) or isinstance(burst, bool) or burst < 1:
            raise self.error(
                "rate_limit.burst",
                f"expected an integer of at least 1 when an interval is set; found {found(burst)}",
            )
        return interval, burst

    def tls(self, value: Any) -> tuple[TLSServerConfig | None, ssl.SSLContext | None]:
        where = "tls_server_config"
        if isinstance(value, dict):
            for key in _TLS_INLINE_KEYS:
                if key in value:
                    raise self.error(
                        join(where, key),
                        f"inline certificates and keys are not supported; "
                        f"use {key}_file with the path of a PEM file",
                    )
        section = self.mapping(value, where, _TLS_KEYS)
        if not section:
            return None, None
        for key in ("cert_file", "key_file"):
            if key not in section:
                raise self.error(join(where, key), "is required when tls_server_config is given")
        tls = TLSServerConfig(
            cert_file=self.path_of(section["cert_file"], f"{where}.cert_file"),
            key_file=self.path_of(section["key_file"], f"{where}.key_file"),
            client_auth_type=self.client_auth_type(section),
            min_version=self.version(section.get("min_version"), f"{where}.min_version")
            or ssl.TLSVersion.TLSv1_2,
            max_version=self.version(section.get("max_version"), f"{where}.max_version"),
            cipher_suites=self.names(section, "cipher_suites", (*_CIPHERS, *_TLS13_CIPHERS)),
            prefer_server_cipher_suites=self.boolean(
                section.get("prefer_server_cipher_suites", True),
                f"{where}.prefer_server_cipher_suites",
            ),
            curve_preferences=self.names(section, "curve_preferences", _CURVES),
            client_allowed_sans=self.strings(
                section.get("client_allowed_sans"), f"{where}.client_allowed_sans"
            ),
        )
        if tls.max_version is not None and tls.max_version < tls.min_version:
            raise self.error(f"{where}.max_version", "is below min_version")
        if tls.client_allowed_sans and tls.client_auth_type not in _REQUIRES_CLIENT_CERT:
            raise self.error(
                f"{where}.client_allowed_sans",
                "needs client_auth_type RequireAndVerifyClientCert (or RequireAnyClientCert): "
                "other types admit clients without a certificate, so without a SAN to match",
            )
        ca = section.get("client_ca_file")
        if ca is not None and tls.client_auth_type == "NoClientCert":
            raise self.error(
                f"{where}.client_ca_file",
                "is given but client_auth_type is NoClientCert; set client_auth_type "
                "(RequireAndVerifyClientCert to require client certificates)",
            )
        if ca is None and CLIENT_AUTH_TYPES[tls.client_auth_type][1]:
            extra = ""
            if tls.client_auth_type == "RequireAnyClientCert":
                extra = (
                    " (this exporter cannot require a client certificate without verifying it;"
                    " give the CA that issues your clients' certificates)"
                )
            raise self.error(
                f"{where}.client_ca_file",
                f"is required with client_auth_type {tls.client_auth_type}: it holds the CA "
                f"certificates client certificates are verified against{extra}",
            )
        if ca is not None:
            tls = replace(tls, client_ca_file=self.path_of(ca, f"{where}.client_ca_file"))
        return tls, self.context(tls)

    def client_auth_type(self, section: Mapping[str, Any]) -> str:
        where = "tls_server_config.client_auth_type"
        value = section.get("client_auth_type")
        name = "NoClientCert" if value is None else self.string(value, where)
        name = _CLIENT_AUTH_ALIASES.get(name, name)
        if name not in CLIENT_AUTH_TYPES:
            raise self.error(
                where, f"expected one of {', '.join(CLIENT_AUTH_TYPES)}; found {found(value)}"
            )
        return name

    def names(self, section: Mapping[str, Any], key: str, known: Iterable[str]) -> tuple[str, ...]:
        """A list of cipher suite or curve names, each one of ``known``."""
        where = f"tls_server_config.{key}"
        names = self.strings(section.get(key), where)
        known = tuple(known)
        for i, name in enumerate(names):
            if name not in known:
                what = "cipher suite" if key == "cipher_suites" else "curve"
                example = (
                    "Go's names, e.g. TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
                    if key == "cipher_suites"
                    else f"one of {', '.join(known)}"
                )
                raise self.error(f"{where}[{i}]", f"unknown {what} {name!r}; expected {example}")
        return names

    def context(self, tls: TLSServerConfig) -> ssl.SSLContext:
        """An SSLContext for ``tls`` with its files loaded: this is what validates them."""
        where = "tls_server_config"
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        if tls.min_version < ssl.TLSVersion.TLSv1_2:
            with warnings.catch_warnings():  # deprecated, but asked for explicitly
                warnings.simplefilter("ignore", DeprecationWarning)
                context.minimum_version = tls.min_version
        else:
            context.minimum_version = tls.min_version
        if tls.max_version is not None:
            if tls.max_version < ssl.TLSVersion.TLSv1_2:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    context.maximum_version = tls.max_version
            else:
                context.maximum_version = tls.max_version
        if tls.prefer_server_cipher_suites:
            context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        tls12 = [_CIPHERS[name] for name in tls.cipher_suites if name in _CIPHERS]
        if tls12:
            try:
                context.set_ciphers(":".join(dict.fromkeys(tls12)))
            except ssl.SSLError:
                raise self.error(
                    f"{where}.cipher_suites", "none of these cipher suites is available here"
                ) from None
        context.set_alpn_protocols(["http/1.1"])

        cert_pem = self.read(tls.cert_file, f"{where}.cert_file")
        self.read(tls.key_file, f"{where}.key_file")
        self.check_certificates(cert_pem, f"{where}.cert_file", tls.cert_file)
        try:
            context.load_cert_chain(tls.cert_file, tls.key_file, password=_no_password)
        except _PassphraseNeeded:
            raise self.error(
                f"{where}.key_file",
                f"the key in {tls.key_file} is encrypted; give an unencrypted key "
                "(there is no way to give its passphrase)",
            ) from None
        except ssl.SSLError as err:
            if "KEY_VALUES_MISMATCH" in str(err):
                problem = (
                    f"the key in {tls.key_file} does not match the certificate in {tls.cert_file}"
                )
            else:
                problem = f"{tls.key_file} holds no usable PEM private key"
            raise self.error(f"{where}.key_file", problem) from None

        if tls.client_ca_file is not None:
            ca_pem = self.read(tls.client_ca_file, f"{where}.client_ca_file")
            self.check_certificates(ca_pem, f"{where}.client_ca_file", tls.client_ca_file)
            context.load_verify_locations(cadata=ca_pem.decode("ascii"))
        context.verify_mode = CLIENT_AUTH_TYPES[tls.client_auth_type][0]
        return context

    def version(self, value: Any, where: str) -> ssl.TLSVersion | None:
        if value is None:
            return None
        if not isinstance(value, str) or value not in TLS_VERSIONS:
            raise self.error(
                where, f"expected one of {', '.join(TLS_VERSIONS)}; found {found(value)}"
            )
        return TLS_VERSIONS[value]

    def check_certificates(self, pem: bytes, where: str, path: Path) -> None:
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(
                cadata=pem.decode("ascii")
            )
        except (ssl.SSLError, UnicodeDecodeError, ValueError):
            raise self.error(where, f"{path} holds no PEM certificate") from None


class _PassphraseNeeded(Exception):
    pass


def _no_password() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal for a passphrase.
    raise _PassphraseNeeded


def _signature(paths: Iterable[Path]) -> tuple[tuple[str, tuple[int, ...] | None], ...]:
    out = []
    for path in paths:
        try:
            st = path.stat()
            out.append((str(path), (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)))
        except OSError:
            out.append((str(path), None))
    return tuple(out)


def _merge(
    known: tuple[tuple[str, tuple[int, ...] | None], ...], paths: Iterable[Path]
) -> tuple[tuple[str, tuple[int, ...] | None], ...]:
    """The signature of ``paths``, taking the entries in ``known`` (stat'ed before
    the files were read) as they are, so a change made while loading is not missed."""
    taken = dict(known)
    return tuple((str(p), taken[str(p)]) if str(p) in taken else _signature([p])[0] for p in paths)


class WebConfigWatcher:
    """The web configuration in force, re-read when its files change.

    Loads ``path`` at once (raising :class:`WebConfigError` if it is invalid,
    so a bad file stops the exporter at start). :meth:`current` is called for
    every new connection; at most once per ``check_interval`` seconds it
    compares the modification times of the file and of every certificate,
    key and CA file it names, and reloads when one changed. A reload that
    fails is logged once, as an error naming the problem, and the previous
    configuration stays in force. New certificates apply to new connections.

    ``checkpw`` checks a password against a bcrypt hash (bcrypt's own by
    default); pass a wrapper to observe how many bcrypt computations run.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        check_interval: float = 1.0,
        checkpw: Checkpw = bcrypt.checkpw,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
    ) -> None:
        if not (check_interval >= 0 and math.isfinite(check_interval)):
            raise ValueError(f"check_interval {check_interval!r}: must be a number >= 0")
        self.path = Path(path)
        self.check_interval = check_interval
        self.handshake_timeout = handshake_timeout
        self._checkpw = checkpw
        self._cache = AuthCache()
        self._bcrypt_lock = threading.Lock()
        self._lock = threading.Lock()
        before = _signature([self.path])  # before reading: an edit during the load is seen
        config = load_web_config(self.path)
        self.config = config
        self._watched = config.files
        self._signature = _merge(before, config.files)
        self._security = self._build(config, None, None)
        self._next_check = time.monotonic() + check_interval
        logger.info("web configuration loaded", extra=_describe(config))
        _log_ignored(config)

    @property
    def tls(self) -> bool:
        """Whether connections are TLS; fixed for the watcher's lifetime."""
        return self.config.tls is not None

    def current(self) -> WebSecurity:
        """The security to apply to a new connection, reloading first if files changed."""
        now = time.monotonic()
        if now < self._next_check:
            return self._security
        with self._lock:
            if now >= self._next_check:
                self._next_check = now + self.check_interval
                signature = _signature(self._watched)
                if signature != self._signature:
                    self._reload(signature)
            return self._security

    def _reload(self, signature: tuple[Any, ...]) -> None:
        files: list[Path] = []
        try:
            config = load_web_config(self.path, files=files)
            if (config.tls is None) != (self.config.tls is None):
                raise WebConfigError(
                    self.path,
                    "tls_server_config",
                    "turning TLS on or off needs a restart of the exporter",
                )
        except Exception as err:
            # Watch what the bad edit names too: creating a missing file fixes it.
            watched = tuple(dict.fromkeys((*self._watched, *files)))
            self._signature = _merge(signature, watched)
            self._watched = watched
            problem = str(err) if isinstance(err, WebConfigError) else repr(err)  # a bug
            logger.error(
                "web configuration reload failed; still serving with the previous one",
                extra={"file": str(self.path), "error": problem},
            )
            return
        self._security = self._build(config, self.config, self._security)
        self.config = config
        self._watched = config.files
        self._signature = _merge(signature, config.files)
        logger.info("web configuration reloaded", extra=_describe(config))
        _log_ignored(config)

    def _build(
        self, config: WebConfig, previous: WebConfig | None, old: WebSecurity | None
    ) -> WebSecurity:
        add_secrets(h.decode("ascii") for h in config.basic_auth_users.values())
        add_secrets("$2y$" + h[4:].decode("ascii") for h in config.basic_auth_users.values())
        add_secrets("$2a$" + h[4:].decode("ascii") for h in config.basic_auth_users.values())
        basic_auth = None
        if config.basic_auth_users:
            basic_auth = BasicAuth(
                config.basic_auth_users, self._cache, self._checkpw, self._bcrypt_lock
            )
        limiter = None
        if config.rate_limit is not None:
            if previous is not None and previous.rate_limit == config.rate_limit and old:
                limiter = old.rate_limiter  # an unrelated edit does not refill the bucket
            else:
                limiter = RateLimiter(*config.rate_limit)
        tls = config.tls
        return WebSecurity(
            ssl_context=config.ssl_context,
            basic_auth=basic_auth,
            headers=config.headers,
            auth_excluded_paths=config.auth_excluded_paths,
            rate_limiter=limiter,
            client_allowed_sans=tls.client_allowed_sans if tls is not None else (),
            handshake_timeout=self.handshake_timeout,
        )


def _log_ignored(config: WebConfig) -> None:
    if config.tls is not None and config.tls.curve_preferences:
        logger.debug("tls_server_config.curve_preferences is not applied: OpenSSL's order is used")
    if not config.http2:
        logger.debug("http_server_config.http2 changes nothing: only HTTP/1.1 is served")


def _describe(config: WebConfig) -> dict[str, Any]:
    """Log fields for a loaded configuration: never a hash, never a user list."""
    fields: dict[str, Any] = {
        "file": str(config.path),
        "tls": config.tls is not None,
        "basic_auth_users": len(config.basic_auth_users),
    }
    if config.tls is not None:
        fields["client_auth_type"] = config.tls.client_auth_type
        fields["min_version"] = config.tls.min_version.name
    return fields
