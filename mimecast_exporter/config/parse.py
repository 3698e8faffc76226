"""The entry points: a YAML file or an already-loaded document in, a :class:`Config` out.

Owns reading the file, turning YAML errors into messages that never quote the
source line (it may hold a secret), the top-level keys, and setting up the
parsing :class:`~mimecast_exporter.config.expand.Context`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mimecast_exporter.config.accounts import parse_accounts
from mimecast_exporter.config.expand import Context, check_keys, expect_mapping, flag
from mimecast_exporter.config.files import (
    MAX_CONFIG_BYTES,
    BadYaml,
    FileProblem,
    load_yaml,
    read_text,
)
from mimecast_exporter.config.model import (
    Config,
    ConfigError,
    MetricsConfig,
    PollConfig,
    Problems,
    Thresholds,
)
from mimecast_exporter.config.permissions import holds_inline_secret, warn_if_readable_by_others
from mimecast_exporter.config.poll import Settings, parse_poll

_TOP_KEYS = ("poll", "accounts", "metrics", "thresholds")
_METRICS_KEYS = ("by_route", "size_histogram")


def parse_config(
    data: Any,
    *,
    base_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Validate a loaded YAML document and build the :class:`Config`.

    ``base_dir`` anchors relative ``*_file`` paths (the config file's
    directory); ``environ`` feeds ``${VAR}`` expansion (default ``os.environ``).
    """
    ctx = Context(environ=os.environ if environ is None else environ, base_dir=base_dir)
    if data is None:
        raise ConfigError("", "the configuration is empty; expected a mapping with 'accounts'")
    root = expect_mapping(data, "", "a mapping with 'poll' and 'accounts' at the top level")
    # Read on past an error: every error of the file is said at once.
    problems = Problems()
    problems.attempt(check_keys, root, _TOP_KEYS, "", default=None)
    config = Config(
        poll=problems.attempt(parse_poll, root.get("poll"), ctx, default=PollConfig()),
        accounts=problems.attempt(parse_accounts, root, ctx, default=()),
        metrics=problems.attempt(_parse_metrics, root.get("metrics"), default=MetricsConfig()),
        thresholds=problems.attempt(
            _parse_thresholds, root.get("thresholds"), ctx, default=Thresholds()
        ),
    )
    problems.check()
    return config


def _parse_thresholds(raw: Any, ctx: Context) -> Thresholds:
    if raw is None:
        return Thresholds()
    section = expect_mapping(raw, "thresholds", "a mapping of the status page's thresholds")
    read = Settings(section, "thresholds", Thresholds(), ctx)
    backlog = read.integer("queue_backlog_messages", 1, None)
    attempts = read.integer("many_attempts", 1, None)
    age = read.positive("oldest_message_age", read.duration("oldest_message_age"))
    read.problems.check()
    return Thresholds(backlog, age or 0.0, attempts)


def _parse_metrics(raw: Any) -> MetricsConfig:
    if raw is None:
        return MetricsConfig()
    metrics = expect_mapping(raw, "metrics", "a mapping of series to serve beyond the defaults")
    check_keys(metrics, _METRICS_KEYS, "metrics")
    return MetricsConfig(**{key: flag(metrics.get(key), f"metrics.{key}") for key in _METRICS_KEYS})


def load_config(
    path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
) -> Config:
    """Read, parse and validate a YAML config file.

    File-level problems (missing, unreadable, bad YAML) are ConfigErrors with
    an empty field_path whose message names the file.
    """
    config_path = Path(path)
    try:
        text = read_text(config_path, MAX_CONFIG_BYTES)
    except FileProblem as problem:
        raise ConfigError("", f"cannot read config file {config_path}: {problem}") from None
    try:
        data = load_yaml(text, source=f" in {config_path}")
    except BadYaml as err:
        raise ConfigError("", str(err)) from None
    config = parse_config(data, base_dir=config_path.absolute().parent, environ=environ)
    if holds_inline_secret(data):
        # A config that only names secret files or variables may be public.
        warn_if_readable_by_others(config_path, "config file (it holds secrets inline)")
    return config
