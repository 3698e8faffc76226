"""End to end through a real Prometheus (Debian's package), scraping the real exporter.

Three simulated Mimecast accounts: `outage`, where a destination refuses mail
and the outbound queue backs up (600x model speed), `healthy`, and `backlog`,
a stuck queue of a million messages. The exporter runs as a process polling
them at default budget settings; Prometheus scrapes it every second with the
project's alert rules loaded. Through Prometheus's HTTP API the test checks
that the target is up, that every dashboard query and every rule expression
is valid PromQL over series that really exist, that the backlog alert fires
for the outage and not for the healthy account, and that a million-message
backlog is counted exactly and raises the backlog and oldest-age alerts. A
fourth, `uncounted`, is a large queue on a server that sends no totalCount:
polled with success but never counted, it raises MimecastCountsAbsent. A
fifth, `unsorted`, is a large queue on a server that ignores sortOrder:
counted, but its routes not read whole have no known oldest message.

The shipped rules wait 10 to 15 minutes (``for:``) before firing; so that the
test sees them fire in seconds, Prometheus also loads a copy of them with
``for: 0s``, each alert renamed with the suffix ``ForTest``. Their ``for:``
behaviour itself is covered by ``promtool test rules`` (tests/test_rules.py).
"""

from __future__ import annotations

import re
import socket
import subprocess
from pathlib import Path

import pytest
import requests
import yaml

from mimecast_exporter.simulator.api import Quirks
from mimecast_exporter.simulator.server import SimulatorServer
from tests.dashboard import load_dashboard, panel_queries, substitute
from tests.processes import Daemon, debian_binary, wait_for

ROOT = Path(__file__).resolve().parent.parent
RULE_FILES = [
    p for p in (ROOT / "prometheus/alerts.yml", ROOT / "prometheus/rules.yml") if p.exists()
]
SPEED = 600.0
# Fire-drill scenario -> the alert it must raise (beside the outage and backlog ones).
FIRE_DRILL = {
    "rate_limited": "MimecastRateLimited",
    "auth_expired": "MimecastAuthFailing",
    "slow": "MimecastAccountDown",
}

# PromQL words that are not metric names.
PROMQL_WORDS = {
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "group",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "rate",
    "irate",
    "increase",
    "delta",
    "idelta",
    "deriv",
    "time",
    "vector",
    "scalar",
    "abs",
    "absent",
    "absent_over_time",
    "changes",
    "clamp_min",
    "clamp_max",
    "clamp",
    "histogram_quantile",
    "label_replace",
    "label_join",
    "avg_over_time",
    "max_over_time",
    "min_over_time",
    "sum_over_time",
    "count_over_time",
    "last_over_time",
    "present_over_time",
    "resets",
    "round",
    "sort",
    "sort_desc",
    "timestamp",
    "ceil",
    "floor",
    "ln",
    "log2",
    "log10",
    "exp",
    "sqrt",
    "predict_linear",
    "holt_winters",
    "days_in_month",
    "day_of_month",
    "day_of_week",
    "hour",
    "minute",
    "month",
    "year",
    "inf",
    "nan",
    "le",
}


