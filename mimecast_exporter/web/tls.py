"""``tls_server_config`` of the web configuration: its validation and its SSLContext.

This module owns what is TLS-specific in exporter-toolkit's format: the names
it accepts for TLS versions, client auth types (and the ``ssl`` verify mode
each maps to), cipher suites (and their OpenSSL names) and curves; the
:class:`TLSServerConfig` the section is read into; and building the
``SSLContext`` with the certificate, key and CA files loaded, which is what
validates those files. :mod:`mimecast_exporter.web.config` reads the rest of the file
and hands this section to :func:`parse_tls`, together with the parser whose
helpers read fields and files and make its errors (:class:`FieldReader`).
"""

from __future__ import annotations

import logging
import os
import ssl
import tempfile
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from mimecast_exporter.config.expand import found

log = logging.getLogger(__name__)

_TLS_KEYS = (
    "cert_file",
    "key_file",
    "cert",
    "key",
    "client_ca",
    "client_auth_type",
    "client_ca_file",
    "min_version",
    "max_version",
    "cipher_suites",
    "prefer_server_cipher_suites",
    "curve_preferences",
    "client_allowed_sans",
)
# As exporter-toolkit's TLSConfig.IsEnabled: any of these (non-empty) turns TLS
# on; a section with only versions, ciphers or curves leaves it off.
_ENABLING_KEYS = (
    "cert_file",
    "cert",
    "key_file",
    "key",
    "client_ca_file",
    "client_ca",
    "client_auth_type",
)

TLS_VERSIONS: dict[str, ssl.TLSVersion] = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# client_auth_type -> (ask for a certificate, require one, verify it), as Go's tls.ClientAuthType.
CLIENT_AUTH_TYPES: dict[str, tuple[bool, bool, bool]] = {
    "NoClientCert": (False, False, False),
    "RequestClientCert": (True, False, False),
    "RequireAnyClientCert": (True, True, False),
    "VerifyClientCertIfGiven": (True, False, True),
    "RequireAndVerifyClientCert": (True, True, True),
}
_CLIENT_AUTH_ALIASES = {"RequireClientCert": "RequireAnyClientCert"}  # exporter-toolkit's too
# What Python's ssl cannot express (it verifies every client certificate it
# asks for): refused at start and by --config.check, never approximated.
_UNSUPPORTED_CLIENT_AUTH: dict[str, str] = {
    "RequestClientCert": "VerifyClientCertIfGiven with client_ca_file",
    "RequireAnyClientCert": "RequireAndVerifyClientCert with client_ca_file",
}
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
# Go's curve names -> OpenSSL's short names, as SSLContext.set_ecdh_curve takes them.
_CURVES: dict[str, str] = {
    "CurveP256": "prime256v1",
    "CurveP384": "secp384r1",
    "CurveP521": "secp521r1",
    "X25519": "X25519",
    "X25519MLKEM768": "X25519MLKEM768",
}


@dataclass(frozen=True)
class TLSServerConfig:
    cert_file: Path | None  # None: given inline (cert)
    key_file: Path | None  # None: given inline (key)
    client_auth_type: str = "NoClientCert"
    client_ca_file: Path | None = None
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    max_version: ssl.TLSVersion | None = None
    cipher_suites: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True
    curve_preferences: tuple[str, ...] = ()
    client_allowed_sans: tuple[str, ...] = ()


class FieldReader(Protocol):
    """What :func:`parse_tls` uses of :mod:`mimecast_exporter.web.config`'s parser."""

    def error(self, field_path: str, problem: str) -> Exception: ...

    def mapping(self, value: Any, where: str, allowed: tuple[str, ...]) -> dict[str, Any]: ...

    def string(self, value: Any, where: str) -> str: ...

    def strings(self, value: Any, where: str) -> tuple[str, ...]: ...

    def boolean(self, value: Any, where: str) -> bool: ...

    def path_of(self, value: Any, where: str) -> Path: ...

    def read(self, path: Path, where: str) -> bytes: ...


