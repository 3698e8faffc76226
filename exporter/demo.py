"""``--demo``: the exporter against the embedded simulator, no Mimecast account needed.

Two accounts, one per API generation, whose simulated queues already hold
messages on every route; polled every 5 s so that the numbers move.
"""

from __future__ import annotations

from exporter.config import (
    AccountConfig,
    Config,
    HmacCredentials,
    OAuth2Credentials,
    PollConfig,
    Secret,
)
from exporter.listen import parse_listen_address
from exporter.simulator.server import SimulatorServer
from exporter.web import MAX_CONNECTIONS
from exporter.webwatch import WebConfigWatcher

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
            ),
        ),
    )


def run_demo(
    listen_address: str,
    telemetry_path: str,
    web_config: WebConfigWatcher | None = None,
    max_connections: int = MAX_CONNECTIONS,
) -> int:
    from exporter.cli import serve  # the CLI owns process life: signals, exit codes

    simulator = SimulatorServer("127.0.0.1", 0, scenario=DEMO_SCENARIO, speed=DEMO_SPEED)
    simulator.start()
    try:
        config = demo_config(simulator)

        host, _ = parse_listen_address(listen_address)
        everywhere = host in ("", "0.0.0.0", "::")

        def announce(url: str) -> None:
            reach = (
                "all interfaces: other hosts can reach it too"
                if everywhere
                else "this address only"
            )
            print(
                "\nmimecast-exporter demo: polling a simulated Mimecast every 5s\n"
                f"  listening on:  {listen_address} ({reach})\n"
                f"  metrics:       {url}{telemetry_path}\n"
                f"  status page:   {url}/\n"
                f"  simulator:     {simulator.url} (scenario '{DEMO_SCENARIO}', "
                f"{DEMO_SPEED:g}x speed)\n"
                "  accounts:      demo-oauth2 (API 2.0), demo-hmac (API 1.0)\n"
                "Try: curl -s " + url + telemetry_path + " | grep '^mimecast_queue_messages'\n"
                "Press Ctrl-C to stop.\n",
                flush=True,
            )

        return serve(
            config,
            listen_address,
            telemetry_path,
            on_ready=announce,
            web_config=web_config,
            max_connections=max_connections,
        )
    finally:
        simulator.stop()