def binary(name: str) -> str:
    return debian_binary(name, "prometheus")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (strings, label lists, durations removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    words = set(re.findall(r"(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*", text))
    return {w for w in words if w.lower() not in PROMQL_WORDS}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    prometheus = binary("prometheus")
    tmp = tmp_path_factory.mktemp("e2e")
    outage = SimulatorServer("127.0.0.1", 0, scenario="outage", speed=SPEED, seed=11).start()
    healthy = SimulatorServer("127.0.0.1", 0, scenario="healthy", speed=SPEED, seed=12).start()
    backlog = SimulatorServer("127.0.0.1", 0, scenario="backlog", seed=13).start()
    # Large queues on servers that do not honour what they are asked.
    quirky = {
        name: SimulatorServer(
            "127.0.0.1", 0, scenario="backlog", seed=seed, backlog_messages=5000, quirks=quirks
        ).start()
        for name, seed, quirks in (
            ("uncounted", 15, Quirks(omit_total_count=True)),
            ("unsorted", 16, Quirks(ignore_sort_order=True)),
        )
    }
    # The rest of the fire drill (docs/simulator.md), one simulator each.
    drills = {
        name: SimulatorServer("127.0.0.1", 0, scenario=name, seed=14).start() for name in FIRE_DRILL
    }
    creds = outage.default_credentials()["oauth2"]
    hmac = healthy.default_credentials()["hmac"]
    drill_accounts = [
        {
            "name": f"{name}-{scheme}",
            "base_url": sim.url,
            scheme: (
                {"client_id": creds["client_id"], "client_secret": creds["client_secret"]}
                if scheme == "oauth2"
                else {k: hmac[k] for k in ("app_id", "app_key", "access_key", "secret_key")}
            ),
        }
        for name, sim in drills.items()
        for scheme in ("oauth2", "hmac")
    ]
    config = tmp / "config.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "poll": {"interval": "2s", "timeout": "2s", "stale_after": "30s"},
                "accounts": [
                    {
                        "name": "outage",
                        "base_url": outage.url,
                        "top_domains": 5,  # the dashboard's domain panels get data
                        "oauth2": {
                            "client_id": creds["client_id"],
                            "client_secret": creds["client_secret"],
                        },
                    },
                    {
                        "name": "healthy",
                        "base_url": healthy.url,
                        "hmac": {
                            k: hmac[k] for k in ("app_id", "app_key", "access_key", "secret_key")
                        },
                    },
                    {
                        "name": "backlog",
                        "base_url": backlog.url,
                        "oauth2": {
                            "client_id": creds["client_id"],
                            "client_secret": creds["client_secret"],
                        },
                    },
                    *(
                        {
                            "name": name,
                            "base_url": sim.url,
                            "oauth2": {
                                "client_id": creds["client_id"],
                                "client_secret": creds["client_secret"],
                            },
                        }
                        for name, sim in quirky.items()
                    ),
                    *drill_accounts,
                ],
            }
        )
    )
    rule_files = [*RULE_FILES, fast_copy(tmp / "alerts-for-0s.yml")]
    exporter = Daemon("--config.file", str(config))
    prom = None
    try:
        exporter_url = exporter.wait_for_url()
        port = free_port()
        prom_config = tmp / "prometheus.yml"
        prom_config.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(p) for p in rule_files],
                    "scrape_configs": [
                        {
                            "job_name": "mimecast-exporter",  # the mixin's default selector
                            "static_configs": [{"targets": [exporter_url.removeprefix("http://")]}],
                        }
                    ],
                }
            )
        )
        prom = subprocess.Popen(
            [
                prometheus,
                f"--config.file={prom_config}",
                f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(tmp / "prometheus.log", "w"),  # noqa: SIM115
            stdin=subprocess.DEVNULL,
        )
        api = f"http://127.0.0.1:{port}"
        wait_for(lambda: _get(api + "/-/ready") == 200, timeout=60)
        yield {
            "api": api,
            "exporter": exporter_url,
            "log": tmp / "prometheus.log",
            "rule_files": rule_files,
        }
    finally:
        if prom is not None:
            prom.terminate()
            prom.wait(timeout=20)
        exporter.stop()
        outage.stop()
        healthy.stop()
        backlog.stop()
        for sim in [*quirky.values(), *drills.values()]:
            sim.stop()


def fast_copy(path: Path) -> Path:
    """The shipped alert rules with ``for: 0s``, each renamed ``<alert>ForTest``."""
    groups = []
    for rule_file in RULE_FILES:
        for group in yaml.safe_load(rule_file.read_text())["groups"]:
            rules = [
                {**rule, "alert": rule["alert"] + "ForTest", "for": "0s"}
                for rule in group["rules"]
                if "alert" in rule
            ]
            groups.append({**group, "name": group["name"] + "-for-test", "rules": rules})
    path.write_text(yaml.safe_dump({"groups": groups}))
    return path


def _get(url: str) -> int | None:
    try:
        return requests.get(url, timeout=2).status_code
    except requests.RequestException:
        return None


def query(api: str, expr: str) -> list:
    answer = requests.get(api + "/api/v1/query", params={"query": expr}, timeout=10).json()
    assert answer["status"] == "success", f"{expr!r}: {answer.get('error')}"
    return answer["data"]["result"]


def wait_for_data(api: str, expr: str, timeout: float = 60) -> list:
    return wait_for(lambda: query(api, expr), timeout=timeout)


def test_target_is_up_and_both_accounts_polled(stack):
    api = stack["api"]
    up = wait_for_data(api, 'up{job="mimecast-exporter"} == 1')
    assert up
    accounts = wait_for(
        lambda: (
            {r["metric"]["account"] for r in query(api, "mimecast_up == 1")}
            == {"outage", "healthy", "backlog", "uncounted", "unsorted"}
            or None
        ),
        timeout=60,
    )
    assert accounts


def test_every_dashboard_query_parses_and_returns_data(stack):
    api = stack["api"]
    # rate() and increase() need two samples of a counter in their window
    wait_for_data(api, "count_over_time(mimecast_api_requests_total[1m]) > 3")
    queries = panel_queries(load_dashboard())
    assert queries
    missing = {}
    for title, expr in queries:
        promql = substitute(
            expr,
            account=".*",
            queue=".*",
            rate_interval="1m",
            interval="5s",
            job="mimecast-exporter",
            instance=stack["exporter"].removeprefix("http://"),  # as Prometheus labels it
        )
        try:
            wait_for_data(api, promql, timeout=20)
        except AssertionError:
            missing[title] = promql
    assert not missing, f"dashboard queries returning no data: {missing}"


def test_every_rule_expression_parses_and_selects_real_series(stack):
    api = stack["api"]
    wait_for_data(api, "mimecast_queue_messages")
    known = set(requests.get(api + "/api/v1/label/__name__/values", timeout=10).json()["data"])
    rules = requests.get(api + "/api/v1/rules", timeout=10).json()["data"]["groups"]
    loaded = [rule for group in rules for rule in group["rules"]]
    files = [yaml.safe_load(p.read_text()) for p in stack["rule_files"]]
    declared = [r for f in files for g in f["groups"] for r in g["rules"]]
    assert len(loaded) == len(declared) > 0, "Prometheus did not load every rule"
    recorded = {r["record"] for r in declared if "record" in r}
    for rule in declared:
        query(api, rule["expr"])  # parses: the API answers success
        for name in metric_names(rule["expr"]):
            assert name in known or name in recorded or name == "up", (
                f"{rule.get('alert') or rule.get('record')} selects {name}, which neither the "
                "exporter nor a recording rule produces"
            )
    assert all(r["health"] != "err" for r in loaded), [r for r in loaded if r["health"] == "err"]


def test_backlog_alert_fires_for_the_outage_only(stack):
    api = stack["api"]

    def backlog_alerts():
        alerts = requests.get(api + "/api/v1/alerts", timeout=10).json()["data"]["alerts"]
        return [a for a in alerts if a["labels"].get("alertname") == "MimecastQueueBacklog"]

    def outage_backlog():
        found = [a for a in backlog_alerts() if a["labels"].get("account") == "outage"]
        return found or None

    found = wait_for(outage_backlog, timeout=120)
    assert found[0]["state"] in ("pending", "firing")
    assert found[0]["labels"]["queue"] == "processing"
    assert found[0]["labels"]["route"] == "outbound"
    assert not [a for a in backlog_alerts() if a["labels"].get("account") == "healthy"]
    history = query(
        api, 'count_over_time(ALERTS{alertname="MimecastQueueBacklog",account="healthy"}[10m])'
    )
    assert history == []


def test_live_exposition_passes_promtool(stack):
    promtool = binary("promtool")
    text = requests.get(stack["exporter"] + "/metrics", timeout=10).content
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == b"" and result.stderr.strip() == b""


def test_a_million_message_backlog_is_counted_exactly_and_alerts(stack):
    api = stack["api"]
    selector = 'account="backlog",queue="processing"'
    total = wait_for_data(api, f"sum(mimecast_queue_messages{{{selector}}})")
    assert float(total[0]["value"][1]) == 1_000_000  # exact, from 6 requests a poll
    assert query(api, f"mimecast_queue_scan_complete{{{selector}}} == 0")
    assert query(api, f"mimecast_queue_scanned_messages{{{selector}}} == 100")
    assert query(api, f"mimecast_queue_size_bytes{{{selector}}}") == []  # a partial sum: absent
    oldest = query(api, f'mimecast_queue_oldest_message_age_seconds{{{selector},route="outbound"}}')
    assert float(oldest[0]["value"][1]) > 2 * 86400  # created over the last three days
    assert query(api, 'mimecast_up{account="backlog"} == 1')

    def alert_states(name):
        alerts = requests.get(api + "/api/v1/alerts", timeout=10).json()["data"]["alerts"]
        states = {
            a["state"]
            for a in alerts
            if a["labels"].get("alertname") == name and a["labels"].get("account") == "backlog"
        }
        return states or None

    for alert in ("MimecastQueueBacklog", "MimecastQueueOldestMessageTooOld"):
        firing = wait_for(lambda a=alert: "firing" in (alert_states(a + "ForTest") or ()), 60)
        assert firing
        assert alert_states(alert) & {"pending", "firing"}


def firing_alerts(api: str) -> list[dict]:
    alerts = requests.get(api + "/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    return [a for a in alerts if a["state"] == "firing"]


@pytest.mark.parametrize("scenario", sorted(FIRE_DRILL))
@pytest.mark.parametrize("scheme", ["oauth2", "hmac"])
def test_fire_drill_scenario_fires_its_alert(stack, scenario, scheme):
    """docs/simulator.md's fire drill: each scenario raises the alert it promises."""
    api, account, alert = stack["api"], f"{scenario}-{scheme}", FIRE_DRILL[scenario]

    def fired():
        names = {
            a["labels"]["alertname"]
            for a in firing_alerts(api)
            if a["labels"].get("account") == account
        }
        return names if alert + "ForTest" in names else None

    names = wait_for(fired, timeout=90)
    # Its data problem is not mistaken for a mail problem.
    assert not {n for n in names if n.startswith("MimecastQueue")}, names
    assert query(api, f'mimecast_up{{account="{account}"}} == 0')


def test_a_queue_polled_but_never_counted_raises_counts_absent(stack):
    """A server without totalCount: the large queue's polls succeed, its counts
    are absent, and the alert that says MimecastQueueBacklog is blind fires."""
    api = stack["api"]

    def absent_for():
        return {
            a["labels"]["account"]
            for a in firing_alerts(api)
            if a["labels"]["alertname"] == "MimecastCountsAbsentForTest"
        } or None

    wait_for(lambda: "uncounted" in (absent_for() or ()) or None, timeout=90)
    assert query(api, 'mimecast_up{account="uncounted"} == 1')
    uncounted = 'account="uncounted",queue="processing"'
    assert query(api, f'mimecast_queue_messages{{{uncounted},route!="unknown"}}') == []
    assert query(api, f"mimecast_queue_scan_complete{{{uncounted}}} == 0")
    wait_for_data(api, 'mimecast_queue_messages{account="backlog"}')
    assert absent_for() & {"backlog", "healthy", "outage"} == set()
    # The dashboard's stat tells the two kinds of queue not read whole apart.
    counted, not_counted = (
        expr for title, expr in panel_queries(load_dashboard()) if title == "Queues not read whole"
    )
    for account, expr, expected in (
        ("uncounted", not_counted, 1),
        ("uncounted", counted, 0),
        ("backlog", counted, 1),
        ("backlog", not_counted, 0),
    ):
        instance = stack["exporter"].removeprefix("http://")
        (result,) = query(api, substitute(expr, account=account, instance=instance))
        assert float(result["value"][1]) == expected, (account, expr)


def test_routes_without_a_known_oldest_are_shown_beside_the_oldest_age(stack):
    """A server that counts but does not sort: the routes not read whole have
    no oldest age, and the dashboard's Oldest message stat says how many."""
    api = stack["api"]
    instance = stack["exporter"].removeprefix("http://")
    oldest, undated = (
        expr for title, expr in panel_queries(load_dashboard()) if title == "Oldest message"
    )

    def value(expr, account):
        (result,) = query(api, substitute(expr, account=account, instance=instance))
        return float(result["value"][1])

    wait_for_data(api, 'mimecast_queue_messages{account="unsorted",route="external"} > 0')
    unsorted = 'account="unsorted",queue="processing"'
    assert query(api, f"mimecast_queue_oldest_message_age_seconds{{{unsorted}}}") == []
    assert value(undated, "unsorted") == 4  # every route of its processing queue holds messages
    wait_for_data(api, 'mimecast_queue_oldest_message_age_seconds{account="backlog"}')
    assert value(undated, "backlog") == 0 and value(oldest, "backlog") > 86400


def test_healthy_fires_nothing(stack):
    wait_for(lambda: query(stack["api"], 'mimecast_up{account="healthy"} == 1'), timeout=60)
    assert not [a for a in firing_alerts(stack["api"]) if a["labels"].get("account") == "healthy"]
