"""Log set-up: logfmt or JSON lines on stderr, with secrets scrubbed.

This module owns the root logger's handler, the two line formats and the
process-wide list of secret values that must never reach the log. Lines look
like those of Go exporters::

    ts=2026-11-24T01:02:03.456Z level=info logger=mimecast_exporter.poller msg="poll finished" \
account=acme queue=processing duration_seconds=0.42

Fields passed with ``extra={...}`` follow ``msg`` in the order given, then
``exc`` (the traceback, on one line) if there is one. Scrubbing is the last
step of formatting, so it covers the message, its arguments, extra fields and
tracebacks alike.
"""

from __future__ import annotations

import codecs
import json
import logging
import math
import re
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any, TextIO
from urllib.parse import quote, quote_plus

LEVELS: tuple[str, ...] = ("debug", "info", "warn", "error")
FORMATS: tuple[str, ...] = ("logfmt", "json")
MASK = "********"
# Shorter values would mask innocent text all over the log and are no real secret.
MIN_SECRET_LENGTH = 4

_LEVEL_NUMBERS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,  # Python's own spelling, accepted too
    "error": logging.ERROR,
}
_LEVEL_NAMES = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warn",
    logging.ERROR: "error",
    logging.CRITICAL: "error",  # Go's levels stop at error; keep one vocabulary
}
_RESERVED = ("ts", "level", "logger", "msg", "exc", "stack")
# Attributes every LogRecord has; anything else on a record came in via extra=.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys() | {"message", "asctime", "taskName"}
)

_secrets_lock = threading.Lock()
_secrets: set[str] = set()
_secrets_re: re.Pattern[str] | None = None
_longest_secret = 0


def _json_escaped(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)[1:-1]


def add_secrets(values: Iterable[str]) -> None:
    """Register values to mask in every log line from now on.

    Besides the value itself its URL-encoded and escaped-in-quotes forms are
    masked too, so it is caught inside a logged URL or a quoted field. Empty
    values and values shorter than :data:`MIN_SECRET_LENGTH` are ignored.
    """
    global _secrets_re, _longest_secret
    forms: set[str] = set()
    for value in values:
        if not isinstance(value, str) or len(value) < MIN_SECRET_LENGTH:
            continue
        forms.update(
            (value, quote(value), quote(value, safe=""), quote_plus(value), _json_escaped(value))
        )
    with _secrets_lock:
        if forms <= _secrets:
            return
        _secrets.update(forms)
        # Longest first, so a secret containing another is masked whole.
        ordered = sorted(_secrets, key=len, reverse=True)
        _secrets_re = re.compile("|".join(re.escape(s) for s in ordered))
        _longest_secret = len(ordered[0])


def scrub(text: str) -> str:
    """Return ``text`` with every registered secret replaced by ``********``."""
    pattern = _secrets_re
    return pattern.sub(MASK, text) if pattern is not None else text


def scrub_and_cut(text: str, limit: int) -> str:
    """Text from outside (Mimecast's answers, a client's headers) made fit for a
    log line or a page: secrets masked *first*, then cut to at most ``limit``
    characters ("..." marks a cut). Cutting first could leave the prefix of a secret that
    straddled the cut, which the mask no longer recognises.

    Megabytes of text are not scanned whole: nothing past ``limit`` plus the
    longest secret can be part of a secret that starts before the cut.
    """
    text = scrub(text[: limit + _longest_secret + 1])
    return text if len(text) <= limit else text[: max(0, limit - 3)] + "..."


def _level_name(levelno: int, levelname: str) -> str:
    return _LEVEL_NAMES.get(levelno, levelname.lower())


def _timestamp(record: logging.LogRecord) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{stamp}.{int(record.msecs):03d}Z"


class _FieldsFormatter(logging.Formatter):
    """Turns a record into ordered (key, value) fields; subclasses render them."""

    def fields(self, record: logging.LogRecord) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = [
            ("ts", _timestamp(record)),
            ("level", _level_name(record.levelno, record.levelname)),
            ("logger", record.name),
            ("msg", record.getMessage()),
        ]
        for key, value in vars(record).items():
            if key in _STANDARD_ATTRS:
                continue
            # extra={"level": ...} must not shadow the line's own keys.
            out.append((f"extra_{key}" if key in _RESERVED else key, value))
        exc_text = record.exc_text  # a record can arrive with only the text (pickled)
        if record.exc_info:
            exc_text = None
            # exc_info=True outside an except block gives (None, None, None): no exc.
            if record.exc_info[0] is not None:
                if not record.exc_text:
                    record.exc_text = self.formatException(record.exc_info)
                exc_text = record.exc_text
        if exc_text:
            out.append(("exc", exc_text.rstrip()))
        if record.stack_info:
            out.append(("stack", self.formatStack(record.stack_info).rstrip()))
        return out

    def render(self, fields: list[tuple[str, Any]]) -> str:
        raise NotImplementedError

    def format(self, record: logging.LogRecord) -> str:
        return scrub(self.render(self.fields(record)))


