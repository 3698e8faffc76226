"""--web.config.file: TLS, client certificates, basic auth and hot reload.

Real servers on 127.0.0.1 port 0, real TLS clients (requests and ssl sockets),
certificates made per test session with trustme.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import socket
import ssl
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest
import requests
import trustme
from prometheus_client import CollectorRegistry, Gauge

from mimecast_exporter.simulator.server import SimulatorServer
from mimecast_exporter.web.auth import AuthCache, RateLimiter, parse_basic_authorization
from mimecast_exporter.web.config import WebConfigError, WebConfigErrors, load_web_config
from mimecast_exporter.web.server import WebServer
from mimecast_exporter.web.watch import WebConfigWatcher
from tests.conftest import OAUTH_ID, OAUTH_SECRET
from tests.fakes import ReadyStatus
from tests.processes import Daemon, run_exporter, wait_for

FIXTURES = Path(__file__).parents[1] / "fixtures" / "webconfig"
REALM = 'Basic realm="mimecast-exporter"'
FAST = 0.1  # check_interval for reload tests that do not test the default


def hash_password(password: str, cost: int = 4) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()


def as_2y(hashed: str) -> str:
    """The same hash as htpasswd and Go write it."""
    return "$2y$" + hashed[4:]


ALICE_PW, BOB_PW = "correct horse battery staple", "b0b's pässwörd"
ALICE_HASH = hash_password(ALICE_PW)
BOB_HASH = as_2y(hash_password(BOB_PW))


@dataclass
class Pki:
    ca: trustme.CA
    ca_file: Path
    server: trustme.LeafCert
    server2: trustme.LeafCert  # same names, another key: what a rotation installs
    client: tuple[str, str]  # (cert, key) from the trusted CA, SAN scraper.example.com
    other_client: tuple[str, str]  # from the trusted CA, SAN intruder.example.com
    untrusted_client: tuple[str, str]  # from a CA the server does not know
    dir: Path

    def install(self, target: Path, server: trustme.LeafCert | None = None) -> None:
        """server.crt, server.key, other.key and ca.crt into ``target``."""
        server = server or self.server
        write_atomically(target / "server.crt", server.cert_chain_pems[0].bytes())
        write_atomically(target / "server.key", server.private_key_pem.bytes())
        write_atomically(target / "other.key", self.server2.private_key_pem.bytes())
        write_atomically(target / "ca.crt", self.ca.cert_pem.bytes())


def write_atomically(path: Path, data: bytes | str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)


def _pair(cert: trustme.LeafCert, where: Path, name: str) -> tuple[str, str]:
    crt, key = where / f"{name}.crt", where / f"{name}.key"
    cert.cert_chain_pems[0].write_to_path(str(crt))
    cert.private_key_pem.write_to_path(str(key))
    return str(crt), str(key)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    where = tmp_path_factory.mktemp("pki")
    ca, stranger = trustme.CA(), trustme.CA()
    ca_file = where / "ca.crt"
    ca.cert_pem.write_to_path(str(ca_file))
    return Pki(
        ca=ca,
        ca_file=ca_file,
        server=ca.issue_cert("127.0.0.1", "localhost"),
        server2=ca.issue_cert("127.0.0.1", "localhost", common_name="rotated"),
        client=_pair(ca.issue_cert("scraper.example.com"), where, "client"),
        other_client=_pair(ca.issue_cert("intruder.example.com"), where, "other"),
        untrusted_client=_pair(stranger.issue_cert("scraper.example.com"), where, "stranger"),
        dir=where,
    )


def make_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Gauge("tiny", "A gauge.", registry=registry).set(7)
    return registry


@contextmanager
def serving(config: Path, **watcher_options) -> Iterator[WebServer]:
    watcher = WebConfigWatcher(config, **watcher_options)
    server = WebServer("127.0.0.1:0", make_registry(), ReadyStatus(), web_config=watcher)
    server.start()
    try:
        yield server
    finally:
        server.shutdown()


def web_config(tmp_path: Path, pki: Pki, text: str) -> Path:
    pki.install(tmp_path)
    path = tmp_path / "web.yml"
    write_atomically(path, text)
    return path


TLS = """
tls_server_config:
  cert_file: server.crt
  key_file: server.key
