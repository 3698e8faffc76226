"""Tests for mimecast_exporter.config: one fixture file per error case, plus valid configs."""

from __future__ import annotations

import base64
import re
import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from mimecast_exporter.config import (
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
    describe,
    load_config,
    parse_config,
    parse_duration,
)
from mimecast_exporter.durations import format_duration

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "config"
EXAMPLE = REPO / "config.example.yaml"

SECRET_KEYS = ("client_secret", "app_key", "access_key", "secret_key")
SECRET_KEY_B64 = base64.b64encode(b"hmac-signing-key-for-tests").decode()

# fixture file -> (expected field_path, phrase the message must contain)
ERROR_CASES: dict[str, tuple[str, str]] = {
    # file level
    "yaml_syntax_error.yaml": ("", "line 5"),
    "empty_document.yaml": ("", "the configuration is empty"),
    "root_not_mapping.yaml": ("", "found a list"),
    "unknown_top_key.yaml": ("pol", "allowed keys are: poll, accounts"),
    "accounts_missing.yaml": ("accounts", "is required"),
    "accounts_empty.yaml": ("accounts", "at least one account"),
    "accounts_not_list.yaml": ("accounts", "expected a list of accounts; found a mapping"),
    # poll
    "poll_not_mapping.yaml": ("poll", "expected a mapping"),
    "poll_unknown_key.yaml": ("poll.intervall", "allowed keys are: interval, lookback"),
    "poll_interval_unitless_number.yaml": ("poll.interval", "did you mean '60s'"),
    "poll_interval_unitless_string.yaml": ("poll.interval", "has no unit"),
    "poll_interval_bool.yaml": ("poll.interval", "found the boolean true"),
    "poll_interval_zero.yaml": ("poll.interval", "greater than zero"),
    "poll_interval_negative.yaml": ("poll.interval", "negative"),
    "poll_interval_fraction.yaml": ("poll.interval", "integers only"),
    "poll_lookback_empty.yaml": ("poll.lookback", "found an empty string"),
    "poll_lookback_bad_unit.yaml": ("poll.lookback", "found '7days'"),
    "poll_lookback_zero.yaml": ("poll.lookback", "greater than zero"),
    "poll_timeout_zero.yaml": ("poll.timeout", "greater than zero"),
    "poll_timeout_over_interval.yaml": ("poll.timeout", "at most poll.interval (30s)"),
    "poll_stale_after_under_interval.yaml": ("poll.stale_after", "at least poll.interval (10m)"),
    "poll_page_size_too_big.yaml": ("poll.page_size", "from 1 to 10000; found 10001"),
    "poll_page_size_zero.yaml": ("poll.page_size", "from 1 to 10000; found 0"),
    "poll_page_size_bool.yaml": ("poll.page_size", "found the boolean true"),
    "poll_page_size_string.yaml": ("poll.page_size", "found the string '100'"),
    "poll_max_pages_zero.yaml": ("poll.max_pages", "at least 1; found 0"),
    "poll_concurrency_too_big.yaml": ("poll.concurrency", "from 1 to 64; found 65"),
    "poll_concurrency_float.yaml": ("poll.concurrency", "found a number (2.5)"),
    "poll_queues_not_list.yaml": ("poll.queues", "expected a list of queue types"),
    "poll_queues_empty.yaml": ("poll.queues", "at least one queue type"),
    "poll_queues_unknown.yaml": ("poll.queues[1]", "one of: processing, bulk_processing"),
    "poll_queues_duplicate.yaml": ("poll.queues[1]", "duplicate queue type 'processing'"),
    # account shape
    "account_not_mapping.yaml": ("accounts[0]", "expected an account"),
    "account_unknown_key.yaml": ("accounts[0].baseurl", "allowed keys are: name, base_url"),
    "name_missing.yaml": ("accounts[0].name", "is required"),
    "name_invalid.yaml": ("accounts[0].name", "must match [A-Za-z0-9_-]+"),
    "name_not_string.yaml": ("accounts[0].name", "expected a string"),
    "name_duplicate.yaml": ("accounts[2].name", "also used by accounts[0]"),
    "auth_neither.yaml": ("accounts[0]", "exactly one of 'oauth2' or 'hmac'"),
    "auth_both.yaml": ("accounts[0].hmac", "cannot be combined with 'oauth2'"),
    "oauth2_not_mapping.yaml": ("accounts[0].oauth2", "found a string"),
    "oauth2_unknown_key.yaml": ("accounts[0].oauth2.client_key", "allowed keys are: client_id"),
    # credentials
    "credential_neither.yaml": ("accounts[0].oauth2", "'client_secret' or 'client_secret_file'"),
    "credential_both.yaml": ("accounts[0].oauth2.client_secret_file", "cannot be combined"),
    "credential_file_missing.yaml": (
        "accounts[0].oauth2.client_secret_file",
        "secrets/does-not-exist: no such file",
    ),
    "credential_file_is_directory.yaml": (
        "accounts[0].oauth2.client_secret_file",
        "it is a directory",
    ),
    "credential_file_empty.yaml": ("accounts[0].hmac.app_key_file", "secrets/empty is empty"),
    "credential_file_blank.yaml": ("accounts[0].hmac.access_key_file", "secrets/blank is empty"),
    "credential_empty_inline.yaml": ("accounts[0].oauth2.client_id", "is empty"),
    "credential_not_string.yaml": ("accounts[0].hmac.app_key", "expected a string; found an int"),
    "secret_key_not_base64.yaml": ("accounts[1].hmac.secret_key", "not valid base64"),
    # ${ENV}
    "env_unset.yaml": (
        "accounts[0].oauth2.client_id",
        "environment variable MIMECAST_UNSET_CLIENT_ID is not set",
    ),
    "env_unterminated.yaml": ("accounts[0].oauth2.client_secret", "without a closing '}'"),
    "env_bad_name.yaml": ("poll.interval", "not an environment variable name"),
    # endpoint
    "endpoint_neither.yaml": ("accounts[0]", "exactly one of 'base_url' or 'region'"),
    "endpoint_both.yaml": ("accounts[0].region", "cannot be combined with 'base_url'"),
    "region_wrong_generation_hmac.yaml": (
        "accounts[0].region",
        "use one of: eu, de, us, usb, ca, za, au, je",
    ),
    "region_wrong_generation_oauth2.yaml": ("accounts[0].region", "use one of: global, uk, us"),
    "region_unknown.yaml": ("accounts[0].region", "unknown region 'mars'"),
    "base_url_http_remote.yaml": ("accounts[0].base_url", "only allowed for a loopback host"),
    "base_url_path.yaml": ("accounts[0].base_url", "must not have a path (found '/api/v1')"),
    "base_url_no_scheme.yaml": ("accounts[0].base_url", "found no scheme"),
    "base_url_other_scheme.yaml": ("accounts[0].base_url", "found scheme 'ftp'"),
    "base_url_userinfo.yaml": ("accounts[0].base_url", "must not contain a user name or password"),
    "base_url_query.yaml": ("accounts[0].base_url", "must not have a query"),
    "base_url_bad_port.yaml": ("accounts[0].base_url", "Port out of range"),
    "base_url_no_host.yaml": ("accounts[0].base_url", "has no host"),
    # tls_config
    "tls_ca_missing.yaml": ("accounts[0].tls_config.ca_file", "no such file"),
    "tls_ca_not_pem.yaml": ("accounts[0].tls_config.ca_file", "holds no PEM certificate"),
    "tls_unknown_key.yaml": ("accounts[0].tls_config.insecure_skip_verify", "unknown key"),
    # top_domains, expose_message_details
    "top_domains_too_many.yaml": (
        "accounts[0].top_domains",
        "from 0 (off) to 50 (each queue and route gets top_domains + 1 series); found 51",
    ),
    "top_domains_not_int.yaml": ("accounts[0].top_domains", "expected an integer from 0"),
    "top_domains_bool.yaml": ("accounts[0].top_domains", "found the boolean true"),
    "expose_details_not_bool.yaml": (
        "accounts[0].expose_message_details",
        "expected true or false",
    ),
    "tls_no_ca.yaml": ("accounts[0].tls_config.ca_file", "is required"),
    "poll_max_response_bytes_small.yaml": ("poll.max_response_bytes", "1024"),
    # search_by / filter_by
    "search_by_not_mapping.yaml": ("accounts[0].search_by", "expected a mapping"),
    "search_by_unknown_field.yaml": ("accounts[0].search_by.field_name", "fromAddress, toAddress"),
    "search_by_missing_value.yaml": ("accounts[0].search_by.value", "is required"),
    "search_by_unknown_key.yaml": (
        "accounts[0].search_by.fieldName",
        "allowed keys are: field_name, value",
    ),
    "search_by_value_not_string.yaml": ("accounts[0].search_by.value", "found a list"),
    "filter_by_not_list.yaml": ("accounts[0].filter_by", "expected a list of mappings"),
    "filter_by_item_not_mapping.yaml": ("accounts[0].filter_by[0]", "expected a mapping"),
    "filter_by_both_spellings.yaml": (
        "accounts[0].filter_by[0].fieldName",
        "given twice, as 'field_name' and as 'fieldName'",
    ),
}


