"""The simulator's public face: :class:`SimulatorServer`, and its HTTP plumbing.

It wires the pieces (clock, scenario, tenants, API state) and serves them with
the standard library's threading HTTP server. It is meant for loopback only:
the ``/_simulator/*`` control endpoints are unauthenticated.

Usage::

    with SimulatorServer(scenario="outage", speed=60) as sim:
        creds = sim.default_credentials()
        ...  # point a client at sim.url
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import socket
import ssl
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from mimecast_exporter.simulator.api import Incoming, MimecastApi, Quirks, RecordedRequest
from mimecast_exporter.simulator.clock import Clock, ModelClock, format_mc_date
from mimecast_exporter.simulator.control import PREFIX, handle_control
from mimecast_exporter.simulator.faults import FaultList
from mimecast_exporter.simulator.model import Churn, QueueModel
from mimecast_exporter.simulator.responses import Response, json_response
from mimecast_exporter.simulator.scenarios import get_scenario
from mimecast_exporter.simulator.tenants import DEFAULT_HMAC, DEFAULT_OAUTH2, Tenant

log = logging.getLogger(__name__)

DEFAULT_OAUTH2_TENANT = "sim-oauth2"
DEFAULT_HMAC_TENANT = "sim-hmac"


class SimulatorServer:
    """A Mimecast API stand-in on a local port; see the module docstring."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        scenario: str = "steady",
        speed: float = 1.0,
        clock: Clock = time.time,
        token_lifetime: float = 1800.0,
        page_size_cap: int = 100,
        rate_limit_quota: int = 1000,
        rate_limit_window: float = 60.0,
        max_clock_skew: float = 900.0,
        seed: int = 1,
        ssl_context: ssl.SSLContext | None = None,
        backlog_messages: int | None = None,
        quirks: Quirks | None = None,
    ) -> None:
        self.host = host
        # Serve HTTPS with this server-side context (tests of outbound TLS,
        # CA bundles and HTTPS proxies); plain HTTP when None.
        self.ssl_context = ssl_context
        self.port = port
        self.scenario = get_scenario(scenario)
        if backlog_messages is not None:  # the size of the stuck processing queue
            self.scenario = replace(self.scenario, backlog=backlog_messages)
        self.clock = clock
        self.model_clock = ModelClock(clock, speed)
        self.seed = seed
        if self.scenario.api.rate_limit is not None:  # the scenario's quota wins
            rate_limit_quota, rate_limit_window = self.scenario.api.rate_limit
        self.api = MimecastApi(
            clock=clock,
            token_lifetime=token_lifetime,
            page_size_cap=page_size_cap,
            rate_limit_quota=rate_limit_quota,
            rate_limit_window=rate_limit_window,
            max_clock_skew=max_clock_skew,
            quirks=quirks,
            behaviour=self.scenario.api,
        )
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.add_oauth2_client(**DEFAULT_OAUTH2, name=DEFAULT_OAUTH2_TENANT, domain="acme.example")
        self.add_hmac_key(**DEFAULT_HMAC, name=DEFAULT_HMAC_TENANT, domain="globex.example")

    # --- tenants and state ----------------------------------------------------------------
    def _model(self, name: str, domain: str | None) -> QueueModel:
        domain = domain or re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") + ".example"
        return QueueModel(
            self.scenario, self.model_clock, seed=f"{self.seed}/{name}", domain=domain
        )

    def add_oauth2_client(
        self,
        client_id: str,
        client_secret: str,
        *,
        name: str | None = None,
        domain: str | None = None,
    ) -> Tenant:
        """Accept an API 2.0 client; it gets its own queues, filled per the scenario."""
        name = name or f"oauth2:{client_id}"
        tenant = Tenant(
            name,
            "oauth2",
            self._model(name, domain),
            client_id=client_id,
            client_secret=client_secret,
        )
        return self.api.add_tenant(tenant)

    def add_hmac_key(
        self,
        app_id: str,
        app_key: str,
        access_key: str,
        secret_key: str,
        *,
        name: str | None = None,
        domain: str | None = None,
    ) -> Tenant:
        """Accept an API 1.0 access key binding; ``secret_key`` must be base64."""
        name = name or f"hmac:{access_key}"
        tenant = Tenant(
            name,
            "hmac",
            self._model(name, domain),
            app_id=app_id,
            app_key=app_key,
            access_key=access_key,
            secret_key=secret_key,
        )
        return self.api.add_tenant(tenant)

    @property
    def tenants(self) -> list[Tenant]:
        with self.api.lock:
            return list(self.api.tenants)

    @property
    def quirks(self) -> Quirks:
        """What the simulator ignores of what it is sent; assign to change it."""
        return self.api.quirks

    @quirks.setter
    def quirks(self, value: Quirks) -> None:
        with self.api.lock:
            self.api.quirks = value

    @property
    def churn(self) -> Churn:
        """How the queues move while they are read; assign to change it."""
        return self.api.churn

    @churn.setter
    def churn(self, value: Churn) -> None:
        with self.api.lock:
            self.api.churn = value

    @property
    def faults(self) -> FaultList:
        return self.api.faults

    @property
    def requests(self) -> list[RecordedRequest]:
        with self.api.lock:
            return list(self.api.requests)

    def expire_tokens(self) -> int:
        """Every token issued so far answers 401 ``token_expired`` from now on."""
        with self.api.lock:
            return self.api.tokens.expire_all()

    def default_credentials(self) -> dict[str, dict[str, str]]:
        """The credentials of the two tenants every simulator starts with.

        ``{"oauth2": {client_id, client_secret}, "hmac": {app_id, app_key,
        access_key, secret_key}}``; their tenants are named
        :data:`DEFAULT_OAUTH2_TENANT` and :data:`DEFAULT_HMAC_TENANT`.
        """
        return {
            "oauth2": dict(DEFAULT_OAUTH2),
            "hmac": dict(DEFAULT_HMAC),
        }

    def state(self) -> dict[str, Any]:
        """Scenario, model time and queue sizes per tenant (advances the models to now)."""
        now = self.clock()
        with self.api.lock:
            tenants = [
                {
                    "name": t.name,
                    "kind": t.kind,
                    "binding_expired": t.binding_expired,
                    "queues": t.model.sizes(now),
                }
                for t in self.api.tenants
            ]
        return {
            "scenario": self.scenario.name,
            "speed": self.model_clock.speed,
            "model_time": format_mc_date(self.model_clock.model_time(now)),
            "tenants": tenants,
            "faults": len(self.faults),
            "quirks": dataclasses.asdict(self.quirks),
            "churn": dataclasses.asdict(self.churn),
        }

    # --- serving ----------------------------------------------------------------------------
    def handle(self, req: Incoming) -> Response:
        """Answer one request (the HTTP layer calls this; control requests are not recorded)."""
        if req.path.startswith(PREFIX):
            return handle_control(self, req)
        return self.api.handle(req)

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the simulator is not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{host}:{self.port}"

    def start(self) -> SimulatorServer:
        """Bind and serve in a daemon thread; returns self."""
        if self._httpd is not None:
            return self
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        server_class = type("_Server", (ThreadingHTTPServer,), {"address_family": family})
        httpd = server_class((self.host, self.port), _Handler)
        httpd.daemon_threads = True
        if self.ssl_context is not None:
            httpd.socket = self.ssl_context.wrap_socket(httpd.socket, server_side=True)
        httpd.simulator = self
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self._thread = threading.Thread(
            # A short poll interval makes stop() quick, which matters to test suites
            # that start a simulator per test; the idle cost is negligible.
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.02},
            daemon=True,
        )
        self._thread.name = f"mimecast-simulator:{self.port}"
        self._thread.start()
        log.info("simulator listening on %s", self.url)
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real clients use sessions
    timeout = 30  # drop idle keep-alive connections
    # Headers and body go out in two writes; with Nagle on, a keep-alive client
    # waits for a delayed ACK (~40 ms) on every answer.
    disable_nagle_algorithm = True
    server_version = "MimecastSimulator/1.0"

    def _serve(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self._send(json_response(400, {"error": "bad Content-Length"}))
            return
        body = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0]
        req = Incoming(self.command, path, dict(self.headers.items()), body)
        resp = self.server.simulator.handle(req)  # type: ignore[attr-defined]
        if resp.reset:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._send(resp)

    def _send(self, resp: Response) -> None:
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(resp.body)))
        for name, value in resp.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(resp.body)

    def date_time_string(self, timestamp: float | None = None) -> str:
        # The Date header follows the simulator's clock, not the host's, so a
        # simulator given a skewed clock looks like a server whose clock is off.
        if timestamp is None:
            timestamp = self.server.simulator.clock()  # type: ignore[attr-defined]
        return super().date_time_string(timestamp)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)
