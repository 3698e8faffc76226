"""The Grafana dashboard and provisioning files, checked statically (no network):
structure, layout, and that every query asks only for what the exporter serves."""

from __future__ import annotations

import re
import subprocess
from collections import defaultdict

import pytest
import yaml
from prometheus_client import CollectorRegistry

from mimecast_exporter.aggregate import QueueAggregator
from mimecast_exporter.collector import MimecastCollector
from mimecast_exporter.store import SnapshotStore
from tests.dashboard import (
    BUILTIN_VARIABLES,
    DASHBOARD_PATH,
    GRAFANA_DIR,
    iter_panels,
    load_dashboard,
    panel_queries,
    substitute,
    variable_names,
)
from tests.fakes import EPOCH, feed
from tests.processes import debian_binary

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
METRIC = re.compile(r"mimecast_[a-z_]+")
HISTOGRAMS = ("mimecast_queue_message_age_seconds", "mimecast_queue_message_size_bytes")
COUNTERS = ("mimecast_poll_errors_total", "mimecast_api_requests_total")
RANGE_FUNCTIONS = {"rate", "irate", "increase", "delta", "idelta", "deriv"}
PROVIDER_PATH = "/var/lib/grafana/dashboards"

DASHBOARD = load_dashboard()
PANELS = [p for p in iter_panels(DASHBOARD) if p.get("type") != "row"]
QUERIES = panel_queries(DASHBOARD)
VARIABLES = {v["name"]: v for v in DASHBOARD["templating"]["list"]}


def _query_text(variable):
    query = variable.get("query", "")
    return query.get("query", "") if isinstance(query, dict) else query


VARIABLE_QUERIES = [_query_text(v) for v in VARIABLES.values() if v["type"] == "query"]


def served_metrics():
    """{sample name: label names} for every series the exporter serves."""
    now = EPOCH
    store = SnapshotStore(["a"], ["processing"])
    aggregator = QueueAggregator(now, top_domains=3)  # every opt-in series too
    feed(
        aggregator,
        [
            {
                "routing": "outbound",
                "size": 10,
                "attempts": 1,
                "created": "2026-11-23T23:00:00Z",
                "to": [{"emailAddress": "a@partner.example"}],
            }
        ],
    )
    store.record_success("a", "processing", aggregator.snapshot(), now, 0.5)
    store.record_response("a", "find-processing-messages", 200, 42)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MimecastCollector(store, 300.0, lambda: now))
    names = defaultdict(set)
    for family in registry.collect():
        for sample in family.samples:
            names[sample.name] |= set(sample.labels) - {"le"}
    return dict(names)


@pytest.fixture(scope="module")
def served():
    return served_metrics()


def enclosing_functions(expr, position):
    """Names of the function calls and aggregations around ``position``, outermost first."""
    # Blank out by/without clauses (same length, so positions hold) so that the
    # parenthesis after "sum by (le)" belongs to sum.
    text = re.sub(r"\b(by|without)\s*\([^)]*\)", lambda m: " " * len(m.group(0)), expr)
    stack = []
    for match in re.finditer(r"([A-Za-z_][A-Za-z0-9_]*)?\s*\(|\)", text[:position]):
        if match.group(0) == ")":
            stack.pop()
        else:
            stack.append(match.group(1) or "")
    return stack


def selectors(expr):
    """(metric name, text between its braces) for every metric in ``expr``."""
    for match in METRIC.finditer(expr):
        rest = expr[match.end() :]
        braces = re.match(r"\{([^}]*)\}", rest)
        yield match.group(0), braces.group(1) if braces else None


def by_title(title):
    return next(p for p in PANELS if p["title"] == title)


# -- the dashboard itself


def test_dashboard_identity():
    assert DASHBOARD_PATH.name == "mimecast-queue.json"
    assert DASHBOARD["uid"] == "mimecast-queue"
    assert DASHBOARD["title"] == "Mimecast processing queue"
    assert DASHBOARD["schemaVersion"] in (38, 39)
    assert DASHBOARD["tags"] and all(isinstance(t, str) for t in DASHBOARD["tags"])
    assert DASHBOARD["time"] == {"from": "now-6h", "to": "now"}
    assert DASHBOARD["refresh"] == "1m"
    # Importable into any Grafana: no instance-specific id, no __inputs to fill in.
    assert DASHBOARD.get("id") is None
    assert "__inputs" not in DASHBOARD


