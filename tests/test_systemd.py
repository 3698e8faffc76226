"""deploy/systemd/mimecast-exporter.service: valid for systemd, sandboxed, and
its ExecStart is a command the exporter accepts."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

from tests.processes import debian_binary, run_exporter

UNIT = Path(__file__).parents[1] / "deploy" / "systemd" / "mimecast-exporter.service"


def _analyze() -> str:
    return debian_binary("systemd-analyze", "systemd")


def _local_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's exporter: verify
    checks that the executable exists."""
    exporter = Path(sys.executable).parent / "mimecast-exporter"
    text = UNIT.read_text().replace("/opt/mimecast-exporter/bin/mimecast-exporter", str(exporter))
    copy = tmp_path / UNIT.name
    copy.write_text(text)
    return copy


def test_systemd_analyze_verify_finds_nothing(tmp_path):
    import subprocess

    out = subprocess.run(
        [_analyze(), "verify", str(_local_copy(tmp_path))], capture_output=True, text=True
    )
    # verify exits 0 even on unknown keys: any output is a finding.
    assert out.returncode == 0 and out.stdout.strip() == "" and out.stderr.strip() == "", out


def test_the_sandbox_scores_ok(tmp_path):
    import subprocess

    out = subprocess.run(
        [_analyze(), "security", "--offline=yes", str(_local_copy(tmp_path))],
        capture_output=True,
        text=True,
    )
    match = re.search(r"Overall exposure level for \S+: ([\d.]+)", out.stdout + out.stderr)
    assert match, out
    assert float(match.group(1)) <= 2.0  # systemd's "OK" band starts below 2.0


def test_the_unit_asks_for_the_sandbox_the_docs_promise():
    text = UNIT.read_text()
    for setting in (
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "MemoryDenyWriteExecute=yes",
        "LoadCredential=",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ):
        assert setting in text, setting


def test_execstart_is_a_command_line_the_exporter_accepts(tmp_path):
    """The flags of ExecStart parse, and a config using ${CREDENTIALS_DIRECTORY}
    (as the unit's comments say) loads with the directory systemd sets."""
    exec_start = re.search(r"^ExecStart=(.+)$", UNIT.read_text(), re.M).group(1)
    argv = shlex.split(exec_start)[1:]
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "client_secret").write_text("from-load-credential\n")
    (credentials / "client_secret").chmod(0o600)
    config = tmp_path / "config.yml"
    config.write_text(
        "accounts:\n  - name: acme\n    region: global\n    oauth2:\n"
        "      client_id: id\n"
        "      client_secret_file: ${CREDENTIALS_DIRECTORY}/client_secret\n"
    )
    config.chmod(0o600)
    argv = [a.replace("/etc/mimecast-exporter/config.yml", str(config)) for a in argv]
    out = run_exporter(*argv, "--config.check", env={"CREDENTIALS_DIRECTORY": str(credentials)})
    assert out.returncode == 0, out.stderr
    assert "from-load-credential" not in out.stdout
