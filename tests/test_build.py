"""Build info as Go exporters have it: --version and mimecast_exporter_build_info
carry version, revision, build date and Python version (issue #18, item 3)."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry

from mimecast_exporter import __version__, build
from mimecast_exporter.collector import MimecastCollector
from mimecast_exporter.store import SnapshotStore

ROOT = Path(__file__).resolve().parent.parent


def fresh(monkeypatch, info: Path) -> build.Build:
    monkeypatch.setattr(build, "BUILD_INFO", info)
    build.build.cache_clear()
    try:
        return build.build()
    finally:
        build.build.cache_clear()


def test_in_a_checkout_the_revision_is_the_checkouts(monkeypatch, tmp_path):
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    info = fresh(monkeypatch, tmp_path / "absent")
    assert (info.version, info.revision, info.build_date) == (__version__, head, "unknown")
    assert info.python_version == platform.python_version()


def test_a_build_records_its_revision_and_date(monkeypatch, tmp_path):
    recorded = tmp_path / "BUILD_INFO"
    recorded.write_text("revision=0123456789ab\nbuild_date=2026-12-07T00:00:00Z\n")
    info = fresh(monkeypatch, recorded)
    assert (info.revision, info.build_date) == ("0123456789ab", "2026-12-07T00:00:00Z")
    recorded.write_text("revision=unknown\nbuild_date=\n")  # built outside git
    info = fresh(monkeypatch, recorded)
    assert info.revision != "unknown" and info.build_date == "unknown"  # the checkout's


def test_version_output_of_both_commands():
    for module in ("mimecast_exporter", "mimecast_exporter.simulator"):
        result = subprocess.run(
            [sys.executable, "-m", module, "--version"], capture_output=True, text=True, check=True
        )
        lines = result.stdout.splitlines()
        program = "mimecast-exporter" if module == "mimecast_exporter" else "mimecast-simulator"
        assert lines[0].startswith(f"{program}, version {__version__} (revision: ")
        assert lines[1].startswith("  build date: ") and lines[2].startswith("  python version: ")


def test_build_info_metric_carries_version_revision_and_python():
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MimecastCollector(SnapshotStore([], []), 300.0, lambda: 0.0))
    info = build.build()
    labels = {
        "version": __version__,
        "revision": info.revision,
        "pythonversion": platform.python_version(),
    }
    assert registry.get_sample_value("mimecast_exporter_build_info", labels) == 1
