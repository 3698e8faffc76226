"""``tls_server_config`` of the web configuration: its validation and its SSLContext.

This module owns what is TLS-specific in exporter-toolkit's format: the names
it accepts for TLS versions, client auth types (and the ``ssl`` verify mode
each maps to), cipher suites (and their OpenSSL names) and curves; the
:class:`TLSServerConfig` the section is read into; and building the
``SSLContext`` with the certificate, key and CA files loaded, which is what
validates those files. :mod:`exporter.webconfig` reads the rest of the file
and hands this section to :func:`parse_tls`, together with the parser whose
helpers read fields and files and make its errors (:class:`FieldReader`).
"""

from __future__ import annotations

import ssl
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from exporter.config.expand import found, join

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


class FieldReader(Protocol):
    """What :func:`parse_tls` uses of :mod:`exporter.webconfig`'s parser."""

    def error(self, field_path: str, problem: str) -> Exception: ...

    def mapping(self, value: Any, where: str, allowed: tuple[str, ...]) -> dict[str, Any]: ...

    def string(self, value: Any, where: str) -> str: ...

    def strings(self, value: Any, where: str) -> tuple[str, ...]: ...

    def boolean(self, value: Any, where: str) -> bool: ...

    def path_of(self, value: Any, where: str) -> Path: ...

    def read(self, path: Path, where: str) -> bytes: ...


