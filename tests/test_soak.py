"""The soak script: a short run stays flat, and a leak does not pass for flat."""

from __future__ import annotations

import importlib.util
import io
import socket
import subprocess
import sys
from pathlib import Path

SOAK = Path(__file__).resolve().parent.parent / "benchmarks" / "soak.py"


def test_short_soak_is_flat():
    result = subprocess.run(
        [sys.executable, str(SOAK), "--polls", "300", "--seed", "3"],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "verdict: flat", result.stdout
    assert "polls: 300 (" in result.stdout
    assert "0 errors (unexpected failures)" in result.stdout
    errors = next(line for line in lines if line.startswith("errors by reason: "))
    assert len(errors.split()) > 5, errors  # the faults did make polls fail, for many reasons
    for label in ("warm-up", "middle", "end"):
        assert any(line.startswith(label) for line in lines), result.stdout
    assert result.stderr == ""


def test_soak_notices_a_leak(monkeypatch):
    spec = importlib.util.spec_from_file_location("soak", SOAK)
    soak = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "soak", soak)  # dataclasses look their module up
    spec.loader.exec_module(soak)
    leaked: list[socket.socket] = []

    def leak(sim, rng):
        leaked.append(socket.socket())  # one file descriptor per injection, never closed

    monkeypatch.setattr(soak, "FAULTS", {"leak": leak})
    monkeypatch.setattr(soak, "FAULT_RATE", 1.0)
    out = io.StringIO()
    try:
        assert soak.soak(120, seed=1, out=out) is False
    finally:
        for sock in leaked:
            sock.close()
    verdict = out.getvalue().splitlines()[-1]
    assert verdict.startswith("verdict: growing") and "fds" in verdict, out.getvalue()
