"""python -m mimecast_exporter.healthcheck: healthy over plain HTTP, TLS and basic auth;
unhealthy when nothing (or something else) answers. Real servers on loopback."""

from __future__ import annotations

import socket
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from threading import Thread

import bcrypt
import trustme
from prometheus_client import CollectorRegistry

from mimecast_exporter.healthcheck import probe
from mimecast_exporter.web.server import WebServer
from mimecast_exporter.web.watch import WebConfigWatcher
from tests.fakes import ReadyStatus


def _serving(web_config: Path | None = None) -> WebServer:
    watcher = WebConfigWatcher(web_config) if web_config is not None else None
    server = WebServer("127.0.0.1:0", CollectorRegistry(), ReadyStatus(), web_config=watcher)
    server.start()
    return server


def _tls_config(tmp_path: Path, extra: str = "") -> Path:
    ca = trustme.CA()
    ca.issue_cert("exporter.example.com").private_key_and_cert_chain_pem.write_to_path(
        tmp_path / "server.pem"
    )
    path = tmp_path / "web.yml"
    path.write_text("tls_server_config:\n  cert_file: server.pem\n  key_file: server.pem\n" + extra)
    return path


def _check(port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mimecast_exporter.healthcheck", "--port", str(port)],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_plain_http_is_healthy():
    server = _serving()
    try:
        out = _check(server.port)
    finally:
        server.shutdown()
    assert out.returncode == 0 and "healthy" in out.stdout


def test_tls_is_found_and_healthy(tmp_path):
    server = _serving(_tls_config(tmp_path))
    try:
        assert server.url.startswith("https://")
        assert probe("127.0.0.1", server.port, 4.0) == (True, "healthy")
        assert _check(server.port).returncode == 0
    finally:
        server.shutdown()


def test_tls_with_basic_auth_is_healthy(tmp_path):
    hashed = bcrypt.hashpw(b"secret", bcrypt.gensalt(4)).decode()
    server = _serving(_tls_config(tmp_path, f"basic_auth_users:\n  alice: {hashed}\n"))
    try:
        assert probe("127.0.0.1", server.port, 4.0) == (True, "serving, behind basic auth")
    finally:
        server.shutdown()


def test_nothing_listening_is_unhealthy():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = _check(port)
    assert out.returncode == 1 and "no answer" in out.stderr


def test_another_answer_is_unhealthy():
    class Broken(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(401)  # 401, but not the exporter's realm
            self.send_header("WWW-Authenticate", 'Basic realm="something else"')
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Broken)
    Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        healthy, why = probe("127.0.0.1", httpd.server_address[1], 4.0)
    finally:
        httpd.shutdown()
    assert not healthy and "401" in why
