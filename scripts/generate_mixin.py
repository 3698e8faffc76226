#!/usr/bin/env python3
"""Generate the shipped alerts, inhibit rules and dashboard from mixin/.

The monitoring mixin (mixin/mixin.libsonnet, configured in
mixin/config.libsonnet) is the single source. This script renders it with
the ``jsonnet`` PyPI package into the files that ship:

    prometheus/alerts.yml                          the alerting rules
    prometheus/alertmanager/inhibit-rules.yml      Alertmanager inhibit_rules
    grafana/dashboards/mimecast-queue.json         the dashboard
    deploy/kubernetes/prometheusrule.yaml          the rules as a PrometheusRule

    python scripts/generate_mixin.py           # rewrite them
    python scripts/generate_mixin.py --check   # exit 1 if any is out of date (the tests run this)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
MIXIN = ROOT / "mixin" / "mixin.libsonnet"
ALERTS = ROOT / "prometheus" / "alerts.yml"
INHIBIT = ROOT / "prometheus" / "alertmanager" / "inhibit-rules.yml"
THRESHOLDS = ROOT / "mimecast_exporter" / "web" / "thresholds.json"
DASHBOARDS = ROOT / "grafana" / "dashboards"
sys.path.insert(0, str(ROOT / "scripts"))

import generate_prometheusrule  # noqa: E402 - a sibling script

_GENERATED = "# generated from mixin/ by scripts/generate_mixin.py — do not edit\n"


def evaluate() -> dict[str, Any]:
    import _jsonnet  # the jsonnet package: only needed to generate

    snippet = """
      local m = import 'mixin/mixin.libsonnet';
      { alerts: m.prometheusAlerts, inhibit: m.alertmanagerInhibitRules,
        dashboards: m.grafanaDashboards, config: m._config }
    """
    return json.loads(_jsonnet.evaluate_snippet("generate", snippet, jpathdir=[str(ROOT)]))


class _Dumper(yaml.SafeDumper):
    """Block style, long text folded, keys in the mixin's order."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    prose = len(value) > 80 and " " in value and "\n" not in value
    style = ">" if prose else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=88)


# Keys in the order people read a rule (jsonnet sorts them).
_RULE_KEYS = ("alert", "record", "expr", "for", "labels", "annotations")
_ANNOTATION_KEYS = ("summary", "description", "runbook_url", "dashboard_url")


def _ordered(rule: dict[str, Any]) -> dict[str, Any]:
    out = {key: rule[key] for key in _RULE_KEYS if key in rule}
    out |= {key: value for key, value in rule.items() if key not in out}
    if "annotations" in out:
        notes = out["annotations"]
        first = {key: notes[key] for key in _ANNOTATION_KEYS if key in notes}
        out["annotations"] = first | {k: v for k, v in notes.items() if k not in first}
    return out


def render_alerts(mixin: dict[str, Any]) -> str:
    for group in mixin["alerts"]["groups"]:
        group["rules"] = [_ordered(rule) for rule in group["rules"]]
    rules = [r for g in mixin["alerts"]["groups"] for r in g["rules"] if "alert" in r]
    config = mixin["config"]
    header = [
        "# Prometheus alerting rules for mimecast-exporter.",
        _GENERATED.rstrip(),
        "#",
        "# Load this file with `rule_files:` in prometheus.yml; check it with",
        "#   promtool check rules prometheus/alerts.yml",
        "#   promtool test rules prometheus/tests/alerts_test.yml",
        "# Every alert links to its section of docs/runbook.md and to the dashboard.",
        f"# Selector of the exporter's series: {config['exporterSelector']}",
        "# (change it, the thresholds and the `for` durations in mixin/config.libsonnet).",
        "#",
        "# Severities follow impact: mail not delivered pages (critical); the exporter's",
        "# own trouble is a warning; a rate limit is a ticket (info). Alertmanager",
        "# inhibit rules: prometheus/alertmanager/inhibit-rules.yml.",
        "#",
        f"#   {'alert':<34}{'severity':<10}{'fires when':<60}for",
    ]
    for rule in rules:
        header.append(
            f"#   {rule['alert']:<34}{rule['labels']['severity']:<10}"
            f"{_short(rule['expr']):<60}{rule['for']}"
        )
    return "\n".join(header) + "\n\n" + _yaml(mixin["alerts"])


def _short(expr: str) -> str:
    return expr if len(expr) <= 58 else expr[:55] + "..."


def render_inhibit(mixin: dict[str, Any]) -> str:
    return (
        "# Alertmanager inhibit rules for mimecast-exporter's alerts: the cause\n"
        "# silences its consequences (an account that is down, its stale data).\n"
        + _GENERATED
        + "# Merge `inhibit_rules` into your alertmanager.yml.\n\n"
        + _yaml({"inhibit_rules": mixin["inhibit"]})
    )


def outputs() -> dict[Path, str]:
    mixin = evaluate()
    alerts = render_alerts(mixin)
    files = {
        # The status page's default thresholds: the mixin's, never a second copy by hand.
        THRESHOLDS: (ROOT / "mixin" / "thresholds.json").read_text(encoding="utf-8"),
        ALERTS: alerts,
        INHIBIT: render_inhibit(mixin),
        generate_prometheusrule.OUTPUT: generate_prometheusrule.render(alerts),
    }
    for name, dashboard in mixin["dashboards"].items():
        files[DASHBOARDS / name] = json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n"
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a file is out of date")
    args = parser.parse_args()
    stale = []
    for path, text in outputs().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(str(path.relative_to(ROOT)))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        print("out of date (run: python scripts/generate_mixin.py): " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
