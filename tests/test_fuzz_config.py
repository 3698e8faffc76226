"""Property tests: any configuration gives a Config or a ConfigError, never a traceback.

Hypothesis mutates a valid configuration at every documented path (and at
unknown ones), throws arbitrary YAML documents and arbitrary text at
load_config, and arbitrary values at parse_duration. A ConfigError must name
a field of the document (or one the document is missing) and must never quote
a secret value. Every test is derandomized and bounded.
"""

from __future__ import annotations

import base64
import itertools
import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from mimecast_exporter.config import (
    Config,
    ConfigError,
    PollConfig,
    load_config,
    parse_config,
    parse_duration,
)
from mimecast_exporter.durations import MAX_SECONDS, UNITS, format_duration, parse_duration_text

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)

ENVIRON = {"FUZZ_VAR": "from-the-environment", "FUZZ_EMPTY": ""}
MARK = "\u27e6s3cr3t\u27e7"  # in every generated secret, so it cannot occur by chance
SECRET_KEY_B64 = base64.b64encode(b"hmac-signing-key-for-fuzzing").decode()
SECRET_FIELDS = {"oauth2": ("client_secret",), "hmac": ("app_key", "access_key", "secret_key")}
PEM = "-----BEGIN CERTIFICATE-----\nMIIBfuzz\n-----END CERTIFICATE-----\n"
DELETE = object()  # as a replacement value: remove the key


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """Files the generated configs may point at, relative to the config's directory."""
    root = tmp_path_factory.mktemp("fuzz-config")
    (root / "secret.txt").write_text(f"file-secret-{MARK}\n")
    (root / "empty.txt").write_text(" \n")
    (root / "ca.pem").write_text(PEM)
    (root / "notpem.txt").write_text("hello\n")
    (root / "latin1.txt").write_bytes(b"\xff\xfe caf\xe9")
    (root / "subdir").mkdir()
    return root


def oauth2_document() -> dict[str, Any]:
    return {
        "poll": {
            "interval": "60s",
            "timeout": "10s",
            "lookback": "7d",
            "stale_after": "5m",
            "page_size": 100,
            "queues": ["processing", "bulk_processing"],
            "max_pages": 50,
            "concurrency": 2,
            "max_response_bytes": 1048576,
        },
        "accounts": [
            {
                "name": "acme",
                "region": "global",
                "oauth2": {"client_id": "client-id", "client_secret": f"oauth-{MARK}-secret"},
                "search_by": {"field_name": "ALL", "value": "invoice"},
                "filter_by": [{"route": "outbound"}, {"field_name": "x", "value": "${FUZZ_VAR}"}],
                "tls_config": {"ca_file": "ca.pem"},
            }
        ],
    }


def hmac_document() -> dict[str, Any]:
    return {
        "accounts": [
            {
                "name": "acme-eu",
                "base_url": "https://eu-api.mimecast.com/",
                "hmac": {
                    "app_id": "app-id",
                    "app_key": f"app-key-{MARK}",
                    "access_key": f"access-key-{MARK}",
                    "secret_key": SECRET_KEY_B64,
                },
            }
        ]
    }


def test_base_documents_are_valid(workdir):
    for document in (oauth2_document(), hmac_document()):
        assert isinstance(parse_config(document, base_dir=workdir, environ=ENVIRON), Config)


# --- values -------------------------------------------------------------------------

INTERESTING = [
    "",
    " ",
    "60s",
    "1h30m",
    "500ms",
    "0s",
    "-5m",
    "60",
    "1.5h",
    "9" * 300 + "y",  # finite, but 1000 times it is not
    "${FUZZ_VAR}",
    "${FUZZ_EMPTY}",
    "${MISSING_VAR}",
    "${",
    "$$",
    "$${X}",
    "${1BAD}",
    "https://api.services.mimecast.com",
    "https://uk-api.services.mimecast.com:8443/",
    "http://127.0.0.1:8080",
    "http://[::1]:9",
    "http://example.com",
    "https://user:pw@host",
    "https://host/path",
    "https://host?q",
    "https://host:99999",
    "https://[::1",
    "ftp://host",
    "global",
    "UK",
    "eu",
    "processing",
    "bulk_processing",
    "ALL",
    "fromAddress",
    "~no-such-user-for-fuzzing/secret.txt",
    "a\0b",
    "secret.txt",
    "empty.txt",
    "ca.pem",
    "notpem.txt",
    "latin1.txt",
    "subdir",
    "/nonexistent/file",
    "aGVsbG8gd29ybGQ=",
    "not base64!",
]
secret_strings = st.builds(
    lambda before, after: before + MARK + after, st.text(max_size=8), st.text(max_size=8)
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=30),
    st.sampled_from(INTERESTING),
    secret_strings,
    st.dates(),
)
keys = st.one_of(st.text(max_size=10), st.sampled_from(["name", "oauth2", "value", "field_name"]))
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.one_of(keys, st.integers(-5, 5)), children, max_size=3),
    ),
    max_leaves=10,
)
# Integers str() refuses (over 4300 digits): YAML's 0x... gives them, json does not.
huge_ints = st.sampled_from([10**5000, -(10**5000), 16**4000])