def parse_tls(p: FieldReader, value: Any) -> tuple[TLSServerConfig | None, ssl.SSLContext | None]:
    """The section, validated in exporter-toolkit's order, and its SSLContext;
    (None, None) when it does not turn TLS on."""
    where = "tls_server_config"
    section = p.mapping(value, where, _TLS_KEYS)
    if not any(section.get(key) not in (None, "") for key in _ENABLING_KEYS):
        if section:
            log.warning(
                "tls_server_config names no certificate, key, client CA or client_auth_type: "
                "TLS is off, as in exporter-toolkit",
                extra={"keys": ",".join(section)},
            )
        return None, None
    material = _Material(p, section)
    cert_pem, key_pem = material.pair()
    client_auth_type = _client_auth_type(p, section)
    tls = TLSServerConfig(
        cert_file=material.cert_file,
        key_file=material.key_file,
        client_auth_type=client_auth_type,
        client_ca_file=material.ca_file,
        min_version=_version(p, section.get("min_version"), f"{where}.min_version")
        or ssl.TLSVersion.TLSv1_2,
        max_version=_version(p, section.get("max_version"), f"{where}.max_version"),
        cipher_suites=_names(p, section, "cipher_suites", (*_CIPHERS, *_TLS13_CIPHERS)),
        prefer_server_cipher_suites=p.boolean(
            section.get("prefer_server_cipher_suites", True),
            f"{where}.prefer_server_cipher_suites",
        ),
        curve_preferences=_curves(p, section),
        client_allowed_sans=p.strings(
            section.get("client_allowed_sans"), f"{where}.client_allowed_sans"
        ),
    )
    if material.ca_pem is not None and client_auth_type == "NoClientCert":
        field_name = "client_ca_file" if material.ca_file is not None else "client_ca"
        raise p.error(
            f"{where}.{field_name}",
            "client CAs are given but client_auth_type is NoClientCert; set client_auth_type "
            "(RequireAndVerifyClientCert to require client certificates)",
        )
    if tls.max_version is not None and tls.max_version < tls.min_version:
        raise p.error(f"{where}.max_version", "is below min_version")
    if tls.client_allowed_sans and tls.client_auth_type not in _REQUIRES_CLIENT_CERT:
        raise p.error(
            f"{where}.client_allowed_sans",
            "needs client_auth_type RequireAndVerifyClientCert (or RequireAnyClientCert): "
            "other types admit clients without a certificate, so without a SAN to match",
        )
    return tls, _context(p, tls, cert_pem, key_pem, material.ca_pem)


class _Material:
    """Certificate, key and client CAs, from files or inline, read in
    exporter-toolkit's order: certificate and key first, then the client CA
    file (a missing one is reported before a bad client_auth_type)."""

    def __init__(self, p: FieldReader, section: Mapping[str, Any]) -> None:
        self.p = p
        self.section = section
        self.cert_file: Path | None = None
        self.key_file: Path | None = None
        self.ca_file: Path | None = None
        self.ca_pem: bytes | None = None

    def _given(self, key: str) -> bool:
        return self.section.get(key) not in (None, "")

    def pair(self) -> tuple[bytes, bytes]:
        where = "tls_server_config"
        for name in ("cert", "key"):
            if not self._given(f"{name}_file") and not self._given(name):
                raise self.p.error(f"{where}.{name}_file", f"missing one of {name} or {name}_file")
        cert = self._pem("cert")
        key = self._pem("key")
        ca_given = self._given("client_ca_file") or self._given("client_ca")
        if ca_given:
            self.ca_pem = self._pem("client_ca")
        return cert, key

    def _pem(self, name: str) -> bytes:
        """The PEM of ``name``: its ``<name>_file`` if given, else inline."""
        where = f"tls_server_config.{name}"
        if self._given(f"{name}_file"):
            path = self.p.path_of(self.section[f"{name}_file"], f"{where}_file")
            setattr(self, "ca_file" if name == "client_ca" else f"{name}_file", path)
            return self.p.read(path, f"{where}_file")
        text = self.section.get(name)
        if not isinstance(text, str) or not text.strip():
            raise self.p.error(where, f"expected PEM text; found {found(text, secret=True)}")
        return text.encode("ascii", "replace")


