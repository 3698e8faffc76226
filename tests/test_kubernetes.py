"""The example Kubernetes manifests under deploy/kubernetes/.

Core resources are validated offline against the Kubernetes OpenAPI schemas
that kubernetes-validate ships (strict: unknown fields are errors). It has no
schemas for the Prometheus Operator's CRDs, so the ServiceMonitor and the
PrometheusRule are checked structurally here, and the PrometheusRule against
prometheus/alerts.yml, which it is generated from.
"""

from __future__ import annotations

import base64
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mimecast_exporter import __version__
from tests.processes import run_exporter

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "kubernetes"
ALERTS = ROOT / "prometheus" / "alerts.yml"
GENERATOR = ROOT / "scripts" / "generate_prometheusrule.py"
CORE_MANIFESTS = ("deployment.yaml", "service.yaml", "configmap.yaml", "secret.example.yaml")
OPERATOR_MANIFESTS = ("servicemonitor.yaml", "prometheusrule.yaml")
SECRETS_DIR = "/run/secrets/mimecast"
CONFIG_DIR = "/etc/mimecast-exporter"
UID = 65532
# The oldest Kubernetes version the manifests are checked against (besides the
# validator's default, the newest it knows).
OLDEST_KUBERNETES = "1.30.0"


def load(name: str) -> dict:
    documents = [d for d in yaml.safe_load_all((K8S / name).read_text(encoding="utf-8")) if d]
    assert len(documents) == 1, f"{name}: one resource per file"
    return documents[0]


@pytest.fixture(scope="module")
def deployment() -> dict:
    return load("deployment.yaml")


@pytest.fixture(scope="module")
def pod(deployment) -> dict:
    return deployment["spec"]["template"]["spec"]


@pytest.fixture(scope="module")
def container(pod) -> dict:
    (container,) = pod["containers"]
    return container


@pytest.fixture(scope="module")
def service() -> dict:
    return load("service.yaml")


# --- schema validation -----------------------------------------------------------------


def kubernetes_validate() -> str:
    candidate = Path(sys.executable).parent / "kubernetes-validate"
    if not candidate.exists():
        pytest.fail("kubernetes-validate missing: `make test` installs it into .venv (dev extra)")
    return str(candidate)


def shipped_schema_versions() -> set[str]:
    spec = importlib.util.find_spec("kubernetes_validate")
    assert spec is not None and spec.origin is not None
    schemas = Path(spec.origin).parent / "kubernetes-json-schema"
    return {p.name.removeprefix("v").removesuffix("-local-strict") for p in schemas.glob("v*")}