def _secret_values(node: Any) -> list[str]:
    """Every value under a secret key (or a URL password) in a fixture document."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            is_secret = key in SECRET_KEYS or key in {"oauth2", "hmac"}
            if is_secret and isinstance(value, str | int):
                found.append(str(value))
            found += _secret_values(value)
    elif isinstance(node, list):
        for item in node:
            found += _secret_values(item)
    return found


def _load_fixture(name: str) -> ConfigError:
    with pytest.raises(ConfigError) as excinfo:
        load_config(FIXTURES / name, environ={})
    return excinfo.value


@pytest.mark.parametrize(("fixture", "expected"), sorted(ERROR_CASES.items()))
def test_error_fixture(fixture: str, expected: tuple[str, str]) -> None:
    field_path, phrase = expected
    error = _load_fixture(fixture)
    assert error.field_path == field_path
    assert phrase in error.problem
    assert str(error) == (f"{field_path}: {error.problem}" if field_path else error.problem)


@pytest.mark.parametrize("fixture", sorted(ERROR_CASES))
def test_error_messages_never_echo_secrets(fixture: str) -> None:
    try:
        document = yaml.safe_load((FIXTURES / fixture).read_text())
    except yaml.YAMLError:
        document = None
    error = _load_fixture(fixture)
    for value in [*_secret_values(document), "fixture-url-password"]:
        assert value not in str(error)


def test_every_fixture_is_in_the_table() -> None:
    on_disk = {p.name for p in FIXTURES.glob("*.yaml")}
    assert on_disk == set(ERROR_CASES)


# --- parse_duration -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("7d", 7 * 86400.0),
        ("1w", 7 * 86400.0),
        ("1h30m", 5400.0),
        ("1m30s500ms", 90.5),
        ("2d12h", 2.5 * 86400),
        ("0s", 0.0),
        ("5ms", 0.005),
    ],
)
def test_parse_duration_valid(text: str, seconds: float) -> None:
    assert parse_duration(text, "poll.interval") == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    ["", "  ", "-5m", "60", 60, 1.5, True, False, None, "5x", "m5", "1m1h", "1h1h", "1.5s",
     "1h 30m", "5M", "ms", "9" * 400 + "s", ["30s"]],
)  # fmt: skip
def test_parse_duration_invalid(value: object) -> None:
    with pytest.raises(ConfigError) as excinfo:
        parse_duration(value, "poll.lookback")
    assert excinfo.value.field_path == "poll.lookback"
    assert "expected a duration such as 500ms, 30s, 5m" in excinfo.value.problem


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.5, "500ms"), (90, "1m30s"), (300, "5m"), (5400, "1h30m"), (86400, "1d")],
)
def test_format_duration_round_trips(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text, "x") == seconds


# --- valid configs ------------------------------------------------------------

MINIMAL = """\
accounts:
  - name: acme
    region: global
    oauth2:
      client_id: acme-client-id
      client_secret: acme-client-secret-value