# Every character a reader might take for a line break, or that a terminal acts
# on: C0 and C1 controls, DEL, and the Unicode line and paragraph separators
# (str.splitlines() breaks on NEL, U+2028 and U+2029 too).
_CONTROLS = "\\x00-\\x1f\\x7f-\\x9f\\u2028\\u2029"
_NEEDS_QUOTES = re.compile(rf'[\s="{_CONTROLS}]')
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_TO_ESCAPE = re.compile(rf'["\\\\{_CONTROLS}]')
_BAD_KEY_CHARS = re.compile(rf'[\s="{_CONTROLS}]')
# json.dumps escapes C0 controls but leaves DEL, C1 and U+2028/9 raw.
_JSON_UNESCAPED = re.compile("[\x7f-\x9f\u2028\u2029]")


def _logfmt_value(value: Any) -> str:
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    else:
        try:
            text = str(value)
        except Exception:  # a broken __str__ must not lose the whole line
            text = repr(value)
    if text and not _NEEDS_QUOTES.search(text):
        return text
    escaped = _TO_ESCAPE.sub(lambda m: _ESCAPES.get(m[0], f"\\u{ord(m[0]):04x}"), text)
    return f'"{escaped}"'


class LogfmtFormatter(_FieldsFormatter):
    """``key=value`` pairs; values with spaces, ``=``, ``"`` or nothing are quoted."""

    def render(self, fields: list[tuple[str, Any]]) -> str:
        return " ".join(
            f"{_BAD_KEY_CHARS.sub('_', key) or '_'}={_logfmt_value(value)}" for key, value in fields
        )


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)  # NaN is not JSON
    try:
        return str(value)
    except Exception:
        return repr(value)


class JsonFormatter(_FieldsFormatter):
    """One JSON object per line, with the same keys as :class:`LogfmtFormatter`.
    ``ascii_only``: every other character as ``\\uXXXX``, for a stream whose
    encoding is not UTF-8 (a Latin-1 locale): still the same JSON."""

    def __init__(self, ascii_only: bool = False) -> None:
        super().__init__()
        self.ascii_only = ascii_only

    def render(self, fields: list[tuple[str, Any]]) -> str:
        obj = {k: _json_value(v) for k, v in fields}
        line = json.dumps(obj, ensure_ascii=self.ascii_only, separators=(",", ":"))
        # Only inside strings can these appear, where \uXXXX means the same.
        return _JSON_UNESCAPED.sub(lambda m: f"\\u{ord(m[0]):04x}", line)


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler configure_logging installed, so a second call replaces it."""


def configure_logging(
    level: str = "info",
    fmt: str = "logfmt",
    *,
    stream: TextIO | None = None,
    secrets: Iterable[str] = (),
) -> None:
    """Send all logging to ``stream`` (default stderr) at ``level`` in ``fmt``.

    ``level`` is one of :data:`LEVELS`, ``fmt`` one of :data:`FORMATS`.
    ``secrets`` are added to the values scrubbed from every line (see
    :func:`add_secrets`); secrets registered earlier stay registered. May be
    called again, e.g. in tests: the handler of the previous call is replaced
    and handlers installed by others (pytest's caplog) are left alone.
    """
    key = level.strip().lower() if isinstance(level, str) else ""
    if key not in _LEVEL_NUMBERS:
        raise ValueError(f"invalid log level {level!r}: expected one of {', '.join(LEVELS)}")
    fmt_key = fmt.strip().lower() if isinstance(fmt, str) else ""
    if fmt_key not in FORMATS:
        raise ValueError(f"invalid log format {fmt!r}: expected one of {', '.join(FORMATS)}")
    add_secrets(secrets)

    out = stream if stream is not None else sys.stderr
    handler = _Handler(out)
    utf8 = _is_utf8(getattr(out, "encoding", None))
    handler.setFormatter(JsonFormatter(not utf8) if fmt_key == "json" else LogfmtFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(_LEVEL_NUMBERS[key])
    # urllib3 logs every connection at DEBUG; only worth it when debugging.
    noisy = logging.NOTSET if key == "debug" else logging.WARNING
    logging.getLogger("urllib3").setLevel(noisy)


def _is_utf8(encoding: str | None) -> bool:
    try:
        return codecs.lookup(encoding or "utf-8").name == "utf-8"
    except LookupError:
        return False


def survive_any_locale() -> None:
    """Make stdout and stderr write what their encoding cannot hold as
    backslash escapes, not raise: under a Latin-1 or ASCII locale, a
    configuration value, an answer's text or a log line with "€" must still
    print. Called first thing by the commands."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
