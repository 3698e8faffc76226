"""The Prometheus rules in prometheus/: promtool accepts and unit-tests them, and they
follow the monitoring-mixin conventions (names, severity, annotations, runbooks)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mimecast_exporter import __version__
from tests.processes import debian_binary

ROOT = Path(__file__).resolve().parent.parent
RULES_DIR = ROOT / "prometheus"
ALERTS = RULES_DIR / "alerts.yml"
RULE_FILES = sorted(RULES_DIR.glob("*.yml"))  # alerts.yml, and rules.yml if there is one
TEST_FILES = sorted((RULES_DIR / "tests").glob("*.yml"))
RUNBOOK = ROOT / "docs" / "runbook.md"
RUNBOOK_BASE = (
    f"https://github.com/mimecast-exporter/mimecast-exporter/blob/v{__version__}/docs/runbook.md#"
)
TIMEOUT = 60
# Queue series without a route label (collector.py): an alert on one names no route.
PER_QUEUE_SERIES = {
    "mimecast_queue_scan_complete",
    "mimecast_queue_scanned_messages",
    "mimecast_queue_message_age_seconds",
    "mimecast_queue_message_size_bytes",
}

# Other code (dashboards, docs, silences) depends on these names.
EXPECTED_ALERTS = {
    "MimecastExporterDown",
    "MimecastAccountDown",
    "MimecastDataStale",
    "MimecastCountsAbsent",
    "MimecastQueueBacklog",
    "MimecastQueueOldestMessageTooOld",
    "MimecastMessagesManyAttempts",
    "MimecastRateLimited",
    "MimecastAuthFailing",
}


def load_rules(path: Path) -> list[dict]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


ALERT_RULES = [rule for rule in load_rules(ALERTS) if "alert" in rule]
RECORDING_RULES = [rule for path in RULE_FILES for rule in load_rules(path) if "record" in rule]


def github_anchor(heading: str) -> str:
    """The id GitHub gives a Markdown heading."""
    anchor = heading.strip().lower()
    anchor = re.sub(r"[^\w\- ]", "", anchor)
    return anchor.replace(" ", "-")


@pytest.fixture(scope="module")
def promtool() -> str:
    return debian_binary("promtool", "prometheus")


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT)


def test_promtool_check_rules(promtool):
    files = [str(path.relative_to(ROOT)) for path in RULE_FILES]
    result = run([promtool, "check", "rules", "--lint=all", "--lint-fatal", *files], ROOT)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # Only "Checking <file>" and "SUCCESS: N rules found" lines: no warnings.
    unexpected = [
        line
        for line in output.splitlines()
        if line.strip() and not re.match(r"^(Checking \S+|\s*SUCCESS: \d+ rules found)$", line)
    ]
    assert unexpected == [], output


@pytest.mark.parametrize("where", ["repo root", "elsewhere"])
def test_promtool_unit_tests_pass(promtool, tmp_path, where):
    assert TEST_FILES, "no promtool unit tests in prometheus/tests/"
    if where == "repo root":
        cwd, files = ROOT, [str(path.relative_to(ROOT)) for path in TEST_FILES]
    else:  # rule_files are relative to the test file, not to the working directory
        cwd, files = tmp_path, [str(path) for path in TEST_FILES]
    result = run([promtool, "test", "rules", *files], cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAILED" not in result.stdout + result.stderr


def test_alert_names_are_the_documented_ones():
    names = [rule["alert"] for rule in ALERT_RULES]
    assert len(names) == len(set(names)), f"duplicate alert names: {names}"
    assert set(names) == EXPECTED_ALERTS


@pytest.mark.parametrize("rule", ALERT_RULES, ids=lambda rule: rule["alert"])
def test_alert_follows_mixin_conventions(rule):
    name = rule["alert"]
    assert re.fullmatch(r"Mimecast[A-Z][A-Za-z]+", name), name
    assert rule.get("labels", {}).get("severity") in {"info", "warning", "critical"}, name
    assert re.fullmatch(r"\d+[smh]", str(rule.get("for", ""))), f"{name}: needs a `for`"
    annotations = rule.get("annotations", {})
    for key in ("summary", "description", "runbook_url", "dashboard_url"):
        assert annotations.get(key, "").strip(), f"{name}: missing annotation {key}"
    assert annotations["runbook_url"] == RUNBOOK_BASE + name.lower()
    assert annotations["runbook_url"] == RUNBOOK_BASE + github_anchor(name)

    description = annotations["description"]
    expr = rule["expr"]
    if "mimecast_" in expr:
        assert "{{ $labels.account }}" in description, f"{name}: description names no account"
    if "mimecast_queue_" in expr or "mimecast_last_success" in expr:
        assert "{{ $labels.queue }}" in description, f"{name}: description names no queue"
    own = re.search(r"mimecast_\w+", expr)  # the series whose labels the alert carries
    if own and own.group().startswith("mimecast_queue_") and own.group() not in PER_QUEUE_SERIES:
        assert "{{ $labels.route }}" in description, f"{name}: description names no route"
    for use in re.findall(r"\{\{[^}]*\$value[^}]*\}\}", description):
        assert re.search(r"\|\s*humanize", use), f"{name}: {use} is not humanized"


def test_threshold_block_matches_the_rules():
    """The comment block at the top of alerts.yml lists every alert, its severity and `for`."""
    header = []
    for line in ALERTS.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        header.append(line)
    for rule in ALERT_RULES:
        name = rule["alert"]
        lines = [
            line for line in header if re.match(rf"^#\s+{name}\s+(info|warning|critical)\s", line)
        ]
        assert len(lines) == 1, f"{name} is not listed once in the threshold block of alerts.yml"
        fields = lines[0].split()
        assert fields[2] == rule["labels"]["severity"], lines[0]
        assert fields[-1] == rule["for"], lines[0]


def test_queue_backlog_uses_the_messages_series():
    (backlog,) = [rule for rule in ALERT_RULES if rule["alert"] == "MimecastQueueBacklog"]
    recorded = {
        rule["record"] for rule in RECORDING_RULES if "mimecast_queue_messages" in rule["expr"]
    }
    assert "mimecast_queue_messages" in backlog["expr"] or any(
        name in backlog["expr"] for name in recorded
    ), backlog["expr"]


def test_every_rule_has_firing_and_quiet_unit_tests():
    """Each alert has a promtool case where it fires and one where it must not."""
    firing: set[str] = set()
    quiet: set[str] = set()
    tested_records: set[str] = set()
    rule_files: set[Path] = set()
    for path in TEST_FILES:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        rule_files |= {(path.parent / name).resolve() for name in doc.get("rule_files", [])}
        for test in doc.get("tests", []):
            for case in test.get("alert_rule_test", []):
                alerts = case.get("exp_alerts") or []
                (firing if alerts else quiet).add(case["alertname"])
                for alert in alerts:
                    assert "exp_annotations" in alert, f"{test['name']}: check the annotations"
            for case in test.get("promql_expr_test", []):
                tested_records |= {rule["record"] for rule in RECORDING_RULES}.intersection(
                    re.findall(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", case["expr"])
                )
    assert {path.resolve() for path in RULE_FILES} <= rule_files, "a rule file is never tested"
    assert EXPECTED_ALERTS - firing == set(), "alerts without a case where they fire"
    assert EXPECTED_ALERTS - quiet == set(), "alerts without a case where they must not fire"
    assert {rule["record"] for rule in RECORDING_RULES} - tested_records == set(), (
        "recording rules without a promql_expr_test"
    )


def test_recording_rule_names():
    """level:metric:operations, e.g. mimecast:queue_messages:sum (none yet is fine)."""
    for rule in RECORDING_RULES:
        assert re.fullmatch(r"mimecast:[a-z0-9_]+:[a-z0-9_]+", rule["record"]), rule["record"]


def test_runbook_anchors_exist_in_the_runbook():
    headings = re.findall(r"^## (.+?)\s*$", RUNBOOK.read_text(encoding="utf-8"), re.MULTILINE)
    anchors = {github_anchor(heading) for heading in headings}
    missing = [
        rule["alert"]
        for rule in ALERT_RULES
        if rule["annotations"]["runbook_url"].removeprefix(RUNBOOK_BASE) not in anchors
    ]
    assert missing == [], (
        f"docs/runbook.md has no '## <AlertName>' heading for {missing}: every alert's "
        "runbook_url points at one."
    )


# --- the mixin is the source ---------------------------------------------------------------

MAIL_NOT_DELIVERED = {
    "MimecastQueueBacklog",
    "MimecastQueueOldestMessageTooOld",
    "MimecastMessagesManyAttempts",
}


def test_severities_follow_impact():
    """Mail not delivered pages; the exporter's own trouble never does."""
    for rule in ALERT_RULES:
        severity = rule["labels"]["severity"]
        if rule["alert"] in MAIL_NOT_DELIVERED:
            assert severity == "critical", rule["alert"]
        else:
            assert severity in {"warning", "info"}, rule["alert"]