"""


def _write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_minimal_config_uses_every_default(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, MINIMAL), environ={})
    assert config.poll == PollConfig()
    assert config.accounts == (
        AccountConfig(
            name="acme",
            base_url="https://api.services.mimecast.com",
            credentials=OAuth2Credentials("acme-client-id", Secret("acme-client-secret-value")),
        ),
    )


def test_top_domains_and_message_details_per_account() -> None:
    raw = yaml.safe_load(MINIMAL)
    raw["accounts"][0].update(top_domains=10, expose_message_details=True)
    (account,) = parse_config(raw, environ={}).accounts
    assert (account.top_domains, account.expose_message_details) == (10, True)
    text = describe(parse_config(raw, environ={}))
    assert "top_domains: 10" in text and "expose_message_details: true" in text


def test_metrics_opt_ins() -> None:
    raw = yaml.safe_load(MINIMAL)
    assert parse_config(raw, environ={}).metrics == MetricsConfig(False, False)
    raw["metrics"] = {"by_route": True, "size_histogram": True}
    config = parse_config(raw, environ={})
    assert config.metrics == MetricsConfig(by_route=True, size_histogram=True)
    assert "metrics:\n  by_route: true\n  size_histogram: true" in describe(config)
    for bad, where, words in [
        ({"by_route": "yes"}, "metrics.by_route", "expected true or false"),
        ({"per_route": True}, "metrics.per_route", "unknown key"),
        ([True], "metrics", "expected a mapping"),
    ]:
        raw["metrics"] = bad
        with pytest.raises(ConfigError) as excinfo:
            parse_config(raw, environ={})
        assert excinfo.value.field_path == where and words in excinfo.value.problem


def test_thresholds_of_the_status_page() -> None:
    raw = yaml.safe_load(MINIMAL)
    assert parse_config(raw, environ={}).thresholds == Thresholds()
    raw["thresholds"] = {"queue_backlog_messages": 500, "oldest_message_age": "2h"}
    config = parse_config(raw, environ={})
    assert config.thresholds == Thresholds(500, 7200.0, Thresholds().many_attempts)
    assert "queue_backlog_messages: 500" in describe(config)
    raw["thresholds"] = {"queue_backlog_messages": 0, "many_attempts": "ten", "oldest": "1h"}
    with pytest.raises(ConfigError) as excinfo:
        parse_config(raw, environ={})
    assert [e.field_path for e in excinfo.value.errors] == [
        "thresholds.oldest",
        "thresholds.queue_backlog_messages",
        "thresholds.many_attempts",
    ]
    raw["thresholds"] = {"oldest_message_age": "0s", "many_attempts": 0}
    with pytest.raises(ConfigError) as excinfo:
        parse_config(raw, environ={})
    paths = [e.field_path for e in excinfo.value.errors]
    assert paths == ["thresholds.many_attempts", "thresholds.oldest_message_age"]
    # Read as the poll section is: ${VAR} in a duration too.
    raw["thresholds"] = {"oldest_message_age": "${AGE}"}
    assert parse_config(raw, environ={"AGE": "3h"}).thresholds.oldest_message_age == 10800.0


def test_empty_poll_section_means_defaults() -> None:
    config = parse_config({"poll": None, **yaml.safe_load(MINIMAL)}, environ={})
    assert config.poll == PollConfig()


def test_poll_settings_are_parsed(tmp_path: Path) -> None:
    text = """\
    poll:
      interval: 2m
      lookback: 1d12h
      page_size: 500
      timeout: 1m30s
      stale_after: 10m
      queues: [bulk_processing]
      max_pages: 20
      concurrency: 64
      retry_overdue_after: 1h
    """
    config = load_config(_write(tmp_path, textwrap.dedent(text) + MINIMAL), environ={})
    assert config.poll == PollConfig(
        interval=120.0,
        lookback=36 * 3600.0,
        page_size=500,
        timeout=90.0,
        stale_after=600.0,
        queues=("bulk_processing",),
        max_pages=20,
        concurrency=64,
        retry_overdue_after=3600.0,
    )
    assert "retry_overdue_after: 1h" in describe(config)


def test_retry_overdue_after_must_be_a_positive_duration() -> None:
    for value, error in (("0s", "must be greater than zero"), (900, "without a unit")):
        raw = {"poll": {"retry_overdue_after": value}, **yaml.safe_load(MINIMAL)}
        with pytest.raises(ConfigError, match=error) as info:
            parse_config(raw, environ={})
        assert str(info.value).startswith("poll.retry_overdue_after")


def test_timeout_equal_to_interval_and_stale_after_equal_to_interval_are_fine() -> None:
    data = {"poll": {"interval": "30s", "timeout": "30s", "stale_after": "30s"}}
    config = parse_config({**data, **yaml.safe_load(MINIMAL)}, environ={})
    assert (config.poll.interval, config.poll.timeout, config.poll.stale_after) == (30, 30, 30)


@pytest.mark.parametrize(("region", "url"), sorted(OAUTH2_REGIONS.items()))
def test_oauth2_regions(region: str, url: str) -> None:
    data = yaml.safe_load(MINIMAL.replace("region: global", f"region: {region}"))
    assert parse_config(data, environ={}).accounts[0].base_url == url


@pytest.mark.parametrize(("region", "url"), sorted(HMAC_REGIONS.items()))
def test_hmac_regions(region: str, url: str) -> None:
    data = {
        "accounts": [
            {
                "name": "legacy",
                "region": region.upper(),  # case does not matter
                "hmac": {
                    "app_id": "app",
                    "app_key": "key",
                    "access_key": "access",
                    "secret_key": SECRET_KEY_B64,
                },
            }
        ]
    }
    account = parse_config(data, environ={}).accounts[0]
    assert account.base_url == url
    assert account.credentials == HmacCredentials(
        "app", Secret("key"), Secret("access"), Secret(SECRET_KEY_B64)
    )


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("https://api.services.mimecast.com/", "https://api.services.mimecast.com"),
        ("https://API.example.com:8443", "https://api.example.com:8443"),
        ("HTTPS://eu-api.mimecast.com", "https://eu-api.mimecast.com"),
        ("http://localhost:8080/", "http://localhost:8080"),
        ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
        ("http://127.8.9.10", "http://127.8.9.10"),
        ("http://[::1]:9000", "http://[::1]:9000"),
        ("https://[2001:db8::1]", "https://[2001:db8::1]"),
    ],
)
def test_base_url_is_normalised(given: str, stored: str) -> None:
    data = yaml.safe_load(MINIMAL.replace("region: global", f"base_url: '{given}'"))
    assert parse_config(data, environ={}).accounts[0].base_url == stored


def test_credential_files_are_relative_to_the_config_dir(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "app_id").write_text("legacy-app-id\n")
    (secrets / "app_key").write_text("  legacy-app-key  \n\n")
    (secrets / "secret_key").write_text(SECRET_KEY_B64 + "\n")
    absolute = tmp_path / "elsewhere-access-key"
    absolute.write_text("legacy-access-key\n")
    path = _write(
        tmp_path,
        f"""\
        accounts:
          - name: legacy
            region: je
            hmac:
              app_id_file: secrets/app_id
              app_key_file: ./secrets/app_key
              access_key_file: {absolute}
              secret_key_file: secrets/secret_key
        """,
    )
    # Parsed from a different working directory on purpose: paths follow the file.
    creds = load_config(path, environ={}).accounts[0].credentials
    assert creds == HmacCredentials(
        app_id="legacy-app-id",
        app_key=Secret("legacy-app-key"),
        access_key=Secret("legacy-access-key"),
        secret_key=Secret(SECRET_KEY_B64),
    )


def test_parse_config_base_dir_anchors_relative_files(tmp_path: Path) -> None:
    (tmp_path / "client_secret").write_text("from-base-dir\n")
    data = yaml.safe_load(MINIMAL)
    oauth2 = data["accounts"][0]["oauth2"]
    del oauth2["client_secret"]
    oauth2["client_secret_file"] = "client_secret"
    creds = parse_config(data, base_dir=tmp_path, environ={}).accounts[0].credentials
    assert isinstance(creds, OAuth2Credentials)
    assert creds.client_secret.reveal() == "from-base-dir"


def test_env_expansion_in_every_kind_of_string(tmp_path: Path) -> None:
    (tmp_path / "acme_secret").write_text("secret-from-file\n")
    environ = {
        "ACCOUNT": "acme",
        "HOST": "api.services.mimecast.com",
        "CLIENT_ID": "id-from-env",
        "SECRET_DIR": str(tmp_path),
        "INTERVAL": "2m",
        "QUEUE": "processing",
        "DOMAIN": "example.com",
        "ROUTE": "outbound",
    }
    path = _write(
        tmp_path,
        """\
        poll:
          interval: ${INTERVAL}
          queues: ["${QUEUE}"]
        accounts:
          - name: ${ACCOUNT}-prod
            base_url: https://${HOST}
            oauth2:
              client_id: ${CLIENT_ID}
              client_secret_file: ${SECRET_DIR}/acme_secret
            search_by: {field_name: toAddress, value: "@${DOMAIN}"}
            filter_by: [{route: "${ROUTE}", tags: ["${ROUTE}"]}]
        """,
    )
    config = load_config(path, environ=environ)
    account = config.accounts[0]
    assert config.poll.interval == 120.0
    assert config.poll.queues == ("processing",)
    assert account.name == "acme-prod"
    assert account.base_url == "https://api.services.mimecast.com"
    assert account.credentials == OAuth2Credentials("id-from-env", Secret("secret-from-file"))
    assert account.search_by == {"fieldName": "toAddress", "value": "@example.com"}
    assert account.filter_by == ({"route": "outbound", "tags": ["outbound"]},)


def test_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIMECAST_TEST_CLIENT_ID", "id-from-os-environ")
    data = yaml.safe_load(MINIMAL.replace("acme-client-id", "${MIMECAST_TEST_CLIENT_ID}"))
    creds = parse_config(data).accounts[0].credentials
    assert isinstance(creds, OAuth2Credentials)
    assert creds.client_id == "id-from-os-environ"


def test_env_values_are_not_expanded_again() -> None:
    data = yaml.safe_load(MINIMAL.replace("acme-client-id", "${A}"))
    creds = parse_config(data, environ={"A": "${B}"}).accounts[0].credentials
    assert isinstance(creds, OAuth2Credentials)
    assert creds.client_id == "${B}"


@pytest.mark.parametrize(
    ("written", "value"),
    [
        ("pa$$word", "pa$word"),
        ("$${NOT_A_VAR}", "${NOT_A_VAR}"),
        ("$$$${X}", "$${X}"),
        ("cost$5", "cost$5"),  # a lone "$" is kept
        ("trailing$", "trailing$"),
        ("$$${X}", "$value-of-x"),
    ],
)
def test_dollar_escapes(written: str, value: str) -> None:
    data = yaml.safe_load(MINIMAL)
    data["accounts"][0]["oauth2"]["client_secret"] = written
    creds = parse_config(data, environ={"X": "value-of-x"}).accounts[0].credentials
    assert isinstance(creds, OAuth2Credentials)
    assert creds.client_secret.reveal() == value


def test_search_by_and_filter_by_are_converted_to_the_wire_shape() -> None:
    data = yaml.safe_load(
        MINIMAL
        + "    search_by: {field_name: fromAddress, value: alerts@example.com}\n"
        + "    filter_by:\n"
        + "      - {route: outbound}\n"
        + "      - {field_name: route, value: inbound}\n"
        + "      - {fieldName: attachments, value: true}\n"
    )
    account = parse_config(data, environ={}).accounts[0]
    assert account.search_by == {"fieldName": "fromAddress", "value": "alerts@example.com"}
    assert account.filter_by == (
        {"route": "outbound"},
        {"fieldName": "route", "value": "inbound"},
        {"fieldName": "attachments", "value": True},
    )


def test_search_by_and_filter_by_are_optional() -> None:
    account = parse_config(yaml.safe_load(MINIMAL), environ={}).accounts[0]
    assert account.search_by is None
    assert account.filter_by is None


def test_accounts_keep_their_order_and_names_are_case_sensitive() -> None:
    data = yaml.safe_load(MINIMAL)
    second = yaml.safe_load(MINIMAL)["accounts"][0] | {"name": "ACME"}
    data["accounts"].append(second)
    assert [a.name for a in parse_config(data, environ={}).accounts] == ["acme", "ACME"]


def test_config_secrets_lists_every_secret(tmp_path: Path) -> None:
    config = _load_example(tmp_path)
    assert set(config.secrets()) == set(EXAMPLE_SECRETS.values())


# --- file handling ------------------------------------------------------------


def test_missing_config_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_config(tmp_path / "nope.yaml")
    assert excinfo.value.field_path == ""
    assert str(tmp_path / "nope.yaml") in str(excinfo.value)
    assert "no such file" in str(excinfo.value)


def test_config_path_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="it is a directory"):
        load_config(tmp_path)


def test_yaml_syntax_error_names_file_and_line_but_not_the_source_line(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """\
        accounts:
          - name: acme
            oauth2:
              client_secret: "top-secret-value
        """,
    )
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    message = str(excinfo.value)
    assert str(path) in message
    assert re.search(r"line \d+", message)
    assert "top-secret-value" not in message


def test_non_utf8_config_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"accounts: \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


# --- the example file ---------------------------------------------------------

EXAMPLE_SECRETS = {
    "client_secret": "example-oauth2-client-secret-0123456789",
    "app_key": "example-legacy-app-key-abcdef",
    "access_key": "example-legacy-access-key-ghijkl",
    "secret_key": SECRET_KEY_B64,
}


def _load_example(tmp_path: Path, example: Path = EXAMPLE) -> Config:
    """Load config.example.yaml with the env vars and secret files it refers to."""
    client_secret = tmp_path / "mimecast_client_secret"
    client_secret.write_text(EXAMPLE_SECRETS["client_secret"] + "\n")
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "legacy_access_key").write_text(EXAMPLE_SECRETS["access_key"] + "\n")
    (tmp_path / "secrets" / "legacy_secret_key").write_text(EXAMPLE_SECRETS["secret_key"] + "\n")
    text = example.read_text()
    assert "/run/secrets/mimecast_client_secret" in text
    config_path = tmp_path / "config.yaml"
    config_path.write_text(text.replace("/run/secrets/mimecast_client_secret", str(client_secret)))
    environ = {
        "MIMECAST_CLIENT_ID": "example-client-id",
        "MIMECAST_LEGACY_APP_KEY": EXAMPLE_SECRETS["app_key"],
    }
    return load_config(config_path, environ=environ)


def test_example_config_loads(tmp_path: Path) -> None:
    config = _load_example(tmp_path)
    assert config.poll == PollConfig()  # the example documents the defaults
    acme, legacy = config.accounts
    assert acme.name == "acme"
    assert acme.base_url == OAUTH2_REGIONS["global"]
    assert acme.credentials == OAuth2Credentials(
        "example-client-id", Secret(EXAMPLE_SECRETS["client_secret"])
    )
    # The example watches whole queues: its filters are commented examples only.
    assert acme.search_by is None and not acme.filter_by
    assert legacy.base_url == HMAC_REGIONS["eu"]
    assert isinstance(legacy.credentials, HmacCredentials)
    assert legacy.credentials.access_key.reveal() == EXAMPLE_SECRETS["access_key"]
    assert legacy.search_by is None and not legacy.filter_by


def test_the_example_filters_work_once_uncommented(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    for line in (
        "search_by:",
        "  field_name: toAddress",
        "  value: acme.example.com",
        "filter_by:",
        "  - route: inbound",
    ):
        text = text.replace(f"    # {line}\n", f"    {line}\n", 1)
    (tmp_path / "example.yaml").write_text(text)
    config = _load_example(tmp_path, tmp_path / "example.yaml")
    acme = config.accounts[0]
    assert acme.search_by == {"fieldName": "toAddress", "value": "acme.example.com"}
    assert acme.filter_by == ({"route": "inbound"},)
    summary = describe(config)
    assert "warning: account acme: search_by and filter_by narrow what is watched" in summary
    assert "account legacy-eu" not in summary.split("warning:", 1)[1]


def test_example_config_documents_every_key() -> None:
    text = EXAMPLE.read_text()
    keys = [
        *(f.name for f in PollConfig.__dataclass_fields__.values()),
        *(f.name for f in MetricsConfig.__dataclass_fields__.values()),
        *(f.name for f in Thresholds.__dataclass_fields__.values()),
        "poll", "accounts", "metrics", "thresholds", "name", "base_url", "region", "oauth2", "hmac",
        "search_by", "filter_by", "field_name", "value", "tls_config", "ca_file",
        "client_id", "client_secret", "app_id", "app_key", "access_key", "secret_key",
        "_file", "${", "$$",
    ]  # fmt: skip
    for key in keys:
        assert key in text, key


def test_example_config_fails_cleanly_without_its_env(tmp_path: Path) -> None:
    shutil.copy(EXAMPLE, tmp_path / "config.yaml")
    with pytest.raises(ConfigError) as excinfo:
        load_config(tmp_path / "config.yaml", environ={})
    assert excinfo.value.field_path == "accounts[0].oauth2.client_id"
    assert "MIMECAST_CLIENT_ID" in excinfo.value.problem


# --- describe() and Secret ----------------------------------------------------


def test_describe_shows_settings_and_masks_every_secret(tmp_path: Path) -> None:
    config = _load_example(tmp_path)
    summary = describe(config)
    for secret in EXAMPLE_SECRETS.values():
        assert secret not in summary
    for secret in config.secrets():
        assert secret not in summary
    assert summary.count("********") == 4  # client_secret + app_key, access_key, secret_key
    for expected in [
        "interval: 1m",
        "lookback: 1w",
        "queues: processing, bulk_processing",
        "concurrency: 4",
        # 2 queues x 60 polls an hour x a budget of 15
        "max_pages: 15  (request budget of one poll of one queue: at most 1,800 find requests "
        "an hour per account, retries included)",
        "name: acme",
        "base_url: https://api.services.mimecast.com",
        "auth: oauth2 (API 2.0)",
        "client_id: example-client-id",
        "client_secret: ********",
        "name: legacy-eu",
        "base_url: https://eu-api.mimecast.com",
        "auth: hmac (API 1.0)",
        "app_id: 3f1c9a52-7d4e-4b8a-9e21-6c0d5f7a8b93",
        "secret_key: ********",
        "search_by: none",
        "filter_by: none",
    ]:
        assert expected in summary, expected
    assert "warning:" not in summary  # the example watches whole queues


def test_describe_masks_a_secret_that_was_reused_elsewhere() -> None:
    data = yaml.safe_load(MINIMAL)
    data["accounts"][0]["search_by"] = {"field_name": "info", "value": "acme-client-secret-value"}
    summary = describe(parse_config(data, environ={}))
    assert "acme-client-secret-value" not in summary


def test_secret_never_shows_its_value(tmp_path: Path) -> None:
    secret = Secret("hunter2-value")
    assert "hunter2-value" not in repr(secret)
    assert "hunter2-value" not in str(secret)
    assert "hunter2-value" not in f"{secret}"
    assert secret.reveal() == "hunter2-value"
    config = _load_example(tmp_path)
    for text in (repr(config), str(config)):
        for value in EXAMPLE_SECRETS.values():
            assert value not in text


def test_tls_ca_file_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text(
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    )
    (tmp_path / "config.yml").write_text(
        "accounts:\n"
        "  - name: acme\n"
        "    region: global\n"
        "    oauth2: {client_id: id, client_secret: a-client-secret}\n"
        "    tls_config: {ca_file: ca.pem}\n"
        "poll: {max_response_bytes: 2048}\n"
    )
    config = load_config(tmp_path / "config.yml", environ={})
    assert config.accounts[0].ca_file == str(tmp_path / "ca.pem")
    assert config.poll.max_response_bytes == 2048
    assert f"tls_config.ca_file: {tmp_path / 'ca.pem'}" in describe(config)


# --- defaults that follow the interval ----------------------------------------------------


def _poll_only(tmp_path: Path, poll: dict) -> PollConfig:
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "poll": poll,
                "accounts": [
                    {
                        "name": "acme",
                        "base_url": "https://api.services.mimecast.com",
                        "oauth2": {"client_id": "id", "client_secret": "fixture-secret-value"},
                    }
                ],
            }
        )
    )
    path.chmod(0o600)
    return load_config(path).poll


@pytest.mark.parametrize(
    ("poll", "timeout", "stale_after"),
    [
        ({"interval": "1s"}, 1.0, 300.0),  # refused before: timeout 30s > interval
        ({"interval": "10s"}, 10.0, 300.0),
        ({"interval": "60s"}, 30.0, 300.0),  # the defaults, as before
        ({"interval": "10m"}, 30.0, 1230.0),  # refused before: stale_after 5m < interval
        ({"interval": "10m", "timeout": "1m"}, 60.0, 1260.0),
        ({"interval": "1s", "stale_after": "2s"}, 1.0, 2.0),  # explicit values stay
    ],
)
def test_unset_timeout_and_stale_after_follow_the_interval(tmp_path, poll, timeout, stale_after):
    config = _poll_only(tmp_path, poll)
    assert (config.timeout, config.stale_after) == (timeout, stale_after)


@pytest.mark.parametrize(
    ("poll", "field", "message"),
    [
        ({"interval": "30s", "timeout": "40s"}, "poll.timeout", "at most poll.interval"),
        ({"interval": "10m", "stale_after": "5m"}, "poll.stale_after", "at least poll.interval"),
    ],
)
def test_an_explicit_conflict_with_the_interval_stays_an_error(tmp_path, poll, field, message):
    with pytest.raises(ConfigError) as info:
        _poll_only(tmp_path, poll)
    assert info.value.field_path == field and message in str(info.value)


def test_every_error_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    text = """\
poll:
  interval: 60
  page_size: 0
  colour: blue