"""


def users(**hashes: str) -> str:
    return "basic_auth_users:\n" + "".join(f"  {u}: {h}\n" for u, h in hashes.items())


def tls_client(pki: Pki, **versions: ssl.TLSVersion) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    with warnings.catch_warnings():  # TLSv1/TLSv1_1 are deprecated: that is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        for name, version in versions.items():
            setattr(context, name, version)
        if versions.get("maximum_version", ssl.TLSVersion.TLSv1_3) < ssl.TLSVersion.TLSv1_2:
            context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client at least try
    return context


def handshake(server: WebServer, context: ssl.SSLContext) -> tuple[str, bytes]:
    """(TLS version, server certificate DER) of one fresh connection."""
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        return tls.version() or "", tls.getpeercert(binary_form=True) or b""


def der(cert: trustme.LeafCert) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.cert_chain_pems[0].bytes().decode())


# --- TLS ---------------------------------------------------------------------------


def test_https_scrape_with_the_ca(tmp_path: Path, pki: Pki) -> None:
    with serving(web_config(tmp_path, pki, TLS)) as server:
        assert server.url == f"https://127.0.0.1:{server.port}"
        r = requests.get(server.url + "/metrics", verify=pki.ca_file, timeout=5)
        assert r.status_code == 200
        assert "tiny 7.0" in r.text
        with pytest.raises(requests.exceptions.SSLError):  # not a publicly trusted cert
            requests.get(server.url + "/metrics", timeout=5)
        assert handshake(server, tls_client(pki)) == ("TLSv1.3", der(pki.server))


def test_plain_http_to_the_tls_port_gets_a_400_that_says_so(tmp_path: Path, pki: Pki) -> None:
    with serving(web_config(tmp_path, pki, TLS)) as server:
        answer = requests.get(f"http://127.0.0.1:{server.port}/metrics", timeout=5)
        assert answer.status_code == 400  # as Go's servers answer
        assert answer.text == "Client sent an HTTP request to an HTTPS server.\n"
        # and the listener is none the worse for it
        assert requests.get(server.url + "/-/healthy", verify=pki.ca_file, timeout=5).ok


def test_a_silent_client_blocks_nobody_and_is_dropped(tmp_path: Path, pki: Pki) -> None:
    # The handshake runs in the connection's thread, with a timeout.
    with (
        serving(web_config(tmp_path, pki, TLS), handshake_timeout=2.0) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as silent,
    ):
        started = time.monotonic()
        r = requests.get(server.url + "/-/healthy", verify=pki.ca_file, timeout=5)
        assert r.status_code == 200
        assert time.monotonic() - started < 1.5  # not stuck behind the silent one
        assert silent.recv(1) == b""  # the server hung up on it after 2 s
        assert 1.5 < time.monotonic() - started < 8


def test_tls_11_client_is_refused(tmp_path: Path, pki: Pki) -> None:
    with serving(web_config(tmp_path, pki, TLS)) as server:
        old = tls_client(
            pki, minimum_version=ssl.TLSVersion.TLSv1, maximum_version=ssl.TLSVersion.TLSv1_1
        )
        with pytest.raises(ssl.SSLError, match="PROTOCOL_VERSION"):  # the server's alert
            handshake(server, old)
        tls12 = tls_client(pki, maximum_version=ssl.TLSVersion.TLSv1_2)
        assert handshake(server, tls12)[0] == "TLSv1.2"  # the default minimum


def test_min_version_tls13_refuses_a_tls12_client(tmp_path: Path, pki: Pki) -> None:
    config = web_config(tmp_path, pki, TLS + "  min_version: TLS13\n")
    with serving(config) as server:
        with pytest.raises(ssl.SSLError, match="PROTOCOL_VERSION"):
            handshake(server, tls_client(pki, maximum_version=ssl.TLSVersion.TLSv1_2))
        assert handshake(server, tls_client(pki))[0] == "TLSv1.3"


def test_max_version_caps_the_protocol(tmp_path: Path, pki: Pki) -> None:
    config = web_config(tmp_path, pki, TLS + "  max_version: TLS12\n")
    with serving(config) as server:
        assert handshake(server, tls_client(pki))[0] == "TLSv1.2"
        r = requests.get(server.url + "/metrics", verify=pki.ca_file, timeout=5)
        assert r.status_code == 200


# --- client certificates ---------------------------------------------------------------


def client_auth(tmp_path: Path, pki: Pki, auth_type: str, extra: str = "") -> Path:
    text = TLS + f"  client_auth_type: {auth_type}\n  client_ca_file: ca.crt\n" + extra
    return web_config(tmp_path, pki, text)


def test_required_client_cert(tmp_path: Path, pki: Pki) -> None:
    with serving(client_auth(tmp_path, pki, "RequireAndVerifyClientCert")) as server:
        url, ca = server.url + "/metrics", pki.ca_file
        with pytest.raises(requests.ConnectionError):
            requests.get(url, verify=ca, timeout=5)
        with pytest.raises(requests.ConnectionError):
            requests.get(url, verify=ca, cert=pki.untrusted_client, timeout=5)
        r = requests.get(url, verify=ca, cert=pki.client, timeout=5)
        assert r.status_code == 200 and "tiny 7.0" in r.text


def test_client_cert_verified_if_given(tmp_path: Path, pki: Pki) -> None:
    with serving(client_auth(tmp_path, pki, "VerifyClientCertIfGiven")) as server:
        url, ca = server.url + "/metrics", pki.ca_file
        assert requests.get(url, verify=ca, timeout=5).status_code == 200
        assert requests.get(url, verify=ca, cert=pki.client, timeout=5).status_code == 200
        with pytest.raises(requests.ConnectionError):
            requests.get(url, verify=ca, cert=pki.untrusted_client, timeout=5)


@pytest.mark.parametrize(
    ("client_auth", "instead"),
    [
        ("RequireAnyClientCert", "RequireAndVerifyClientCert"),
        ("RequireClientCert", "RequireAndVerifyClientCert"),  # exporter-toolkit's alias
        ("RequestClientCert", "VerifyClientCertIfGiven"),
    ],
)
def test_client_auth_that_ssl_cannot_express_is_refused_naming_what_to_use(
    tmp_path: Path, pki: Pki, client_auth: str, instead: str
) -> None:
    """Go accepts any certificate in these modes; Python's ssl verifies every
    certificate it asks for. Refused, never approximated."""
    text = TLS + f"  client_auth_type: {client_auth}\n  client_ca_file: ca.crt\n"
    with pytest.raises(WebConfigError) as info:
        load_web_config(web_config(tmp_path, pki, text))
    message = str(info.value)
    assert "client_auth_type" in message and "without verifying" in message
    assert f"use {instead} with client_ca_file" in message


def test_client_allowed_sans(tmp_path: Path, pki: Pki) -> None:
    extra = "  client_allowed_sans: [scraper.example.com, 192.0.2.1]\n"
    with serving(client_auth(tmp_path, pki, "RequireAndVerifyClientCert", extra)) as server:
        url, ca = server.url + "/metrics", pki.ca_file
        assert requests.get(url, verify=ca, cert=pki.client, timeout=5).status_code == 200
        with pytest.raises(requests.ConnectionError):  # trusted CA, but not an allowed name
            requests.get(url, verify=ca, cert=pki.other_client, timeout=5)


# --- basic auth ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("auth", "status"),
    [
        (("alice", ALICE_PW), 200),
        # a $2y$ hash, as htpasswd writes it; UTF-8 as Prometheus sends it (requests
        # would send a str as Latin-1)
        (("bob", BOB_PW.encode()), 200),
        (("alice", "wrong password"), 401),
        (("alice", BOB_PW), 401),
        (None, 401),
        (("mallory", ALICE_PW), 401),
        (("", ""), 401),
    ],
)
def test_basic_auth(tmp_path: Path, pki: Pki, auth: tuple | None, status: int) -> None:
    config = web_config(tmp_path, pki, TLS + users(alice=ALICE_HASH, bob=BOB_HASH))
    with serving(config) as server:
        r = requests.get(server.url + "/metrics", auth=auth, verify=pki.ca_file, timeout=5)
        assert r.status_code == status
        if status == 401:
            assert r.headers["WWW-Authenticate"] == REALM
            assert "tiny" not in r.text
        else:
            assert "WWW-Authenticate" not in r.headers
            assert "tiny 7.0" in r.text


def test_basic_auth_guards_every_path_and_method(tmp_path: Path) -> None:
    config = tmp_path / "web.yml"
    config.write_text(users(alice=ALICE_HASH))  # basic auth without TLS works too
    with serving(config) as server:
        assert server.url.startswith("http://")
        for path in ("/metrics", "/", "/index.html", "/-/healthy", "/-/ready", "/nope"):
            r = requests.get(server.url + path, timeout=5)
            assert (path, r.status_code) == (path, 401)
            assert r.headers["WWW-Authenticate"] == REALM
        assert requests.head(server.url + "/metrics", timeout=5).status_code == 401
        assert requests.post(server.url + "/metrics", data=b"x", timeout=5).status_code == 401
        auth = ("alice", ALICE_PW)
        assert requests.get(server.url + "/-/healthy", auth=auth, timeout=5).text == "OK"
        assert requests.get(server.url + "/nope", auth=auth, timeout=5).status_code == 404
        assert requests.post(server.url + "/", auth=auth, timeout=5).status_code == 405


@pytest.mark.parametrize(
    "header",
    [
        "Basic",
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"alice-without-colon").decode(),
        "Bearer " + base64.b64encode(f"alice:{ALICE_PW}".encode()).decode(),
        "Basic " + base64.b64encode(b"alice:" + b"x" * 100).decode(),  # > 72 bytes
    ],
)
def test_malformed_authorization_is_401(tmp_path: Path, header: str) -> None:
    config = tmp_path / "web.yml"
    config.write_text(users(alice=ALICE_HASH))
    with serving(config) as server:
        r = requests.get(server.url + "/metrics", headers={"Authorization": header}, timeout=5)
        assert r.status_code == 401


def test_auth_excluded_paths(tmp_path: Path) -> None:
    config = tmp_path / "web.yml"
    config.write_text(users(alice=ALICE_HASH) + "auth_excluded_paths: [/-/healthy]\n")
    with serving(config) as server:
        assert requests.get(server.url + "/-/healthy", timeout=5).status_code == 200
        assert requests.get(server.url + "/-/healthy/", timeout=5).status_code == 401
        assert requests.get(server.url + "/metrics", timeout=5).status_code == 401


class CountingCheckpw:
    """Wraps bcrypt.checkpw to count the bcrypt computations the server runs."""

    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, password: bytes, hashed: bytes) -> bool:
        with self._lock:
            self.calls += 1
        return bcrypt.checkpw(password, hashed)


def test_successful_checks_are_cached(tmp_path: Path, pki: Pki) -> None:
    counter = CountingCheckpw()
    config = web_config(tmp_path, pki, TLS + users(alice=ALICE_HASH, bob=BOB_HASH))
    with serving(config, checkpw=counter, check_interval=FAST) as server:

        def status(auth: tuple) -> int:
            url = server.url + "/metrics"
            return requests.get(url, auth=auth, verify=pki.ca_file, timeout=5).status_code

        assert [status(("alice", ALICE_PW)) for _ in range(3)] == [200] * 3
        assert counter.calls == 1
        assert status(("bob", BOB_PW.encode())) == 200 and counter.calls == 2
        # failures are cached too: a repeated wrong password costs one computation
        assert [status(("alice", "nope")) for _ in range(2)] == [401, 401]
        assert counter.calls == 3
        # an unknown user costs one bcrypt computation (against the dummy hash), once
        assert [status(("mallory", ALICE_PW)) for _ in range(2)] == [401, 401]
        assert counter.calls == 4
        assert status(("alice", ALICE_PW)) == 200 and counter.calls == 4

        # a new hash for alice: the cached success no longer applies
        new_hash = hash_password("new password")
        write_atomically(config, TLS + users(alice=new_hash, bob=BOB_HASH))
        wait_for(lambda: status(("alice", ALICE_PW)) == 401, timeout=10)
        calls = counter.calls
        assert status(("alice", "new password")) == 200
        assert status(("alice", "new password")) == 200
        assert counter.calls == calls + 1


def test_failures_never_evict_a_cached_success() -> None:
    cache = AuthCache(size=2, failures=3)
    good = cache.key(b"alice", b"h", b"pw")
    cache.add(good, True)
    for i in range(100):
        cache.add(cache.key(b"alice", b"h", str(i).encode()), False)
    assert cache.get(good) is True and len(cache) == 4
    assert cache.get(cache.key(b"alice", b"h", b"99")) is False
    assert cache.get(cache.key(b"alice", b"h", b"0")) is None  # evicted among failures


def test_unauthenticated_requests_cannot_stall_a_scraper(tmp_path: Path, pki: Pki) -> None:
    """A user with an expensive hash, and a flood of unknown users and wrong
    passwords: the scraper's cached credentials are answered at once, and an
    unknown user costs the fixed dummy hash, not the expensive one."""
    expensive = hash_password("expensive password", cost=14)  # ~1 s per check here
    config = web_config(tmp_path, pki, TLS + users(alice=ALICE_HASH, carol=expensive))
    with serving(config, check_interval=FAST) as server:
        url = server.url + "/metrics"

        def get(auth: tuple) -> tuple[int, float]:
            started = time.monotonic()
            code = requests.get(url, auth=auth, verify=pki.ca_file, timeout=30).status_code
            return code, time.monotonic() - started

        assert get(("alice", ALICE_PW))[0] == 200  # cached from now on
        # An unknown user is checked against a cost-10 hash, not carol's cost 14.
        code, unknown = get(("mallory", "guess"))
        assert code == 401 and unknown < 0.7
        stop = threading.Event()

        def flood(user: str) -> None:
            n = 0
            while not stop.is_set():
                n += 1
                with contextlib.suppress(requests.RequestException):
                    requests.get(url, auth=(user, f"guess {n}"), verify=pki.ca_file, timeout=30)

        attackers = [threading.Thread(target=flood, args=(u,)) for u in ("carol", "x", "y", "z")]
        for thread in attackers:
            thread.start()
        try:
            time.sleep(0.5)  # the slots are busy with expensive checks by now
            times = [get(("alice", ALICE_PW)) for _ in range(5)]
        finally:
            stop.set()
            for thread in attackers:
                thread.join(timeout=60)
        assert all(code == 200 for code, _ in times)
        assert max(seconds for _, seconds in times) < 1.0, times


def test_auth_cache_is_bounded_and_keyed() -> None:
    cache = AuthCache(size=3)
    keys = [cache.key(b"u", b"h", str(i).encode()) for i in range(5)]
    assert len(set(keys)) == 5
    assert cache.key(b"u", b"h", b"p") != cache.key(b"u", b"hp", b"")  # no ambiguous joins
    assert AuthCache().key(b"u", b"h", b"p") != cache.key(b"u", b"h", b"p")  # per-process key
    for key in keys:
        cache.add(key)
    assert len(cache) == 3
    assert keys[0] not in cache and keys[4] in cache


def test_parse_basic_authorization() -> None:
    encoded = base64.b64encode(b"al:ice:pass:word").decode()
    assert parse_basic_authorization(f"Basic {encoded}") == (b"al", b"ice:pass:word")
    assert parse_basic_authorization(f"basic  {encoded} ") == (b"al", b"ice:pass:word")
    assert parse_basic_authorization(None) is None
    assert parse_basic_authorization("Digest x") is None


# --- headers and rate limit ---------------------------------------------------------------


def test_configured_headers_on_every_answer(tmp_path: Path, pki: Pki) -> None:
    text = (
        TLS
        + users(alice=ALICE_HASH)
        + "http_server_config:\n  http2: false\n  headers:\n"
        + "    X-Frame-Options: deny\n    X-Content-Type-Options: nosniff\n"
        + "    Strict-Transport-Security: max-age=31536000\n    X-XSS-Protection: ''\n"
    )
    with serving(web_config(tmp_path, pki, text)) as server:
        for auth, status in ((None, 401), (("alice", ALICE_PW), 200)):
            r = requests.get(server.url + "/", auth=auth, verify=pki.ca_file, timeout=5)
            assert r.status_code == status
            assert r.headers["X-Frame-Options"] == "deny"
            assert r.headers["X-Content-Type-Options"] == "nosniff"
            assert r.headers["Strict-Transport-Security"] == "max-age=31536000"
            assert "X-XSS-Protection" not in r.headers  # blank means unset


def test_rate_limit(tmp_path: Path) -> None:
    config = tmp_path / "web.yml"
    config.write_text("rate_limit:\n  interval: 1h\n  burst: 2\n")
    with serving(config) as server:
        codes = [requests.get(server.url + "/-/healthy", timeout=5).status_code for _ in range(3)]
    assert codes == [200, 200, 429]


def test_rate_limiter_refills() -> None:
    now = [0.0]
    limiter = RateLimiter(interval=2.0, burst=2, clock=lambda: now[0])
    assert [limiter.allow() for _ in range(3)] == [True, True, False]
    now[0] = 1.0
    assert not limiter.allow()
    now[0] = 2.0
    assert limiter.allow() and not limiter.allow()


# --- hot reload ---------------------------------------------------------------------------


def test_password_change_applies_without_restart(tmp_path: Path, pki: Pki) -> None:
    config = web_config(tmp_path, pki, TLS + users(alice=ALICE_HASH))
    with serving(config) as server:  # the default check interval: 1 s

        def status(password: str) -> int:
            return requests.get(
                server.url + "/metrics",
                auth=("alice", password),
                verify=pki.ca_file,
                timeout=5,
            ).status_code

        assert status(ALICE_PW) == 200
        changed = time.monotonic()
        write_atomically(config, TLS + users(alice=as_2y(hash_password("rotated pw"))))
        wait_for(lambda: status(ALICE_PW) == 401, timeout=10)
        assert time.monotonic() - changed < 3
        assert status("rotated pw") == 200


def test_replaced_certificate_is_served_on_the_next_connection(tmp_path: Path, pki: Pki) -> None:
    with serving(web_config(tmp_path, pki, TLS), check_interval=FAST) as server:
        assert handshake(server, tls_client(pki))[1] == der(pki.server)
        pki.install(tmp_path, server=pki.server2)  # cert and key, in place
        wait_for(lambda: handshake(server, tls_client(pki))[1] == der(pki.server2), timeout=10)
        r = requests.get(server.url + "/metrics", verify=pki.ca_file, timeout=5)
        assert r.status_code == 200


def reload_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.ERROR and "reload" in r.message]


def test_bad_edit_keeps_the_last_good_config(
    tmp_path: Path, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    config = web_config(tmp_path, pki, TLS + users(alice=ALICE_HASH))
    good = ("alice", ALICE_PW)
    new_hash = hash_password("second password")
    with (
        caplog.at_level(logging.INFO, logger="mimecast_exporter.web.config"),
        serving(config, check_interval=FAST) as server,
    ):

        def status(auth: tuple[str, str]) -> int:
            url = server.url + "/metrics"
            return requests.get(url, auth=auth, verify=pki.ca_file, timeout=5).status_code

        assert status(good) == 200
        # invalid YAML, the error on the line with a new hash
        write_atomically(config, TLS + f"basic_auth_users:\n  alice: {new_hash}\n bob: [x\n")
        wait_for(lambda: status(good) == 200 and reload_errors(caplog), timeout=10)
        [error] = reload_errors(caplog)
        assert error.file == str(config)
        assert "invalid YAML at line" in error.error
        # logged once, not once per request
        for _ in range(3):
            assert status(good) == 200
        time.sleep(3 * FAST)
        assert status(good) == 200
        assert len(reload_errors(caplog)) == 1

        # a valid YAML edit that fails validation: the field is named
        write_atomically(config, TLS + users(alice="not-a-hash"))
        wait_for(lambda: status(good) == 200 and len(reload_errors(caplog)) == 2, timeout=10)
        assert "basic_auth_users.alice: expected a bcrypt hash" in reload_errors(caplog)[1].error
        assert status(good) == 200

        # turning TLS off is refused too: it needs a restart
        write_atomically(config, users(alice=ALICE_HASH))
        wait_for(lambda: status(good) == 200 and len(reload_errors(caplog)) == 3, timeout=10)
        assert "needs a restart" in reload_errors(caplog)[2].error
        assert status(good) == 200

        # and a good edit after bad ones applies
        write_atomically(config, TLS + users(alice=new_hash))
        wait_for(lambda: status(("alice", "second password")) == 200, timeout=10)
        assert status(good) == 401
    assert any(r.message == "web configuration reloaded" for r in caplog.records)
    text = "\n".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records)
    for secret in (ALICE_PW, "second password", ALICE_HASH, new_hash, new_hash[7:]):
        assert secret not in text


def test_key_not_matching_after_edit_keeps_the_old_certificate(
    tmp_path: Path, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.INFO, logger="mimecast_exporter.web.config"),
        serving(web_config(tmp_path, pki, TLS), check_interval=FAST) as server,
    ):
        write_atomically(tmp_path / "server.key", pki.server2.private_key_pem.bytes())
        # (a reload is tried when a connection comes in)
        wait_for(lambda: handshake(server, tls_client(pki)) and reload_errors(caplog), timeout=10)
        assert "tls_server_config.key_file" in reload_errors(caplog)[0].error
        assert "does not match" in reload_errors(caplog)[0].error
        assert handshake(server, tls_client(pki))[1] == der(pki.server)
        # the matching certificate arrives: the pair is complete again
        write_atomically(tmp_path / "server.crt", pki.server2.cert_chain_pems[0].bytes())
        wait_for(lambda: handshake(server, tls_client(pki))[1] == der(pki.server2), timeout=10)


def test_file_named_by_a_bad_edit_is_watched(
    tmp_path: Path, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    config = web_config(tmp_path, pki, TLS)
    with (
        caplog.at_level(logging.INFO, logger="mimecast_exporter.web.config"),
        serving(config, check_interval=FAST) as server,
    ):
        text = TLS.replace("server.", "new.")
        write_atomically(config, text)  # names files that do not exist yet
        wait_for(lambda: handshake(server, tls_client(pki)) and reload_errors(caplog), timeout=10)
        assert "no such file" in reload_errors(caplog)[0].error
        write_atomically(tmp_path / "new.key", pki.server2.private_key_pem.bytes())
        write_atomically(tmp_path / "new.crt", pki.server2.cert_chain_pems[0].bytes())
        wait_for(lambda: handshake(server, tls_client(pki))[1] == der(pki.server2), timeout=10)


# --- invalid files at start -----------------------------------------------------------------

# fixture -> what the message must say besides the field (named in the fixture's first line)
INVALID = {
    "unknown_key.yml": "unknown key",
    "unknown_top_key.yml": "unknown key",
    "bad_hash.yml": "expected a bcrypt hash",
    "bad_hash_cost.yml": "cost 04-31",
    "duplicate_user.yml": "duplicate key 'alice'",
    "invalid_yaml.yml": "invalid YAML at line 4",
    "missing_cert.yml": "missing.crt: no such file",
    "missing_key_file.yml": "missing one of key or key_file",
    "cert_not_pem.yml": "holds no PEM certificate",
    "key_mismatch.yml": "does not match the certificate",
    "inline_cert.yml": "the inline cert holds no PEM certificate",
    "bad_client_auth_type.yml": "expected one of NoClientCert",
    "ca_without_client_auth.yml": "client_auth_type is NoClientCert",
    "sans_without_required_cert.yml": "needs client_auth_type RequireAndVerifyClientCert",
    "bad_min_version.yml": "expected one of TLS10, TLS11, TLS12, TLS13",
    "min_above_max.yml": "is below min_version",
    "bad_cipher.yml": "unknown cipher suite 'TLS_RSA_WITH_RC4_128_SHA'",
    "bad_header.yml": "unknown key",
    "bad_header_value.yml": "expected one of deny, sameorigin",
    "bad_http2.yml": "expected true or false",
    "bad_rate_limit.yml": "at least 0; found an integer (-1)",
}


def test_every_fixture_is_listed() -> None:
    assert {p.name for p in FIXTURES.glob("*.yml")} == set(INVALID)


def fixture_field(name: str) -> str:
    first = (FIXTURES / name).read_text().splitlines()[0]
    field = first.removeprefix("# ").strip()
    return "" if field == "(file)" else field


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_file_at_start(tmp_path: Path, pki: Pki, name: str) -> None:
    config = web_config(tmp_path, pki, (FIXTURES / name).read_text())
    with pytest.raises(WebConfigError) as caught:
        load_web_config(config)
    error = caught.value
    assert error.file == config
    assert error.field_path == fixture_field(name)
    assert INVALID[name] in error.problem
    assert str(error).startswith(f"{config}: ")
    assert "plain-text-password" not in str(error)  # a value under basic_auth_users
    assert "X0h1gDsPsz" not in str(error)  # nor a hash
    with pytest.raises(WebConfigError):
        WebConfigWatcher(config)


def test_missing_web_config_file(tmp_path: Path) -> None:
    with pytest.raises(WebConfigError, match="cannot read the file: no such file"):
        load_web_config(tmp_path / "nope.yml")


def test_empty_file_is_plain_http_without_auth(tmp_path: Path) -> None:
    config = tmp_path / "web.yml"
    config.write_text("# nothing yet\n")
    with serving(config) as server:
        assert server.url.startswith("http://")
        assert requests.get(server.url + "/metrics", timeout=5).status_code == 200


def test_relative_paths_are_relative_to_the_file(tmp_path: Path, pki: Pki) -> None:
    sub = tmp_path / "etc"
    sub.mkdir()
    text = TLS + users(alice=ALICE_HASH)
    config = web_config(sub, pki, text)
    elsewhere = tmp_path / "run"
    elsewhere.mkdir()
    cwd = os.getcwd()
    os.chdir(elsewhere)
    try:
        loaded = load_web_config(os.path.relpath(config))
    finally:
        os.chdir(cwd)
    assert loaded.tls is not None
    assert loaded.tls.cert_file.resolve() == (sub / "server.crt").resolve()
    assert set(loaded.basic_auth_users) == {"alice"}
    assert "$2" not in repr(loaded)  # hashes stay out of reprs


# --- through the command line ------------------------------------------------------------------


def write_exporter_config(tmp_path: Path, base_url: str) -> Path:
    config = tmp_path / "config.yml"
    config.write_text(
        f"""