def parse_tls(p: FieldReader, value: Any) -> tuple[TLSServerConfig | None, ssl.SSLContext | None]:
    where = "tls_server_config"
    if isinstance(value, dict):
        for key in _TLS_INLINE_KEYS:
            if key in value:
                raise p.error(
                    join(where, key),
                    f"inline certificates and keys are not supported; "
                    f"use {key}_file with the path of a PEM file",
                )
    section = p.mapping(value, where, _TLS_KEYS)
    if not section:
        return None, None
    for key in ("cert_file", "key_file"):
        if key not in section:
            raise p.error(join(where, key), "is required when tls_server_config is given")
    tls = TLSServerConfig(
        cert_file=p.path_of(section["cert_file"], f"{where}.cert_file"),
        key_file=p.path_of(section["key_file"], f"{where}.key_file"),
        client_auth_type=_client_auth_type(p, section),
        min_version=_version(p, section.get("min_version"), f"{where}.min_version")
        or ssl.TLSVersion.TLSv1_2,
        max_version=_version(p, section.get("max_version"), f"{where}.max_version"),
        cipher_suites=_names(p, section, "cipher_suites", (*_CIPHERS, *_TLS13_CIPHERS)),
        prefer_server_cipher_suites=p.boolean(
            section.get("prefer_server_cipher_suites", True),
            f"{where}.prefer_server_cipher_suites",
        ),
        curve_preferences=_names(p, section, "curve_preferences", _CURVES),
        client_allowed_sans=p.strings(
            section.get("client_allowed_sans"), f"{where}.client_allowed_sans"
        ),
    )
    if tls.max_version is not None and tls.max_version < tls.min_version:
        raise p.error(f"{where}.max_version", "is below min_version")
    if tls.client_allowed_sans and tls.client_auth_type not in _REQUIRES_CLIENT_CERT:
        raise p.error(
            f"{where}.client_allowed_sans",
            "needs client_auth_type RequireAndVerifyClientCert (or RequireAnyClientCert): "
            "other types admit clients without a certificate, so without a SAN to match",
        )
    ca = section.get("client_ca_file")
    if ca is not None and tls.client_auth_type == "NoClientCert":
        raise p.error(
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
        raise p.error(
            f"{where}.client_ca_file",
            f"is required with client_auth_type {tls.client_auth_type}: it holds the CA "
            f"certificates client certificates are verified against{extra}",
        )
    if ca is not None:
        tls = replace(tls, client_ca_file=p.path_of(ca, f"{where}.client_ca_file"))
    return tls, _context(p, tls)


def _client_auth_type(p: FieldReader, section: Mapping[str, Any]) -> str:
    where = "tls_server_config.client_auth_type"
    value = section.get("client_auth_type")
    name = "NoClientCert" if value is None else p.string(value, where)
    name = _CLIENT_AUTH_ALIASES.get(name, name)
    if name not in CLIENT_AUTH_TYPES:
        raise p.error(
            where, f"expected one of {', '.join(CLIENT_AUTH_TYPES)}; found {found(value)}"
        )
    return name


def _names(
    p: FieldReader, section: Mapping[str, Any], key: str, known: Iterable[str]
) -> tuple[str, ...]:
    """A list of cipher suite or curve names, each one of ``known``."""
    where = f"tls_server_config.{key}"
    names = p.strings(section.get(key), where)
    known = tuple(known)
    for i, name in enumerate(names):
        if name not in known:
            what = "cipher suite" if key == "cipher_suites" else "curve"
            example = (
                "Go's names, e.g. TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
                if key == "cipher_suites"
                else f"one of {', '.join(known)}"
            )
            raise p.error(f"{where}[{i}]", f"unknown {what} {name!r}; expected {example}")
    return names


def _context(p: FieldReader, tls: TLSServerConfig) -> ssl.SSLContext:
    """An SSLContext for ``tls`` with its files loaded: this is what validates them."""
    where = "tls_server_config"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _set_version(context, "minimum_version", tls.min_version)
    if tls.max_version is not None:
        _set_version(context, "maximum_version", tls.max_version)
    if tls.prefer_server_cipher_suites:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    tls12 = [_CIPHERS[name] for name in tls.cipher_suites if name in _CIPHERS]
    if tls12:
        try:
            context.set_ciphers(":".join(dict.fromkeys(tls12)))
        except ssl.SSLError:
            raise p.error(
                f"{where}.cipher_suites", "none of these cipher suites is available here"
            ) from None
    context.set_alpn_protocols(["http/1.1"])

    cert_pem = p.read(tls.cert_file, f"{where}.cert_file")
    p.read(tls.key_file, f"{where}.key_file")
    _check_certificates(p, cert_pem, f"{where}.cert_file", tls.cert_file)
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file, password=_no_password)
    except _PassphraseNeeded:
        raise p.error(
            f"{where}.key_file",
            f"the key in {tls.key_file} is encrypted; give an unencrypted key "
            "(there is no way to give its passphrase)",
        ) from None
    except ssl.SSLError as err:
        if "KEY_VALUES_MISMATCH" in str(err):
            problem = f"the key in {tls.key_file} does not match the certificate in {tls.cert_file}"
        else:
            problem = f"{tls.key_file} holds no usable PEM private key"
        raise p.error(f"{where}.key_file", problem) from None

    if tls.client_ca_file is not None:
        ca_pem = p.read(tls.client_ca_file, f"{where}.client_ca_file")
        _check_certificates(p, ca_pem, f"{where}.client_ca_file", tls.client_ca_file)
        context.load_verify_locations(cadata=ca_pem.decode("ascii"))
    context.verify_mode = CLIENT_AUTH_TYPES[tls.client_auth_type][0]
    return context


def _set_version(context: ssl.SSLContext, attribute: str, version: ssl.TLSVersion) -> None:
    """Set the context's ``minimum_version`` or ``maximum_version``."""
    if version < ssl.TLSVersion.TLSv1_2:
        with warnings.catch_warnings():  # deprecated, but asked for explicitly
            warnings.simplefilter("ignore", DeprecationWarning)
            setattr(context, attribute, version)
    else:
        setattr(context, attribute, version)


def _version(p: FieldReader, value: Any, where: str) -> ssl.TLSVersion | None:
    if value is None:
        return None
    if not isinstance(value, str) or value not in TLS_VERSIONS:
        raise p.error(where, f"expected one of {', '.join(TLS_VERSIONS)}; found {found(value)}")
    return TLS_VERSIONS[value]


def _check_certificates(p: FieldReader, pem: bytes, where: str, path: Path) -> None:
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=pem.decode("ascii"))
    except (ssl.SSLError, UnicodeDecodeError, ValueError):
        raise p.error(where, f"{path} holds no PEM certificate") from None


class _PassphraseNeeded(Exception):
    pass


def _no_password() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal for a passphrase.
    raise _PassphraseNeeded
