"""Keeps the web configuration in force: change detection and hot reload.

This module owns :class:`WebConfigWatcher`, which loads ``--web.config.file``
with :func:`mimecast_exporter.web.config.load_web_config`, notices when the file or a
certificate, key or CA file it names changes, re-reads it, and turns each
configuration into the :class:`~mimecast_exporter.web.auth.WebSecurity` snapshot that
:mod:`mimecast_exporter.web.server` applies to new connections. A bad edit is logged and the
last good configuration stays in force.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import bcrypt

from mimecast_exporter.logs import add_secrets
from mimecast_exporter.web.auth import (
    HANDSHAKE_TIMEOUT,
    MAX_CONCURRENT_CHECKS,
    AuthCache,
    BasicAuth,
    Checkpw,
    RateLimiter,
    WebSecurity,
)
from mimecast_exporter.web.config import WebConfig, WebConfigError, load_web_config

# The watcher's log lines keep the logger name they had when it lived in
# mimecast_exporter.web.config, so log filters that select them keep working.
logger = logging.getLogger("mimecast_exporter.web.config")


def _signature(paths: Iterable[Path]) -> tuple[tuple[str, tuple[int, ...] | None], ...]:
    out: list[tuple[str, tuple[int, int, int, int] | None]] = []
    for path in paths:
        try:
            st = path.stat()
            out.append((str(path), (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)))
        except OSError:
            out.append((str(path), None))  # missing: a change when it appears
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
        self._bcrypt_slots = threading.BoundedSemaphore(MAX_CONCURRENT_CHECKS)
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

    def check_now(self) -> None:
        """Look at the files at once (SIGHUP), not at the next check interval."""
        with self._lock:
            self._next_check = 0.0
        self.current()

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
                config.basic_auth_users, self._cache, self._checkpw, self._bcrypt_slots
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
