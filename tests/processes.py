"""The exporter as a real background process, for tests that scrape it."""

from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time

EXPORTER = [sys.executable, "-m", "mimecast_exporter"]


def run_exporter(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60, cwd: str | None = None
) -> subprocess.CompletedProcess:
    """Run the exporter to completion (--once, --config.check, ...), no standard input."""
    return subprocess.run(
        [*EXPORTER, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


class Daemon:
    """The exporter as a background process, for tests that scrape it."""

    def __init__(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        nofile: tuple[int, int] | None = None,
    ) -> None:
        """``nofile``: (soft, hard) RLIMIT_NOFILE the process starts with."""
        env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}

        def limits() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, nofile)

        self.proc = subprocess.Popen(
            [*EXPORTER, "--web.listen-address", "127.0.0.1:0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            stdin=subprocess.DEVNULL,
            preexec_fn=limits if nofile is not None else None,
        )
        self.lines: list[str] = []

    def wait_for_url(self, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line and self.proc.poll() is not None:
                break
            self.lines.append(line)
            match = re.search(r"listen=(https?://\S+?)/", line)
            if match:
                return match.group(1)
        raise AssertionError("exporter did not start:\n" + "".join(self.lines))

    def stop(self) -> tuple[int, str, str]:
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=10)
        return self.proc.returncode, out, "".join(self.lines) + err


def wait_for(predicate, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """Every sample of ``url``/metrics: (name, sorted label pairs) -> value."""
    import requests
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(url + "/metrics", timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(samples: dict, name: str, **labels: str) -> float | None:
    """One value from :func:`scrape`'s result, or None when the series is absent."""
    return samples.get((name, tuple(sorted(labels.items()))))


def debian_binary(name: str, package: str) -> str:
    """The path of a tool `make test` installs from Debian's ``package``: skipped
    where it is missing, except in CI, where a missing tool is a failure."""
    import pytest

    found = shutil.which(name)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} missing in CI: `make test` installs Debian's {package} package")
        pytest.skip(f"{name} not installed (make test installs Debian's {package} package)")
    return found