def test_every_alert_selects_the_exporter_job_exactly():
    for rule in ALERT_RULES:
        assert 'job="mimecast-exporter"' in rule["expr"], rule["alert"]
        assert "=~" not in rule["expr"].split("reason")[0], rule["alert"]  # no regex on job


def test_the_generated_files_are_up_to_date():
    import _jsonnet  # noqa: F401 - a dev dependency: the check must run

    out = run([sys.executable, "scripts/generate_mixin.py", "--check"], cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_mixin_is_configurable():
    import _jsonnet

    snippet = """
      local m = (import 'mixin/mixin.libsonnet') + { _config+:: {
        exporterSelector: 'job="mail", team="ops"',
        queueBacklogMessages: 500, queueBacklogFor: '30m',
        mailNotDeliveredSeverity: 'page',
      } };
      m.prometheusAlerts
    """
    import json

    groups = json.loads(_jsonnet.evaluate_snippet("t", snippet, jpathdir=[str(ROOT)]))["groups"]
    rules = {r["alert"]: r for g in groups for r in g["rules"]}
    backlog = rules["MimecastQueueBacklog"]
    assert backlog["expr"] == 'mimecast_queue_messages{job="mail", team="ops"} > 500'
    assert backlog["for"] == "30m" and backlog["labels"]["severity"] == "page"
    assert "for 30 minutes" in backlog["annotations"]["description"]
    assert rules["MimecastExporterDown"]["expr"] == 'up{job="mail", team="ops"} == 0'


def test_inhibit_rules_name_only_shipped_alerts():
    inhibit = yaml.safe_load(
        (ROOT / "prometheus" / "alertmanager" / "inhibit-rules.yml").read_text()
    )
    names = {rule["alert"] for rule in ALERT_RULES}
    assert inhibit["inhibit_rules"]
    for rule in inhibit["inhibit_rules"]:
        for matcher in rule["source_matchers"] + rule["target_matchers"]:
            pattern = matcher.split("=", 1)[1].lstrip("~").strip('"')
            matched = {n for n in names if re.fullmatch(pattern, n)}
            assert matched, matcher
        assert rule["equal"] == ["account"]
    down_silences_stale = [
        r
        for r in inhibit["inhibit_rules"]
        if r["source_matchers"] == ['alertname="MimecastAccountDown"']
        and r["target_matchers"] == ['alertname="MimecastDataStale"']
    ]
    assert down_silences_stale  # an account that is down silences its own stale-data alert


def test_the_mixin_can_be_vendored_by_jsonnet_bundler():
    """jb needs a jsonnetfile.json at the mixin's root; the mixin imports
    nothing from outside itself, so it lists no dependency."""
    import json
    from pathlib import Path

    mixin = Path(__file__).resolve().parent.parent / "mixin"
    spec = json.loads((mixin / "jsonnetfile.json").read_text())
    assert spec["version"] == 1 and spec["dependencies"] == []
    for source in mixin.rglob("*.libsonnet"):
        for line in source.read_text().splitlines():
            if "import '" in line and not line.lstrip().startswith("//"):
                target = line.split("import '")[1].split("'")[0]
                assert (source.parent / target).exists(), f"{source}: {target} is not in the mixin"
