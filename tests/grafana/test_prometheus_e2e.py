"""End to end: demo traffic -> real collector -> real Prometheus -> every dashboard query and the alerts.

A collector (subprocess, the demo's budgets) receives the traffic of `cognocient-demo` (a
subprocess: real openai SDK, real OTLP exporter). A Prometheus started here scrapes it every
second with the project's rules (alert `for:` cut to 2 s). Every panel query of every dashboard
then runs through Prometheus' HTTP API the way Grafana sends it, and must return data, except the
panels documented as empty in a clean state.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from dashboard_files import RULES_DIR, load_dashboards, panels_with_queries
from prometheus_harness import Prometheus, send_duplicate_and_malformed_spans, short_for_rules

from collector.demo.local_collector import LocalCollector
from grafana.dashboards.common import EMPTY_WHEN_CLEAN
from grafana.query_check import grafana_to_promql

pytestmark = pytest.mark.timeout(150)

# Panels with no data until something goes wrong (or while nothing runs); each says so in its
# description. The test sends a duplicate span and malformed data, so after it only the panels
# in EMPTY_AFTER_DEMO may lack data.
EMPTY_IN_CLEAN_STATE = {
    ("agent-run-cost.json", "Unpriced LLM calls in time range"),
    ("agent-run-cost.json", "Runs active"),
    ("budgets.json", "Blocked runs"),
    ("collector-health.json", "Spans rejected by reason"),
    ("collector-health.json", "Duplicate spans"),
    ("collector-health.json", "Request errors by transport"),
}
# Every model the demo uses has a price, and every demo run has ended.
EMPTY_AFTER_DEMO = {
    ("agent-run-cost.json", "Unpriced LLM calls in time range"),
    ("agent-run-cost.json", "Runs active"),
}


class Stack:
    def __init__(self, collector: LocalCollector, prometheus: Prometheus, demo_output: str) -> None:
        self.collector = collector
        self.prometheus = prometheus
        self.demo_output = demo_output


def _wait_for(prometheus: Prometheus, expr: str, timeout_seconds: float) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if prometheus.query(expr)["data"]["result"]:
            return
        time.sleep(0.5)
    raise AssertionError(f"no data for {expr} within {timeout_seconds} s")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("prometheus")
    rules = short_for_rules(RULES_DIR / "rules.yml", workdir / "rules-test.yml")
    with LocalCollector(metrics_port=None) as collector, Prometheus(
        workdir, scrape_target=f"127.0.0.1:{collector.metrics_port}", rule_files=[rules]
    ) as prom:
        _wait_for(prom, 'up{job="cognocient-collector"} == 1', 20)
        demo = subprocess.run(
            [sys.executable, "-m", "collector.demo", "--collector-endpoint", collector.otlp_endpoint,
             "--collector-http", collector.http_url, "--rounds", "3", "--pause", "1.5"],
            capture_output=True, text=True, timeout=90,
        )
        assert demo.returncode == 0, demo.stdout + demo.stderr + collector.log_tail()
        assert send_duplicate_and_malformed_spans(collector.http_url) == [200, 200, 400, 400]
        # Recording rules run on the scrapes after the demo; wait for the slowest panel inputs.
        _wait_for(prom, "feature_agent:cognocient_run_cost_usd_bucket:rate5m > 0", 20)
        _wait_for(prom, "cognocient_budget_blocked_runs_total", 20)
        time.sleep(2)  # one more scrape and evaluation for every family
        yield Stack(collector, prom, demo.stdout)


def _has_data(answer: dict) -> bool:
    for series in answer["data"]["result"]:
        values = series.get("values") or [series["value"]]
        if any(not math.isnan(float(value)) for _, value in values):
            return True
    return False


def test_the_demo_blocked_its_runaway_run(stack: Stack) -> None:
    assert "research per run" in stack.demo_output
    assert " blocked " in stack.demo_output


def test_the_empty_panel_list_matches_the_panel_descriptions() -> None:
    documented = {
        (name, panel["title"])
        for name, board in load_dashboards().items()
        for panel in panels_with_queries(board)
        if EMPTY_WHEN_CLEAN in panel["description"]
    }
    assert documented == EMPTY_IN_CLEAN_STATE
    assert EMPTY_AFTER_DEMO <= EMPTY_IN_CLEAN_STATE


def test_every_panel_query_returns_data(stack: Stack) -> None:
    without_data, errors, checked = [], [], 0
    for name, board in load_dashboards().items():
        for panel in panels_with_queries(board):
            for target in panel["targets"]:
                expr = grafana_to_promql(target["expr"])
                if target.get("instant"):
                    answer = stack.prometheus.query(expr)
                else:
                    answer = stack.prometheus.query_range(expr)
                checked += 1
                if answer.get("status") != "success":
                    errors.append(f"{name} / {panel['title']}: {answer.get('error')}")
                elif not _has_data(answer) and (name, panel["title"]) not in EMPTY_AFTER_DEMO:
                    without_data.append(f"{name} / {panel['title']}: {expr}")
    assert errors == []
    assert without_data == [], "\n".join(without_data)
    assert checked >= 40


def _series_labels(answer: dict) -> list[dict]:
    return [series["metric"] for series in answer["data"]["result"]]


def test_a_variable_selection_filters_every_panel(stack: Stack) -> None:
    """Two features selected, one instance (a value with regex characters): only they show."""
    features = ["research", "support"]
    selected = {"feature": features, "instance": [f"127.0.0.1:{stack.collector.metrics_port}"]}
    with_data = set()
    for name, board in load_dashboards().items():
        for panel in panels_with_queries(board):
            for target in panel["targets"]:
                answer = stack.prometheus.query(grafana_to_promql(target["expr"], selected))
                assert answer["status"] == "success", (name, panel["title"], answer)
                for labels in _series_labels(answer):
                    assert labels.get("feature", "research") in features, (name, panel["title"], labels)
                if _has_data(answer):
                    with_data.add((name, panel["title"]))
    assert {("agent-run-cost.json", "Spend rate by feature"),
            ("agent-run-cost.json", "Most expensive runs right now"),
            ("agent-run-cost.json", "Run cost p50 / p95 / p99 by feature"),
            ("collector-health.json", "Spans in and out")} <= with_data
    # document-processor, the only feature with a waste flag, is not selected.
    assert ("agent-run-cost.json", "Waste flags by kind") not in with_data


def test_the_runs_blocked_stat_counts_the_blocked_run_under_its_feature_and_agent(stack: Stack) -> None:
    """The demo's runaway run is blocked at the budget check, before its root span (the only one
    naming its agent) is exported: the stat must still find it with its feature and agent selected."""
    board = load_dashboards()["agent-run-cost.json"]
    (panel,) = [panel for panel in panels_with_queries(board) if panel["title"] == "Runs blocked"]
    (target,) = panel["targets"]
    selected = {"feature": ["research"], "agent": ["researcher"]}
    answer = stack.prometheus.query(grafana_to_promql(target["expr"], selected))
    assert answer["status"] == "success", answer
    values = [float(series["value"][1]) for series in answer["data"]["result"]]
    assert values and values[0] >= 1, answer
    unknown = stack.prometheus.query('cognocient_runs_ended_total{status="blocked", agent="unknown"}')
    assert unknown["data"]["result"] == [], unknown


def test_every_template_variable_has_values(stack: Stack) -> None:
    for name, board in load_dashboards().items():
        for variable in board["templating"]["list"]:
            if variable["type"] != "query":
                continue
            query = variable["query"]
            selector, label = query[len("label_values("):-1].rsplit(",", 1)
            answer = stack.prometheus.label_values(label.strip(), grafana_to_promql(selector))
            assert answer["status"] == "success", (name, query, answer)
            assert answer["data"], f"{name}: variable {variable['name']} has no values ({query})"


def test_the_demo_features_reach_the_feature_variable(stack: Stack) -> None:
    answer = stack.prometheus.label_values("feature", "cognocient_llm_calls_total")
    assert {"support", "research", "document-processor"} <= set(answer["data"])


def _wait_for_firing(prometheus: Prometheus, alertname: str, timeout_seconds: float = 20) -> dict:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        for alert in prometheus.alerts():
            if alert["labels"]["alertname"] == alertname and alert["state"] == "firing":
                return alert
        time.sleep(0.5)
    raise AssertionError(f"{alertname} did not fire within {timeout_seconds} s: {prometheus.alerts()}")


def test_the_blocked_run_alert_fires(stack: Stack) -> None:
    alert = _wait_for_firing(stack.prometheus, "CognocientRunBlockedByBudget")
    labels = alert["labels"]
    assert (labels["budget"], labels["feature"], labels["agent"]) == (
        "research per run", "research", "researcher")
    assert "research per run" in alert["annotations"]["summary"]
    assert alert["annotations"]["runbook"]


def test_the_loop_alert_fires(stack: Stack) -> None:
    alert = _wait_for_firing(stack.prometheus, "CognocientRunLoopDetected")
    assert alert["labels"]["feature"] == "document-processor"


def test_the_collector_down_alert_stays_silent(stack: Stack) -> None:
    names = {alert["labels"]["alertname"] for alert in stack.prometheus.alerts()}
    assert "CognocientCollectorDown" not in names


def test_a_bad_query_is_an_error_not_empty_data(stack: Stack) -> None:
    """The data check above can fail: Prometheus reports errors, and unknown series are empty."""
    assert stack.prometheus.query("sum(rate(cognocient_llm_calls_total[1m])")["status"] == "error"
    assert not _has_data(stack.prometheus.query("cognocient_no_such_metric_total"))


def test_rules_copy_keeps_every_alert(tmp_path: Path) -> None:
    copy = yaml.safe_load(short_for_rules(RULES_DIR / "rules.yml", tmp_path / "r.yml").read_text())
    original = yaml.safe_load((RULES_DIR / "rules.yml").read_text())
    alerts = [r for g in copy["groups"] for r in g["rules"] if "alert" in r]
    assert len(alerts) == len([r for g in original["groups"] for r in g["rules"] if "alert" in r])
    assert {rule["for"] for rule in alerts} == {"2s"}
