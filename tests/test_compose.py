"""docker-compose.yml (the try-out stack) and its Prometheus configuration.

docker-compose validates the file (no Docker engine needed for ``config``);
the tests then check that everything the stack mounts exists in the
repository, and promtool checks the Prometheus configuration laid out as the
container sees it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.processes import debian_binary

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
PROMETHEUS_CONFIG = ROOT / "deploy" / "compose" / "prometheus.yml"


def binary(name: str, package: str) -> str:
    return debian_binary(name, package)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def prometheus_config() -> dict:
    return yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))


def bind_mounts(service: dict) -> list[tuple[str, str]]:
    """(host path, container path) of the service's bind mounts (short or long syntax)."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            host, _, rest = volume.partition(":")
            target = rest.split(":")[0]
        else:
            if volume.get("type") != "bind":
                continue
            host, target = volume["source"], volume["target"]
        if host.startswith((".", "/")):  # a named volume has neither
            mounts.append((host, target))
    return mounts


def test_docker_compose_accepts_the_file():
    docker_compose = binary("docker-compose", "docker-compose")
    result = subprocess.run(
        [docker_compose, "-f", str(COMPOSE_FILE), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Nothing to warn about either (unset variables, deprecated keys, ...).
    assert "WARN" not in result.stderr, result.stderr


def test_services_and_ports(compose):
    services = compose["services"]
    assert set(services) >= {"exporter", "prometheus", "grafana"}
    exporter = services["exporter"]
    assert exporter["build"] in (".", {"context": "."})
    command = exporter["command"]
    command = command.split() if isinstance(command, str) else command
    assert "--demo" in command
    assert "--web.listen-address=:9836" in command
    expected_ports = {"exporter": 9836, "prometheus": 9090, "grafana": 3000}
    for name, port in expected_ports.items():
        assert any(str(p).endswith(f":{port}") for p in services[name]["ports"]), name


def test_images_are_pinned(compose):
    for name in ("prometheus", "grafana"):
        image = compose["services"][name]["image"]
        repository, _, tag = image.partition(":")
        assert tag and tag != "latest" and tag[0] in "v0123456789", image
        assert tag.count(".") == 2, f"{image}: pin a full version"
    assert compose["services"]["prometheus"]["image"].startswith("prom/prometheus:")
    grafana = compose["services"]["grafana"]["image"]
    assert grafana.startswith("grafana/grafana:")
    assert grafana.split(":")[1].split(".")[0] in ("10", "11")


def test_every_bind_mounted_host_path_exists(compose):
    mounted = 0
    for name, service in compose["services"].items():
        for host, _target in bind_mounts(service):
            assert not host.startswith("/"), f"{name}: {host} must be relative to the repository"
            assert (ROOT / host).exists(), f"{name} mounts {host}, which does not exist"
            mounted += 1
    assert mounted >= 4


def test_grafana_mounts_provisioning_and_dashboards_and_allows_anonymous_viewers(compose):
    grafana = compose["services"]["grafana"]
    mounts = dict(bind_mounts(grafana))
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    assert mounts["./grafana/dashboards"] == "/var/lib/grafana/dashboards"
    environment = grafana["environment"]
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    assert str(environment["GF_AUTH_ANONYMOUS_ENABLED"]).lower() == "true"
    assert environment["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    # The dashboard provider reads the directory the dashboards are mounted at.
    providers = yaml.safe_load(
        (ROOT / "grafana/provisioning/dashboards/mimecast.yml").read_text(encoding="utf-8")
    )["providers"]
    paths = {provider["options"]["path"] for provider in providers}
    assert "/var/lib/grafana/dashboards" in paths
    home = environment.get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        assert home.startswith("/var/lib/grafana/dashboards/")
        assert (ROOT / "grafana/dashboards" / Path(home).name).exists(), home
    datasources = yaml.safe_load(
        (ROOT / "grafana/provisioning/datasources/prometheus.yml").read_text(encoding="utf-8")
    )["datasources"]
    assert any("prometheus:9090" in source.get("url", "") for source in datasources)


def test_prometheus_rule_files_are_mounted_and_the_job_scrapes_the_exporter(
    compose, prometheus_config
):
    prometheus = compose["services"]["prometheus"]
    mounts = {target: host for host, target in bind_mounts(prometheus)}
    assert mounts["/etc/prometheus/prometheus.yml"] == "./deploy/compose/prometheus.yml"
    rule_files = prometheus_config["rule_files"]
    assert rule_files
    for rule_file in rule_files:
        assert rule_file in mounts, f"rule file {rule_file} is not mounted into the container"
    assert mounts["/etc/prometheus/alerts.yml"] == "./prometheus/alerts.yml"

    assert prometheus_config["global"]["scrape_interval"] == "15s"
    (job,) = [j for j in prometheus_config["scrape_configs"] if "mimecast" in j["job_name"]]
    targets = [t for static in job["static_configs"] for t in static["targets"]]
    assert targets == ["exporter:9836"]


def test_promtool_checks_the_config_as_mounted(compose, tmp_path):
    """promtool resolves rule_files relative to the config: lay them out as mounted."""
    promtool = binary("promtool", "prometheus")
    prometheus = compose["services"]["prometheus"]
    mounts = {target: host for host, target in bind_mounts(prometheus)}
    root = tmp_path / "container"
    for target, host in mounts.items():
        destination = root / target.lstrip("/")
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / host, destination)
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    config["rule_files"] = [str(root / path.lstrip("/")) for path in config["rule_files"]]
    checked = root / "etc/prometheus/prometheus-checked.yml"
    checked.write_text(yaml.safe_dump(config), encoding="utf-8")

    result = subprocess.run(
        [promtool, "check", "config", str(checked)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "SUCCESS" in output
    assert "rules found" in output, "the mounted alerting rules were loaded"
