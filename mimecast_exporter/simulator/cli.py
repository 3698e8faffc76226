"""``mimecast-simulator``: run the Mimecast API stand-in until SIGINT/SIGTERM.

Only parses flags, prints where to connect and with which credentials (plus an
``accounts:`` snippet for the exporter's config), and serves. Listening on
anything but loopback is refused: the control endpoints are unauthenticated.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import re
import signal
import sys
from collections.abc import Sequence
from typing import TextIO

from mimecast_exporter.build import build
from mimecast_exporter.logs import survive_any_locale
from mimecast_exporter.signals import Signals
from mimecast_exporter.simulator.api import Quirks
from mimecast_exporter.simulator.model import Churn
from mimecast_exporter.simulator.scenarios import SCENARIOS
from mimecast_exporter.simulator.server import (
    DEFAULT_HMAC_TENANT,
    DEFAULT_OAUTH2_TENANT,
    SimulatorServer,
)

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$")


def parse_duration(text: str) -> float:
    """``"30m"``, ``"90s"``, ``"1.5h"`` or plain seconds -> seconds."""
    m = _DURATION_RE.match(text.strip())
    if not m or float(m.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"not a positive duration: {text!r} (e.g. 30m, 90s, 1h)")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def parse_rate_limit(text: str) -> tuple[int, float]:
    """``"1000/60s"`` -> (quota, window seconds)."""
    quota, sep, window = text.partition("/")
    if not sep or not quota.strip().isdigit() or int(quota) < 1:
        raise argparse.ArgumentTypeError(f"not a rate limit: {text!r} (e.g. 1000/60s)")
    return int(quota), parse_duration(window)


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) -> (host, port); the host must be loopback."""
    m = re.match(r"^(?:\[([^\]]+)\]|([^:]*)):(\d+)$", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"not HOST:PORT: {text!r}")
    host, port = m.group(1) or m.group(2) or "", int(m.group(3))
    if port > 65535:
        raise argparse.ArgumentTypeError(f"port out of range: {port}")
    if not _is_loopback(host):
        raise argparse.ArgumentTypeError(
            f"refusing to listen on {host or 'all interfaces'!s}: the simulator's control "
            "endpoints are unauthenticated, so it only listens on loopback "
            "(127.0.0.1, ::1 or localhost)"
        )
    return host, port


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _parser() -> argparse.ArgumentParser:
    scenarios = "; ".join(f"{name}: {SCENARIOS[name].description}" for name in sorted(SCENARIOS))
    p = argparse.ArgumentParser(
        prog="mimecast-simulator",
        description="A local Mimecast API stand-in (find-processing-messages, API 1.0 and 2.0).",
        formatter_class=argparse.RawDescriptionHelpFormatter,  # --version's lines as written
    )
    p.add_argument(
        "--version",
        action="version",
        version=build().describe("mimecast-simulator"),
        help="show the version, revision, build date and Python version, and exit",
    )
    p.add_argument(
        "--listen",
        type=parse_listen,
        default=("127.0.0.1", 8080),
        metavar="HOST:PORT",
        help="loopback address to serve on; port 0 picks a free one (default: 127.0.0.1:8080)",
    )
    p.add_argument(
        "--scenario",
        choices=sorted(SCENARIOS),
        default="steady",
        help=f"what the queues hold and how they move (default: steady). {scenarios}",
    )
    p.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="model seconds per wall-clock second: 60 plays an hour in a minute (default: 1)",
    )
    p.add_argument(
        "--token-lifetime",
        type=parse_duration,
        default=1800.0,
        metavar="DURATION",
        help="expires_in of the OAuth 2.0 tokens it issues, e.g. 30m or 30s (default: 30m)",
    )
    p.add_argument(
        "--page-size-cap",
        type=int,
        default=100,
        metavar="N",
        help="most messages per page, whatever pageSize asks (default: 100)",
    )
    p.add_argument(
        "--rate-limit",
        type=parse_rate_limit,
        default=(1000, 60.0),
        metavar="N/WINDOW",
        help="requests per window before 429, per credentials, e.g. 1000/60s (default: 1000/60s)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=1,
        help="seed of the scenario's random arrivals: the same seed, the same queue (default: 1)",
    )
    p.add_argument(
        "--backlog-messages",
        type=int,
        default=None,
        metavar="N",
        help="size of the stuck processing queue (scenario backlog: 1000000)",
    )
    p.add_argument(
        "--ignore-sort-order",
        action="store_true",
        help="answer newest first whatever sortOrder asks, as a server that ignores it",
    )
    p.add_argument(
        "--ignore-filter-by",
        action="store_true",
        help="answer every route whatever filterBy asks, as a server that ignores it",
    )
    p.add_argument(
        "--no-total-count",
        action="store_true",
        help="send no meta.pagination.totalCount, as a server that omits it",
    )
    p.add_argument(
        "--churn",
        type=_churn,
        default=Churn(),
        metavar="LEAVE,ARRIVE",
        help="before each find request, LEAVE messages leave the queue from anywhere and "
        "ARRIVE new ones arrive: a queue that moves while it is read (default: 0,0)",
    )
    return p