def test_template_variables():
    assert list(VARIABLES) == ["datasource", "job", "instance", "account", "queue"]
    datasource = VARIABLES["datasource"]
    assert datasource["type"] == "datasource" and datasource["query"] == "prometheus"
    assert not datasource.get("multi") and not datasource.get("includeAll")
    # One exporter at a time: two exporters (or replicas) are never summed together.
    single = {
        "job": 'label_values(mimecast_exporter_build_info{job="mimecast-exporter"}, job)',
        "instance": 'label_values(mimecast_exporter_build_info{job="$job"}, instance)',
    }
    multi = {
        "account": 'label_values(mimecast_up{job="$job", instance="$instance"}, account)',
        "queue": 'label_values(mimecast_queue_messages{job="$job", instance="$instance",'
        ' account=~"$account"}, queue)',
    }
    for name, query in {**single, **multi}.items():
        variable = VARIABLES[name]
        assert variable["type"] == "query"
        assert variable["datasource"] == DATASOURCE
        assert _query_text(variable) == query
        assert variable["definition"] == query
        assert variable["refresh"] in (1, 2)  # on load or on time range change
        if name in single:
            assert variable["multi"] is False and variable["includeAll"] is False
        else:
            assert variable["multi"] is True and variable["includeAll"] is True
            assert variable["allValue"] == ".*"


def test_a_top_row_of_stats_shows_the_state_at_a_glance():
    rows = sorted(
        (p for p in iter_panels(DASHBOARD) if p.get("type") == "row"),
        key=lambda p: p["gridPos"]["y"],
    )
    assert rows[0]["title"] == "At a glance" and rows[0]["gridPos"]["y"] == 0
    top = [p for p in PANELS if p["gridPos"]["y"] < rows[1]["gridPos"]["y"]]
    assert len(top) >= 4 and all(p["type"] == "stat" for p in top)
    titles = {p["title"] for p in top}
    assert {"Accounts down", "Messages queued", "Oldest message"} <= titles
    assert "Rate-limit headroom" in titles and "Queues not read whole" in titles


def test_scan_completeness_has_a_panel():
    panel = by_title("Scan completeness")
    assert "mimecast_queue_scan_complete" in panel["targets"][0]["expr"]


def test_the_dashboard_links_to_the_runbook():
    urls = [link["url"] for link in DASHBOARD["links"]]
    assert any(url.endswith("/docs/runbook.md") for url in urls)


def test_rows_group_queue_and_health_panels():
    rows = sorted(
        (p for p in iter_panels(DASHBOARD) if p.get("type") == "row"),
        key=lambda p: p["gridPos"]["y"],
    )
    assert [r["title"] for r in rows] == ["At a glance", "Queue", "Exporter health"]

    def row_of(panel):
        return [r["title"] for r in rows if r["gridPos"]["y"] < panel["gridPos"]["y"]][-1]

    for panel in PANELS:
        if row_of(panel) == "At a glance":
            continue  # the stats sum up both
        exprs = " ".join(t["expr"] for t in panel["targets"])
        expected = "Queue" if "mimecast_queue_" in exprs else "Exporter health"
        assert row_of(panel) == expected, panel["title"]


def test_panel_ids_are_unique():
    ids = [p["id"] for p in iter_panels(DASHBOARD)]
    assert all(isinstance(i, int) for i in ids)
    assert len(ids) == len(set(ids))