POLL_KEYS = [field.name for field in PollConfig.__dataclass_fields__.values()]
ACCOUNT_KEYS = ["name", "base_url", "region", "oauth2", "hmac", "search_by", "filter_by"]
ACCOUNT_KEYS += ["tls_config", "unknown_key"]
A = ("accounts", 0)
PATHS: list[tuple[Any, ...]] = [
    ("poll",),
    ("accounts",),
    ("unknown_top",),
    ("poll", "unknown_key"),
    *(("poll", key) for key in POLL_KEYS),
    ("poll", "queues", 0),
    ("poll", "queues", 1),
    A,
    ("accounts", 1),
    *((*A, key) for key in ACCOUNT_KEYS),
    *((*A, "oauth2", key) for key in ("client_id", "client_secret", "unknown_key")),
    *((*A, "oauth2", key) for key in ("client_id_file", "client_secret_file")),
    *((*A, "hmac", key) for key in ("app_id", "app_key", "access_key", "secret_key")),
    *((*A, "hmac", key) for key in ("app_key_file", "secret_key_file", "unknown_key")),
    *((*A, "search_by", key) for key in ("field_name", "value", "unknown_key")),
    (*A, "filter_by", 0),
    (*A, "filter_by", 0, "route"),
    (*A, "filter_by", 0, "field_name"),
    (*A, "filter_by", 0, "fieldName"),
    (*A, "tls_config", "ca_file"),
    (*A, "tls_config", "insecure_skip_verify"),
]
SECRET_PATHS = [
    (*A, "oauth2"),  # "oauth2: <the secret>" is a plausible slip
    (*A, "hmac"),
    (*A, "oauth2", "client_secret"),
    (*A, "hmac", "app_key"),
    (*A, "hmac", "access_key"),
    (*A, "hmac", "secret_key"),
]
secret_values = st.one_of(
    secret_strings,
    secret_strings.map(lambda s: f"  {s}\n"),
    secret_strings.map(lambda s: f"{s}${{"),  # fails ${VAR} expansion
    secret_strings.map(lambda s: f"{s}${{MISSING_VAR}}"),
    secret_strings.map(lambda s: f"${{{s}}}"),  # not a variable name
    secret_strings.map(lambda s: f"{s}!not-base64"),
    st.sampled_from(["0123456789", "AAAAAAAAAAAA", "aGVsbG8gd29ybGQ="]).map(lambda s: s + MARK),
)


def put(document: dict, path: tuple[Any, ...], value: Any) -> None:
    """Set (or with DELETE remove) the value at ``path``, creating what is missing."""
    node: Any = document
    for step, following in itertools.pairwise(path):
        fresh: Any = [] if isinstance(following, int) else {}
        if isinstance(node, dict):
            if not isinstance(node.get(step), dict | list):
                node[step] = fresh
            node = node[step]
        else:  # a list, step an index
            while len(node) <= step:
                node.append(fresh)
            if not isinstance(node[step], dict | list):
                node[step] = fresh
            node = node[step]
    last = path[-1]
    if isinstance(node, list) and not isinstance(last, int):
        return  # the path needs a mapping where an earlier edit put a list
    if value is DELETE:
        if isinstance(node, dict):
            node.pop(last, None)
        elif last < len(node):
            del node[last]
        return
    if isinstance(node, list):
        while len(node) <= last:
            node.append(None)
    node[last] = value


@st.composite
def mutated_documents(draw, replacement_values=values):
    document = draw(st.sampled_from([oauth2_document, hmac_document]))()
    edits = draw(
        st.lists(
            st.tuples(
                st.sampled_from(PATHS),
                st.one_of(replacement_values, st.just(DELETE)),
            ),
            min_size=1,
            max_size=3,
        )
    )
    for path, value in edits:
        put(document, path, value)
    return document