poll:
  interval: 10s
  timeout: 5s
accounts:
  - name: acme
    base_url: {base_url}
    oauth2:
      client_id: {OAUTH_ID}
      client_secret: {OAUTH_SECRET}
"""
    )
    return config


def run(*args: str) -> tuple[int, str, str]:
    done = run_exporter(*args)
    return done.returncode, done.stdout, done.stderr


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("bad_min_version.yml", "tls_server_config.min_version"),
        ("bad_hash.yml", "basic_auth_users.alice"),
    ],
)
def test_cli_exits_2_naming_file_and_field(tmp_path: Path, pki: Pki, name: str, field: str) -> None:
    config = write_exporter_config(tmp_path, "http://127.0.0.1:9")
    web = web_config(tmp_path, pki, (FIXTURES / name).read_text())
    code, out, err = run("--config.file", str(config), "--web.config.file", str(web))
    assert code == 2, err
    assert f"error: invalid web configuration: {web}: {field}: " in err
    assert "plain-text-password" not in err
    code, out, err = run(
        "--config.file", str(config), "--web.config.file", str(web), "--config.check"
    )
    assert code == 2 and f"{web}: {field}" in err


def test_every_problem_of_the_web_config_and_of_the_config_is_told_at_once(
    tmp_path: Path, pki: Pki
) -> None:
    """One error per section, user and header, and the configuration file's
    errors after them: exit 2, never a stop at the first."""
    config = tmp_path / "config.yml"
    config.write_text("poll: {interval: -1s}\naccounts: []\n")
    web = web_config(
        tmp_path,
        pki,
        f"""
