"""Two hundred simulated tenants, as a service provider runs them: one exporter,
then three replicas splitting them with --accounts.shard, against one simulator."""

from __future__ import annotations

import base64
import re

import pytest
import requests
import yaml

from mimecast_exporter.shard import shard_of
from mimecast_exporter.simulator.server import SimulatorServer
from tests.processes import Daemon, wait_for

TENANTS = 200


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """A simulator with 200 tenants (half API 2.0, half API 1.0) and their config."""
    tmp = tmp_path_factory.mktemp("fleet")
    sim = SimulatorServer("127.0.0.1", 0, scenario="demo", rate_limit_quota=10**6).start()
    accounts = []
    for i in range(TENANTS):
        name = f"tenant-{i:03d}"
        if i % 2:
            sim.add_oauth2_client(f"client-{i}", f"secret-{i}", name=name)
            creds = {"oauth2": {"client_id": f"client-{i}", "client_secret": f"secret-{i}"}}
        else:
            secret = base64.b64encode(f"secret-key-{i}".encode()).decode()
            sim.add_hmac_key(f"app-{i}", f"appkey-{i}", f"access-{i}", secret, name=name)
            creds = {
                "hmac": {
                    "app_id": f"app-{i}",
                    "app_key": f"appkey-{i}",
                    "access_key": f"access-{i}",
                    "secret_key": secret,
                }
            }
        accounts.append({"name": name, "base_url": sim.url, **creds})
    config = tmp / "config.yml"
    config.write_text(
        yaml.safe_dump({"poll": {"interval": "20s", "concurrency": 8}, "accounts": accounts})
    )
    yield sim, config
    sim.stop()


def up_accounts(url: str) -> dict[str, float]:
    text = requests.get(url + "/metrics", timeout=30).text
    return {
        m[0]: float(m[1])
        for m in re.findall(r'^mimecast_up\{account="([^"]+)"\} (\S+)$', text, re.M)
    }


def test_one_exporter_polls_two_hundred_tenants(fleet):
    sim, config = fleet
    daemon = Daemon("--config.file", str(config))
    try:
        url = daemon.wait_for_url()
        wait_for(lambda: requests.get(url + "/-/ready", timeout=10).status_code == 200, timeout=120)
        up = up_accounts(url)
        assert len(up) == TENANTS and set(up.values()) == {1.0}
        text = requests.get(url + "/metrics", timeout=30).text
        assert len(re.findall(r"^mimecast_queue_scan_complete\{", text, re.M)) == 2 * TENANTS
    finally:
        daemon.stop()


def test_three_replicas_split_the_tenants_without_overlap(fleet):
    sim, config = fleet
    replicas = [Daemon("--config.file", str(config), f"--accounts.shard={i}/3") for i in range(3)]
    try:
        urls = [r.wait_for_url() for r in replicas]
        for url in urls:
            wait_for(lambda u=url: requests.get(u + "/-/ready", timeout=10).status_code == 200, 120)
        seen = [up_accounts(url) for url in urls]
        for index, accounts in enumerate(seen):
            assert accounts, "every replica has tenants"
            assert all(shard_of(name, 3) == index for name in accounts)
            assert set(accounts.values()) == {1.0}
        names = [name for accounts in seen for name in accounts]
        assert len(names) == len(set(names)) == TENANTS  # each tenant once, none lost
    finally:
        for replica in replicas:
            replica.stop()