# --- the properties -------------------------------------------------------------------


def join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def printable(key: object) -> bool:
    try:
        str(key)
    except ValueError:  # an integer over 4300 digits
        return False
    return True


def document_paths(document: Any) -> tuple[set[str], set[str], set[str]]:
    """Field paths as the config code writes them: every node, the mappings, and the
    mappings with a key str() cannot print (under which any path is accepted)."""
    nodes: set[str] = set()
    mappings: set[str] = set()
    unprintable: set[str] = set()
    seen: set[int] = set()

    def walk(node: Any, path: str) -> None:
        nodes.add(path)
        if isinstance(node, dict | list):
            if id(node) in seen:  # a YAML alias to an enclosing node
                return
            seen.add(id(node))
        if isinstance(node, dict):
            mappings.add(path)
            for key, value in node.items():
                if printable(key):
                    walk(value, join(path, key))
                else:
                    unprintable.add(path)
        elif isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, f"{path}[{i}]")

    walk(document, "")
    return nodes, mappings, unprintable


def strings_in(document: Any, skip: tuple[str, ...] = ()) -> list[str]:
    """Every string (key or value) of the document, except at the paths in ``skip``."""
    found: list[str] = []
    seen: set[int] = set()

    def walk(node: Any, path: str) -> None:
        if path in skip:
            return
        if isinstance(node, str):
            found.append(node)
        elif isinstance(node, dict | list) and id(node) not in seen:
            seen.add(id(node))
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for key, value in items:
                if isinstance(key, str):
                    found.append(key)
                if printable(key):
                    walk(value, join(path, key) if isinstance(node, dict) else f"{path}[{key}]")

    walk(document, "")
    return found


def secrets_in(document: Any) -> dict[str, str]:
    """field path -> secret value (at least 8 characters) given in the document."""
    secrets: dict[str, str] = {}
    accounts = document.get("accounts") if isinstance(document, dict) else None
    for i, account in enumerate(accounts if isinstance(accounts, list) else []):
        if not isinstance(account, dict):
            continue
        for section, fields in SECRET_FIELDS.items():
            raw = account.get(section)
            candidates = {f"accounts[{i}].{section}": raw}  # "oauth2: <the secret>"
            if isinstance(raw, dict):
                candidates = {f"accounts[{i}].{section}.{f}": raw.get(f) for f in fields}
            for path, value in candidates.items():
                if isinstance(value, str) and len(value) >= 8:
                    secrets[path] = value
    return secrets


def check_outcome(document: Any, run, *, loaded: bool = True) -> None:
    """``run()`` returns a Config or raises a ConfigError that names a field and leaks nothing."""
    try:
        config = run()
    except ConfigError as err:
        assert isinstance(err.field_path, str) and isinstance(err.problem, str)
        message = str(err)
        assert err.problem in message
        if not loaded:
            assert err.field_path == "", "a document YAML cannot load has no fields"
        elif err.field_path:
            nodes, mappings, unprintable = document_paths(document)
            parent, _, last = err.field_path.rpartition(".")
            missing_key = parent in mappings and re.fullmatch(r"[A-Za-z_]+", last) is not None
            root_key = "" in mappings and re.fullmatch(r"[A-Za-z_]+", err.field_path) is not None
            odd_key = any(err.field_path.startswith(join(path, "")) for path in unprintable)
            assert err.field_path in nodes or missing_key or root_key or odd_key, err.field_path
        secrets = secrets_in(document) if loaded else {}
        for path, secret in secrets.items():
            elsewhere = strings_in(document, skip=(path,))
            if any(secret in text for text in elsewhere):
                continue  # also given as a non-secret value, which may be quoted
            assert secret not in message, f"{path} leaked: {message}"
            assert secret.strip() not in message or len(secret.strip()) < 8, message
    else:
        assert isinstance(config, Config)
        assert config.accounts