basic_auth_users:
  alice: plain-text-password
  bob: {ALICE_HASH}
  "ca:rol": {ALICE_HASH}
http_server_config:
  headers:
    X-Frame-Options: allow
    X-Content-Type-Options: sniff
tls_server_config:
  cert_file: missing.crt
  key_file: missing.key
auth_excluded_paths: [metrics]
rate_limit: {{interval: banana}}
""",
    )
    for extra in ((), ("--config.check",)):
        code, out, err = run("--config.file", str(config), "--web.config.file", str(web), *extra)
        assert code == 2, err
        assert f"error: invalid web configuration: {web}: 7 problems" in err
        for field in (
            "basic_auth_users.alice",
            "basic_auth_users.ca:rol",
            "http_server_config.headers.X-Frame-Options",
            "http_server_config.headers.X-Content-Type-Options",
            "tls_server_config.cert_file",
            "auth_excluded_paths[0]",
            "rate_limit.interval",
        ):
            assert f"\n  {field}: " in err, field
        assert "basic_auth_users.bob" not in err
        assert "plain-text-password" not in err
        assert f"error: invalid configuration in {config}: 2 problems" in err
        assert "poll.interval" in err and "accounts: must list at least one account" in err


def test_a_reload_with_several_web_config_problems_logs_each_and_keeps_serving(
    tmp_path: Path, pki: Pki
) -> None:
    web = web_config(tmp_path, pki, users(alice=ALICE_HASH))
    watcher = WebConfigWatcher(web, check_interval=0)
    web.write_text("basic_auth_users: {alice: nope}\nauth_excluded_paths: [x]\n")
    with pytest.raises(WebConfigErrors) as caught:
        load_web_config(web)
    assert [e.field_path for e in caught.value.errors] == [
        "basic_auth_users.alice",
        "auth_excluded_paths[0]",
    ]
    watcher.check_now()
    assert watcher.config.basic_auth_users  # the previous one stays


def test_cli_config_check_validates_the_web_config(tmp_path: Path, pki: Pki) -> None:
    config = write_exporter_config(tmp_path, "http://127.0.0.1:9")
    web = web_config(tmp_path, pki, TLS + users(alice=ALICE_HASH))
    code, out, err = run(
        "--config.file", str(config), "--web.config.file", str(web), "--config.check"
    )
    assert code == 0, err
    assert f"web configuration file {web} is valid" in out
    assert ALICE_HASH not in out + err


def test_cli_once_ignores_the_web_config(tmp_path: Path, live_sim: SimulatorServer) -> None:
    config = write_exporter_config(tmp_path, live_sim.url)
    code, out, err = run(
        "--config.file", str(config), "--web.config.file", str(tmp_path / "nope.yml"), "--once"
    )
    assert code == 0, err
    assert 'mimecast_up{account="acme"} 1.0' in out


def assert_https_with_basic_auth(daemon: Daemon, pki: Pki, up_account: str) -> None:
    """The daemon serves HTTPS, refuses missing and wrong passwords, and serves
    metrics (with ``up_account`` up) to alice once its first poll is done."""
    url = daemon.wait_for_url()
    assert url.startswith("https://")
    ca = pki.ca_file
    assert requests.get(url + "/metrics", verify=ca, timeout=5).status_code == 401
    wrong = requests.get(url + "/metrics", auth=("alice", "x"), verify=ca, timeout=5)
    assert wrong.status_code == 401

    def scraped() -> str | None:
        answer = requests.get(url + "/metrics", auth=("alice", ALICE_PW), verify=ca, timeout=5)
        ok = answer.status_code == 200 and f'mimecast_up{{account="{up_account}"}} 1.0' in (
            answer.text
        )
        return answer.text if ok else None

    assert "mimecast_queue_messages" in wait_for(scraped)


def test_cli_serves_https_with_basic_auth(
    tmp_path: Path, pki: Pki, live_sim: SimulatorServer
) -> None:
    config = write_exporter_config(tmp_path, live_sim.url)
    web = web_config(tmp_path, pki, TLS + users(alice=as_2y(ALICE_HASH)))
    daemon = Daemon(
        "--config.file", str(config), "--web.config.file", str(web), "--log.level", "debug"
    )
    try:
        assert_https_with_basic_auth(daemon, pki, up_account="acme")
    finally:
        code, out, err = daemon.stop()
    assert code == 0, err
    assert "web configuration loaded" in err and "tls=true" in err
    for secret in (ALICE_PW, ALICE_HASH, as_2y(ALICE_HASH), ALICE_HASH[7:]):
        assert secret not in out + err


def test_demo_serves_https_with_basic_auth(tmp_path: Path, pki: Pki) -> None:
    web = web_config(tmp_path, pki, TLS + users(alice=ALICE_HASH))
    daemon = Daemon("--demo", "--web.config.file", str(web))
    try:
        assert_https_with_basic_auth(daemon, pki, up_account="demo-hmac")
    finally:
        code, out, err = daemon.stop()
    assert code == 0, err
    assert "https://" in out  # the demo banner prints the TLS URL


def test_an_empty_web_config_file_flag_means_plain_http(
    tmp_path: Path, live_sim: SimulatorServer
) -> None:
    """--web.config.file="" is plain HTTP, as for Go exporters (not a directory to read)."""
    config = write_exporter_config(tmp_path, live_sim.url)
    daemon = Daemon("--config.file", str(config), "--web.config.file=")
    try:
        url = daemon.wait_for_url()
        assert url.startswith("http://")
        assert requests.get(url + "/metrics", timeout=5).status_code == 200
    finally:
        code, _, err = daemon.stop()
    assert code == 0, err