@pytest.mark.parametrize("version", [None, OLDEST_KUBERNETES], ids=["newest", "oldest"])
def test_core_manifests_pass_strict_schema_validation(version):
    command = [kubernetes_validate(), "--strict", "--no-warn"]
    if version is not None:
        if version not in shipped_schema_versions():
            pytest.skip(f"this kubernetes-validate no longer ships schemas for {version}")
        command += ["-k", version]
    result = subprocess.run(
        [*command, *(str(K8S / name) for name in CORE_MANIFESTS)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert output.count("passed") == len(CORE_MANIFESTS), output


def test_kustomization_lists_every_manifest():
    kustomization = load("kustomization.yaml")
    assert kustomization["kind"] == "Kustomization"
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    # The example Secret holds placeholders: `kubectl apply -k` must never
    # overwrite a Secret made by hand with them.
    assert listed == on_disk - {"secret.example.yaml"}
    assert set(CORE_MANIFESTS + OPERATOR_MANIFESTS) == on_disk


def test_all_resources_carry_the_app_name_label():
    for name in CORE_MANIFESTS + OPERATOR_MANIFESTS:
        labels = load(name)["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "mimecast-exporter", name


# --- the Deployment --------------------------------------------------------------------


def test_deployment_runs_the_released_image_with_the_config_file(deployment, container):
    assert deployment["spec"]["replicas"] == 1, "each replica would poll Mimecast on its own"
    # The running release's tag: bumped with __version__.
    assert container["image"] == f"ghcr.io/mimecast-exporter/mimecast-exporter:{__version__}"
    assert f"--config.file={CONFIG_DIR}/config.yml" in container["args"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()


def test_deployment_port_and_probes(container):
    assert container["ports"] == [
        {"name": "http-metrics", "containerPort": 9836, "protocol": "TCP"}
    ]
    # Liveness: the exporter's own probe, which works with TLS and basic auth on
    # (tests/web/test_web_healthcheck.py runs it against both).
    liveness = container["livenessProbe"]["exec"]["command"]
    assert liveness[:3] == ["/opt/venv/bin/python", "-m", "mimecast_exporter.healthcheck"]
    assert liveness[liveness.index("--port") + 1] == "9836"
    readiness = container["readinessProbe"]["httpGet"]
    assert readiness["path"] == "/-/ready"
    assert readiness["port"] in ("http-metrics", 9836)


def test_the_liveness_command_is_the_images(tmp_path):
    """The module the probe runs ships in the wheel the image installs."""
    import mimecast_exporter.healthcheck

    assert (ROOT / "mimecast_exporter" / "healthcheck.py").exists()
    assert mimecast_exporter.healthcheck.DEFAULT_PORT == 9836


def test_deployment_resources(container):
    resources = container["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"])
    assert "memory" in resources["limits"]


def test_deployment_security_context(pod, container):
    pod_context = pod["securityContext"]
    assert pod_context["runAsNonRoot"] is True
    assert pod_context["runAsUser"] == UID
    assert pod_context["seccompProfile"] == {"type": "RuntimeDefault"}
    # 0400 secret files are readable by the non-root user only through fsGroup.
    assert pod_context["fsGroup"] == UID
    assert pod.get("automountServiceAccountToken") is False

    context = container["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == UID
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not context.get("privileged", False)


def test_deployment_mounts_config_and_secret_files(pod, container):
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}

    config = next(m for m in mounts.values() if m["mountPath"] == CONFIG_DIR)
    assert config.get("readOnly") is True
    config_map = load("configmap.yaml")
    assert volumes[config["name"]]["configMap"]["name"] == config_map["metadata"]["name"]

    credentials = next(m for m in mounts.values() if m["mountPath"] == SECRETS_DIR)
    assert credentials.get("readOnly") is True
    secret_volume = volumes[credentials["name"]]["secret"]
    assert secret_volume["secretName"] == load("secret.example.yaml")["metadata"]["name"]
    assert secret_volume["defaultMode"] == 0o400  # YAML 1.1: 0400 is octal
    assert not container.get("env") and not container.get("envFrom"), "secrets only as files"


# --- Service, ServiceMonitor -------------------------------------------------------------


def test_service_selects_the_pods_and_exposes_http_metrics(deployment, service):
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (port,) = service["spec"]["ports"]
    assert port["name"] == "http-metrics"
    assert port["port"] == 9836
    assert port["targetPort"] in ("http-metrics", 9836)


def test_servicemonitor_selects_the_service_by_labels_and_port_name(service):
    monitor = load("servicemonitor.yaml")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["kind"] == "ServiceMonitor"
    assert monitor["metadata"]["name"]
    spec = monitor["spec"]
    assert set(spec) <= {"jobLabel", "selector", "endpoints", "namespaceSelector"}
    selector = spec["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    port_names = {p["name"] for p in service["spec"]["ports"]}
    (endpoint,) = spec["endpoints"]
    assert endpoint["port"] in port_names
    assert endpoint["port"] == "http-metrics"
    assert endpoint["interval"] == "60s"
    assert endpoint.get("path", "/metrics") == "/metrics"
    # The alerts' MimecastExporterDown selects up{job=~".*mimecast.*"}.
    job_label = spec.get("jobLabel")
    job = service["metadata"]["labels"][job_label] if job_label else service["metadata"]["name"]
    assert "mimecast" in job


# --- PrometheusRule -------------------------------------------------------------------------


def test_prometheusrule_is_in_sync_with_alerts_yml():
    result = subprocess.run(
        [sys.executable, str(GENERATOR), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, (
        result.stdout + result.stderr + "\nregenerate: python scripts/generate_prometheusrule.py"
    )
    text = (K8S / "prometheusrule.yaml").read_text(encoding="utf-8")
    assert text.startswith(
        "# generated by scripts/generate_prometheusrule.py from prometheus/alerts.yml"
    )
    assert "do not edit" in text.splitlines()[0]
    rule = load("prometheusrule.yaml")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["kind"] == "PrometheusRule"
    assert rule["metadata"]["name"]
    assert set(rule["spec"]) == {"groups"}
    alerts = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    assert rule["spec"]["groups"] == alerts["groups"]
    for group in rule["spec"]["groups"]:
        assert group["name"] and group["rules"]
        for item in group["rules"]:
            assert {"alert", "expr"} <= set(item), item


def test_generator_check_fails_on_a_stale_file(tmp_path):
    stale = tmp_path / "prometheusrule.yaml"
    stale.write_text(
        (K8S / "prometheusrule.yaml").read_text(encoding="utf-8") + "# hand edit\n",
        encoding="utf-8",
    )
    command = [sys.executable, str(GENERATOR), "--output", str(stale)]
    result = subprocess.run([*command, "--check"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "out of date" in result.stderr
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "# hand edit" not in stale.read_text(encoding="utf-8")
    result = subprocess.run([*command, "--check"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    missing = tmp_path / "missing.yaml"
    result = subprocess.run(
        [sys.executable, str(GENERATOR), "--output", str(missing), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert not missing.exists()


# --- the ConfigMap's configuration --------------------------------------------------------


def config_from_configmap() -> str:
    return load("configmap.yaml")["data"]["config.yml"]


def file_keys(node, found: list[str] | None = None) -> list[str]:
    """Every value of a ``*_file`` key in the parsed config."""
    found = [] if found is None else found
    if isinstance(node, dict):
        for key, value in node.items():
            if key.endswith("_file"):
                found.append(value)
            else:
                file_keys(value, found)
    elif isinstance(node, list):
        for item in node:
            file_keys(item, found)
    return found


def test_configmap_reads_every_credential_from_the_mounted_secret():
    config = yaml.safe_load(config_from_configmap())
    paths = file_keys(config)
    assert paths, "credentials come from files"
    secret_keys = set(load("secret.example.yaml")["stringData"])
    for path in paths:
        directory, _, key = path.rpartition("/")
        assert directory == SECRETS_DIR, path
        assert key in secret_keys, f"{path}: the example Secret has no key {key}"
    for account in config["accounts"]:
        for scheme in ("oauth2", "hmac"):
            for key, value in account.get(scheme, {}).items():
                assert key.endswith("_file"), f"{account['name']}.{scheme}.{key} is inline"
                assert isinstance(value, str)


def test_secret_example_holds_only_placeholders():
    secret = load("secret.example.yaml")
    assert secret["type"] == "Opaque"
    assert "data" not in secret
    for key, value in secret["stringData"].items():
        assert value.startswith("REPLACE_WITH_"), key


def test_configmap_config_passes_config_check_with_the_secret_files(tmp_path):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    dummy = {
        key: f"dummy-{key.replace('_', '-')}" for key in load("secret.example.yaml")["stringData"]
    }
    dummy["secret_key"] = base64.b64encode(b"dummy-secret-key").decode()
    for key, value in dummy.items():
        (secrets / key).write_text(value + "\n", encoding="utf-8")
        (secrets / key).chmod(0o440)  # defaultMode 0400, group-readable through fsGroup
    config = tmp_path / "config.yml"
    config.write_text(config_from_configmap().replace(SECRETS_DIR, str(secrets)), encoding="utf-8")

    result = run_exporter("--config.file", str(config), "--config.check", cwd=str(ROOT))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is valid" in result.stdout
    for key in ("client_secret", "app_key", "access_key", "secret_key"):
        if key in dummy:
            assert dummy[key] not in result.stdout + result.stderr, f"{key} leaked"


def test_configmap_config_refuses_the_unreplaced_placeholders(tmp_path):
    """Applying secret.example.yaml as is fails loudly (the secret key is not base64)."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for key, value in load("secret.example.yaml")["stringData"].items():
        (secrets / key).write_text(value, encoding="utf-8")
    config = tmp_path / "config.yml"
    config.write_text(config_from_configmap().replace(SECRETS_DIR, str(secrets)), encoding="utf-8")
    result = run_exporter("--config.file", str(config), "--config.check", cwd=str(ROOT))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "secret_key" in result.stderr


# --- the sharded StatefulSet (hundreds of accounts) -------------------------------------

SHARDED = K8S / "sharded"


def test_sharded_manifests_pass_strict_schema_validation():
    files = sorted(SHARDED.glob("*.yaml"))
    result = subprocess.run(
        [kubernetes_validate(), "--strict", "--no-warn", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert output.count("passed") == len(files) == 2, output


def test_each_pod_polls_the_shard_of_its_ordinal(deployment, pod, container, service):
    statefulset = yaml.safe_load((SHARDED / "statefulset.yaml").read_text())
    spec = statefulset["spec"]
    box = spec["template"]["spec"]["containers"][0]
    shard_args = [a for a in box["args"] if a.startswith("--accounts.shard=")]
    assert shard_args == [f"--accounts.shard=$(POD_INDEX)/{spec['replicas']}"]
    env = {e["name"]: e for e in box["env"]}
    field = env["POD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert field == "metadata.labels['apps.kubernetes.io/pod-index']"
    # Everything else is the Deployment's pod, so the two cannot drift apart.
    ours = {k: v for k, v in box.items() if k not in ("env", "args")}
    theirs = container
    assert ours == {k: v for k, v in theirs.items() if k != "args"}
    assert [a for a in box["args"] if a not in shard_args] == theirs["args"]
    pod_spec = {k: v for k, v in spec["template"]["spec"].items() if k != "containers"}
    assert pod_spec == {k: v for k, v in pod.items() if k != "containers"}
    assert spec["selector"] == deployment["spec"]["selector"]
    headless = yaml.safe_load((SHARDED / "service-headless.yaml").read_text())
    assert spec["serviceName"] == headless["metadata"]["name"]
    assert headless["spec"]["selector"] == service["spec"]["selector"]