@FUZZ
@given(st.one_of(mutated_documents(), mutated_documents(st.one_of(values, huge_ints))))
@example({**hmac_document(), "poll": {"page_size": 16**4000}})  # str() refused the integer
@example({**hmac_document(), "poll": {"interval": 10**5000}})
@example({**hmac_document(), "poll": {"interval": "9" * 300 + "y"}})  # format_duration overflow
@example({**hmac_document(), "poll": {"lookback": "9" * 300 + "y"}})
@example(
    {"accounts": [{**hmac_document()["accounts"][0], "filter_by": [{10**5000: 1}]}]}
)  # found() on the key
@example({**hmac_document(), "poll": {16**4000: "60s"}})  # join() in check_keys
@example({**hmac_document(), 10**5000: None})
def test_parse_config_on_mutated_documents(workdir, document):
    check_outcome(document, lambda: parse_config(document, base_dir=workdir, environ=ENVIRON))


@st.composite
def documents_with_secrets(draw):
    document = draw(st.sampled_from([oauth2_document, hmac_document]))()
    for path, value in draw(st.lists(st.tuples(st.sampled_from(PATHS), values), max_size=1)):
        put(document, path, value)
    for path in draw(st.lists(st.sampled_from(SECRET_PATHS), min_size=1, max_size=3)):
        put(document, path, draw(secret_values))
    return document


@FUZZ
@given(documents_with_secrets())
@example({"accounts": [{**oauth2_document()["accounts"][0], "oauth2": f"the-{MARK}-secret"}]})
@example({"accounts": [{**hmac_document()["accounts"][0], "hmac": f"the-{MARK}-secret"}]})
def test_errors_never_quote_secrets(workdir, document):
    assume(secrets_in(document))  # an edit may leave no account to put them in
    check_outcome(document, lambda: parse_config(document, base_dir=workdir, environ=ENVIRON))


def with_credential_file(name: str) -> dict[str, Any]:
    document = oauth2_document()
    oauth2 = document["accounts"][0]["oauth2"]
    del oauth2["client_secret"]
    oauth2["client_secret_file"] = name
    return document


def with_ca_file(name: str) -> dict[str, Any]:
    document = oauth2_document()
    document["accounts"][0]["tls_config"]["ca_file"] = name
    return document


@pytest.mark.parametrize(
    "document",
    [
        with_credential_file("a\0b"),  # ValueError: embedded null byte
        with_credential_file("~no-such-user-for-fuzzing/secret"),  # RuntimeError from expanduser
        with_ca_file("a\0b"),
        with_ca_file("~no-such-user-for-fuzzing/ca.pem"),
    ],
    ids=["secret-file-nul", "secret-file-unknown-user", "ca-file-nul", "ca-file-unknown-user"],
)
def test_unreadable_file_names_are_config_errors(document, workdir):
    with pytest.raises(ConfigError) as info:
        parse_config(document, base_dir=workdir, environ=ENVIRON)
    assert info.value.field_path.startswith("accounts[0].")


def test_self_referencing_filter_is_a_config_error(workdir):
    document = yaml.safe_load("filters: &f [{route: outbound, nested: *f}]")
    config = oauth2_document()
    config["accounts"][0]["filter_by"] = document["filters"]
    with pytest.raises(ConfigError) as info:
        parse_config(config, base_dir=workdir, environ=ENVIRON)
    assert info.value.field_path == "accounts[0].filter_by[0].nested"


@FUZZ
@given(values)
@example([])
@example({"accounts": None})
@example({"accounts": [None], "poll": []})
def test_parse_config_on_arbitrary_values(workdir, document):
    check_outcome(document, lambda: parse_config(document, base_dir=workdir, environ=ENVIRON))


# --- YAML files -------------------------------------------------------------------------

YAML_FRAGMENTS = [
    "poll:",
    "  interval: 60s",
    "  page_size: 0x" + "f" * 4000,  # an integer too long for str()
    "accounts:",
    "- name: acme",
    "  region: global",
    f"  oauth2: {{client_id: id, client_secret: 'inline-{MARK}'}}",
    "  oauth2: &o {client_id: *o}",
    "  filter_by: &f [{route: *f}]",
    "  filter_by: [{a: 1}, {field_name: b, fieldName: c}]",
    "  tls_config: {ca_file: ca.pem}",
    "created: 2026-02-30",  # a date YAML resolves but datetime() refuses
    "big: 1" + "0" * 5000,  # refused by int()
    "bin: !!binary '###'",
    "obj: !!python/object:os.system x",
    "? [a, b]\n: c",
    "<<: 1",
    'nul: "\\0"',
    "%YAML 1.1\n---",
    "---",
    "...",
    "\t- tab",
    "[" * 1000,  # nested deeper than the recursion limit
    "{" * 10 + "}" * 10,
]
yaml_texts = st.one_of(
    st.text(max_size=200),
    st.lists(st.sampled_from(YAML_FRAGMENTS), min_size=1, max_size=6).map("\n".join),
    mutated_documents().map(lambda d: yaml.safe_dump(d, sort_keys=False)),
    values.map(lambda v: yaml.safe_dump(v, sort_keys=False)),
)