def _client_auth_type(p: FieldReader, section: Mapping[str, Any]) -> str:
    where = "tls_server_config.client_auth_type"
    value = section.get("client_auth_type")
    name = "NoClientCert" if value in (None, "") else p.string(value, where)
    name = _CLIENT_AUTH_ALIASES.get(name, name)
    if name not in CLIENT_AUTH_TYPES:
        raise p.error(
            where, f"expected one of {', '.join(CLIENT_AUTH_TYPES)}; found {found(value)}"
        )
    if name in _UNSUPPORTED_CLIENT_AUTH:
        raise p.error(
            where,
            f"{name} accepts client certificates without verifying them, which Python's ssl"
            f" cannot do; use {_UNSUPPORTED_CLIENT_AUTH[name]}",
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


def _curves(p: FieldReader, section: Mapping[str, Any]) -> tuple[str, ...]:
    names = _names(p, section, "curve_preferences", _CURVES)
    if len(names) > 1:
        raise p.error(
            "tls_server_config.curve_preferences",
            f"lists {len(names)} curves; Python's ssl sets one: list only the one to use"
            " (OpenSSL's defaults, without curve_preferences, offer X25519 and the NIST curves)",
        )
    return names


def _context(
    p: FieldReader,
    tls: TLSServerConfig,
    cert_pem: bytes,
    key_pem: bytes,
    ca_pem: bytes | None,
) -> ssl.SSLContext:
    """An SSLContext for ``tls`` with its material loaded: this is what validates it.

    Every setting is applied or refused here, never ignored.
    """
    where = "tls_server_config"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _set_version(context, "minimum_version", tls.min_version)
    if tls.max_version is not None:
        _set_version(context, "maximum_version", tls.max_version)
    # Python turns server preference on by default; Go's false means off.
    if tls.prefer_server_cipher_suites:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    tls12 = [_CIPHERS[name] for name in tls.cipher_suites if name in _CIPHERS]
    if tls12:
        try:
            context.set_ciphers(":".join(dict.fromkeys(tls12)))
        except ssl.SSLError:
            raise p.error(
                f"{where}.cipher_suites", "none of these cipher suites is available here"
            ) from None
    context.set_alpn_protocols(["http/1.1"])

    cert_field = f"{where}.cert_file" if tls.cert_file is not None else f"{where}.cert"
    key_field = f"{where}.key_file" if tls.key_file is not None else f"{where}.key"
    _check_certificates(p, cert_pem, cert_field, tls.cert_file or "the inline cert")
    _load_pair(p, context, cert_pem, key_pem, key_field, tls)

    _, require, verify = CLIENT_AUTH_TYPES[tls.client_auth_type]
    if ca_pem is not None:
        ca_field = f"{where}.client_ca_file" if tls.client_ca_file else f"{where}.client_ca"
        _check_certificates(p, ca_pem, ca_field, tls.client_ca_file or "the inline client_ca")
        context.load_verify_locations(cadata=ca_pem.decode("ascii"))
    elif verify:
        # As Go with no ClientCAs: the system's CAs verify client certificates.
        context.load_default_certs(ssl.Purpose.CLIENT_AUTH)
    if verify:
        context.verify_mode = ssl.CERT_REQUIRED if require else ssl.CERT_OPTIONAL
    if tls.curve_preferences:
        (curve,) = tls.curve_preferences
        try:
            context.set_ecdh_curve(_CURVES[curve])
        except (ValueError, ssl.SSLError):
            raise p.error(
                f"{where}.curve_preferences",
                f"cannot be applied: OpenSSL here ({ssl.OPENSSL_VERSION}) does not offer {curve}",
            ) from None
    return context


def _load_pair(
    p: FieldReader,
    context: ssl.SSLContext,
    cert_pem: bytes,
    key_pem: bytes,
    key_field: str,
    tls: TLSServerConfig,
) -> None:
    """load_cert_chain wants files: inline material goes through a private
    temporary directory, removed at once."""
    with tempfile.TemporaryDirectory(prefix="mimecast-exporter-tls-") as directory:
        cert_path, key_path = Path(directory, "cert.pem"), Path(directory, "key.pem")
        for path, data in ((cert_path, cert_pem), (key_path, key_pem)):
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as out:
                out.write(data)
        shown_key = tls.key_file or "the inline key"
        try:
            context.load_cert_chain(cert_path, key_path, password=_no_password)
        except _PassphraseNeeded:
            raise p.error(
                key_field,
                f"the key in {shown_key} is encrypted; give an unencrypted key "
                "(there is no way to give its passphrase)",
            ) from None
        except ssl.SSLError as err:
            if "KEY_VALUES_MISMATCH" in str(err):
                shown_cert = tls.cert_file or "the inline cert"
                problem = f"the key in {shown_key} does not match the certificate in {shown_cert}"
            else:
                problem = f"{shown_key} holds no usable PEM private key"
            raise p.error(key_field, problem) from None


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


def _check_certificates(p: FieldReader, pem: bytes, where: str, path: Path | str) -> None:
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=pem.decode("ascii"))
    except (ssl.SSLError, UnicodeDecodeError, ValueError):
        raise p.error(where, f"{path} holds no PEM certificate") from None


class _PassphraseNeeded(Exception):
    pass


def _no_password() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal for a passphrase.
    raise _PassphraseNeeded
