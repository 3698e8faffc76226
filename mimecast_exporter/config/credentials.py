"""Credential sections: ``oauth2`` (API 2.0) and ``hmac`` (API 1.0).

Owns reading each credential inline or from its ``<name>_file``, wrapping
secret values in :class:`Secret`, and checking that the HMAC secret key is
base64. No message ever quotes a secret value.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mimecast_exporter.config.expand import (
    Context,
    check_keys,
    expect_mapping,
    join,
    one_of,
    string_value,
)
from mimecast_exporter.config.files import MAX_SECRET_BYTES, FileProblem, read_text
from mimecast_exporter.config.model import ConfigError, HmacCredentials, OAuth2Credentials, Secret
from mimecast_exporter.config.permissions import warn_if_readable_by_others

# Credential fields per scheme; each also has a "<name>_file" variant. The
# plain ones are identifiers that may be shown; the rest become Secret.
_OAUTH2_FIELDS = ("client_id", "client_secret")
_HMAC_FIELDS = ("app_id", "app_key", "access_key", "secret_key")
_PLAIN_CREDENTIALS = frozenset({"client_id", "app_id"})


def parse_oauth2(raw: Any, path: str, ctx: Context) -> OAuth2Credentials:
    # secret=True: "oauth2: <the secret>" is a plausible slip; don't echo it.
    section = expect_mapping(raw, path, "a mapping with client_id and client_secret", secret=True)
    check_keys(section, _with_file_variants(_OAUTH2_FIELDS), path)
    values = {key: _credential(section, key, path, ctx) for key in _OAUTH2_FIELDS}
    return OAuth2Credentials(
        client_id=values["client_id"], client_secret=Secret(values["client_secret"])
    )


def parse_hmac(raw: Any, path: str, ctx: Context) -> HmacCredentials:
    section = expect_mapping(
        raw, path, "a mapping with app_id, app_key, access_key and secret_key", secret=True
    )
    check_keys(section, _with_file_variants(_HMAC_FIELDS), path)
    values = {key: _credential(section, key, path, ctx) for key in _HMAC_FIELDS}
    _check_base64(values["secret_key"], join(path, "secret_key"))
    return HmacCredentials(
        app_id=values["app_id"],
        app_key=Secret(values["app_key"]),
        access_key=Secret(values["access_key"]),
        secret_key=Secret(values["secret_key"]),
    )


def _with_file_variants(names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(k for name in names for k in (name, f"{name}_file"))


def _credential(section: Mapping[str, Any], key: str, path: str, ctx: Context) -> str:
    """One credential, given inline or as ``<key>_file``; surrounding whitespace removed.

    Whitespace is never part of a Mimecast credential, but a trailing newline
    is in nearly every secret file (and often in a pasted value).
    """
    secret = key not in _PLAIN_CREDENTIALS
    file_key = f"{key}_file"
    if one_of(section, key, file_key, path) == key:
        field_path = join(path, key)
        value = string_value(section[key], field_path, ctx, secret=secret).strip()
        if not value:
            raise ConfigError(field_path, "is empty")
        return value
    field_path = join(path, file_key)
    filename = string_value(section[file_key], field_path, ctx)
    if not filename.strip():
        raise ConfigError(field_path, f"is empty; expected the path of a file holding {key}")
    return _read_credential_file(filename, field_path, ctx.base_dir)


def _read_credential_file(filename: str, field_path: str, base_dir: Path | None) -> str:
    path = Path(filename)
    try:
        path = path.expanduser()
    except RuntimeError:  # "~user/..." for a user that does not exist
        raise ConfigError(field_path, f"cannot read {path}: unknown user in '~'") from None
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path  # relative to the config file, not to the working directory
    try:
        text = read_text(path, MAX_SECRET_BYTES)
    except FileProblem as problem:
        raise ConfigError(field_path, f"cannot read {path}: {problem}") from None
    value = text.strip()
    if not value:
        raise ConfigError(field_path, f"file {path} is empty")
    warn_if_readable_by_others(path, "secret file", field_path)
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
