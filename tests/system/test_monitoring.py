"""The Grafana dashboard, the Prometheus alert rules and the compose `monitoring` profile
agree with the code: every metric a panel or a rule queries is one recsys.serving.metrics
exports (with the suffixes the Prometheus client adds), with labels it has; the scrape
configuration names each service's metrics port; the provisioning finds the dashboard.
`promtool check rules` (run by .ci/run) validates the rules' syntax."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from recsys.serving import metrics
from services.gateway.http import metrics as http_metrics

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "recsys.json"
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
PROMETHEUS = REPO / "deploy" / "prometheus" / "prometheus.yml"
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]

# what a Prometheus scrape adds to every series, and `le` on histogram buckets
SCRAPE_LABELS = {"instance", "job"}
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
}
KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
    "unless", "offset", "inf", "nan",
}  # fmt: skip


def exported() -> dict[str, set[str]]:
    """Every series name the services export → its label names."""
    series: dict[str, set[str]] = {}
    for value in [*vars(metrics).values(), *vars(http_metrics).values()]:
        if isinstance(value, MetricWrapperBase):
            name, kind = value._name, value._type
            for suffix in SUFFIXES[kind]:
                labels = set(value._labelnames) | ({"le"} if suffix == "_bucket" else set())
                series[name + suffix] = labels
    return series


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """The metric names an expression selects, each with the label names it matches on
    ({...} right after the name). Grafana variables, strings, ranges, grouping lists,
    function names and keywords are not metrics."""
    expr = re.sub(r"\$\{?\w+\}?", "1m", expr)  # $__rate_interval → a duration
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors
    expr = re.sub(r"(?<![\w:])\d+(\.\d*)?([eE][+-]?\d+)?(ms|[smhdwy])?", " ", expr)  # numbers
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    found = []
    for match in re.finditer(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*(\{[^}]*\})?(\s*\()?", expr):
        name, matchers, call = match.groups()
        if call or name.lower() in KEYWORDS:
            continue
        labels = set(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", matchers or ""))
        found.append((name, labels))
    return found


def grouping_labels(expr: str) -> set[str]:
    """The label names of every by / without / on / ignoring list."""
    lists = re.findall(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", expr)
    return {label.strip() for names in lists for label in names.split(",") if label.strip()}


def dashboard_exprs() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


def alert_exprs() -> list[str]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def test_the_selector_reader_finds_names_and_labels():
    expr = (
        "histogram_quantile(0.99, sum by (le, method) "
        '(rate(x_bucket{code!="OK"}[$__rate_interval]))) > 2.5e-1'
    )
    assert selectors(expr) == [("x_bucket", {"code"})]
    assert selectors("count(count by (version) (v_info)) > 1") == [("v_info", set())]
    assert selectors("a / on (job) b offset 5m") == [("a", set()), ("b", set())]
    assert grouping_labels(expr) == {"le", "method"}


@pytest.mark.parametrize("source", ["dashboard", "alerts"])
def test_every_queried_metric_is_exported_with_those_labels(source):
    series = exported()
    exprs = dashboard_exprs() if source == "dashboard" else alert_exprs()
    assert exprs
    for expr in exprs:
        chosen = selectors(expr)
        assert chosen, f"no metric in {expr!r}"
        for name, labels in chosen:
            assert name in series, f"{name} (in {expr!r}) is not exported"
            assert labels <= series[name] | SCRAPE_LABELS, f"{name}: labels {labels} in {expr!r}"
        known = set().union(*(series[name] for name, _ in chosen)) | SCRAPE_LABELS
        assert grouping_labels(expr) <= known, f"grouping by an unknown label in {expr!r}"


def test_the_dashboard_has_the_panels_an_operator_watches():
    exprs = " ".join(dashboard_exprs())
    for name in (
        "recsys_rpcs_total",  # RPS and errors by code
        "recsys_rpc_seconds_bucket",  # latency percentiles
        "recsys_gateway_stage_seconds_bucket",
        "recsys_gateway_batch_size_bucket",
        "recsys_redis_seconds_bucket",
        "recsys_model_version_info",
        "recsys_ready",
    ):
        assert name in exprs, name
    panels = json.loads(DASHBOARD.read_text())["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    assert all(p["datasource"]["uid"] == "prometheus" for p in panels)


def test_the_alerts_cover_what_needs_a_person():
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    rules = {rule["alert"]: rule for group in groups for rule in group["rules"]}
    assert {
        "RecsysGatewayErrorRate",
        "RecsysGatewayLatencyP99",
        "RecsysReplicaNotReady",
        "RecsysModelVersionsDisagree",
        "RecsysRedisUnavailable",
    } <= set(rules)
    assert all(rule.get("for") and rule["annotations"]["summary"] for rule in rules.values())
    # the readiness the services export under their service names
    assert 'service="recsys.feature.v1.FeatureService"' in rules["RecsysRedisUnavailable"]["expr"]


def test_prometheus_scrapes_every_services_metrics_port_and_loads_the_rules():
    config = yaml.safe_load(PROMETHEUS.read_text())
    targets = {
        job["job_name"]: [t for c in job["static_configs"] for t in c["targets"]]
        for job in config["scrape_configs"]
    }
    for name in ("feature", "model", "gateway"):
        port = COMPOSE[name]["environment"]["METRICS_PORT"]
        assert targets[name] == [f"{name}:{port}"] and COMPOSE[name]["expose"] == [port]
    assert [(PROMETHEUS.parent / f).resolve() for f in config["rule_files"]] == [ALERTS]


def test_the_monitoring_profile_mounts_the_configuration():
    prometheus, grafana = COMPOSE["prometheus"], COMPOSE["grafana"]
    assert prometheus["profiles"] == grafana["profiles"] == ["monitoring"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in grafana["volumes"] if ":ro" in v)
    assert mounts["./deploy/grafana/dashboards"] == "/var/lib/grafana/dashboards"
    provider = yaml.safe_load(
        (REPO / "deploy/grafana/provisioning/dashboards/recsys.yaml").read_text()
    )["providers"][0]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    datasource = yaml.safe_load(
        (REPO / "deploy/grafana/provisioning/datasources/prometheus.yaml").read_text()
    )["datasources"][0]
    assert datasource["uid"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    assert grafana["depends_on"] == ["prometheus"]


def test_promtool_accepts_the_rules_and_the_configuration():
    # Debian's `prometheus` package; .ci/run installs it before the tests
    assert shutil.which("promtool"), "promtool missing: apt-get install prometheus"
    for args in (["check", "rules", str(ALERTS)], ["check", "config", str(PROMETHEUS)]):
        result = subprocess.run(["promtool", *args], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
