"""Tests for mimecast_exporter.logs: line shapes, fields, quoting, tracebacks and scrubbing."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable, Iterator
from urllib.parse import quote

import pytest

from mimecast_exporter.logs import (
    FORMATS,
    LEVELS,
    JsonFormatter,
    LogfmtFormatter,
    add_secrets,
    configure_logging,
    scrub,
    scrub_and_cut,
)

TS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state; put it back after each test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    urllib3_level = logging.getLogger("urllib3").level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    logging.getLogger("urllib3").setLevel(urllib3_level)


def setup(level: str = "info", fmt: str = "logfmt", secrets: tuple[str, ...] = ()) -> io.StringIO:
    stream = io.StringIO()
    configure_logging(level, fmt, stream=stream, secrets=secrets)
    return stream


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


log = logging.getLogger("mimecast_exporter.poller")


# --- logfmt -------------------------------------------------------------------------


def test_logfmt_line_shape() -> None:
    out = setup()
    log.info(
        "poll finished",
        extra={"account": "acme", "queue": "processing", "duration_seconds": 0.42},
    )
    (line,) = lines(out)
    assert re.fullmatch(
        rf'ts={TS} level=info logger=mimecast_exporter\.poller msg="poll finished" '
        r"account=acme queue=processing duration_seconds=0\.42",
        line,
    ), line


def test_timestamp_is_utc_with_milliseconds() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hi", (), None)
    record.created, record.msecs = 1_795_914_123.456, 456.0
    assert LogfmtFormatter().format(record).startswith("ts=2026-11-29T01:02:03.456Z ")


@pytest.mark.parametrize(
    ("emit", "name"),
    [
        (log.debug, "debug"),
        (log.info, "info"),
        (log.warning, "warn"),
        (log.error, "error"),
        (log.critical, "error"),
    ],
)
def test_level_names(emit: Callable[[str], None], name: str) -> None:
    out = setup("debug")
    emit("x")
    assert f" level={name} " in out.getvalue()


def test_level_filters() -> None:
    out = setup("warn")
    log.info("hidden")
    log.warning("shown")
    assert [line.split("msg=")[1] for line in lines(out)] == ["shown"]


def test_extra_fields_in_insertion_order_any_key() -> None:
    out = setup()
    extra = {"zeta": 1, "status": 503, "code": "err_x", "request_id": "r-1", "alpha": True}
    log.info("x", extra=extra)
    (line,) = lines(out)
    assert line.endswith(" msg=x zeta=1 status=503 code=err_x request_id=r-1 alpha=true")


def test_extra_cannot_shadow_line_keys() -> None:
    out = setup()
    log.info("x", extra={"level": "fake", "ts": 1})
    (line,) = lines(out)
    assert " level=info " in line
    assert line.endswith("extra_level=fake extra_ts=1")


@pytest.mark.parametrize(
    ("value", "rendered"),
    [
        ("plain", "plain"),
        ("two words", '"two words"'),
        ("a=b", '"a=b"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("", '""'),
        ("line1\nline2", '"line1\\nline2"'),
        ("tab\there", '"tab\\there"'),
        ("back\\slash", "back\\slash"),
        ('"back\\slash"', '"\\"back\\\\slash\\""'),
        (None, "null"),
        (False, "false"),
        (3, "3"),
        ("ünïcode", "ünïcode"),
    ],
)
def test_logfmt_quoting(value: object, rendered: str) -> None:
    out = setup()
    log.info("x", extra={"v": value})
    assert lines(out)[0].endswith(f" v={rendered}")


def test_message_args_and_newlines_stay_on_one_line() -> None:
    out = setup()
    log.info("got %d items\nfrom %s", 3, "acme")
    (line,) = lines(out)
    assert 'msg="got 3 items\\nfrom acme"' in line


def test_exception_folded_onto_one_line() -> None:
    out = setup()
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("poll failed", extra={"account": "acme"})
    (line,) = lines(out)
    assert re.match(
        rf'ts={TS} level=error logger=mimecast_exporter\.poller msg="poll failed" '
        r'account=acme exc="Traceback',
        line,
    )
    assert line.endswith('ValueError: boom"')
    assert "\\n" in line


def test_exc_info_without_exception_adds_nothing() -> None:
    out = setup()
    log.error("no exception here", exc_info=True)
    assert "exc=" not in out.getvalue()


# --- json ---------------------------------------------------------------------------


def test_json_line_shape() -> None:
    out = setup(fmt="json")
    log.info("poll finished", extra={"account": "acme", "duration_seconds": 0.42, "n": None})
    try:
        raise KeyError("k")
    except KeyError:
        log.warning("oops %s", "x", exc_info=True)
    first, second = (json.loads(line) for line in lines(out))
    assert list(first) == ["ts", "level", "logger", "msg", "account", "duration_seconds", "n"]
    assert re.fullmatch(TS, first["ts"])
    assert first["level"] == "info" and first["logger"] == "mimecast_exporter.poller"
    assert first["msg"] == "poll finished"
    assert (first["account"], first["duration_seconds"], first["n"]) == ("acme", 0.42, None)
    assert list(second) == ["ts", "level", "logger", "msg", "exc"]
    assert second["level"] == "warn" and second["msg"] == "oops x"
    assert second["exc"].startswith("Traceback") and second["exc"].endswith("KeyError: 'k'")


def test_json_odd_values_still_valid() -> None:
    out = setup(fmt="json")
    log.info('quote " and \\ and \n', extra={"nan": float("nan"), "obj": object(), "ok": True})
    (obj,) = (json.loads(line) for line in lines(out))
    assert obj["msg"] == 'quote " and \\ and \n'
    assert obj["nan"] == "nan" and obj["obj"].startswith("<object") and obj["ok"] is True


def test_formatters_usable_directly() -> None:
    record = logging.LogRecord("a.b", logging.INFO, __file__, 1, "hi %s", ("you",), None)
    record.account = "acme"
    assert LogfmtFormatter().format(record).endswith('logger=a.b msg="hi you" account=acme')
    assert json.loads(JsonFormatter().format(record))["account"] == "acme"


# Every code point that str.splitlines() or a terminal treats as a break or control.
LINE_BREAKERS = "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029\x7f\x80\x9b\x9f"


@pytest.mark.parametrize("fmt", FORMATS)
def test_unicode_line_breaks_and_c1_controls_never_split_a_line(fmt: str) -> None:
    out = setup(fmt=fmt)
    text = "a" + "b".join(LINE_BREAKERS) + "z"
    log.info(text, extra={"reason": text, "key" + LINE_BREAKERS: "v"})
    (line,) = out.getvalue().splitlines()  # one line, however it is split
    assert not any(char in line for char in LINE_BREAKERS)
    if fmt == "json":  # and the escapes mean the same text
        record = json.loads(line)
        assert record["msg"] == text and record["reason"] == text
    else:
        assert "\\u0085" in line and "\\u2028" in line and "\\u009b" in line


# --- scrubbing -----------------------------------------------------------------------


def test_scrub_then_cut_never_leaves_a_prefix_of_a_secret() -> None:
    secret = "S3cr3t-value-that-must-never-show"
    add_secrets([secret])
    for start in range(270, 305):  # the secret straddles the cut at 300 somewhere here
        text = "x" * start + secret + "y" * 50
        cut = scrub_and_cut(text, 300)
        assert "S3cr" not in cut, start
        assert len(cut) <= 300
    assert scrub_and_cut("short", 300) == "short"
    assert scrub_and_cut("z" * 10_000_000, 300) == "z" * 297 + "..."


@pytest.mark.parametrize("fmt", FORMATS)
def test_secrets_scrubbed_everywhere(fmt: str) -> None:
    secret = "Sup3r$ecret+/=.*(x)"  # regex metacharacters and URL-unsafe characters
    out = setup(fmt=fmt, secrets=(secret,))
    log.info("token " + secret)
    log.info("args %s", secret)
    log.info("extra", extra={"reason": f"bad key {secret}"})
    log.info("url https://api/?k=%s", quote(secret, safe=""))
    log.info("quoted", extra={"reason": f'"{secret}"\nnext'})
    try:
        raise RuntimeError(f"auth failed for {secret}")
    except RuntimeError:
        log.exception("failed")
    text = out.getvalue()
    assert "Sup3r" not in text and "Sup3r%24" not in text
    assert text.count("********") == 6


def test_add_secrets_after_configure_and_overlaps() -> None:
    out = setup()
    log.info("before 7h1s-is-late")
    add_secrets(["7h1s-is-late", "7h1s-is-late-and-longer"])
    log.info("after 7h1s-is-late and 7h1s-is-late-and-longer")
    before, after = lines(out)
    assert "7h1s-is-late" in before
    assert after.endswith('msg="after ******** and ********"')


def test_short_and_empty_secrets_ignored() -> None:
    out = setup(secrets=("", "abc"))
    log.info("abc is fine")
    assert 'msg="abc is fine"' in out.getvalue()


def test_scrub_function() -> None:
    add_secrets(["scrub-me-please"])
    assert scrub("x scrub-me-please y") == "x ******** y"
    assert scrub("nothing here") == "nothing here"


# --- configuration --------------------------------------------------------------------


@pytest.mark.parametrize("level", ["verbose", "", "trace"])
def test_invalid_level(level: str) -> None:
    with pytest.raises(ValueError, match="debug, info, warn, error"):
        configure_logging(level)


def test_invalid_format() -> None:
    with pytest.raises(ValueError, match="logfmt, json"):
        configure_logging("info", "text")


def test_levels_constant() -> None:
    assert LEVELS == ("debug", "info", "warn", "error")


def test_level_and_format_case_insensitive() -> None:
    out = setup("WARNING", "JSON")
    log.warning("x")
    assert json.loads(out.getvalue())["level"] == "warn"


def test_reconfigure_replaces_own_handler_only() -> None:
    root = logging.getLogger()
    foreign = logging.NullHandler()
    root.addHandler(foreign)
    first = setup()
    second = setup(fmt="json")
    log.info("once")
    assert first.getvalue() == ""
    assert json.loads(second.getvalue())["msg"] == "once"
    assert foreign in root.handlers
    ours = [
        h
        for h in root.handlers
        if h not in (foreign,) and type(h).__module__ == "mimecast_exporter.logs"
    ]
    assert len(ours) == 1


def test_urllib3_quiet_unless_debug() -> None:
    setup("info")
    assert logging.getLogger("urllib3").level == logging.WARNING
    setup("debug")
    assert logging.getLogger("urllib3").getEffectiveLevel() == logging.DEBUG
