"""The command line: flags -> config -> wire the pieces. Nothing else lives here."""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence

from prometheus_client import generate_latest

from mimecast_exporter import __version__
from mimecast_exporter.app import Exporter
from mimecast_exporter.build import build
from mimecast_exporter.clock import SystemClock
from mimecast_exporter.config import Config, ConfigError, describe, load_config
from mimecast_exporter.logs import LEVELS, add_secrets, configure_logging, survive_any_locale
from mimecast_exporter.shard import ALL, Shard
from mimecast_exporter.signals import Signals
from mimecast_exporter.web.config import WebConfigError
from mimecast_exporter.web.connections import raise_open_files_limit
from mimecast_exporter.web.server import MAX_CONNECTIONS
from mimecast_exporter.web.watch import WebConfigWatcher

log = logging.getLogger("mimecast_exporter")
# A reload waits until SIGHUPs have stopped for this long (at most the max):
# a storm of them, from a config management run or a loop, is one reload.
RELOAD_QUIET_SECONDS = 0.2
RELOAD_SETTLE_MAX_SECONDS = 2.0

EXIT_OK, EXIT_DOWN, EXIT_CONFIG = 0, 1, 2
# SIGTERM and SIGINT stop; SIGHUP asks for a reload; SIGUSR1 is caught and
# ignored (its default action would end the process without a word).
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
CAUGHT_SIGNALS = (*STOP_SIGNALS, signal.SIGHUP, signal.SIGUSR1)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mimecast-exporter",
        description="Prometheus exporter for Mimecast's message processing queue.",
        # Raw: --version's lines and the epilog's are kept as written.
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Signals: SIGHUP re-reads --config.file and the secret files it names, and\n"
        "checks --web.config.file, without a restart (an invalid file is refused and\n"
        "the running configuration stays); check a file first with --config.check.\n"
        "SIGTERM and SIGINT stop cleanly.",
    )
    parser.add_argument(
        "--config.file",
        dest="config_file",
        default="config.yml",
        help="YAML configuration file (default: %(default)s)",
    )
    parser.add_argument(
        "--config.check",
        dest="config_check",
        action="store_true",
        help="validate the configuration, print a summary and exit (0 or 2) (default: off)",
    )
    parser.add_argument(
        "--accounts.shard",
        dest="shard",
        type=_shard,
        default=ALL,
        metavar="i/n",
        help="poll only shard i (from 0) of n of the configured accounts, by a stable hash "
        "of their names: run n replicas with the same configuration, 0/n to n-1/n "
        "(default: 0/1, every account)",
    )
    parser.add_argument(
        "--web.listen-address",
        dest="listen_address",
        default=None,
        help="address to serve metrics on (default: :9836, all interfaces; "
        "with --demo 127.0.0.1:9836)",
    )
    parser.add_argument(
        "--web.telemetry-path",
        dest="telemetry_path",
        default="/metrics",
        help="path under which to expose metrics (default: %(default)s)",
    )
    parser.add_argument(
        "--web.config.file",
        dest="web_config_file",
        default=None,
        help="exporter-toolkit web configuration file (TLS, basic auth); "
        "re-read when it changes (default: none, plain HTTP)",
    )
    parser.add_argument(
        "--web.dashboard-url",
        dest="dashboard_url",
        default=None,
        help="URL of your Grafana dashboard, linked from the status page at / "
        "(default: none; the page links to the dashboard's JSON to import)",
    )
    parser.add_argument(
        "--web.max-connections",
        dest="max_connections",
        type=_positive_int,
        default=MAX_CONNECTIONS,
        help="most HTTP connections open at once; when full, the oldest idle one "
        "is dropped for a new one (default: %(default)s)",
    )
    parser.add_argument(
        "--log.level",
        dest="log_level",
        default="info",
        choices=LEVELS,
        help="only log messages with this severity or above (default: %(default)s)",
    )
    parser.add_argument(
        "--log.format",
        dest="log_format",
        default="logfmt",
        choices=("logfmt", "json"),
        help="log line format (default: %(default)s)",
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="poll once, print the metrics to stdout, exit 1 if an account is down (default: off)",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="run against the embedded Mimecast simulator; no account needed (default: off)",
    )
    parser.add_argument(
        "--version",
        action="version",
        version=build().describe("mimecast-exporter"),
        help="show the version, revision, build date and Python version, and exit",
    )
    return parser


