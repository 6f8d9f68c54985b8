"""The Grafana dashboards and Prometheus rules are well-formed and name only metrics that exist:
ours (shared/metrics.py), faststream's Kafka middleware's, Prometheus built-ins, or recording
rules defined in deploy/prometheus/rules. (Whether each expression returns data in a real run
is the e2e test's job: tests/e2e/test_observability.py.)"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from faststream.prometheus.container import MetricsContainer
from prometheus_client import CollectorRegistry

from deploy.grafana import build_dashboards
from shared.metrics import ServiceMetrics

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
PROVISIONING = GRAFANA / "provisioning"
RULES = ROOT / "deploy" / "prometheus" / "rules"
BUILT_INS = {"up", "ALERTS", "ALERTS_FOR_STATE", "scrape_duration_seconds"}
PROMQL_WORDS = {
    "sum",
    "max",
    "min",
    "avg",
    "count",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "offset",
    "bool",
    "rate",
    "increase",
    "delta",
    "deriv",
    "histogram_quantile",
    "vector",
    "absent",
    "max_over_time",
    "min_over_time",
    "le",
}
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_LABEL_BLOCKS = re.compile(r"\{[^}]*\}")
_NAMES = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NUMBERS = re.compile(r"(?<![\w:])\d+(?:\.\d+)?(?:ms|[smhdwy])?(?![\w:])")


def sample_names(registry: CollectorRegistry) -> set[str]:
    """Every series name a registry can expose, including histogram and counter suffixes."""
    names: set[str] = set()
    for family in registry.collect():
        suffixes = {
            "counter": ("_total",),
            "histogram": ("_bucket", "_count", "_sum"),
            "gauge": ("",),
            "summary": ("_count", "_sum", ""),
        }[family.type]
        names.update(family.name + s for s in suffixes)
    return names


def exported_metric_names() -> set[str]:
    ours = CollectorRegistry()
    ServiceMetrics(ours, "test")
    faststream = CollectorRegistry()
    MetricsContainer(faststream, custom_label_names=())
    return sample_names(ours) | sample_names(faststream)


def names_in(expr: str) -> set[str]:
    """Metric and recording-rule names used by a PromQL expression (a lexical approximation:
    strings, label matchers, durations and PromQL keywords are removed first)."""
    bare = _LABEL_BLOCKS.sub(" ", _STRINGS.sub('""', expr))
    bare = re.sub(r"\[[^\]]*\]", " ", bare)  # range selectors
    bare = _GROUPING.sub(" ", bare)
    bare = _NUMBERS.sub(" ", bare)
    return {n for n in _NAMES.findall(bare) if n not in PROMQL_WORDS and not n.isdigit()}


def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = []
    for path in sorted(RULES.glob("*.yml")):
        groups.extend(yaml.safe_load(path.read_text())["groups"])
    return groups


def all_rules() -> list[dict[str, Any]]:
    return [rule for group in rule_groups() for rule in group["rules"]]


def recorded_names() -> set[str]:
    return {r["record"] for r in all_rules() if "record" in r}


def dashboards() -> dict[str, dict[str, Any]]:
    files = sorted((GRAFANA / "dashboards").glob("*.json"))
    return {p.name: json.loads(p.read_text()) for p in files}


def dashboard_exprs() -> list[tuple[str, str, str]]:
    return [
        (name, panel["title"], target["expr"])
        for name, board in dashboards().items()
        for panel in board["panels"]
        for target in panel["targets"]
    ]


def provisioned_datasource_uid() -> str:
    config = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    (source,) = config["datasources"]
    assert source["type"] == "prometheus"
    return str(source["uid"])


def test_names_in_finds_metrics_but_not_labels_functions_or_strings() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (provider, le) (rate(a_bucket{le=~"300"}[5m])))'
        " / on (provider) group_left b:c:rate5m offset 5m or vector(0)"
    )
    assert names_in(expr) == {"a_bucket", "b:c:rate5m"}


def test_committed_dashboards_match_their_source() -> None:
    rendered = build_dashboards.render()
    on_disk = {p.name: p.read_text() for p in (GRAFANA / "dashboards").glob("*.json")}
    assert on_disk == rendered, "run `python -m deploy.grafana.build_dashboards`"


def test_the_five_dashboards_exist() -> None:
    uids = {board["uid"] for board in dashboards().values()}
    assert uids == {
        "reelforge-overview",
        "reelforge-providers",
        "reelforge-kafka",
        "reelforge-storage",
        "reelforge-notifications",
    }


@pytest.mark.parametrize("name", sorted(dashboards()))
def test_dashboard_has_what_grafana_needs(name: str) -> None:
    board = dashboards()[name]
    uid = provisioned_datasource_uid()
    assert board["uid"]
    assert len(board["uid"]) <= 40
    assert board["title"]
    assert board["schemaVersion"] >= 30
    assert board["panels"], "a dashboard without panels"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in board["panels"]:
        assert panel["title"]
        assert panel["type"] in {"timeseries", "stat"}
        assert panel["datasource"]["uid"] == uid
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"])
        assert panel["targets"], f"{panel['title']}: no targets"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids))
        for target in panel["targets"]:
            assert target["expr"].strip(), f"{panel['title']}: empty expr"
            assert target["datasource"]["uid"] == uid
            assert "$" not in target["expr"], "no template variables: the e2e test runs exprs as-is"


def test_dashboard_provisioning_points_grafana_at_the_dashboards_folder() -> None:
    config = yaml.safe_load((PROVISIONING / "dashboards" / "dashboards.yml").read_text())
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


def test_every_name_in_a_dashboard_is_a_metric_or_a_recording_rule() -> None:
    known = exported_metric_names() | BUILT_INS | recorded_names()
    unknown = {
        (board, title, n)
        for board, title, expr in dashboard_exprs()
        for n in names_in(expr) - known
    }
    assert not unknown


def test_every_rule_parses_and_names_only_known_metrics() -> None:
    known = exported_metric_names() | BUILT_INS | recorded_names()
    rules = all_rules()
    assert rules
    for rule in rules:
        assert ("alert" in rule) != ("record" in rule), rule
        assert isinstance(rule["expr"], str)
        assert rule["expr"].strip()
        assert not names_in(rule["expr"]) - known, rule.get("alert") or rule.get("record")
        if "alert" in rule:
            assert rule["labels"]["severity"] in {"warning", "critical"}
            assert rule["annotations"]["summary"]
            assert rule["annotations"]["description"]
        else:
            assert rule["record"].count(":") >= 2, "recording rules: level:metric:operation"


def test_every_alert_has_a_promtool_test() -> None:
    tested = (ROOT / "deploy" / "prometheus" / "tests").glob("*.yml")
    text = "\n".join(p.read_text() for p in tested)
    for rule in all_rules():
        if "alert" in rule:
            assert f"alertname: {rule['alert']}" in text, rule["alert"]


def test_every_project_metric_is_shown_or_alerted_on() -> None:
    ours = CollectorRegistry()
    ServiceMetrics(ours, "test")
    used = " ".join([expr for _, _, expr in dashboard_exprs()] + [r["expr"] for r in all_rules()])
    unused = {family.name for family in ours.collect() if family.name not in used}
    assert not unused, "add a panel or a rule for these metrics"