def test_panels_fit_the_grid_without_overlapping():
    cells = {}
    for panel in iter_panels(DASHBOARD):
        grid = panel["gridPos"]
        assert grid["w"] > 0 and grid["h"] > 0, panel["title"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_titles_are_unique():
    titles = [p["title"] for p in PANELS]
    assert len(titles) == len(set(titles))


@pytest.mark.parametrize("panel", PANELS, ids=lambda p: p["title"])
def test_panel_has_description_unit_datasource_and_targets(panel):
    assert len(panel.get("description", "")) > 40
    unit = panel["fieldConfig"]["defaults"].get("unit")
    if panel["type"] == "heatmap":
        unit = panel["options"].get("yAxis", {}).get("unit") or unit
    assert unit
    assert panel["datasource"] == DATASOURCE
    assert panel["targets"]
    ref_ids = [t["refId"] for t in panel["targets"]]
    assert len(ref_ids) == len(set(ref_ids))
    for target in panel["targets"]:
        assert target["datasource"] == DATASOURCE
        assert target.get("expr", "").strip()
        assert target.get("legendFormat", "").strip()


def test_units_match_what_is_measured():
    for panel in PANELS:
        exprs = " ".join(t["expr"] for t in panel["targets"])
        unit = panel["fieldConfig"]["defaults"]["unit"]
        if panel["type"] == "heatmap":
            assert panel["options"]["yAxis"]["unit"] == "s"
        elif "rate(" in exprs:
            assert unit == "reqps", panel["title"]
        elif "size_bytes" in exprs:
            assert unit == "bytes", panel["title"]
        elif re.search(r"_seconds\b|_seconds\{", exprs):
            assert unit == "s", panel["title"]
        else:
            assert unit in ("short", "none"), panel["title"]


def test_up_panel_maps_values_to_words():
    panel = by_title("Account up")
    mappings = panel["fieldConfig"]["defaults"]["mappings"]
    options = {
        k: v["text"] for m in mappings if m["type"] == "value" for k, v in m["options"].items()
    }
    assert options == {"1": "up", "0": "down"}


def test_heatmap_plots_the_age_buckets_as_they_are():
    panel = by_title("Message age distribution")
    assert panel["type"] == "heatmap"
    assert panel["options"]["calculate"] is False
    assert panel["options"]["yAxis"]["unit"] == "s"
    [target] = panel["targets"]
    assert target["format"] == "heatmap"
    assert target["legendFormat"] == "{{le}}"
    assert target["expr"].startswith("sum by (le) (mimecast_queue_message_age_seconds_bucket{")


# -- queries


def test_queries_use_only_metrics_the_exporter_serves(served):
    assert "mimecast_queue_message_age_seconds_bucket" in served
    assert "mimecast_poll_errors_total" in served
    for title, expr in [*QUERIES, *(("variable", q) for q in VARIABLE_QUERIES)]:
        names = METRIC.findall(expr)
        assert names, f"{title}: no mimecast metric in {expr!r}"
        unknown = set(names) - set(served)
        assert not unknown, f"{title}: {sorted(unknown)} not served by the exporter"


def test_queries_filter_by_the_selected_account_and_queue(served):
    for title, expr in QUERIES:
        for name, matchers in selectors(expr):
            assert matchers is not None, f"{title}: {name} without a selector"
            assert 'job="$job", instance="$instance"' in matchers, f"{title}: {name}"
            assert 'account=~"$account"' in matchers, f"{title}: {name}"
            if "queue" in served[name]:
                assert 'queue=~"$queue"' in matchers, f"{title}: {name}"
            else:
                assert "queue" not in matchers, f"{title}: {name} has no queue label"


def test_queries_use_only_defined_variables():
    defined = set(VARIABLES) | BUILTIN_VARIABLES
    for title, text in [*QUERIES, *(("variable", q) for q in VARIABLE_QUERIES)]:
        assert variable_names(text) <= defined, f"{title}: {text}"
    # The job list needs nothing; each following list is narrowed by the ones before.
    assert variable_names(VARIABLE_QUERIES[0]) == set()


def test_histograms_are_never_rated():
    """They are rebuilt at every poll, not accumulated: rate() of them is meaningless."""
    for title, expr in QUERIES:
        for name in HISTOGRAMS:
            for match in re.finditer(name, expr):
                around = set(enclosing_functions(expr, match.start()))
                assert not around & RANGE_FUNCTIONS, f"{title}: {expr}"


def test_counters_are_always_rated():
    for title, expr in QUERIES:
        for name in COUNTERS:
            for match in re.finditer(name, expr):
                around = set(enclosing_functions(expr, match.start()))
                assert around & {"rate", "increase"}, f"{title}: {expr}"
                assert "[$__rate_interval]" in expr[match.end() :], f"{title}: {expr}"


def test_enclosing_functions():
    expr = "sum by (le) (rate(x_bucket[5m])) + y"
    assert enclosing_functions(expr, expr.index("x_bucket")) == ["sum", "rate"]
    assert enclosing_functions(expr, expr.index("y")) == []
    expr = "max(increase(x_total[1h])) without (queue)"
    assert enclosing_functions(expr, expr.index("x_total")) == ["max", "increase"]


# -- substitute()


@pytest.mark.parametrize(("title", "expr"), QUERIES, ids=[f"{t}:{e[:40]}" for t, e in QUERIES])
def test_substitute_leaves_no_variable(title, expr):
    result = substitute(expr)
    assert "$" not in result and "[[" not in result, result


def test_substitute_replaces_every_form():
    assert (
        substitute('x{account=~"$account", queue=~"${queue}"}', account="acme", queue="bulk.*")
        == 'x{account=~"acme", queue=~"bulk.*"}'
    )
    assert substitute("${account:regex} [[account]]", account="a|b") == "a|b a|b"
    assert substitute("rate(x[$__rate_interval])", rate_interval="2m") == "rate(x[2m])"
    assert substitute("$__interval $__interval_ms", interval="90s") == "90s 90000"
    assert substitute("$__range $__range_s $__range_ms", time_range="1h") == "1h 3600 3600000"
    assert substitute("x") == "x"


def test_substitute_refuses_unknown_variables():
    with pytest.raises(ValueError, match="nope"):
        substitute("x{route=~'$nope'}")
    with pytest.raises(ValueError, match="duration"):
        substitute("$__interval", interval="soon")


def test_substituted_queries_parse_with_promtool(tmp_path):
    promtool = debian_binary("promtool", "prometheus")
    rules = [
        {"record": f"dashboard:query_{i}", "expr": substitute(expr)}
        for i, (_, expr) in enumerate(QUERIES)
    ]
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -- provisioning


def test_datasource_provisioning():
    config = yaml.safe_load((GRAFANA_DIR / "provisioning/datasources/prometheus.yml").read_text())
    assert config["apiVersion"] == 1
    [source] = config["datasources"]
    assert source["name"] == "Prometheus"
    assert source["uid"] == "prometheus"
    assert source["type"] == VARIABLES["datasource"]["query"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert source["access"] == "proxy"
    assert source["isDefault"] is True


def test_dashboard_provisioning_loads_the_dashboard_directory():
    config = yaml.safe_load((GRAFANA_DIR / "provisioning/dashboards/mimecast.yml").read_text())
    assert config["apiVersion"] == 1
    [provider] = config["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == PROVIDER_PATH
    # grafana/dashboards is what gets mounted at PROVIDER_PATH.
    assert DASHBOARD_PATH.parent == GRAFANA_DIR / "dashboards"
    assert sorted(p.name for p in DASHBOARD_PATH.parent.iterdir()) == [DASHBOARD_PATH.name]


def test_grafana_readme_names_the_mount_points():
    text = (GRAFANA_DIR / "README.md").read_text()
    assert "/etc/grafana/provisioning" in text
    assert PROVIDER_PATH in text
    assert "Import" in text


def test_panels_for_the_status_breakdown_and_the_retry_state():
    status = " ".join(t["expr"] for t in by_title("Messages by status")["targets"])
    assert "mimecast_queue_messages_by_status" in status and "by (status)" in status
    retry = " ".join(t["expr"] for t in by_title("Locked and overdue retries")["targets"])
    assert "mimecast_queue_locked_messages" in retry
    assert "mimecast_queue_retry_overdue_messages" in retry