@FUZZ
@given(yaml_texts)
@example("created: 2026-02-30\n")  # ValueError out of yaml.safe_load
@example("big: 1" + "0" * 5000 + "\n")
@example("[" * 1000 + "\n")  # RecursionError out of yaml.safe_load
@example("poll:\n  page_size: 0x" + "f" * 4000 + "\n" + yaml.safe_dump(hmac_document()))
@example("x: &x [*x]\n")
def test_load_config_on_any_file(workdir, text):
    config_file = workdir / "config.yaml"
    config_file.write_text(text, encoding="utf-8")
    try:  # read back as load_config does: newlines are translated
        document, loaded = yaml.safe_load(config_file.read_text(encoding="utf-8")), True
    except Exception:  # the exporter must turn this into a ConfigError
        document, loaded = None, False
    check_outcome(document, lambda: load_config(config_file, environ=ENVIRON), loaded=loaded)


@FUZZ
@given(st.binary(max_size=100))
@example(b"\xff\xfe\x00bad")
def test_load_config_on_any_bytes(workdir, raw):
    config_file = workdir / "config.bin.yaml"
    config_file.write_bytes(raw)
    try:
        document, loaded = yaml.safe_load(config_file.read_text(encoding="utf-8")), True
    except Exception:
        document, loaded = None, False
    check_outcome(document, lambda: load_config(config_file, environ=ENVIRON), loaded=loaded)


# --- durations ---------------------------------------------------------------------------


@st.composite
def valid_durations(draw) -> tuple[str, float]:
    chosen = draw(st.lists(st.sampled_from([unit for unit, _ in UNITS]), min_size=1, unique=True))
    text, seconds = "", 0.0
    for unit, scale in UNITS:
        if unit in chosen:
            count = draw(st.one_of(st.integers(0, 1000), st.integers(0, 10**15)))
            zeros = draw(st.integers(0, 2))
            text += "0" * zeros + f"{count}{unit}"
            seconds += count * scale
    space = draw(st.sampled_from(["", " ", "\t", "\n "]))
    return space + text + space, seconds


@FUZZ
@given(valid_durations())
@example((" 1h30m ", 5400.0))
@example(("500ms", 0.5))
@example(("7d", 604800.0))
@example(("1w", 604800.0))
@example(("1y", 31536000.0))
@example(("1m1ms", 60.001))
@example(("2h0m5s", 7205.0))
@example(("0s", 0.0))
def test_valid_durations_give_their_seconds(case):
    text, expected = case
    if expected > MAX_SECONDS:  # well-formed, but longer than any setting takes
        with pytest.raises(ConfigError, match="longer than 100y"):
            parse_duration(text, "poll.interval")
        return
    seconds = parse_duration(text, "poll.interval")
    assert isinstance(seconds, float)
    assert math.isclose(seconds, expected, rel_tol=1e-12)
    # What format_duration shows can be pasted back.
    assert math.isclose(parse_duration_text(format_duration(seconds)), seconds, rel_tol=1e-9)


@FUZZ
@given(
    st.one_of(
        st.text(max_size=30),
        st.from_regex(r"\A\s*-?[0-9]{1,400}(y|w|d|h|m|s|ms)([0-9]{1,3}(m|s|ms))?\s*\Z"),
        st.integers(),
        huge_ints,
        st.floats(),
        st.none(),
        st.booleans(),
        values,
    )
)
@example("9" * 300 + "y")  # finite seconds, but format_duration overflowed on them
@example("9" * 310 + "y")
@example(10**5000)  # the "did you mean '...s'" hint could not print it
@example("\u0661\u0662s")  # Arabic-Indic digits
@example("1h1h")
@example(-5)
def test_parse_duration_on_anything(value):
    try:
        seconds = parse_duration(value, "poll.interval")
    except ConfigError as err:
        assert err.field_path == "poll.interval"
        assert err.problem in str(err)
        return
    assert isinstance(seconds, float) and math.isfinite(seconds) and seconds >= 0
    assert isinstance(format_duration(seconds), str)