def _shard(text: str) -> Shard:
    try:
        return Shard.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _raise_open_files_limit() -> None:
    raised = raise_open_files_limit()
    if raised is not None:
        log.debug("open files limit raised", extra={"from": raised[0], "to": raised[1]})


DEFAULT_LISTEN_ADDRESS = ":9836"
# The demo serves made-up data to whoever asks: only this host, unless told.
DEMO_LISTEN_ADDRESS = "127.0.0.1:9836"


def listen_address(args: argparse.Namespace) -> str:
    """--web.listen-address as given, else the default for the mode."""
    if args.listen_address is not None:
        return str(args.listen_address)
    return DEMO_LISTEN_ADDRESS if args.demo else DEFAULT_LISTEN_ADDRESS


def main(argv: Sequence[str] | None = None) -> int:
    survive_any_locale()
    args = build_parser().parse_args(argv)
    args.listen_address = listen_address(args)
    if not args.telemetry_path.startswith("/"):
        print("error: --web.telemetry-path must start with '/'", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(args.log_level, args.log_format)
    web_config: WebConfigWatcher | None = None
    web_error: WebConfigError | None = None
    # --web.config.file="" is plain HTTP, as for Go exporters.
    if args.web_config_file and not args.once:
        # Checked before anything starts; --once scrapes nothing, so it needs none.
        try:
            web_config = WebConfigWatcher(args.web_config_file)
        except WebConfigError as error:
            head = f"error: invalid web configuration: {error.file}"
            print(_invalid(head, error), file=sys.stderr)
            web_error = error  # the configuration file's errors are told too
    if web_error is not None and args.demo:
        return EXIT_CONFIG
    if not args.once:
        _raise_open_files_limit()  # as Go programs do: idle clients must not starve polls
    if args.demo:
        from mimecast_exporter.demo import (
            start_demo,  # the simulator is only imported when asked for
        )

        demo = start_demo()
        try:
            return serve(
                demo.config,
                args.listen_address,
                args.telemetry_path,
                on_ready=lambda url: print(
                    demo.banner(url, args.listen_address, args.telemetry_path), flush=True
                ),
                web_config=web_config,
                max_connections=args.max_connections,
                dashboard_url=args.dashboard_url,
            )
        finally:
            demo.stop()

    try:
        config = load_config(args.config_file)
    except ConfigError as error:
        print(
            _invalid(f"error: invalid configuration in {args.config_file}", error), file=sys.stderr
        )
        return EXIT_CONFIG
    if web_error is not None:
        return EXIT_CONFIG
    add_secrets(config.secrets())
    configured = len(config.accounts)
    config = args.shard.select(config)
    if args.config_check:
        print(describe(config))
        if args.shard != ALL:
            print(_shard_line(args.shard, config, configured))
        print(f"configuration file {args.config_file} is valid")
        if args.web_config_file:
            print(f"web configuration file {args.web_config_file} is valid")
        return EXIT_OK
    if args.once:
        return run_once(config)
    return serve(
        config,
        args.listen_address,
        args.telemetry_path,
        web_config=web_config,
        max_connections=args.max_connections,
        config_file=args.config_file,
        shard=args.shard,
        dashboard_url=args.dashboard_url,
    )


def _invalid(head: str, error: ConfigError) -> str:
    """Every problem of a file, one line each, for stderr."""
    lines = [f"{one.field_path}: {one.problem}" if one.field_path else one.problem
             for one in error.errors]  # fmt: skip
    if len(lines) == 1:
        return f"{head}: {lines[0]}"
    return "\n".join([f"{head}: {len(lines)} problems", *(f"  {line}" for line in lines)])


def _shard_line(shard: Shard, config: Config, configured: int) -> str:
    names = ", ".join(a.name for a in config.accounts) or "none"
    return f"shard {shard}: polls {len(config.accounts)} of {configured} accounts ({names})"


def run_once(config: Config) -> int:
    exporter = Exporter(config, SystemClock(), process_metrics=False)
    try:
        exporter.poller.run_cycle()
        sys.stdout.write(generate_latest(exporter.registry).decode("utf-8"))
        sys.stdout.flush()
        return EXIT_OK if exporter.all_up() else EXIT_DOWN
    finally:
        exporter.poller.stop()


def serve(
    config: Config,
    listen_address: str,
    telemetry_path: str,
    on_ready: Callable[[str], None] | None = None,
    web_config: WebConfigWatcher | None = None,
    max_connections: int = MAX_CONNECTIONS,
    config_file: str | None = None,
    shard: Shard = ALL,
    dashboard_url: str | None = None,
) -> int:
    """Run until SIGTERM or SIGINT; exit 0 on a clean stop.

    ``web_config`` (``--web.config.file``) adds TLS and basic auth to the endpoints.
    SIGHUP re-reads ``config_file`` (and the secret files it names) and, if it
    is valid, runs it from then on; an invalid one is refused with a log line
    and the running configuration stays. ``config`` is already ``shard``'s part
    of the file; a reloaded file is cut the same way.
    """
    # Before anything starts or says it has: a signal from then on is caught.
    with Signals(CAUGHT_SIGNALS) as signals:
        stopping = threading.Event()
        add_secrets(config.secrets())
        exporter = Exporter(config, SystemClock(stopping))
        try:
            web = exporter.serve(
                listen_address, telemetry_path, web_config, max_connections, dashboard_url
            )
        except (OSError, ValueError) as error:
            log.error(f"cannot listen on {listen_address}: {error}")
            return EXIT_DOWN
        log.info(
            "exporter started",
            extra={
                "version": __version__,
                "revision": build().revision,
                "listen": web.url + telemetry_path,
                "accounts": ",".join(a.name for a in config.accounts) or "none",
                "shard": str(shard),
            },
        )
        if not config.accounts:
            log.warning(
                f"shard {shard} has no accounts to poll: every configured account hashes to"
                " another shard (fewer accounts than replicas?)"
            )
        _freeze_start_up_objects()
        if on_ready is not None:
            on_ready(web.url)
        while True:
            came = signals.wait()
            if signal.SIGUSR1 in came:
                log.debug("SIGUSR1 ignored")
            if came & STOP_SIGNALS:
                break
            if signal.SIGHUP in came:
                if not _settle(signals):
                    break
                _reload(exporter, config_file, web_config, shard)
        log.info("shutting down")
        stopping.set()  # wakes every back-off and rate-limit wait at once
        exporter.stop()
        return EXIT_OK


def _freeze_start_up_objects() -> None:
    """Leave what start-up built (modules, classes, configuration) out of the
    cyclic garbage collector's full passes: they live as long as the process,
    and walking them made the slowest scrapes of hundreds of accounts twice as
    slow (make bench). Objects made later are collected as usual, and reference
    counting still frees frozen ones."""
    gc.collect()
    gc.freeze()
    log.debug(
        "start-up objects frozen for the garbage collector",
        extra={"objects": gc.get_freeze_count()},
    )


def _reload(
    exporter: Exporter,
    config_file: str | None,
    web_config: WebConfigWatcher | None,
    shard: Shard = ALL,
) -> None:
    if web_config is not None:
        web_config.check_now()  # as when its files change; keeps the old one if invalid
    if config_file is None:
        log.info("SIGHUP: no configuration file to re-read (demo mode)")
        return
    try:
        config = load_config(config_file)
    except ConfigError as error:
        exporter.reload_failed()
        log.error(
            "configuration reload failed, the running configuration stays: "
            + "; ".join(str(one) for one in error.errors),
            extra={"file": config_file, "problems": len(error.errors)},
        )
        return
    add_secrets(config.secrets())
    config = shard.select(config)
    if config == exporter.config:
        # A SIGHUP for nothing (or one of a storm): no new token, no extra poll.
        exporter.reload_unchanged()
        log.info("configuration reloaded: unchanged", extra={"file": config_file})
        return
    before = {a.name: a for a in exporter.config.accounts}
    after = {a.name: a for a in config.accounts}
    exporter.reload(config)
    log.info(
        "configuration reloaded",
        extra={
            "file": config_file,
            "added": ",".join(sorted(after.keys() - before.keys())) or "none",
            "removed": ",".join(sorted(before.keys() - after.keys())) or "none",
            "changed": ",".join(
                sorted(n for n in after.keys() & before.keys() if after[n] != before[n])
            )
            or "none",
        },
    )


def _settle(signals: Signals) -> bool:
    """Wait until SIGHUPs stop coming for RELOAD_QUIET_SECONDS (at most
    RELOAD_SETTLE_MAX_SECONDS): a storm of them is one reload. False when a
    stop came meanwhile."""
    end = time.monotonic() + RELOAD_SETTLE_MAX_SECONDS
    while (quiet := min(RELOAD_QUIET_SECONDS, end - time.monotonic())) > 0:
        came = signals.wait(quiet)
        if came & STOP_SIGNALS:
            return False
        if not came:
            return True
    return True
