"""What this build is: version, revision, build date and Python, as Go exporters
print them (``--version``) and label ``mimecast_exporter_build_info`` with.

The revision and build date are recorded when a wheel or an image is built:
``make dist``, the Dockerfile and the release workflow write them into the
package's ``BUILD_INFO`` file. Run from a git checkout without that file, the
revision is the checkout's. Otherwise they read ``unknown``.
"""

from __future__ import annotations

import platform
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from mimecast_exporter import __version__

PACKAGE = Path(__file__).resolve().parent
BUILD_INFO = PACKAGE / "BUILD_INFO"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Build:
    version: str
    revision: str
    build_date: str
    python_version: str

    def describe(self, program: str) -> str:
        """The ``--version`` text."""
        return (
            f"{program}, version {self.version} (revision: {self.revision})\n"
            f"  build date:     {self.build_date}\n"
            f"  python version: {self.python_version}\n"
            f"  platform:       {platform.system().lower()}/{platform.machine()}"
        )


@cache
def build() -> Build:
    recorded = _recorded()
    return Build(
        version=__version__,
        revision=recorded.get("revision") or _checkout_revision() or UNKNOWN,
        build_date=recorded.get("build_date") or UNKNOWN,
        python_version=platform.python_version(),
    )


def _recorded() -> dict[str, str]:
    """``key=value`` lines of BUILD_INFO; empty when there is none."""
    try:
        text = BUILD_INFO.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs if value.strip() != UNKNOWN}


def _checkout_revision() -> str | None:
    """The commit of the git checkout the package runs from, if it does."""
    if not (PACKAGE.parent / ".git").exists():
        return None
    try:
        result = subprocess.run(
            ["git", "-C", str(PACKAGE.parent), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    revision = result.stdout.strip()
    return revision if result.returncode == 0 and revision else None