accounts:
  - name: "bad name"
    base_url: http://mimecast.example.com
    oauth2: {client_id: x}
  - name: ok
    region: mars
    hmac: {app_id: a, app_key: b, access_key: c, secret_key: "not base64!"}
  - name: ok
    region: global
    oauth2: {client_id: x, client_secret: y}
  - name: ok
    region: uk
    oauth2: {client_id: x, client_secret: y}
metrics: {by_route: maybe}
"""
    with pytest.raises(ConfigError) as excinfo:
        load_config(_write(tmp_path, text), environ={})
    paths = [error.field_path for error in excinfo.value.errors]
    assert paths == [
        "poll.colour",
        "poll.interval",
        "poll.page_size",
        "accounts[0].name",
        "accounts[0].oauth2",
        "accounts[0].base_url",
        "accounts[1].hmac.secret_key",
        "accounts[1].region",
        "accounts[3].name",  # the same name as accounts[2]
        "metrics.by_route",
    ]
    assert str(excinfo.value).count("\n") == len(paths) - 1  # one line each
    assert "'y'" not in str(excinfo.value) and "not base64!" not in str(excinfo.value)


def test_the_command_prints_every_error_and_exits_2(tmp_path: Path) -> None:
    from tests.processes import run_exporter

    config = _write(tmp_path, "poll:\n  interval: 60\n  page_size: 0\naccounts: []\n")
    result = run_exporter("--config.file", str(config), "--config.check")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0].endswith("3 problems")
    assert [line.split(":")[0].strip() for line in lines[1:]] == [
        "poll.interval",
        "poll.page_size",
        "accounts",
    ]
