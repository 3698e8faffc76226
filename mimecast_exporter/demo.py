"""``--demo``: the exporter against the embedded simulator, no Mimecast account needed.

Two accounts, one per API generation, whose simulated queues already hold
messages on every route; polled every 5 s so that the numbers move. This
module builds the simulator and the configuration; :mod:`mimecast_exporter.cli` serves
them like any other configuration (and this module never imports it).
"""

from __future__ import annotations

from dataclasses import dataclass

from mimecast_exporter.config import (
    AccountConfig,
    Config,
    HmacCredentials,
    OAuth2Credentials,
    PollConfig,
    Secret,
)
from mimecast_exporter.simulator.server import SimulatorServer
from mimecast_exporter.web.listen import parse_listen_address

DEMO_SCENARIO = "demo"
# The model runs 30x faster than the wall clock, so retries and arrivals show
# between two 5 s polls.
DEMO_SPEED = 30.0
DEMO_POLL = PollConfig(interval=5.0, timeout=4.0, stale_after=60.0)


def demo_config(simulator: SimulatorServer) -> Config:
    """Accounts for the simulator's two built-in tenants."""
    creds = simulator.default_credentials()
    oauth2, hmac = creds["oauth2"], creds["hmac"]
    return Config(
        poll=DEMO_POLL,
        accounts=(
            AccountConfig(
                "demo-oauth2",
                simulator.url,
                OAuth2Credentials(oauth2["client_id"], Secret(oauth2["client_secret"])),
                # The demo shows everything: made-up mail has nothing to hide.
                top_domains=5,
                expose_message_details=True,
            ),
            AccountConfig(
                "demo-hmac",
                simulator.url,
                HmacCredentials(
                    hmac["app_id"],
                    Secret(hmac["app_key"]),
                    Secret(hmac["access_key"]),
                    Secret(hmac["secret_key"]),
                ),
                top_domains=5,
            ),
        ),
    )


@dataclass
class Demo:
    """The running simulator and the configuration that polls it; the CLI serves it."""

    simulator: SimulatorServer
    config: Config

    def banner(self, url: str, listen_address: str, telemetry_path: str) -> str:
        """What to print once the exporter listens at ``url``."""
        host, _ = parse_listen_address(listen_address)
        reach = (
            "all interfaces: other hosts can reach it too"
            if host in ("", "0.0.0.0", "::")
            else "this address only"
        )
        return (
            "\nmimecast-exporter demo: polling a simulated Mimecast every 5s\n"
            f"  listening on:  {listen_address} ({reach})\n"
            f"  metrics:       {url}{telemetry_path}\n"
            f"  status page:   {url}/\n"
            f"  simulator:     {self.simulator.url} (scenario '{DEMO_SCENARIO}', "
            f"{DEMO_SPEED:g}x speed)\n"
            "  accounts:      demo-oauth2 (API 2.0), demo-hmac (API 1.0)\n"
            "Try: curl -s " + url + telemetry_path + " | grep '^mimecast_queue_messages'\n"
            "Press Ctrl-C to stop.\n"
        )

    def stop(self) -> None:
        self.simulator.stop()


def start_demo() -> Demo:
    """Start the simulator; the configuration polls its two built-in tenants."""
    simulator = SimulatorServer("127.0.0.1", 0, scenario=DEMO_SCENARIO, speed=DEMO_SPEED)
    simulator.start()
    return Demo(simulator, demo_config(simulator))
