"""The exporter's configuration: YAML in, frozen typed objects out.

Everything the daemon needs to know is parsed and validated here, once, at
start-up. Every error names the offending field (``accounts[1].hmac.app_key``)
and says what was expected, so that a typo is fixed in one try.

Public entry points: :func:`load_config` (a file), :func:`parse_config` (an
already-loaded YAML document), :func:`parse_duration` and :func:`describe`
(the ``--config.check`` summary). Secret values are wrapped in :class:`Secret`
as soon as they are read and are never put into an error message.

This package only re-exports; the work is split by concern:

- :mod:`.model`: ConfigError, Secret, the frozen dataclasses, queue types, regions
- :mod:`.expand`: ``${VAR}`` expansion and the shared field/path helpers
- :mod:`.credentials`: ``oauth2`` / ``hmac`` sections, ``*_file`` reading, base64 check
- :mod:`.endpoints`: ``base_url`` / ``region`` validation, loopback detection
- :mod:`.poll`: the ``poll`` section and :func:`parse_duration`
- :mod:`.accounts`: the ``accounts`` list, ``search_by`` and ``filter_by``
- :mod:`.parse`: :func:`parse_config` and :func:`load_config`
- :mod:`.summary`: :func:`describe`
"""

from __future__ import annotations

from mimecast_exporter.config.model import (
    HMAC_REGIONS,
    OAUTH2_REGIONS,
    AccountConfig,
    Config,
    ConfigError,
    HmacCredentials,
    MetricsConfig,
    OAuth2Credentials,
    PollConfig,
    Secret,
    Thresholds,
)
from mimecast_exporter.config.parse import load_config, parse_config
from mimecast_exporter.config.poll import parse_duration
from mimecast_exporter.config.summary import describe

__all__ = [
    "HMAC_REGIONS",
    "OAUTH2_REGIONS",
    "AccountConfig",
    "Config",
    "ConfigError",
    "HmacCredentials",
    "MetricsConfig",
    "OAuth2Credentials",
    "PollConfig",
    "Secret",
    "Thresholds",
    "describe",
    "load_config",
    "parse_config",
    "parse_duration",
]