def _churn(text: str) -> Churn:
    try:
        leave, arrive = (int(part) for part in text.split(","))
        return Churn.from_dict({"leave": leave, "arrive": arrive})
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: LEAVE,ARRIVE, two whole numbers") from exc


def describe(sim: SimulatorServer, out: TextIO) -> None:
    """Print the URL, the accepted credentials and an exporter ``accounts:`` snippet."""
    creds = sim.default_credentials()
    o, h = creds["oauth2"], creds["hmac"]
    q = json.dumps  # a JSON string is a valid YAML double-quoted scalar, whatever it holds
    print(
        f"""Mimecast API simulator listening on {sim.url}
scenario {sim.scenario.name} ({sim.scenario.description}), speed {sim.model_clock.speed:g}x
For loopback use only: the /_simulator/* control endpoints are unauthenticated.

API 2.0 (OAuth 2.0 client credentials):
  client_id: {o["client_id"]}
  client_secret: {o["client_secret"]}
API 1.0 (HMAC-SHA1):
  app_id: {h["app_id"]}
  app_key: {h["app_key"]}
  access_key: {h["access_key"]}
  secret_key: {h["secret_key"]}

Exporter configuration:
accounts:
  - name: {q(DEFAULT_OAUTH2_TENANT)}
    base_url: {q(sim.url)}
    oauth2:
      client_id: {q(o["client_id"])}
      client_secret: {q(o["client_secret"])}
  - name: {q(DEFAULT_HMAC_TENANT)}
    base_url: {q(sim.url)}
    hmac:
      app_id: {q(h["app_id"])}
      app_key: {q(h["app_key"])}
      access_key: {q(h["access_key"])}
      secret_key: {q(h["secret_key"])}
""",
        file=out,
        flush=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    survive_any_locale()
    args = _parser().parse_args(argv)  # exits 2 on a bad flag, e.g. a non-loopback --listen
    if args.speed <= 0:
        print("mimecast-simulator: --speed must be positive", file=sys.stderr)
        return 2
    if args.page_size_cap < 1:
        print("mimecast-simulator: --page-size-cap must be at least 1", file=sys.stderr)
        return 2
    if args.backlog_messages is not None and args.backlog_messages < 0:
        print("mimecast-simulator: --backlog-messages must be at least 0", file=sys.stderr)
        return 2
    host, port = args.listen
    quota, window = args.rate_limit
    sim = SimulatorServer(
        host,
        port,
        scenario=args.scenario,
        speed=args.speed,
        token_lifetime=args.token_lifetime,
        page_size_cap=args.page_size_cap,
        rate_limit_quota=quota,
        rate_limit_window=window,
        seed=args.seed,
        backlog_messages=args.backlog_messages,
        quirks=Quirks(
            ignore_sort_order=args.ignore_sort_order,
            ignore_filter_by=args.ignore_filter_by,
            omit_total_count=args.no_total_count,
        ),
    )
    sim.churn = args.churn
    try:
        sim.start()
    except OSError as exc:
        print(f"mimecast-simulator: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    with Signals((signal.SIGINT, signal.SIGTERM)) as signals:
        describe(sim, sys.stdout)
        try:
            signals.wait()  # until either comes
        finally:
            sim.stop()
    print("mimecast-simulator: stopped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
